//! Pairing through the service: showing a code or ticket, confirming and joining.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand_core::UnwrapErr;
use tether_identity::{DeviceName, error_chain};
use tether_iroh::PeerAddr;
use tether_pairing::{CodeStatus, Credential, Initiator, PairingCode, PairingTicket};
use tether_protocol::DiscoveredDevice;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::NetworkingService;
use crate::close::{CLOSE_PAIRING_BUSY, PAIRING_ALPN};
use crate::pairing::{self, ConfirmSlot, PairedDevice, PendingPairing};
use crate::{CodeEnded, NetworkError, NetworkEvent};

/// How long `join_pairing` asks a busy initiator again.
const JOIN_BUSY_RETRY_FOR: Duration = Duration::from_secs(30);
/// The pause between two such asks.
const JOIN_BUSY_PAUSE: Duration = Duration::from_millis(300);

/// A pairing code (or ticket) this device is showing, and the way to wait for its outcome.
#[derive(Debug)]
pub struct PairingInvite {
    /// What the user types on the other device: the word code, or the ticket text.
    pub code: String,
    /// When the code stops working.
    pub expires_in: Duration,
    number: u64,
    outcome: watch::Receiver<Option<Outcome>>,
    confirm: Arc<ConfirmSlot>,
    pending: Option<mpsc::Receiver<PendingPairing>>,
}

impl PairingInvite {
    /// Asks to confirm each joiner, and waits for the next one that proves the code: nothing
    /// is stored (on either side) until [`PendingPairing::accept`]; rejecting or dropping it
    /// stores nothing and the joiner is told. From the first call on, this code asks; answer
    /// within the pairing exchange's deadline (60 s). Ends with an error when the code ends
    /// without a joiner proving it (burned, expired, cancelled, replaced).
    pub fn pending(&mut self) -> impl Future<Output = Result<PendingPairing, NetworkError>> + '_ {
        if self.pending.is_none() {
            let (sender, receiver) = mpsc::channel(1);
            *self.confirm.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((self.number, sender));
            self.pending = Some(receiver);
        }
        async move {
            let Some(pending) = self.pending.as_mut() else {
                return Err(NetworkError::Shutdown);
            };
            tokio::select! {
                next = pending.recv() => next.ok_or(NetworkError::Shutdown),
                // Paired through a pending pairing this invite handed out earlier: the code
                // is used, and no other joiner will come.
                outcome = wait_for_outcome(&mut self.outcome) => {
                    Err(outcome.map_or_else(|e| e, |_| NetworkError::CodeEnded(CodeEnded::Used)))
                }
            }
        }
    }

    /// Waits until a device pairs with this code, or the code ends without a pairing (a
    /// wrong guess burned it, it expired, it was cancelled or replaced by a new code:
    /// [`NetworkError::CodeEnded`] says which). A connection that makes no guess (a stranger,
    /// a joiner that hung up) does not end it.
    ///
    /// Accept-on-proof: whoever proves the code is paired, with no question asked (after
    /// [`Self::pending`] was called, this accepts each pending pairing itself). Apps with a
    /// person at the screen should use [`Self::pending`] and show the name and code first.
    pub async fn paired(&mut self) -> Result<PairedDevice, NetworkError> {
        loop {
            let Some(pending) = self.pending.as_mut() else {
                return wait_for_outcome(&mut self.outcome).await;
            };
            tokio::select! {
                next = pending.recv() => match next {
                    Some(next) => return next.accept().await,
                    None => self.pending = None,
                },
                outcome = wait_for_outcome(&mut self.outcome) => return outcome,
            }
        }
    }
}

/// How a shown code ended: a device paired with it, or why not.
pub(super) type Outcome = Result<PairedDevice, CodeEnded>;

/// The outcome channel of each code shown and not ended yet, by code number. A code ends
/// once, and its entry is removed then, so this holds one or two entries at a time. (A
/// channel per code, not one broadcast for all: an invite hears its own code's end however
/// many other codes ended since.)
pub(super) type Outcomes = Mutex<HashMap<u64, watch::Sender<Option<Outcome>>>>;

/// Waits for the outcome of one code.
async fn wait_for_outcome(
    outcome: &mut watch::Receiver<Option<Outcome>>,
) -> Result<PairedDevice, NetworkError> {
    match outcome.wait_for(Option::is_some).await {
        Ok(ended) => match ended.clone() {
            Some(Ok(device)) => Ok(device),
            Some(Err(ended)) => Err(NetworkError::CodeEnded(ended)),
            None => Err(NetworkError::Shutdown),
        },
        // The service shut down (or dropped the code) before it ended.
        Err(_) => Err(NetworkError::Shutdown),
    }
}

