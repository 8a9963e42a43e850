//! The session handshake between two paired devices, sans-IO.
//!
//! The responder speaks first, so the handshake costs no round trip of its own: its fresh
//! ephemeral key can travel with the transport's first answer (QUIC's 0.5-RTT data), and the
//! initiator's proof travels with its first request.
//!
//! ```text
//! initiator                                              responder
//!                  ◄── HelloMessage { e_r } ──────────── Responder::hello
//! Initiator::start ── InitMessage { e_i, confirm_i, sig_i(th) } ──► AwaitingInit::receive
//! (first sealed frames may follow at once)
//!                  ◄── ResponseMessage { confirm_r, sig_r(th) } ──
//! AwaitingResponse::receive                              SessionKeys
//! SessionKeys
//! ```
//!
//! Each side brings its own [`NetworkIdentity`], the [`NodeId`] it expects the peer to have
//! (the id the transport authenticated, or the one it dialled) and the [`PairingSecret`] the
//! two devices share. The keys come from [`SessionSecrets`]; `th` is the transcript hash over
//! both ids and both ephemeral keys. Each side signs `th` under its own [`SigningContext`] and
//! sends its key-confirmation value, so the handshake fails unless both peers hold the expected
//! identities, the same pairing secret and the same transcript.
//!
//! The [`HelloMessage`] is unauthenticated when it arrives; the responder's signature over
//! `th` (which contains `e_r`) binds it later. The responder opens nothing the initiator sealed
//! before [`AwaitingInit::receive`] has checked the initiator's signature and confirmation. The
//! initiator may seal its first frames before the [`ResponseMessage`] arrives
//! ([`AwaitingResponse::into_early_keys`]), but must not open anything with those keys, or act
//! on anything from the responder, before [`ResponseCheck::verify`] succeeds.
//!
//! The responder may offer the encodings it reads ([`Responder::hello_offering`], an
//! [`EncodingOffer`] of opaque one-byte ids), and the initiator then chooses one
//! ([`Initiator::start_choosing`], [`InitMessage::encoding`]); the offer and the choice are
//! bound into `th` ([`Transcript::negotiated_hash`]), so both signatures and every key cover
//! them. A hello without an offer (an older build) gets an init without a choice, and `th` is
//! the plain transcript hash, as before.
//!
//! Every transition consumes its state, so a state cannot be used twice; a failed transition
//! leaves nothing to retry with, and the connection should be closed.

mod messages;

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use tether_identity::{NetworkIdentity, NodeId, SigningContext};

use crate::{
    CryptoError, EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, Transcript,
};

use messages::NONE_CHOSEN;
pub use messages::{EncodingOffer, HelloMessage, InitMessage, ResponseMessage};

/// The context of the responder's signature over the transcript hash.
pub const RESPONDER_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/session/responder");

/// The context of the initiator's signature over the transcript hash.
pub const INITIATOR_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/session/initiator");

/// The side that accepts the session and speaks first. Start with [`Responder::hello`].
#[derive(Debug)]
pub struct Responder {
    _private: (),
}

impl Responder {
    /// Makes a fresh ephemeral key and the first message. Nothing about the peer is needed
    /// yet: the hello may go out before the transport has authenticated it.
    pub fn hello<R: CryptoRng + ?Sized>(rng: &mut R) -> (AwaitingInit, HelloMessage) {
        Self::hello_offering(rng, None)
    }

    /// [`hello`](Self::hello), offering the encodings this side reads (`None`: offer none, as
    /// an older build).
    pub fn hello_offering<R: CryptoRng + ?Sized>(
        rng: &mut R,
        offer: Option<EncodingOffer>,
    ) -> (AwaitingInit, HelloMessage) {
        let ephemeral = EphemeralKeyPair::generate(rng);
        let message = HelloMessage {
            ephemeral: ephemeral.public_key(),
            offer,
        };
        (AwaitingInit { ephemeral, offer }, message)
    }
}

