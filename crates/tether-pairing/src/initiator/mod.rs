//! The initiator: the device that shows the code. One [`Initiator`] per code; it serves any
//! number of joiners over the code's life, several at once, and enforces the code-wide rules:
//!
//! - **Expiry**: after [`InitiatorConfig::lifetime`] every message gets [`PairingError::Expired`].
//! - **One key confirmation per code**: the first JoinerConfirm whose MAC is checked settles the
//!   code. A wrong MAC burns it ([`CodeStatus::Burned`], every session dropped, every later
//!   message refused with [`PairingError::CodeBurned`]); a right one claims it for that session
//!   alone ([`CodeStatus::Claimed`]). Nothing the initiator sends before that check depends on
//!   the code in a testable way, so an active attacker learns one bit (right or wrong) about one
//!   guess per code. See [`Initiator::handle`] and `docs/pairing.md`.
//! - **Single use**: after a pairing (or a claimed session that then failed) every message gets
//!   [`PairingError::CodeUsed`].
//! - **Bounded state**: at most [`InitiatorConfig::max_pending`] handshakes at once and
//!   [`InitiatorConfig::max_attempts_per_minute`] Hellos per minute; one handshake per peer (a
//!   new Hello from the same peer replaces its old one); handshakes older than
//!   [`InitiatorConfig::handshake_timeout`] are dropped.

mod config;
mod session;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand_core::CryptoRng;
use tether_identity::NodeId;

pub use config::InitiatorConfig;
use session::{AwaitingConfirm, AwaitingSignature};

use crate::abort::{abort_message, error_for_abort, fail, fail_undecodable};
use crate::kinds::MessageKind;
use crate::message::{Body, PairingMessage, SessionId};
use crate::{
    AbortReason, Credential, Failure, LocalDevice, Misbehavior, Paired, PairingError, Refusal,
    Slot, Timestamp, UsageError,
};

const RATE_WINDOW: Duration = Duration::from_secs(60);

/// Where a code stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodeStatus {
    /// Taking Hellos.
    Open,
    /// A joiner proved the code; only its handshake may continue.
    Claimed,
    /// Paired; the code is used up.
    Paired,
    /// A joiner proved the code but its handshake then failed; the code is used up.
    Spent,
    /// A wrong code was tried; the code is dead.
    Burned,
    /// The lifetime ended before a pairing.
    Expired,
    /// The caller cancelled it.
    Cancelled,
}

/// What to do after the initiator took a message.
#[derive(Debug)]
#[must_use]
pub enum InitiatorStep {
    /// Send these bytes to the peer and wait for its next message.
    Send(Vec<u8>),
    /// The handshake is complete: nothing more to send.
    Paired(Box<Paired>),
}

/// The initiator's state machine for one code or ticket.
pub struct Initiator {
    credential: Credential,
    device: LocalDevice,
    config: InitiatorConfig,
    expires_at: Timestamp,
    status: CodeStatus,
    sessions: Vec<Session>,
    recent_hellos: VecDeque<Timestamp>,
}

struct Session {
    id: SessionId,
    peer: NodeId,
    started: Timestamp,
    stage: Stage,
}

enum Stage {
    AwaitingConfirm(AwaitingConfirm),
    AwaitingSignature(AwaitingSignature),
}

impl Initiator {
    /// Opens `credential` (a code or ticket this device just showed) for joiners, from `now`.
    pub fn new(
        credential: impl Into<Credential>,
        device: LocalDevice,
        now: Timestamp,
        config: InitiatorConfig,
    ) -> Result<Self, UsageError> {
        config.check()?;
        Ok(Self {
            credential: credential.into(),
            device,
            expires_at: now.saturating_add(config.lifetime),
            config,
            status: CodeStatus::Open,
            sessions: Vec::new(),
            recent_hellos: VecDeque::new(),
        })
    }

    /// The code's public slot, to announce for discovery.
    pub fn slot(&self) -> Slot {
        self.credential.slot()
    }

    /// When the code stops accepting attempts.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Where the code stands (as of the last call that passed `now`).
    pub fn status(&self) -> CodeStatus {
        self.status
    }

    /// Handshakes in progress.
    pub fn pending_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Takes one message from `peer`, the endpoint id the transport authenticated.
    ///
    /// On success, send [`InitiatorStep::Send`]'s bytes, or store [`InitiatorStep::Paired`]. On
    /// failure that peer's handshake is over: send [`Failure::message_for_peer`] if any and
    /// close the stream. The code's fate follows the rules in the module docs.
    pub fn handle<R: CryptoRng + ?Sized>(
        &mut self,
        peer: NodeId,
        bytes: &[u8],
        now: Timestamp,
        rng: &mut R,
    ) -> Result<InitiatorStep, Failure> {
        self.handle_timeout(now);
        if peer == self.device.node_id() {
            return Err(Failure::new(UsageError::PeerIsSelf.into(), None));
        }
        let message = match PairingMessage::from_bytes(bytes) {
            Ok(message) => message,
            Err(error) => {
                self.drop_sessions_of(&peer);
                return Err(fail_undecodable(
                    bytes,
                    Misbehavior::Malformed(error).into(),
                ));
            }
        };
        let session = message.session;
        if let Some(reason) = message.abort_reason() {
            // The peer gave up; answering an abort with another would only add noise.
            self.drop_sessions_of(&peer);
            return Err(Failure::new(error_for_abort(reason), None));
        }
        let result = self.dispatch(peer, message, bytes, now, rng);
        result.map_err(|error| {
            self.drop_sessions_of(&peer);
            fail(session, error)
        })
    }

