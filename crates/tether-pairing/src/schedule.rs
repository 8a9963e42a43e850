//! The pairing key schedule: from the SPAKE2 key and the transcript to the confirmation MACs,
//! the sealing keys, the pairing secret and the verification code.
//!
//! ```text
//! prk                = HKDF-Extract(salt = h2, ikm = SPAKE2 key)
//! confirm_joiner     = HKDF-Expand(prk, "tether/v1/pairing/confirm/joiner")
//! confirm_initiator  = HKDF-Expand(prk, "tether/v1/pairing/confirm/initiator")
//! seal_joiner        = HKDF-Expand(prk, "tether/v1/pairing/seal/joiner")
//! seal_initiator     = HKDF-Expand(prk, "tether/v1/pairing/seal/initiator")
//! joiner MAC         = HMAC-SHA256(confirm_joiner, h2)
//! initiator MAC      = HMAC-SHA256(confirm_initiator, h3)
//! pairing secret     = HKDF-Expand(prk, "tether/v1/pairing/secret" ‖ h5)
//! verification code  = u64be(HKDF-Expand(prk, "tether/v1/pairing/verification" ‖ h5)[..8]) mod 10^6
//! ```
//!
//! Sealing is ChaCha20-Poly1305 with the sender's seal key, a transcript hash as associated
//! data, and the nonce `counter ‖ 0^11`: the joiner seals its info with counter 0 and its
//! signature with counter 1; the initiator seals once, with counter 0. No (key, nonce) pair is
//! ever used twice. Known-answer vectors: `tests/vectors/key_schedule.json`.

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tether_crypto::{PairingSecret, Prk};
use zeroize::Zeroizing;

use crate::message::MAC_LEN;
use crate::pake::PakeKey;
use crate::{PairingError, VerificationCode};

const CONFIRM_JOINER: &[u8] = b"tether/v1/pairing/confirm/joiner";
const CONFIRM_INITIATOR: &[u8] = b"tether/v1/pairing/confirm/initiator";
const SEAL_JOINER: &[u8] = b"tether/v1/pairing/seal/joiner";
const SEAL_INITIATOR: &[u8] = b"tether/v1/pairing/seal/initiator";
const SECRET: &[u8] = b"tether/v1/pairing/secret";
const VERIFICATION: &[u8] = b"tether/v1/pairing/verification";

/// Which side made (or must have made) a MAC, seal or signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Joiner,
    Initiator,
}

/// The keys of one handshake, wiped on drop.
pub(crate) struct HandshakeKeys {
    prk: Prk,
    confirm_joiner: Zeroizing<[u8; 32]>,
    confirm_initiator: Zeroizing<[u8; 32]>,
    seal_joiner: Zeroizing<[u8; 32]>,
    seal_initiator: Zeroizing<[u8; 32]>,
}

impl HandshakeKeys {
    /// Derives the keys from the SPAKE2 output, salted with `h2`.
    pub(crate) fn derive(pake_key: &PakeKey, h2: &[u8; 32]) -> Self {
        Self::derive_from_bytes(&pake_key.0, h2)
    }

    fn derive_from_bytes(pake_key: &[u8; 32], h2: &[u8; 32]) -> Self {
        let prk = Prk::extract(h2, pake_key);
        let expand = |label: &[u8]| Zeroizing::new(prk.expand_key(&[label]));
        Self {
            confirm_joiner: expand(CONFIRM_JOINER),
            confirm_initiator: expand(CONFIRM_INITIATOR),
            seal_joiner: expand(SEAL_JOINER),
            seal_initiator: expand(SEAL_INITIATOR),
            prk,
        }
    }

    /// The key-confirmation MAC `role` sends over `transcript_hash`.
    pub(crate) fn mac(
        &self,
        role: Role,
        transcript_hash: &[u8; 32],
    ) -> Result<[u8; MAC_LEN], PairingError> {
        let key = match role {
            Role::Joiner => &self.confirm_joiner,
            Role::Initiator => &self.confirm_initiator,
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_slice())
            .map_err(|_| PairingError::Internal("HMAC refused a 32-byte key"))?;
        mac.update(transcript_hash);
        Ok(mac.finalize().into_bytes().into())
    }

    /// Whether `mac` is the one `role` should have sent, compared in constant time.
    pub(crate) fn mac_matches(
        &self,
        role: Role,
        transcript_hash: &[u8; 32],
        mac: &[u8; MAC_LEN],
    ) -> Result<bool, PairingError> {
        let expected = self.mac(role, transcript_hash)?;
        Ok(bool::from(expected.ct_eq(mac)))
    }

