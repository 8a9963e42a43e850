//! The session handshake between two paired devices, sans-IO.
//!
//! ```text
//! initiator                                              responder
//! Initiator::start ── InitMessage { e_i } ──────────────► Responder::respond
//!                  ◄── ResponseMessage { e_r, confirm_r, sig_r(th) } ──
//! AwaitingResponse::receive
//!                  ── FinishMessage { confirm_i, sig_i(th) } ──────► AwaitingFinish::receive
//! SessionKeys                                            SessionKeys
//! ```
//!
//! Each side brings its own [`NetworkIdentity`], the [`NodeId`] it expects the peer to have
//! (the id the transport authenticated, or the one it dialled) and the [`PairingSecret`] the
//! two devices share. The keys come from [`SessionSecrets`]; `th` is the transcript hash over
//! both ids and both ephemeral keys. Each side signs `th` under its own [`SigningContext`] and
//! sends its key-confirmation value, so the handshake fails unless both peers hold the expected
//! identities, the same pairing secret and the same transcript.
//!
//! Every transition consumes its state, so a state cannot be used twice; a failed transition
//! leaves nothing to retry with, and the connection should be closed.

mod messages;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use tether_identity::{NetworkIdentity, NodeId, SigningContext};

use crate::{
    CryptoError, EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, Transcript,
};

pub use messages::{FinishMessage, InitMessage, ResponseMessage};

/// The context of the responder's signature over the transcript hash.
pub const RESPONDER_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/session/responder");

/// The context of the initiator's signature over the transcript hash.
pub const INITIATOR_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/session/initiator");

/// The side that opens the session. Start with [`Initiator::start`].
#[derive(Debug)]
pub struct Initiator {
    _private: (),
}

impl Initiator {
    /// Makes a fresh ephemeral key and the first message.
    ///
    /// `peer` is the node id the responder must prove it holds.
    pub fn start<'id, R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &'id NetworkIdentity,
        peer: NodeId,
        pairing_secret: &PairingSecret,
    ) -> (AwaitingResponse<'id>, InitMessage) {
        let ephemeral = EphemeralKeyPair::generate(rng);
        let message = InitMessage {
            ephemeral: ephemeral.public_key(),
        };
        let state = AwaitingResponse {
            identity,
            own_id: identity.node_id(),
            peer,
            pairing_secret: pairing_secret.clone(),
            ephemeral,
        };
        (state, message)
    }
}

/// The initiator after sending [`InitMessage`], waiting for the [`ResponseMessage`].
#[derive(Debug)]
pub struct AwaitingResponse<'id> {
    identity: &'id NetworkIdentity,
    own_id: NodeId,
    peer: NodeId,
    pairing_secret: PairingSecret,
    ephemeral: EphemeralKeyPair,
}

impl AwaitingResponse<'_> {
    /// Checks the response and finishes: returns the session keys and the last message, which
    /// must be sent for the responder to finish too.
    ///
    /// Fails with [`CryptoError::Signature`] if the response was not signed by the expected
    /// peer for this transcript, [`CryptoError::NonContributory`] for a low-order ephemeral
    /// key, and [`CryptoError::KeyConfirmation`] if the peer does not hold the same pairing
    /// secret.
    pub fn receive(
        self,
        response: &ResponseMessage,
    ) -> Result<(SessionKeys, FinishMessage), CryptoError> {
        let transcript = Transcript {
            initiator_id: *self.own_id.as_bytes(),
            responder_id: *self.peer.as_bytes(),
            initiator_ephemeral: self.ephemeral.public_key(),
            responder_ephemeral: response.ephemeral,
        };
        let th = transcript.hash();
        self.peer
            .verify(RESPONDER_SIGNING_CONTEXT, &th, &response.signature)
            .map_err(|_| CryptoError::Signature)?;
        let shared = self.ephemeral.diffie_hellman(&response.ephemeral)?;
        let secrets = SessionSecrets::derive(&self.pairing_secret, shared, &transcript);
        check_confirmation(&secrets, Role::Responder, &response.confirmation)?;
        let finish = FinishMessage {
            confirmation: *secrets.confirmation(Role::Initiator),
            signature: self.identity.sign(INITIATOR_SIGNING_CONTEXT, &th),
        };
        Ok((secrets.into_session_keys(Role::Initiator), finish))
    }
}

/// The side that accepts the session. Start with [`Responder::respond`].
#[derive(Debug)]
pub struct Responder {
    _private: (),
}

impl Responder {
    /// Answers an [`InitMessage`]: makes a fresh ephemeral key, derives the keys, signs the
    /// transcript.
    ///
    /// `peer` is the node id the initiator must prove it holds: the one the transport
    /// authenticated for this connection. Fails with [`CryptoError::NonContributory`] for a
    /// low-order ephemeral key.
    pub fn respond<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &NetworkIdentity,
        peer: NodeId,
        pairing_secret: &PairingSecret,
        init: &InitMessage,
    ) -> Result<(AwaitingFinish, ResponseMessage), CryptoError> {
        let ephemeral = EphemeralKeyPair::generate(rng);
        let transcript = Transcript {
            initiator_id: *peer.as_bytes(),
            responder_id: *identity.node_id().as_bytes(),
            initiator_ephemeral: init.ephemeral,
            responder_ephemeral: ephemeral.public_key(),
        };
        let shared = ephemeral.diffie_hellman(&init.ephemeral)?;
        let secrets = SessionSecrets::derive(pairing_secret, shared, &transcript);
        let response = ResponseMessage {
            ephemeral: transcript.responder_ephemeral,
            confirmation: *secrets.confirmation(Role::Responder),
            signature: identity.sign(RESPONDER_SIGNING_CONTEXT, secrets.transcript_hash()),
        };
        Ok((AwaitingFinish { peer, secrets }, response))
    }
}

/// The responder after sending [`ResponseMessage`], waiting for the [`FinishMessage`].
#[derive(Debug)]
pub struct AwaitingFinish {
    peer: NodeId,
    secrets: SessionSecrets,
}

impl AwaitingFinish {
    /// Checks the initiator's signature and key confirmation; returns the session keys.
    ///
    /// Fails with [`CryptoError::Signature`] if the message was not signed by the expected
    /// peer for this transcript and [`CryptoError::KeyConfirmation`] if the peer does not hold
    /// the same pairing secret.
    pub fn receive(self, finish: &FinishMessage) -> Result<SessionKeys, CryptoError> {
        self.peer
            .verify(
                INITIATOR_SIGNING_CONTEXT,
                self.secrets.transcript_hash(),
                &finish.signature,
            )
            .map_err(|_| CryptoError::Signature)?;
        check_confirmation(&self.secrets, Role::Initiator, &finish.confirmation)?;
        Ok(self.secrets.into_session_keys(Role::Responder))
    }
}

/// Compares a received confirmation value with ours, in constant time.
fn check_confirmation(
    secrets: &SessionSecrets,
    sender: Role,
    received: &[u8; 32],
) -> Result<(), CryptoError> {
    if bool::from(secrets.confirmation(sender).ct_eq(received)) {
        Ok(())
    } else {
        Err(CryptoError::KeyConfirmation)
    }
}