    /// Drops handshakes older than the handshake timeout, and everything once the code has
    /// expired. [`Self::handle`] calls it; call it from a timer too, to free memory sooner.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if now >= self.expires_at && matches!(self.status, CodeStatus::Open | CodeStatus::Claimed) {
            self.status = CodeStatus::Expired;
        }
        if !matches!(self.status, CodeStatus::Open | CodeStatus::Claimed) {
            self.sessions.clear();
            return;
        }
        let timeout = self.config.handshake_timeout;
        let before = self.sessions.len();
        self.sessions
            .retain(|session| now.saturating_duration_since(session.started) < timeout);
        if self.status == CodeStatus::Claimed && self.sessions.len() < before {
            self.status = CodeStatus::Spent;
        }
    }

    /// Withdraws the code; returns an Abort for each peer with a handshake in progress.
    pub fn cancel(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        self.status = CodeStatus::Cancelled;
        self.sessions
            .drain(..)
            .map(|session| {
                (
                    session.peer,
                    abort_message(session.id, AbortReason::Cancelled),
                )
            })
            .collect()
    }

    fn dispatch<R: CryptoRng + ?Sized>(
        &mut self,
        peer: NodeId,
        message: PairingMessage,
        bytes: &[u8],
        now: Timestamp,
        rng: &mut R,
    ) -> Result<InitiatorStep, PairingError> {
        let kind = message.kind();
        let session = message.session;
        self.check_status(&peer, session, kind)?;
        match message.body {
            Body::Hello {
                credential,
                slot,
                pake,
            } => {
                // Every Hello costs budget, whatever its slot: a refusal that came before the
                // charge would let a stranger find the slot with free probes.
                self.admit(&peer, now)?;
                if credential != self.credential.kind() || slot != self.credential.slot() {
                    return Err(Misbehavior::WrongRendezvous.into());
                }
                let (stage, reply) = AwaitingConfirm::start(
                    &self.credential,
                    &self.device,
                    &peer,
                    session,
                    (bytes, &pake),
                    rng,
                )?;
                self.sessions.push(Session {
                    id: session,
                    peer,
                    started: now,
                    stage: Stage::AwaitingConfirm(stage),
                });
                Ok(InitiatorStep::Send(reply))
            }
            Body::JoinerConfirm { mac, sealed } => {
                let Stage::AwaitingConfirm(stage) = self.take_session(&peer, session)? else {
                    return Err(unexpected(kind));
                };
                // The one guess: settle the code before anything else happens.
                if !stage.mac_matches(&mac)? {
                    self.status = CodeStatus::Burned;
                    self.sessions.clear();
                    return Err(PairingError::WrongCode);
                }
                self.status = CodeStatus::Claimed;
                self.sessions.clear();
                let (stage, reply) = stage
                    .confirm(&self.device, &peer, session, bytes, &sealed)
                    .inspect_err(|_| self.status = CodeStatus::Spent)?;
                self.sessions.push(Session {
                    id: session,
                    peer,
                    started: now,
                    stage: Stage::AwaitingSignature(stage),
                });
                Ok(InitiatorStep::Send(reply))
            }
            Body::JoinerSignature { sealed } => {
                let Stage::AwaitingSignature(stage) = self.take_session(&peer, session)? else {
                    return Err(unexpected(kind));
                };
                // Whatever happens next, this code is used up.
                self.status = CodeStatus::Spent;
                let paired = stage.finish(&peer, bytes, &sealed)?;
                self.status = CodeStatus::Paired;
                Ok(InitiatorStep::Paired(Box::new(paired)))
            }
            Body::Reply { .. } | Body::InitiatorConfirm { .. } | Body::Abort { .. } => {
                Err(unexpected(kind))
            }
        }
    }

    /// Refuses messages the code's status no longer allows.
    fn check_status(
        &self,
        peer: &NodeId,
        session: SessionId,
        kind: MessageKind,
    ) -> Result<(), PairingError> {
        match self.status {
            CodeStatus::Open => Ok(()),
            CodeStatus::Claimed => match self.sessions.iter().find(|s| s.peer == *peer) {
                None => Err(PairingError::CodeUsed),
                Some(claimed) if claimed.id != session => Err(Misbehavior::UnknownSession.into()),
                Some(_) if kind != MessageKind::JoinerSignature => Err(unexpected(kind)),
                Some(_) => Ok(()),
            },
            CodeStatus::Paired | CodeStatus::Spent | CodeStatus::Cancelled => {
                Err(PairingError::CodeUsed)
            }
            CodeStatus::Burned => Err(PairingError::CodeBurned),
            CodeStatus::Expired => Err(PairingError::Expired),
        }
    }

    /// Applies the rate limit and the pending limit to a new Hello from `peer`.
    fn admit(&mut self, peer: &NodeId, now: Timestamp) -> Result<(), PairingError> {
        while self
            .recent_hellos
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= RATE_WINDOW)
        {
            self.recent_hellos.pop_front();
        }
        if self.recent_hellos.len() >= self.config.max_attempts_per_minute {
            return Err(PairingError::Refused(Refusal::RateLimited {
                max_per_minute: self.config.max_attempts_per_minute,
            }));
        }
        self.sessions.retain(|session| session.peer != *peer);
        if self.sessions.len() >= self.config.max_pending {
            return Err(PairingError::Refused(Refusal::TooManyPending {
                max: self.config.max_pending,
            }));
        }
        self.recent_hellos.push_back(now);
        Ok(())
    }

    /// Removes and returns the stage of `peer`'s session `id`.
    fn take_session(&mut self, peer: &NodeId, id: SessionId) -> Result<Stage, PairingError> {
        let index = self
            .sessions
            .iter()
            .position(|s| s.peer == *peer && s.id == id)
            .ok_or(Misbehavior::UnknownSession)?;
        Ok(self.sessions.swap_remove(index).stage)
    }

    /// Ends `peer`'s handshake after a failure; a claimed code is then spent.
    fn drop_sessions_of(&mut self, peer: &NodeId) {
        let before = self.sessions.len();
        self.sessions.retain(|session| session.peer != *peer);
        if self.status == CodeStatus::Claimed && self.sessions.len() < before {
            self.status = CodeStatus::Spent;
        }
    }
}

