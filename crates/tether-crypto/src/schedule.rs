//! The session key schedule: from a key exchange to labelled keys.

use std::fmt;

use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::cipher::TransferCipher;
use crate::ecdh::{EphemeralPublicKey, SharedSecret};
use crate::kdf::Prk;
use crate::labels::{
    CONFIRM_INITIATOR_LABEL, CONFIRM_RESPONDER_LABEL, EXPORTER_LABEL, I2R_LABEL, NEGOTIATION_LABEL,
    R2I_LABEL, TRANSCRIPT_LABEL,
};
use crate::lengths::KEY_LEN;
use crate::role::Role;
use crate::session::{REKEY_INTERVAL_LOG2, SessionKeys};
use crate::traffic::TrafficSecrets;

/// The 32-byte secret two devices agreed on when they paired.
///
/// Every session key is salted with it. Wiped from memory on drop; `Debug` shows no bytes.
#[derive(Clone)]
pub struct PairingSecret([u8; KEY_LEN]);

impl PairingSecret {
    /// Length in bytes.
    pub const LEN: usize = KEY_LEN;

    /// Wraps the secret bytes (as stored by the registry, or output by pairing).
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The secret bytes, for storage.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for PairingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingSecret(..)")
    }
}

impl Drop for PairingSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for PairingSecret {}

/// What a session's keys are bound to: both parties and both ephemeral keys, in a fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transcript {
    /// The initiator's node id (its Ed25519 public key).
    pub initiator_id: [u8; 32],
    /// The responder's node id (its Ed25519 public key).
    pub responder_id: [u8; 32],
    /// The initiator's ephemeral X25519 public key.
    pub initiator_ephemeral: EphemeralPublicKey,
    /// The responder's ephemeral X25519 public key.
    pub responder_ephemeral: EphemeralPublicKey,
}

impl Transcript {
    /// The transcript hash `th`, which the handshake signatures cover and every key's `info`
    /// ends with.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::new()
            .chain_update(TRANSCRIPT_LABEL)
            .chain_update(self.initiator_id)
            .chain_update(self.responder_id)
            .chain_update(self.initiator_ephemeral.as_bytes())
            .chain_update(self.responder_ephemeral.as_bytes())
            .finalize()
            .into()
    }

    /// The transcript hash with an encoding negotiation bound in: the responder's offered ids
    /// and the initiator's choice. Without a negotiation (an older peer on either side) it is
    /// [`Self::hash`].
    pub fn negotiated_hash(&self, negotiation: Option<(&[u8], u8)>) -> [u8; 32] {
        let th = self.hash();
        let Some((offered, chosen)) = negotiation else {
            return th;
        };
        let count = u8::try_from(offered.len()).unwrap_or(u8::MAX);
        Sha256::new()
            .chain_update(NEGOTIATION_LABEL)
            .chain_update(th)
            .chain_update([count])
            .chain_update(offered)
            .chain_update([chosen])
            .finalize()
            .into()
    }
}

