//! Pairing over `tether/pairing/1`: the network side of tether-pairing's state machines.
//!
//! Each pairing message travels on one bidirectional stream as `u16` big-endian length +
//! message (at most [`tether_pairing::MAX_MESSAGE_LEN`] bytes), framed by tether-pairing's
//! [`tether_pairing::read_message`] and [`tether_pairing::write_message`]. The joiner dials, sends its messages and, after
//! its last one, waits for the initiator to close the stream cleanly: only then has the
//! initiator accepted the pairing too, and only then does the joiner store it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_core::UnwrapErr;
use tether_identity::{DeviceInfo, NodeId, error_chain};
use tether_pairing::{
    Credential, Failure, FramingError, Initiator, InitiatorStep, Joiner, LocalDevice, Paired,
    StreamError, Timestamp,
};
use tether_protocol::{Connection, RecvStream, SendStream};
use tether_registry::{DeviceRegistry, NewPairing, PairingSessionId};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use crate::NetworkError;
use crate::close::CLOSE_PAIRING_DECLINED;
use crate::error::short;
use crate::lobby::{FIRST_MESSAGE_TIMEOUT, Seat};

/// How long one pairing message may take to arrive.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the joiner waits, after its last message, for the initiator's answer: long enough
/// for the initiator's person to read the name and the verification code and answer (the
/// initiator's whole exchange is bounded by [`crate::lobby::EXCHANGE_TIMEOUT`] anyway).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the initiator's pending pairings go when its code asks for confirmation: the
/// number of the code, and the channel of its [`crate::PairingInvite`].
pub(crate) type ConfirmSlot = parking_lot::Mutex<Option<(u64, mpsc::Sender<PendingPairing>)>>;

/// A joiner that proved the code, not stored yet: the initiator's person sees the joiner's
/// name and the verification code and accepts or rejects it. Dropping it rejects it.
#[derive(Debug)]
pub struct PendingPairing {
    /// The joiner, as it describes itself.
    pub device: DeviceInfo,
    /// The six-digit code both screens show, e.g. `"042 917"`; the joiner shows the same.
    pub verification_code: String,
    answer: Option<oneshot::Sender<oneshot::Sender<Result<PairedDevice, String>>>>,
}

impl PendingPairing {
    /// Accepts the pairing: stores it here, and tells the joiner, which stores it too.
    /// Returns once the joiner has read the answer and closed the connection (or after 30 s),
    /// so the node may be shut down at once without cutting the joiner off unpaired.
    pub async fn accept(mut self) -> Result<PairedDevice, NetworkError> {
        let (outcome, stored) = oneshot::channel();
        let Some(answer) = self.answer.take() else {
            return Err(NetworkError::Shutdown);
        };
        answer.send(outcome).map_err(|_| NetworkError::TimedOut {
            what: "the answer to the pairing",
            after: crate::lobby::EXCHANGE_TIMEOUT,
        })?;
        match stored.await {
            Ok(Ok(device)) => Ok(device),
            Ok(Err(reason)) => Err(NetworkError::ProtocolViolation {
                node: self.device.public_key,
                reason,
            }),
            Err(_) => Err(NetworkError::Shutdown),
        }
    }

    /// Rejects the pairing: nothing is stored on either side, and the joiner is told.
    pub fn reject(self) {
        drop(self);
    }
}

/// A pairing that completed, as both sides show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedDevice {
    /// The other device.
    pub device: DeviceInfo,
    /// The six-digit code both screens show, e.g. `"042 917"`; compare it if in doubt.
    pub verification_code: String,
}

