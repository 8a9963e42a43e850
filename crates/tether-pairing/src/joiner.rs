//! The joiner: the device where the user types the code (or scans the ticket).
//!
//! Typestate: [`Joiner::start`] gives a [`Joiner`] and the Hello; [`Joiner::handle_reply`]
//! consumes it and gives a [`JoinerConfirming`] and the JoinerConfirm;
//! [`JoinerConfirming::handle_confirm`] consumes that and gives [`Paired`] and the
//! JoinerSignature. Any failure consumes the state too: a joiner makes exactly one attempt.

use std::fmt;

use rand_core::CryptoRng;
use tether_identity::NodeId;

use crate::abort::{abort_message, error_for_abort, fail};
use crate::device::{read_peer_info, split_info_and_signature, verify_transcript};
use crate::kinds::MessageKind;
use crate::message::{Body, PairingMessage, SEALED_SIGNATURE_LEN, SessionId};
use crate::pake::JoinerPake;
use crate::schedule::{HandshakeKeys, Role};
use crate::transcript::{Transcript, label};
use crate::{
    AbortReason, Credential, Failure, LocalDevice, Misbehavior, Paired, PairingError, UsageError,
};

/// A joiner that sent its Hello and waits for the initiator's Reply.
pub struct Joiner {
    device: LocalDevice,
    initiator: NodeId,
    session: SessionId,
    pake: JoinerPake,
    transcript: Transcript,
}

impl Joiner {
    /// Starts pairing with the initiator whose authenticated endpoint id is `initiator`.
    ///
    /// Returns the joiner and the Hello to send. `initiator` must be the id the transport
    /// authenticated (for a ticket, [`crate::PairingTicket::initiator`]; for a code, the
    /// endpoint found for its slot).
    pub fn start<R: CryptoRng + ?Sized>(
        credential: impl Into<Credential>,
        device: LocalDevice,
        initiator: NodeId,
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        let credential = credential.into();
        let joiner = device.node_id();
        if initiator == joiner {
            return Err(UsageError::PeerIsSelf.into());
        }
        let mut session = [0u8; SessionId::LEN];
        rng.fill_bytes(&mut session);
        let session = SessionId::from_bytes(session);
        let (pake, pake_message) = JoinerPake::start(&credential, &joiner, &initiator, rng)?;
        let hello = PairingMessage::new(
            session,
            Body::Hello {
                credential: credential.kind(),
                slot: credential.slot(),
                pake: pake_message,
            },
        )
        .to_bytes();
        let mut transcript = Transcript::new(credential.kind(), &initiator, &joiner);
        transcript.absorb(label::HELLO, &hello);
        let joiner = Self {
            device,
            initiator,
            session,
            pake,
            transcript,
        };
        Ok((joiner, hello))
    }

    /// This handshake's session id.
    pub fn session_id(&self) -> SessionId {
        self.session
    }

    /// Takes the initiator's Reply; returns the next state and the JoinerConfirm to send.
    pub fn handle_reply(self, bytes: &[u8]) -> Result<(JoinerConfirming, Vec<u8>), Failure> {
        let session = self.session;
        if let Some(failure) = received_abort(bytes, session) {
            return Err(failure);
        }
        self.reply(bytes).map_err(|error| fail(session, error))
    }

    /// Gives up; returns the Abort to send.
    pub fn cancel(self) -> Vec<u8> {
        abort_message(self.session, AbortReason::Cancelled)
    }

    fn reply(self, bytes: &[u8]) -> Result<(JoinerConfirming, Vec<u8>), PairingError> {
        let Body::Reply { pake } = expect(bytes, self.session, MessageKind::Reply)? else {
            return Err(PairingError::Internal("expect returned another kind"));
        };
        let Self {
            device,
            initiator,
            session,
            pake: state,
            mut transcript,
        } = self;
        let pake_key = state.finish(&pake)?;
        transcript.absorb(label::REPLY, bytes);
        let h2 = transcript.hash();
        let keys = HandshakeKeys::derive(&pake_key, &h2);
        let confirm = PairingMessage::new(
            session,
            Body::JoinerConfirm {
                mac: keys.mac(Role::Joiner, &h2)?,
                sealed: keys.seal(Role::Joiner, 0, &h2, device.info_json())?,
            },
        )
        .to_bytes();
        transcript.absorb(label::JOINER_CONFIRM, &confirm);
        transcript.absorb(label::JOINER_INFO, device.info_json());
        let next = JoinerConfirming {
            device,
            initiator,
            session,
            keys,
            transcript,
        };
        Ok((next, confirm))
    }
}

/// A joiner that proved the code and waits for the initiator's proof.
pub struct JoinerConfirming {
    device: LocalDevice,
    initiator: NodeId,
    session: SessionId,
    keys: HandshakeKeys,
    transcript: Transcript,
}

impl JoinerConfirming {
    /// This handshake's session id.
    pub fn session_id(&self) -> SessionId {
        self.session
    }

