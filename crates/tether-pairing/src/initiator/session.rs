//! One handshake on the initiator's side, as consuming transitions:
//! [`AwaitingConfirm::start`] (Hello → Reply), [`AwaitingConfirm::confirm`]
//! (JoinerConfirm → InitiatorConfirm), [`AwaitingSignature::finish`] (JoinerSignature → done).
//!
//! The code-wide rules (expiry, single use, burning, limits) live in the parent module; this
//! file is only the cryptography of one session.

use rand_core::CryptoRng;
use tether_identity::{DeviceInfo, NodeId, Signature};

use crate::device::{join_info_and_signature, read_peer_info, verify_transcript};
use crate::message::{
    Body, MAC_LEN, PAKE_MESSAGE_LEN, PairingMessage, SEALED_SIGNATURE_LEN, SessionId,
};
use crate::pake::respond;
use crate::schedule::{HandshakeKeys, Role};
use crate::transcript::{Transcript, label};
use crate::{Credential, LocalDevice, Misbehavior, Paired, PairingError};

/// The initiator answered a Hello and waits for the joiner's key confirmation.
pub(super) struct AwaitingConfirm {
    keys: HandshakeKeys,
    transcript: Transcript,
}

/// The joiner proved the code; the initiator proved it back and waits for the joiner's
/// transcript signature.
pub(super) struct AwaitingSignature {
    keys: HandshakeKeys,
    transcript: Transcript,
    peer_info: DeviceInfo,
}

impl AwaitingConfirm {
    /// Answers the Hello `hello` (its raw bytes, and its decoded session id and PAKE message)
    /// from `peer`; returns the state and the Reply.
    pub(super) fn start<R: CryptoRng + ?Sized>(
        credential: &Credential,
        device: &LocalDevice,
        peer: &NodeId,
        session: SessionId,
        hello: (&[u8], &[u8; PAKE_MESSAGE_LEN]),
        rng: &mut R,
    ) -> Result<(Self, Vec<u8>), PairingError> {
        let (hello_bytes, joiner_pake) = hello;
        let initiator = device.node_id();
        let (pake_key, pake) = respond(credential, peer, &initiator, joiner_pake, rng)?;
        let reply = PairingMessage::new(session, Body::Reply { pake }).to_bytes();
        let mut transcript = Transcript::new(credential.kind(), &initiator, peer);
        transcript.absorb(label::HELLO, hello_bytes);
        transcript.absorb(label::REPLY, &reply);
        let keys = HandshakeKeys::derive(&pake_key, &transcript.hash());
        Ok((Self { keys, transcript }, reply))
    }

    /// Whether the joiner's MAC proves it derived the same key, i.e. holds the same code.
    ///
    /// This is the one place a guess is tested; the caller burns or claims the code on the
    /// answer before doing anything else.
    pub(super) fn mac_matches(&self, mac: &[u8; MAC_LEN]) -> Result<bool, PairingError> {
        self.keys
            .mac_matches(Role::Joiner, &self.transcript.hash(), mac)
    }

    /// After [`Self::mac_matches`] said yes: opens and checks the joiner's device info, and
    /// returns the next state and the InitiatorConfirm.
    pub(super) fn confirm(
        self,
        device: &LocalDevice,
        peer: &NodeId,
        session: SessionId,
        confirm_bytes: &[u8],
        sealed_info: &[u8],
    ) -> Result<(AwaitingSignature, Vec<u8>), PairingError> {
        let Self {
            keys,
            mut transcript,
        } = self;
        let h2 = transcript.hash();
        let info_json = keys
            .open(Role::Joiner, 0, &h2, sealed_info)
            .ok_or(Misbehavior::SealedPayload)?;
        let peer_info = read_peer_info(&info_json, peer)?;
        transcript.absorb(label::JOINER_CONFIRM, confirm_bytes);
        transcript.absorb(label::JOINER_INFO, &info_json);
        let h3 = transcript.hash();
        let mac = keys.mac(Role::Initiator, &h3)?;
        transcript.absorb(label::INITIATOR_INFO, device.info_json());
        let signature = device.sign_transcript(Role::Initiator, &transcript.hash());
        let payload = join_info_and_signature(device.info_json(), &signature);
        let sealed = keys.seal(Role::Initiator, 0, &h3, &payload)?;
        let reply = PairingMessage::new(session, Body::InitiatorConfirm { mac, sealed }).to_bytes();
        transcript.absorb(label::INITIATOR_CONFIRM, &reply);
        let next = AwaitingSignature {
            keys,
            transcript,
            peer_info,
        };
        Ok((next, reply))
    }
}

impl AwaitingSignature {
    /// Checks the joiner's transcript signature; returns the pairing.
    pub(super) fn finish(
        self,
        peer: &NodeId,
        signature_bytes: &[u8],
        sealed: &[u8; SEALED_SIGNATURE_LEN],
    ) -> Result<Paired, PairingError> {
        let Self {
            keys,
            mut transcript,
            peer_info,
        } = self;
        let h4 = transcript.hash();
        let signature = keys
            .open(Role::Joiner, 1, &h4, sealed)
            .ok_or(Misbehavior::SealedPayload)?;
        let signature = Signature::from_slice(&signature).map_err(|_| Misbehavior::BadSignature)?;
        verify_transcript(peer, Role::Joiner, &h4, &signature)?;
        transcript.absorb(label::JOINER_SIGNATURE, signature_bytes);
        let (secret, verification) = keys.finish(&transcript.hash());
        Ok(Paired::new(*peer, peer_info, secret, verification))
    }
}