pub(crate) fn now() -> Timestamp {
    Timestamp::from_duration(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// What the showing side serves joiners with: the code's state machine and number, the
/// invite's confirmation slot, the registry, and the service's events.
#[derive(Clone, Copy)]
pub(crate) struct Desk<'a> {
    pub(crate) initiator: &'a parking_lot::Mutex<Option<Initiator>>,
    pub(crate) code_number: &'a AtomicU64,
    pub(crate) confirm: &'a ConfirmSlot,
    pub(crate) registry: &'a DeviceRegistry,
    pub(crate) events: &'a tokio::sync::broadcast::Sender<crate::NetworkEvent>,
}

/// Initiator side: serves one joiner's stream with the shared `initiator`.
///
/// The joiner's stream and whole first message must arrive within [`FIRST_MESSAGE_TIMEOUT`]
/// of the TLS handshake; once the state machine took a message, `seat` is no longer evicted.
/// When the code's invite asked for confirmation (`confirm` holds a channel for the code's
/// number), a joiner that proved the code is first handed to the invite as a
/// [`PendingPairing`] and stored only if its person accepts; otherwise it is stored at once.
/// Returns the completed pairing (already stored), or why this joiner failed.
pub(crate) async fn serve_joiner(
    connection: &Connection,
    peer: NodeId,
    desk: &Desk<'_>,
    seat: &Seat,
) -> Result<PairedDevice, NetworkError> {
    let Desk {
        initiator,
        code_number,
        confirm,
        registry,
        events,
    } = *desk;
    let first = async {
        let (send, mut recv) = connection.accept_bi().await.map_err(|e| failed(&peer, e))?;
        let bytes = read_message(&mut recv, &peer).await?;
        Ok::<_, NetworkError>((send, recv, bytes))
    };
    let (mut send, mut recv, mut bytes) = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, first)
        .await
        .unwrap_or(Err(NetworkError::TimedOut {
            what: "the first pairing message",
            after: FIRST_MESSAGE_TIMEOUT,
        }))?;
    loop {
        let (step, number) = {
            let mut guard = initiator.lock();
            let Some(initiator) = guard.as_mut() else {
                return Err(NetworkError::Usage("no pairing code is active".to_owned()));
            };
            let step = initiator.handle(peer, &bytes, now(), &mut UnwrapErr(getrandom::SysRng));
            (step, code_number.load(Ordering::Acquire))
        };
        match step {
            Ok(InitiatorStep::Send(reply)) => {
                seat.activate();
                write_message(&mut send, &reply, &peer).await?;
            }
            Ok(InitiatorStep::Paired(paired)) => {
                let _ = events.send(crate::NetworkEvent::PairingProgress {
                    peer,
                    stage: crate::PairingStage::Proved {
                        device: paired.peer_info().clone(),
                        verification_code: paired.verification_code().to_string(),
                    },
                });
                let outcome = match ask(confirm, number, &paired).await {
                    Answer::Accepted(outcome) => outcome,
                    Answer::OnProof => None,
                    Answer::Rejected => {
                        info!(peer = %short(&peer), "pairing rejected by this device's person");
                        return Err(NetworkError::Refused {
                            node: peer,
                            code: CLOSE_PAIRING_DECLINED,
                            reason: DECLINED.to_owned(),
                        });
                    }
                };
                let addresses = tether_iroh::direct_addrs(connection);
                let relay = tether_iroh::relay_url(connection).map(|url| url.to_string());
                let stored = store(registry, *paired, addresses, relay);
                let device = match stored {
                    Ok(device) => device,
                    Err(error) => {
                        if let Some(outcome) = outcome {
                            let _ = outcome.send(Err(error_chain(&error)));
                        }
                        return Err(error);
                    }
                };
                // A clean end of the stream tells the joiner we accepted; it closes the
                // connection once it has read it. Only then is the person who accepted told
                // (an app or `tether pair` may stop the node at once, which would cut the
                // joiner off before its answer and leave it unpaired).
                let _ = send.finish();
                let _ = tokio::time::timeout(MESSAGE_TIMEOUT, connection.closed()).await;
                if let Some(outcome) = outcome {
                    let _ = outcome.send(Ok(device.clone()));
                }
                return Ok(device);
            }
            Err(failure) => return Err(abort(connection, &mut send, failure).await),
        }
        bytes = read_message(&mut recv, &peer).await?;
    }
}

/// The close reason a rejected joiner reads.
pub(crate) const DECLINED: &str = "the other device's person declined the pairing";

enum Answer {
    /// No confirmation asked for: store at once.
    OnProof,
    /// Accepted; the accepting side waits on the channel for the stored pairing.
    Accepted(Option<oneshot::Sender<Result<PairedDevice, String>>>),
    /// Rejected, dropped, or the invite is gone.
    Rejected,
}

/// Hands `paired` to the invite of code `number`, if it asked for confirmation, and waits
/// for its person's answer (bounded by the exchange deadline around [`serve_joiner`]).
async fn ask(confirm: &ConfirmSlot, number: u64, paired: &Paired) -> Answer {
    let sender = confirm
        .lock()
        .as_ref()
        .filter(|(code, _)| *code == number)
        .map(|(_, sender)| sender.clone());
    let Some(sender) = sender else {
        return Answer::OnProof;
    };
    let (answer, answered) = oneshot::channel();
    let pending = PendingPairing {
        device: paired.peer_info().clone(),
        verification_code: paired.verification_code().to_string(),
        answer: Some(answer),
    };
    if sender.send(pending).await.is_err() {
        return Answer::Rejected;
    }
    match answered.await {
        Ok(outcome) => Answer::Accepted(Some(outcome)),
        Err(_) => Answer::Rejected,
    }
}