/// The responder after sending [`HelloMessage`], waiting for the [`InitMessage`].
#[derive(Debug)]
pub struct AwaitingInit {
    ephemeral: EphemeralKeyPair,
    offer: Option<EncodingOffer>,
}

impl AwaitingInit {
    /// Checks the initiator's signature and key confirmation; returns the session keys and the
    /// response, which must be sent for the initiator to finish too.
    ///
    /// `peer` is the node id the initiator must prove it holds: the one the transport
    /// authenticated for this connection. Fails with [`CryptoError::Signature`] if the message
    /// was not signed by `peer` for this transcript (another connection's init included),
    /// [`CryptoError::NonContributory`] for a low-order ephemeral key, and
    /// [`CryptoError::KeyConfirmation`] if the peer does not hold the same pairing secret, and
    /// [`CryptoError::UnofferedEncoding`] if it chose an encoding the hello did not offer.
    /// The encoding in force is then [`InitMessage::encoding`].
    pub fn receive(
        self,
        identity: &NetworkIdentity,
        peer: NodeId,
        pairing_secret: &PairingSecret,
        init: &InitMessage,
    ) -> Result<(SessionKeys, ResponseMessage), CryptoError> {
        let transcript = Transcript {
            initiator_id: *peer.as_bytes(),
            responder_id: *identity.node_id().as_bytes(),
            initiator_ephemeral: init.ephemeral,
            responder_ephemeral: self.ephemeral.public_key(),
        };
        let negotiation = match (self.offer.as_ref(), init.encoding) {
            (_, None) => None,
            (Some(offer), Some(chosen)) if chosen == NONE_CHOSEN || offer.contains(chosen) => {
                Some((offer.ids(), chosen))
            }
            (_, Some(chosen)) => return Err(CryptoError::UnofferedEncoding { chosen }),
        };
        let th = transcript.negotiated_hash(negotiation);
        peer.verify(INITIATOR_SIGNING_CONTEXT, &th, &init.signature)
            .map_err(|_| CryptoError::Signature)?;
        let shared = self.ephemeral.diffie_hellman(&init.ephemeral)?;
        let secrets = SessionSecrets::derive_from_hash(pairing_secret, shared, th);
        check_confirmation(secrets.confirmation(Role::Initiator), &init.confirmation)?;
        let response = ResponseMessage {
            confirmation: *secrets.confirmation(Role::Responder),
            signature: identity.sign(RESPONDER_SIGNING_CONTEXT, secrets.transcript_hash()),
        };
        Ok((secrets.into_session_keys(Role::Responder), response))
    }
}

/// The side that opens the session. Start with [`Initiator::start`] once the responder's
/// [`HelloMessage`] is in.
#[derive(Debug)]
pub struct Initiator {
    _private: (),
}