    /// Encrypts `plaintext` as `role`, bound to `aad`.
    pub(crate) fn seal(
        &self,
        role: Role,
        counter: u8,
        aad: &[u8; 32],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, PairingError> {
        self.cipher(role)
            .encrypt(
                &nonce(counter).into(),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| PairingError::Internal("sealing failed"))
    }

    /// Decrypts what `role` sealed; `None` if it was not sealed with this key, nonce and `aad`.
    pub(crate) fn open(
        &self,
        role: Role,
        counter: u8,
        aad: &[u8; 32],
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        self.cipher(role)
            .decrypt(&nonce(counter).into(), Payload { msg: sealed, aad })
            .ok()
            .map(Zeroizing::new)
    }

    /// The handshake's outputs, from the final transcript hash `h5`.
    pub(crate) fn finish(&self, h5: &[u8; 32]) -> (PairingSecret, VerificationCode) {
        let secret = PairingSecret::from_bytes(self.prk.expand_key(&[SECRET, h5]));
        let mut digits = Zeroizing::new([0u8; 32]);
        *digits = self.prk.expand_key(&[VERIFICATION, h5]);
        let mut first = [0u8; 8];
        first
            .iter_mut()
            .zip(digits.iter())
            .for_each(|(out, byte)| *out = *byte);
        // 2^64 mod 10^6 is tiny next to 2^64: the bias is below 2^-44.
        let value = u64::from_be_bytes(first) % 1_000_000;
        let code = VerificationCode::from_number(u32::try_from(value).unwrap_or(0));
        (secret, code)
    }

    fn cipher(&self, role: Role) -> ChaCha20Poly1305 {
        let key = match role {
            Role::Joiner => &self.seal_joiner,
            Role::Initiator => &self.seal_initiator,
        };
        ChaCha20Poly1305::new(&(**key).into())
    }
}

fn nonce(counter: u8) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[0] = counter;
    nonce
}

#[cfg(test)]
mod tests {
    //! Known-answer tests against `tests/vectors/key_schedule.json`.
    //!
    //! Run with `TETHER_BLESS=1` to rewrite the file from this code before comparing (then
    //! review the diff: a change means the wire protocol changed).

    use std::path::PathBuf;

    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Vector {
        pake_key: String,
        h2: String,
        h3: String,
        h5: String,
        confirm_joiner: String,
        confirm_initiator: String,
        seal_joiner: String,
        seal_initiator: String,
        joiner_mac: String,
        initiator_mac: String,
        joiner_info_sealed: String,
        pairing_secret: String,
        verification_code: String,
    }

    fn bytes32(seed: u8) -> [u8; 32] {
        std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
    }

    fn compute(seed: u8) -> Vector {
        let (pake_key, h2, h3, h5) = (
            bytes32(seed),
            bytes32(seed ^ 1),
            bytes32(seed ^ 2),
            bytes32(seed ^ 3),
        );
        let keys = HandshakeKeys::derive_from_bytes(&pake_key, &h2);
        let (secret, code) = keys.finish(&h5);
        Vector {
            pake_key: hex::encode(pake_key),
            h2: hex::encode(h2),
            h3: hex::encode(h3),
            h5: hex::encode(h5),
            confirm_joiner: hex::encode(*keys.confirm_joiner),
            confirm_initiator: hex::encode(*keys.confirm_initiator),
            seal_joiner: hex::encode(*keys.seal_joiner),
            seal_initiator: hex::encode(*keys.seal_initiator),
            joiner_mac: hex::encode(keys.mac(Role::Joiner, &h2).unwrap()),
            initiator_mac: hex::encode(keys.mac(Role::Initiator, &h3).unwrap()),
            joiner_info_sealed: hex::encode(
                keys.seal(Role::Joiner, 0, &h2, b"{\"device\":1}").unwrap(),
            ),
            pairing_secret: hex::encode(secret.as_bytes()),
            verification_code: code.to_string(),
        }
    }

    #[test]
    fn known_answers() {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/key_schedule.json");
        let computed: Vec<Vector> = [0u8, 1, 0x5a, 0xff].into_iter().map(compute).collect();
        if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&computed).unwrap() + "\n",
            )
            .unwrap();
        }
        let committed: Vec<Vector> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            computed, committed,
            "key schedule changed; see the module docs"
        );
    }

    #[test]
    fn keys_are_separated() {
        let keys = HandshakeKeys::derive_from_bytes(&bytes32(1), &bytes32(2));
        let all = [
            &keys.confirm_joiner,
            &keys.confirm_initiator,
            &keys.seal_joiner,
            &keys.seal_initiator,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(***a, ***b);
            }
        }
        let h = bytes32(3);
        let joiner = keys.mac(Role::Joiner, &h).unwrap();
        assert!(keys.mac_matches(Role::Joiner, &h, &joiner).unwrap());
        assert!(!keys.mac_matches(Role::Initiator, &h, &joiner).unwrap());
        let sealed = keys.seal(Role::Joiner, 0, &h, b"x").unwrap();
        assert_eq!(
            keys.open(Role::Joiner, 0, &h, &sealed).unwrap().as_slice(),
            b"x"
        );
        assert!(keys.open(Role::Joiner, 1, &h, &sealed).is_none());
        assert!(keys.open(Role::Initiator, 0, &h, &sealed).is_none());
        assert!(keys.open(Role::Joiner, 0, &bytes32(4), &sealed).is_none());
    }
}