/// Joiner side: runs the whole handshake on `connection` and stores the pairing.
pub(crate) async fn join(
    connection: Connection,
    credential: Credential,
    local: LocalDevice,
    initiator: NodeId,
    registry: &DeviceRegistry,
) -> Result<PairedDevice, NetworkError> {
    let (mut send, mut recv) = connection
        .open_bi()
        .await
        .map_err(|e| failed(&initiator, e))?;
    let mut rng = UnwrapErr(getrandom::SysRng);
    let (joiner, hello) = Joiner::start(credential, local, initiator, &mut rng)?;
    write_message(&mut send, &hello, &initiator).await?;

    let reply = read_message(&mut recv, &initiator).await?;
    let (confirming, confirm) = match joiner.handle_reply(&reply) {
        Ok(next) => next,
        Err(failure) => return Err(abort(&connection, &mut send, failure).await),
    };
    write_message(&mut send, &confirm, &initiator).await?;

    let initiator_confirm = read_message(&mut recv, &initiator).await?;
    let (paired, signature) = match confirming.handle_confirm(&initiator_confirm) {
        Ok(next) => next,
        Err(failure) => return Err(abort(&connection, &mut send, failure).await),
    };
    write_message(&mut send, &signature, &initiator).await?;
    let _ = send.finish();

    // The initiator closes its side cleanly once it has checked our signature; an abort
    // message instead means it refused.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(
        ANSWER_TIMEOUT,
        (&mut recv).take(4096).read_to_end(&mut rest),
    )
    .await;
    match ended {
        Ok(Ok(_)) if rest.is_empty() => {}
        Ok(Ok(_)) => {
            return Err(NetworkError::ProtocolViolation {
                node: initiator,
                reason: "the initiator refused the final signature".to_owned(),
            });
        }
        Ok(Err(error)) => {
            return Err(crate::close::refusal(&connection).unwrap_or(failed(&initiator, error)));
        }
        Err(_) => {
            return Err(NetworkError::TimedOut {
                what: "pairing",
                after: ANSWER_TIMEOUT,
            });
        }
    }
    let addresses = tether_iroh::direct_addrs(&connection);
    let relay = tether_iroh::relay_url(&connection).map(|url| url.to_string());
    let device = store(registry, paired, addresses, relay)?;
    connection.close(0u32.into(), b"paired");
    Ok(device)
}

fn store(
    registry: &DeviceRegistry,
    paired: Paired,
    addresses: Vec<std::net::SocketAddr>,
    relay: Option<String>,
) -> Result<PairedDevice, NetworkError> {
    let verification_code = paired.verification_code().to_string();
    let (node_id, info, secret, _) = paired.into_parts();
    let session = PairingSessionId(u64::from_be_bytes(
        node_id
            .as_bytes()
            .first_chunk::<8>()
            .copied()
            .unwrap_or_default(),
    ));
    registry.begin_pairing(node_id, session)?;
    let mut pairing =
        NewPairing::new(info.clone(), node_id, secret, SystemTime::now()).with_addresses(addresses);
    if let Some(relay) = relay {
        pairing = pairing.with_relay_url(relay);
    }
    if let Err(error) = registry.complete_pairing(session, pairing) {
        let _ = registry.pairing_failed(node_id, session);
        return Err(error.into());
    }
    info!(peer = %short(&node_id), name = %info.device_name, "paired");
    Ok(PairedDevice {
        device: info,
        verification_code,
    })
}

/// Sends the state machine's abort message, if any, and waits (briefly) for the peer to read
/// it and hang up, so that it learns why rather than seeing a lost connection.
async fn abort(connection: &Connection, send: &mut SendStream, failure: Failure) -> NetworkError {
    if let Some(message) = failure.message_for_peer() {
        let _ = tether_pairing::write_message(send, message).await;
    }
    let _ = send.finish();
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.closed()).await;
    NetworkError::Pairing(failure.into_error())
}

async fn read_message(recv: &mut RecvStream, peer: &NodeId) -> Result<Vec<u8>, NetworkError> {
    match tokio::time::timeout(MESSAGE_TIMEOUT, tether_pairing::read_message(recv)).await {
        Ok(read) => read.map_err(|error| stream_failed(peer, error)),
        Err(_) => Err(NetworkError::TimedOut {
            what: "pairing message",
            after: MESSAGE_TIMEOUT,
        }),
    }
}

async fn write_message(
    send: &mut SendStream,
    message: &[u8],
    peer: &NodeId,
) -> Result<(), NetworkError> {
    tether_pairing::write_message(send, message)
        .await
        .map_err(|error| stream_failed(peer, error))
}

/// A framing error is the peer breaking the protocol (a length over the cap); the stream
/// failing or ending early is a failed connection, as it always was.
fn stream_failed(peer: &NodeId, error: StreamError) -> NetworkError {
    match error {
        StreamError::Framing(error @ FramingError::TooLong { .. }) => {
            NetworkError::ProtocolViolation {
                node: *peer,
                reason: error.to_string(),
            }
        }
        StreamError::Io(error) => failed(peer, error),
        other => failed(peer, other),
    }
}

fn failed(peer: &NodeId, error: impl std::error::Error) -> NetworkError {
    NetworkError::ConnectionFailed {
        node: *peer,
        reason: error_chain(&error),
    }
}