impl Initiator {
    /// Answers the responder's hello: makes a fresh ephemeral key, derives the keys, confirms
    /// them and signs the transcript.
    ///
    /// `peer` is the node id the responder must prove it holds. Fails with
    /// [`CryptoError::NonContributory`] for a low-order ephemeral key.
    pub fn start<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &NetworkIdentity,
        peer: NodeId,
        pairing_secret: &PairingSecret,
        hello: &HelloMessage,
    ) -> Result<(AwaitingResponse, InitMessage), CryptoError> {
        Self::start_choosing(rng, identity, peer, pairing_secret, hello, &[])
    }

    /// [`start`](Self::start), choosing the first encoding of `reads` (this side's, preferred
    /// first) that the hello offers; none when the hello offers none of them (or none at all).
    /// The choice is [`InitMessage::encoding`]. Whenever the hello offered encodings, the offer
    /// and the choice (none included) are bound into the transcript, so an offer changed on
    /// the way fails the responder's check of the init.
    pub fn start_choosing<R: CryptoRng + ?Sized>(
        rng: &mut R,
        identity: &NetworkIdentity,
        peer: NodeId,
        pairing_secret: &PairingSecret,
        hello: &HelloMessage,
        reads: &[u8],
    ) -> Result<(AwaitingResponse, InitMessage), CryptoError> {
        let negotiation = hello.offer.as_ref().map(|offer| {
            let chosen = reads.iter().copied().find(|id| offer.contains(*id));
            (offer.ids(), chosen.unwrap_or(NONE_CHOSEN))
        });
        let ephemeral = EphemeralKeyPair::generate(rng);
        let transcript = Transcript {
            initiator_id: *identity.node_id().as_bytes(),
            responder_id: *peer.as_bytes(),
            initiator_ephemeral: ephemeral.public_key(),
            responder_ephemeral: hello.ephemeral,
        };
        let shared = ephemeral.diffie_hellman(&hello.ephemeral)?;
        let th = transcript.negotiated_hash(negotiation);
        let secrets = SessionSecrets::derive_from_hash(pairing_secret, shared, th);
        let init = InitMessage {
            ephemeral: transcript.initiator_ephemeral,
            confirmation: *secrets.confirmation(Role::Initiator),
            signature: identity.sign(INITIATOR_SIGNING_CONTEXT, secrets.transcript_hash()),
            encoding: negotiation.map(|(_, chosen)| chosen),
        };
        let check = ResponseCheck {
            peer,
            transcript_hash: *secrets.transcript_hash(),
            confirmation: *secrets.confirmation(Role::Responder),
        };
        Ok((AwaitingResponse { check, secrets }, init))
    }
}

/// The initiator after sending [`InitMessage`], waiting for the [`ResponseMessage`].
#[derive(Debug)]
pub struct AwaitingResponse {
    check: ResponseCheck,
    secrets: SessionSecrets,
}

impl AwaitingResponse {
    /// Checks the response and finishes: returns the session keys.
    ///
    /// Fails as [`ResponseCheck::verify`] does.
    pub fn receive(self, response: &ResponseMessage) -> Result<SessionKeys, CryptoError> {
        let (keys, check) = self.into_early_keys();
        check.verify(response)?;
        Ok(keys)
    }

    /// The session keys now, to seal the first frames before the response arrives, and the
    /// check the response must pass. The keys must open nothing, and nothing from the peer
    /// may be acted on, until [`ResponseCheck::verify`] has succeeded: until then the peer's
    /// frames may come from whoever holds the responder's ephemeral key, not yet shown to be
    /// the expected peer.
    pub fn into_early_keys(self) -> (SessionKeys, ResponseCheck) {
        (self.secrets.into_session_keys(Role::Initiator), self.check)
    }
}

/// What the initiator checks in the [`ResponseMessage`]: the responder's signature over the
/// transcript and its key confirmation.
pub struct ResponseCheck {
    peer: NodeId,
    transcript_hash: [u8; 32],
    confirmation: [u8; 32],
}

impl ResponseCheck {
    /// Checks the response.
    ///
    /// Fails with [`CryptoError::Signature`] if the response was not signed by the expected
    /// peer for this transcript, and [`CryptoError::KeyConfirmation`] if the peer does not
    /// hold the same pairing secret.
    pub fn verify(self, response: &ResponseMessage) -> Result<(), CryptoError> {
        self.peer
            .verify(
                RESPONDER_SIGNING_CONTEXT,
                &self.transcript_hash,
                &response.signature,
            )
            .map_err(|_| CryptoError::Signature)?;
        check_confirmation(&self.confirmation, &response.confirmation)
    }
}

impl fmt::Debug for ResponseCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCheck")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Compares a received confirmation value with the expected one, in constant time.
fn check_confirmation(expected: &[u8; 32], received: &[u8; 32]) -> Result<(), CryptoError> {
    if bool::from(expected.ct_eq(received)) {
        Ok(())
    } else {
        Err(CryptoError::KeyConfirmation)
    }
}