/// Everything the key schedule derives for one session.
///
/// Turn it into usable keys with [`SessionSecrets::into_session_keys`]. Most callers never see
/// this type: the [`crate::handshake`] derives it and checks the confirmation values.
///
/// # The key schedule
///
/// All values are 32 bytes; `||` is concatenation; every label is an ASCII string under
/// `tether/v1/`, and no label is used twice.
///
/// ```text
/// th        = SHA-256("tether/v1/session/transcript" || initiator_id || responder_id
///                     || initiator_ephemeral || responder_ephemeral)
///             and, when the responder offered encodings and the initiator chose one,
/// th        = SHA-256("tether/v1/session/negotiation" || th || count || offered ids || chosen id)
/// prk       = HKDF-Extract(salt = pairing_secret, ikm = X25519(ephemeral secrets))
/// i2r       = HKDF-Expand(prk, "tether/v1/session/key/initiator-to-responder" || th)
/// r2i       = HKDF-Expand(prk, "tether/v1/session/key/responder-to-initiator" || th)
/// exporter  = HKDF-Expand(prk, "tether/v1/session/exporter" || th)
/// confirm_i = HKDF-Expand(prk, "tether/v1/session/confirm/initiator" || th)
/// confirm_r = HKDF-Expand(prk, "tether/v1/session/confirm/responder" || th)
/// ```
///
/// The ids are the two devices' node ids (Ed25519 public keys) and the ephemerals their X25519
/// public keys for this session. Salting with the pairing secret means only devices that paired
/// with each other can derive the keys; the fresh DH output gives forward secrecy; the
/// transcript in every `info` binds the keys to who talked to whom with which ephemerals.
///
/// Keys evolve per epoch (see [`crate::SessionKeys`]), and per-transfer keys come from the
/// exporter, for a 16-byte transfer id `t` and the transfer's cipher `c` (its
/// [name](TransferCipher::name), e.g. `aes-256-gcm`):
///
/// ```text
/// next key   = HKDF-Expand(PRK = key, "tether/v1/session/rekey")
/// t.secret   = HKDF-Expand(PRK = exporter, "tether/v1/transfer/secret" || t)
/// t.i2r      = HKDF-Expand(PRK = t.secret, "tether/v1/transfer/key/initiator-to-responder/" || c)
/// t.r2i      = HKDF-Expand(PRK = t.secret, "tether/v1/transfer/key/responder-to-initiator/" || c)
/// t.exporter = HKDF-Expand(PRK = t.secret, "tether/v1/transfer/exporter/" || c)
/// ```
///
/// `t.secret` ([`TransferSecret`](crate::TransferSecret)) exists before the two devices have agreed on the cipher;
/// the keys that seal anything exist only once they have, and name it.
pub struct SessionSecrets {
    traffic: TrafficSecrets,
    confirm_initiator: [u8; KEY_LEN],
    confirm_responder: [u8; KEY_LEN],
    transcript_hash: [u8; 32],
}

impl SessionSecrets {
    /// Runs the key schedule (see [above](Self)).
    ///
    /// Consumes the shared secret so that one exchange gives one set of keys.
    pub fn derive(
        pairing_secret: &PairingSecret,
        shared_secret: SharedSecret,
        transcript: &Transcript,
    ) -> Self {
        Self::derive_from_hash(pairing_secret, shared_secret, transcript.hash())
    }

    /// Runs the key schedule for the transcript hash `th` (the handshake's, with the encoding
    /// negotiation bound in: [`Transcript::negotiated_hash`]).
    pub(crate) fn derive_from_hash(
        pairing_secret: &PairingSecret,
        shared_secret: SharedSecret,
        th: [u8; 32],
    ) -> Self {
        let prk = Prk::extract(pairing_secret.as_bytes(), shared_secret.as_bytes());
        drop(shared_secret);
        Self {
            traffic: TrafficSecrets {
                initiator_to_responder: prk.expand_key(&[I2R_LABEL, &th]),
                responder_to_initiator: prk.expand_key(&[R2I_LABEL, &th]),
                exporter: prk.expand_key(&[EXPORTER_LABEL, &th]),
            },
            confirm_initiator: prk.expand_key(&[CONFIRM_INITIATOR_LABEL, &th]),
            confirm_responder: prk.expand_key(&[CONFIRM_RESPONDER_LABEL, &th]),
            transcript_hash: th,
        }
    }

    /// The transcript hash the secrets are bound to.
    pub fn transcript_hash(&self) -> &[u8; 32] {
        &self.transcript_hash
    }

    /// The key-confirmation value that `role` sends to prove it derived the same keys.
    pub(crate) fn confirmation(&self, role: Role) -> &[u8; KEY_LEN] {
        match role {
            Role::Initiator => &self.confirm_initiator,
            Role::Responder => &self.confirm_responder,
        }
    }

    /// The session keys as seen by `role`.
    pub fn into_session_keys(self, role: Role) -> SessionKeys {
        SessionKeys::new(
            &self.traffic,
            role,
            REKEY_INTERVAL_LOG2,
            TransferCipher::ChaCha20Poly1305,
        )
    }