impl NetworkingService {
    /// Shows a new word code for another device to join with (replacing any code shown
    /// before). The public first word is announced for discovery; the rest never leaves.
    pub fn start_pairing_as_initiator(&self) -> Result<PairingInvite, NetworkError> {
        let code = PairingCode::generate(&mut UnwrapErr(getrandom::SysRng));
        let text = code.to_string();
        self.start_initiator(Credential::from(code), text, true)
    }

    /// Like [`Self::start_pairing_as_initiator`] with a ticket: the address and a full-entropy
    /// secret in one string, for pairing across networks or by QR code.
    pub fn start_pairing_with_ticket(&self) -> Result<PairingInvite, NetworkError> {
        let addr = self.addr();
        let ticket = PairingTicket::new(
            self.node_id(),
            addr.relay_url.as_ref().map(ToString::to_string),
            addr.direct.clone(),
            &mut UnwrapErr(getrandom::SysRng),
        )?;
        let text = ticket.to_string();
        // The ticket carries the address: nothing is announced for it.
        self.start_initiator(Credential::from(ticket), text, false)
    }

    fn start_initiator(
        &self,
        credential: Credential,
        text: String,
        announce: bool,
    ) -> Result<PairingInvite, NetworkError> {
        let local = self.local_device()?;
        let now = pairing::now();
        let initiator = Initiator::new(credential, local, now, self.inner.config.pairing)
            .map_err(|e| NetworkError::Usage(error_chain(&e)))?;
        let slot = initiator.slot().word().to_owned();
        let expires_in = initiator
            .expires_at()
            .since_epoch()
            .saturating_sub(now.since_epoch());
        let (number, replaced, outcome) = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let previous = self.inner.code_number.fetch_add(1, Ordering::AcqRel);
            let replaced = shown.replace(initiator).map(|_| previous);
            let (sender, outcome) = watch::channel(None);
            self.inner
                .code_outcomes
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(previous + 1, sender);
            self.inner.lobby.set_open(true);
            self.inner.slot_announced.store(announce, Ordering::Release);
            (previous + 1, replaced, outcome)
        };
        if let Some(previous) = replaced {
            self.end_code(previous, Err(CodeEnded::Replaced));
        }
        self.announce(announce.then_some(slot.as_str()));
        Ok(PairingInvite {
            code: text,
            expires_in,
            number,
            outcome,
            confirm: Arc::clone(&self.inner.confirm),
            pending: None,
        })
    }

    /// Stops showing the current code.
    pub fn cancel_pairing(&self) {
        let cancelled = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.inner.lobby.set_open(false);
            shown
                .take()
                .map(|_| self.inner.code_number.load(Ordering::Acquire))
        };
        if let Some(number) = cancelled {
            self.end_code(number, Err(CodeEnded::Cancelled));
        }
        self.announce(None);
    }

    /// Stops showing the current code if its status is one `ended` accepts, and reports
    /// `outcome` to its invite.
    pub(super) fn withdraw_code(
        &self,
        ended: impl FnOnce(CodeStatus) -> bool,
        outcome: impl FnOnce() -> Outcome,
    ) {
        let spent = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let over = shown.as_mut().is_some_and(|initiator| {
                initiator.handle_timeout(pairing::now());
                ended(initiator.status())
            });
            let taken = shown.take_if(|_| over);
            self.inner.lobby.set_open(shown.is_some());
            taken.map(|_| self.inner.code_number.load(Ordering::Acquire))
        };
        if let Some(number) = spent {
            self.end_code(number, outcome());
        }
    }

    fn end_code(&self, number: u64, outcome: Outcome) {
        self.announce(None);
        let sender = self
            .inner
            .code_outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&number);
        if let Some(sender) = sender {
            sender.send_replace(Some(outcome));
        }
    }

    /// Joins the device showing `code` (a word code, found through discovery, or a ticket).
    pub async fn join_pairing(&self, code: &str) -> Result<PairedDevice, NetworkError> {
        let code = code.trim();
        let (credential, target) = if code.to_ascii_lowercase().starts_with("tether1") {
            let ticket: PairingTicket = code.parse()?;
            let target = PeerAddr {
                node_id: ticket.initiator(),
                direct: ticket.direct_addresses().to_vec(),
                relay_url: ticket
                    .relay_url()
                    .map(|url| {
                        url.parse().map_err(|_| {
                            NetworkError::Transport(tether_iroh::TransportError::InvalidRelayUrl {
                                url: url.to_owned(),
                            })
                        })
                    })
                    .transpose()?,
            };
            (Credential::from(ticket), target)
        } else {
            let code: PairingCode = code.parse()?;
            let slot = code.slot().word().to_owned();
            let target = self.find_slot(&slot).await?;
            (Credential::from(code), target)
        };
        // A busy initiator (every pairing seat taken, by a flood of strangers, say) is asked
        // again for a while: its silent connections give their seats up within a second.
        let busy_until = tokio::time::Instant::now() + JOIN_BUSY_RETRY_FOR;
        let result = loop {
            let connection = self.inner.transport.connect(&target, PAIRING_ALPN).await?;
            let _ = self.inner.events.send(NetworkEvent::PairingProgress {
                peer: target.node_id,
                stage: crate::PairingStage::Connected,
            });
            let result = pairing::join(
                connection.clone(),
                credential.clone(),
                self.local_device()?,
                target.node_id,
                &self.inner.registry,
            )
            .await;
            let busy = matches!(
                crate::close::refusal(&connection),
                Some(NetworkError::Refused {
                    code: CLOSE_PAIRING_BUSY,
                    ..
                })
            );
            if result.is_err() && busy && tokio::time::Instant::now() < busy_until {
                debug!("the initiator is busy; asking again");
                tokio::time::sleep(JOIN_BUSY_PAUSE).await;
                continue;
            }
            break result;
        };
        self.report_pairing(&result);
        result
    }

    /// Reports a pairing's end as an event; failures (anyone can cause them) are logged and
    /// reported at most [`crate::lobby::FAILURE_REPORTS_PER_MINUTE`] times a minute.
    pub(super) fn report_pairing(&self, result: &Result<PairedDevice, NetworkError>) {
        let event = match result {
            Ok(paired) => NetworkEvent::Paired {
                device: paired.device.clone(),
                verification_code: paired.verification_code.clone(),
            },
            Err(error) => {
                let Some(suppressed) = self
                    .inner
                    .lobby
                    .may_report_failure(std::time::Instant::now())
                else {
                    return;
                };
                let reason = error_chain(error);
                warn!(error = %reason, suppressed, "pairing failed");
                NetworkEvent::PairingFailed { reason }
            }
        };
        let _ = self.inner.events.send(event);
    }

    async fn find_slot(&self, slot: &str) -> Result<PeerAddr, NetworkError> {
        let mut updates = self.inner.discovered_tx.subscribe();
        // Any timeout, `Duration::MAX` included: tokio's sleep caps it at decades.
        let deadline = tokio::time::sleep(self.inner.config.discovery_timeout);
        tokio::pin!(deadline);
        // A global rendezvous is asked now and every second while the search lasts; what it
        // finds arrives as updates, like what LAN discoveries hear.
        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let asked_slot = slot.to_owned();
        let _asking = n0_future::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for discovery in &discoveries {
                    discovery.find_slot(&asked_slot);
                }
            }
        }));
        loop {
            let claims: Vec<DiscoveredDevice> = self
                .inner
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|d| d.pairing_slot.as_deref() == Some(slot))
                .cloned()
                .collect();
            match claims.as_slice() {
                [one] => {
                    return Ok(PeerAddr {
                        node_id: one.node_id,
                        direct: one.addrs.clone(),
                        relay_url: one.relay_url.clone(),
                    });
                }
                [] => {}
                many => {
                    return Err(NetworkError::AmbiguousPairingPeer {
                        slot: slot.to_owned(),
                        count: many.len(),
                    });
                }
            }
            tokio::select! {
                biased;
                _ = updates.recv() => {}
                () = &mut deadline => {
                    return Err(NetworkError::NoPairingPeer {
                        slot: slot.to_owned(),
                    });
                }
            }
        }
    }
}

/// The error for a name that reads as an id prefix ([`DeviceName::looks_like_id`]).
pub(crate) fn id_like_name(name: &DeviceName) -> NetworkError {
    NetworkError::Usage(format!(
        "the name {name:?} looks like a device id, so this device could pass for another one; \
         pick a name that is not only hex digits and hyphens"
    ))
}
