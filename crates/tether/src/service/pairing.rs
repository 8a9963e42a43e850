//! Pairing through the service: showing a code or ticket, confirming and joining.

use std::time::Duration;

use rand_core::UnwrapErr;
use tether_identity::{DeviceName, error_chain};
use tether_iroh::PeerAddr;
use tether_pairing::{CodeStatus, Credential, Initiator, LocalDevice, PairingCode, PairingTicket};
use tracing::{debug, warn};

use super::core::NetworkingService;
use super::desk::Outcome;
use super::invite::PairingInvite;
use crate::close::CLOSE_PAIRING_BUSY;
use crate::close::PAIRING_ALPN;
use crate::pairing::{self, PairedDevice};
use crate::{NetworkError, NetworkEvent};

/// How long `join_pairing` asks a busy initiator again.
const JOIN_BUSY_RETRY_FOR: Duration = Duration::from_secs(30);
/// The pause between two such asks.
const JOIN_BUSY_PAUSE: Duration = Duration::from_millis(300);

impl NetworkingService {
    pub(super) fn local_device(&self) -> Result<LocalDevice, NetworkError> {
        let info = self.device_info();
        // The peer would refuse it (see `DeviceName::looks_like_id`); say so here, clearly.
        if info.device_name.looks_like_id() {
            return Err(id_like_name(&info.device_name));
        }
        LocalDevice::new(self.inner.keys.identity().clone(), info)
            .map_err(|e| NetworkError::Usage(error_chain(&e)))
    }

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
        let expires_in = initiator
            .expires_at()
            .since_epoch()
            .saturating_sub(now.since_epoch());
        let shown = self.inner.desk.show(initiator, announce);
        self.announce();
        Ok(PairingInvite::new(
            text,
            expires_in,
            shown,
            self.inner.desk.confirm(),
        ))
    }

    /// Stops showing the current code.
    pub fn cancel_pairing(&self) {
        self.inner.desk.cancel();
        self.announce();
    }

    /// Stops showing the current code if its status is one `ended` accepts, and reports
    /// `outcome` to its invite.
    pub(super) fn withdraw_code(
        &self,
        ended: impl FnOnce(CodeStatus) -> bool,
        outcome: impl FnOnce() -> Outcome,
    ) {
        if self.inner.desk.withdraw(ended, outcome) {
            self.announce();
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
                    .desk
                    .lobby()
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
        let timeout = self.inner.config.discovery_timeout;
        self.inner.discovery.find_slot(slot, timeout).await
    }
}

/// The error for a name that reads as an id prefix ([`DeviceName::looks_like_id`]).
pub(crate) fn id_like_name(name: &DeviceName) -> NetworkError {
    NetworkError::Usage(format!(
        "the name {name:?} looks like a device id, so this device could pass for another one; \
         pick a name that is not only hex digits and hyphens"
    ))
}