    /// Like [`Self::into_session_keys`] with a rekey every `2^log2` messages instead of
    /// `2^32`, so that tests can cross epochs. Both sides must use the same value.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_into_session_keys_with_rekey_interval(
        self,
        role: Role,
        log2: u32,
    ) -> SessionKeys {
        SessionKeys::new(&self.traffic, role, log2, TransferCipher::ChaCha20Poly1305)
    }

    /// Session keys for `role` without consuming the secrets, so a fuzz target can rebuild the
    /// same keys cheaply for every input. Two live `SessionKeys` with the same keys would reuse
    /// nonces; never use this outside tests and fuzzing.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_session_keys(&self, role: Role) -> SessionKeys {
        SessionKeys::new(
            &self.traffic,
            role,
            REKEY_INTERVAL_LOG2,
            TransferCipher::ChaCha20Poly1305,
        )
    }

    /// Both ends of a made-up session, `[initiator, responder]`, derived deterministically from
    /// `seed` through the real key exchange and schedule: every input (pairing secret, node ids,
    /// ephemeral secrets) is `SHA-256("tether/test/session-pair" ‖ seed ‖ i)`. Different seeds
    /// give unrelated sessions; the same seed gives the same keys, so two such pairs reuse
    /// nonces. For tests, benches and fuzzing only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_pair_from_seed(seed: u64) -> Result<[Self; 2], crate::CryptoError> {
        let input = |index: u8| -> [u8; KEY_LEN] {
            let mut hash = Sha256::new();
            hash.update(b"tether/test/session-pair");
            hash.update(seed.to_le_bytes());
            hash.update([index]);
            hash.finalize().into()
        };
        let pairing = PairingSecret::from_bytes(input(0));
        let initiator = crate::EphemeralKeyPair::danger_from_secret_bytes(input(1));
        let responder = crate::EphemeralKeyPair::danger_from_secret_bytes(input(2));
        let transcript = Transcript {
            initiator_id: input(3),
            responder_id: input(4),
            initiator_ephemeral: initiator.public_key(),
            responder_ephemeral: responder.public_key(),
        };
        let initiator_shared = initiator.diffie_hellman(&transcript.responder_ephemeral)?;
        let responder_shared = responder.diffie_hellman(&transcript.initiator_ephemeral)?;
        Ok([
            Self::derive(&pairing, initiator_shared, &transcript),
            Self::derive(&pairing, responder_shared, &transcript),
        ])
    }

    /// Every derived value by name, for golden test vectors only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_to_named_bytes(&self) -> Vec<(&'static str, [u8; 32])> {
        vec![
            ("transcript_hash", self.transcript_hash),
            (
                "key_initiator_to_responder",
                self.traffic.initiator_to_responder,
            ),
            (
                "key_responder_to_initiator",
                self.traffic.responder_to_initiator,
            ),
            ("exporter", self.traffic.exporter),
            ("confirm_initiator", self.confirm_initiator),
            ("confirm_responder", self.confirm_responder),
        ]
    }
}

impl fmt::Debug for SessionSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecrets(..)")
    }
}

impl Drop for SessionSecrets {
    fn drop(&mut self) {
        self.confirm_initiator.zeroize();
        self.confirm_responder.zeroize();
    }
}

impl ZeroizeOnDrop for SessionSecrets {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        assert_eq!(
            format!("{:?}", PairingSecret::from_bytes([1; 32])),
            "PairingSecret(..)"
        );
    }

    /// Known answer: the negotiation's hash over fixed inputs (computed independently with
    /// Python's hashlib: sha256(label + th + bytes([2, 2, 1, 2]))).
    #[test]
    fn negotiated_hash_known_answer() {
        let transcript = Transcript {
            initiator_id: [1; 32],
            responder_id: [2; 32],
            initiator_ephemeral: EphemeralPublicKey::from_bytes([3; 32]),
            responder_ephemeral: EphemeralPublicKey::from_bytes([4; 32]),
        };
        assert_eq!(transcript.negotiated_hash(None), transcript.hash());
        let bound = transcript.negotiated_hash(Some((&[2, 1], 2)));
        assert_eq!(hex::encode(bound), NEGOTIATED_KAT);
        assert_ne!(bound, transcript.negotiated_hash(Some((&[2, 1], 1))));
        assert_ne!(bound, transcript.negotiated_hash(Some((&[2], 2))));
    }

    const NEGOTIATED_KAT: &str = "51c365e8df636f8cc7ac9ba5643d87bdef28cff8bd37107c6eda259083b4f1b7";
}