fn unexpected(received: MessageKind) -> PairingError {
    Misbehavior::UnexpectedMessage {
        expected: "Hello, JoinerConfirm or JoinerSignature in order",
        received,
    }
    .into()
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("slot", &self.credential.slot())
            .field("status", &self.status)
            .field("expires_at", &self.expires_at)
            .field("pending_sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;

    use super::*;
    use crate::device::test_device;
    use crate::{Joiner, PairingCode};

    #[test]
    fn the_joiner_refuses_a_signature_by_another_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (initiator_device, joiner_device) =
            (test_device(&mut rng, "i"), test_device(&mut rng, "j"));
        let joiner_id = joiner_device.node_id();
        let code = PairingCode::generate(&mut rng);
        let now = Timestamp::ZERO;
        let mut initiator = Initiator::new(
            &code,
            initiator_device.clone(),
            now,
            InitiatorConfig::default(),
        )
        .unwrap();
        let (joiner, hello) =
            Joiner::start(&code, joiner_device, initiator_device.node_id(), &mut rng).unwrap();
        let InitiatorStep::Send(reply) =
            initiator.handle(joiner_id, &hello, now, &mut rng).unwrap()
        else {
            panic!()
        };
        let (confirming, confirm) = joiner.handle_reply(&reply).unwrap();
        // Same device info, but the initiator's transcript signature comes from another key.
        initiator.device = LocalDevice::danger_new_unchecked(
            NetworkIdentity::generate(&mut rng),
            initiator_device.info().clone(),
        )
        .unwrap();
        let InitiatorStep::Send(back) = initiator
            .handle(joiner_id, &confirm, now, &mut rng)
            .unwrap()
        else {
            panic!()
        };
        let failure = confirming.handle_confirm(&back).unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::PeerMisbehaved(Misbehavior::BadSignature)
        );
        let abort = PairingMessage::from_bytes(failure.message_for_peer().unwrap()).unwrap();
        assert_eq!(abort.abort_reason(), Some(AbortReason::ProtocolError));
    }

    #[test]
    fn cancelling_aborts_pending_handshakes() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (initiator_device, joiner_device) =
            (test_device(&mut rng, "i"), test_device(&mut rng, "j"));
        let joiner_id = joiner_device.node_id();
        let code = PairingCode::generate(&mut rng);
        let now = Timestamp::ZERO;
        let mut initiator = Initiator::new(
            &code,
            initiator_device.clone(),
            now,
            InitiatorConfig::default(),
        )
        .unwrap();
        let (joiner, hello) =
            Joiner::start(&code, joiner_device, initiator_device.node_id(), &mut rng).unwrap();
        assert!(initiator.handle(joiner_id, &hello, now, &mut rng).is_ok());
        let aborts = initiator.cancel();
        assert_eq!(aborts.len(), 1);
        assert_eq!(aborts[0].0, joiner_id);
        let failure = joiner.handle_reply(&aborts[0].1).unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::PeerAborted(AbortReason::Cancelled)
        );
        assert_eq!(failure.message_for_peer(), None);
        assert_eq!(initiator.status(), CodeStatus::Cancelled);
        assert_eq!(
            initiator
                .handle(joiner_id, &hello, now, &mut rng)
                .unwrap_err()
                .error(),
            &PairingError::CodeUsed
        );
    }
}