    /// Takes the InitiatorConfirm; on success returns the pairing and the JoinerSignature to
    /// send (the last message).
    pub fn handle_confirm(self, bytes: &[u8]) -> Result<(Paired, Vec<u8>), Failure> {
        let session = self.session;
        if let Some(failure) = received_abort(bytes, session) {
            return Err(failure);
        }
        self.confirm(bytes).map_err(|error| fail(session, error))
    }

    /// Gives up; returns the Abort to send.
    pub fn cancel(self) -> Vec<u8> {
        abort_message(self.session, AbortReason::Cancelled)
    }

    fn confirm(self, bytes: &[u8]) -> Result<(Paired, Vec<u8>), PairingError> {
        let Body::InitiatorConfirm { mac, sealed } =
            expect(bytes, self.session, MessageKind::InitiatorConfirm)?
        else {
            return Err(PairingError::Internal("expect returned another kind"));
        };
        let Self {
            device,
            initiator,
            session,
            keys,
            mut transcript,
        } = self;
        let h3 = transcript.hash();
        if !keys.mac_matches(Role::Initiator, &h3, &mac)? {
            return Err(PairingError::WrongCode);
        }
        let plaintext = keys
            .open(Role::Initiator, 0, &h3, &sealed)
            .ok_or(Misbehavior::SealedPayload)?;
        let (info_json, signature) = split_info_and_signature(&plaintext)?;
        let peer_info = read_peer_info(info_json, &initiator)?;
        transcript.absorb(label::INITIATOR_INFO, info_json);
        verify_transcript(&initiator, Role::Initiator, &transcript.hash(), &signature)?;
        transcript.absorb(label::INITIATOR_CONFIRM, bytes);
        let h4 = transcript.hash();
        let signature = device.sign_transcript(Role::Joiner, &h4);
        let sealed = keys.seal(Role::Joiner, 1, &h4, &signature.to_bytes())?;
        let sealed: [u8; SEALED_SIGNATURE_LEN] = sealed
            .try_into()
            .map_err(|_| PairingError::Internal("sealed signature has an unexpected length"))?;
        let last = PairingMessage::new(session, Body::JoinerSignature { sealed }).to_bytes();
        transcript.absorb(label::JOINER_SIGNATURE, &last);
        let (secret, verification) = keys.finish(&transcript.hash());
        Ok((
            Paired::new(initiator, peer_info, secret, verification),
            last,
        ))
    }
}

/// The failure for an abort from the peer in `session`, if `bytes` is one. It is not answered:
/// answering an abort with another would only add noise.
fn received_abort(bytes: &[u8], session: SessionId) -> Option<Failure> {
    let message = PairingMessage::from_bytes(bytes).ok()?;
    let reason = message.abort_reason()?;
    (message.session == session).then(|| Failure::new(error_for_abort(reason), None))
}

/// Decodes a message for `session` and returns its body if it is of kind `expected`.
fn expect(bytes: &[u8], session: SessionId, expected: MessageKind) -> Result<Body, PairingError> {
    let message = PairingMessage::from_bytes(bytes).map_err(Misbehavior::Malformed)?;
    if message.session != session {
        return Err(Misbehavior::UnknownSession.into());
    }
    let kind = message.kind();
    match message.body {
        body if kind == expected => Ok(body),
        _ => Err(Misbehavior::UnexpectedMessage {
            expected: match expected {
                MessageKind::Reply => "Reply",
                _ => "InitiatorConfirm",
            },
            received: kind,
        }
        .into()),
    }
}

impl fmt::Debug for Joiner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Joiner")
            .field("session", &self.session)
            .field("initiator", &self.initiator)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for JoinerConfirming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinerConfirming")
            .field("session", &self.session)
            .field("initiator", &self.initiator)
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
    use crate::{CodeStatus, Initiator, InitiatorConfig, InitiatorStep, PairingCode, Timestamp};

    #[test]
    fn the_initiator_refuses_a_signature_by_another_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
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
        let (joiner, hello) = Joiner::start(
            &code,
            joiner_device.clone(),
            initiator_device.node_id(),
            &mut rng,
        )
        .unwrap();
        let InitiatorStep::Send(reply) =
            initiator.handle(joiner_id, &hello, now, &mut rng).unwrap()
        else {
            panic!()
        };
        let (mut confirming, confirm) = joiner.handle_reply(&reply).unwrap();
        let InitiatorStep::Send(back) = initiator
            .handle(joiner_id, &confirm, now, &mut rng)
            .unwrap()
        else {
            panic!()
        };
        // Same device info, same SPAKE2 keys, but the transcript is signed with another key.
        confirming.device = LocalDevice::danger_new_unchecked(
            NetworkIdentity::generate(&mut rng),
            joiner_device.info().clone(),
        )
        .unwrap();
        let (_, last) = confirming.handle_confirm(&back).unwrap();
        let failure = initiator
            .handle(joiner_id, &last, now, &mut rng)
            .unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::PeerMisbehaved(Misbehavior::BadSignature)
        );
        assert_eq!(initiator.status(), CodeStatus::Spent);
    }
}
