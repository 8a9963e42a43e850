//! The key file `device.key`: its byte format, the Argon2id sealing, and checks. No IO here.
//!
//! Every data directory has one key file. It says where the device's two secrets (the Ed25519
//! device key and the 32-byte storage key of `secrets.redb`) live, and holds them unless they
//! are in the OS keychain:
//!
//! ```text
//! offset  size  field
//!      0    18  magic "tether-device-key\n"
//!     18     1  format version (1)
//!     19     1  kind: 1 = OS keychain, 2 = passphrase (Argon2id), 3 = unprotected
//!     20    32  node id (public key) of the device key
//!     52     …  kind-specific body:
//!               keychain:    16  account id (the keychain entry is "tether" / "device-key-<hex>")
//!               passphrase:   4  Argon2id memory in KiB (u32 LE)
//!                             4  Argon2id passes (u32 LE)
//!                             4  Argon2id lanes (u32 LE)
//!                            16  salt (random)
//!                            12  nonce (random)
//!                            64  ChaCha20-Poly1305 ciphertext of the secrets
//!                            16  tag; the associated data is every byte before the ciphertext
//!               unprotected: 64  the secrets in the clear
//!    end-32   32  SHA-256 of every byte before it
//! ```
//!
//! The secrets are 64 bytes: the device key's 32 secret bytes, then the storage key. The
//! checksum tells a damaged file ([`KeyError::Corrupt`]) from a wrong passphrase
//! ([`KeyError::WrongPassphrase`]); the node id lets every kind check that the secret it
//! found is this device's key.

use std::path::Path;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::KeyError;

const MAGIC: &[u8; 18] = b"tether-device-key\n";
const VERSION: u8 = 1;
const KIND_KEYCHAIN: u8 = 1;
const KIND_PASSPHRASE: u8 = 2;
const KIND_UNPROTECTED: u8 = 3;
const HEADER_LEN: usize = MAGIC.len() + 2 + 32;
const CHECKSUM_LEN: usize = 32;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Length of the keychain account id.
pub(crate) const ACCOUNT_ID_LEN: usize = 16;
/// Length of the secrets: device key, then storage key.
pub(crate) const SECRETS_LEN: usize = 64;

/// Argon2id parameters for the passphrase-protected key file.
///
/// The default is the second recommended option of RFC 9106 §4 (for when 2 GiB of memory is
/// too much): 64 MiB of memory, 3 passes, 4 lanes, with a 16-byte random salt and a 32-byte
/// output. Deriving the key takes a fraction of a second on a laptop, once per start. The
/// parameters are stored in the file, so a later Tether can raise the default and still read
/// older files. Values read from a file must lie within [`Self::MAX_MEMORY_KIB`],
/// [`Self::MAX_PASSES`] and [`Self::MAX_LANES`], so a tampered file cannot make start-up
/// allocate unbounded memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub passes: u32,
    /// Degree of parallelism (computed one lane after another in this build).
    pub lanes: u32,
}

impl Argon2Params {
    /// RFC 9106 §4, second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const RFC_9106_SECOND: Self = Self {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 4,
    };
    /// The least memory a new key file is sealed with: 19 MiB (OWASP's minimum for Argon2id).
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// The fewest passes a new key file is sealed with (OWASP's minimum with 19 MiB).
    pub const MIN_PASSES: u32 = 2;
    /// The most memory a key file may ask for: 1 GiB.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most passes a key file may ask for.
    pub const MAX_PASSES: u32 = 64;
    /// The most lanes a key file may ask for.
    pub const MAX_LANES: u32 = 64;

    /// These parameters, raised to [`Self::MIN_MEMORY_KIB`] and [`Self::MIN_PASSES`] where
    /// they are below, and capped at the maxima: what a new file is sealed with.
    pub fn clamped(self) -> Self {
        Self {
            memory_kib: self
                .memory_kib
                .clamp(Self::MIN_MEMORY_KIB, Self::MAX_MEMORY_KIB),
            passes: self.passes.clamp(Self::MIN_PASSES, Self::MAX_PASSES),
            lanes: self.lanes.clamp(1, Self::MAX_LANES),
        }
    }

    fn within_limits(self) -> bool {
        self.memory_kib <= Self::MAX_MEMORY_KIB
            && (1..=Self::MAX_PASSES).contains(&self.passes)
            && (1..=Self::MAX_LANES).contains(&self.lanes)
    }

    fn derive(self, passphrase: &str, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let params = argon2::Params::new(self.memory_kib, self.passes, self.lanes, Some(32))
            .map_err(KeyError::Argon2)?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.as_bytes(), salt, key.as_mut_slice())
            .map_err(KeyError::Argon2)?;
        Ok(key)
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::RFC_9106_SECOND
    }
}

/// Where the file says the secrets are, with what is needed to get them.
pub(crate) enum KeyFileBody {
    /// In the OS keychain under this account id.
    Keychain { account_id: [u8; ACCOUNT_ID_LEN] },
    /// Sealed under a passphrase.
    Passphrase {
        params: Argon2Params,
        salt: [u8; SALT_LEN],
        nonce: [u8; NONCE_LEN],
        /// Ciphertext then tag.
        sealed: [u8; SECRETS_LEN + TAG_LEN],
        /// Every byte before the ciphertext, the associated data.
        aad: Vec<u8>,
    },
    /// In the clear.
    Unprotected {
        secrets: Zeroizing<[u8; SECRETS_LEN]>,
    },
}

/// A parsed key file.
pub(crate) struct KeyFile {
    pub(crate) node_id: [u8; 32],
    pub(crate) body: KeyFileBody,
}

impl KeyFile {
    /// Parses and checks a key file's bytes.
    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Self, KeyError> {
        let corrupt = |reason| KeyError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let (content, checksum) = bytes
            .split_last_chunk::<CHECKSUM_LEN>()
            .ok_or(corrupt("too short"))?;
        let mut reader = Reader(content);
        if reader.take::<18>() != Some(MAGIC) {
            return Err(corrupt("not a Tether key file"));
        }
        if Sha256::digest(content).as_slice() != checksum.as_slice() {
            return Err(corrupt("checksum mismatch"));
        }
        let [version, kind] = *reader.take::<2>().ok_or(corrupt("too short"))?;
        if version != VERSION {
            return Err(KeyError::UnsupportedVersion {
                path: path.to_owned(),
                found: version,
                supported: VERSION,
            });
        }
        let node_id = *reader.take::<32>().ok_or(corrupt("too short"))?;
        let body = match kind {
            KIND_KEYCHAIN => KeyFileBody::Keychain {
                account_id: *reader.take().ok_or(corrupt("too short"))?,
            },
            KIND_PASSPHRASE => {
                let params = Argon2Params {
                    memory_kib: reader.u32().ok_or(corrupt("too short"))?,
                    passes: reader.u32().ok_or(corrupt("too short"))?,
                    lanes: reader.u32().ok_or(corrupt("too short"))?,
                };
                if !params.within_limits() {
                    return Err(corrupt("Argon2id parameters out of range"));
                }
                let salt = *reader.take().ok_or(corrupt("too short"))?;
                let nonce = *reader.take().ok_or(corrupt("too short"))?;
                let aad_len = content.len() - reader.0.len();
                let sealed = *reader.take().ok_or(corrupt("too short"))?;
                KeyFileBody::Passphrase {
                    params,
                    salt,
                    nonce,
                    sealed,
                    aad: content.get(..aad_len).unwrap_or_default().to_vec(),
                }
            }
            KIND_UNPROTECTED => KeyFileBody::Unprotected {
                secrets: Zeroizing::new(*reader.take().ok_or(corrupt("too short"))?),
            },
            _ => return Err(corrupt("unknown storage kind")),
        };
        if !reader.0.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        Ok(Self { node_id, body })
    }

    /// The bytes of a keychain reference file.
    pub(crate) fn encode_keychain(
        node_id: &[u8; 32],
        account_id: &[u8; ACCOUNT_ID_LEN],
    ) -> Vec<u8> {
        let mut out = header(KIND_KEYCHAIN, node_id);
        out.extend_from_slice(account_id);
        finish(out)
    }

    /// The bytes of an unprotected key file. The result holds the secrets.
    pub(crate) fn encode_unprotected(
        node_id: &[u8; 32],
        secrets: &[u8; SECRETS_LEN],
    ) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(HEADER_LEN + SECRETS_LEN + CHECKSUM_LEN));
        out.extend_from_slice(&header(KIND_UNPROTECTED, node_id));
        out.extend_from_slice(secrets);
        let checksum = Sha256::digest(out.as_slice());
        out.extend_from_slice(&checksum);
        out
    }

    /// The bytes of a passphrase-protected key file. `random` supplies the salt and nonce.
    pub(crate) fn encode_passphrase(
        node_id: &[u8; 32],
        secrets: &[u8; SECRETS_LEN],
        passphrase: &str,
        params: Argon2Params,
        random: [u8; SALT_LEN + NONCE_LEN],
    ) -> Result<Vec<u8>, KeyError> {
        let (salt, nonce) = random.split_at(SALT_LEN);
        let salt: [u8; SALT_LEN] = salt.try_into().unwrap_or_default();
        let nonce: [u8; NONCE_LEN] = nonce.try_into().unwrap_or_default();
        let mut out = header(KIND_PASSPHRASE, node_id);
        for value in [params.memory_kib, params.passes, params.lanes] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        let key = params.derive(passphrase, &salt)?;
        let mut buffer = Zeroizing::new(*secrets);
        let tag = match ChaCha20Poly1305::new(&(*key).into()).encrypt_inout_detached(
            &Nonce::from(nonce),
            &out,
            buffer.as_mut_slice().into(),
        ) {
            Ok(tag) => tag,
            // ChaCha20-Poly1305 fails only for messages longer than 256 GiB.
            Err(_) => unreachable!("sealing 64 bytes cannot fail"),
        };
        out.extend_from_slice(buffer.as_slice());
        out.extend_from_slice(&tag);
        Ok(finish(out))
    }
}

impl KeyFileBody {
    /// Opens a passphrase-sealed body; `None` if the passphrase (or the file) is wrong.
    pub(crate) fn open_with_passphrase(
        &self,
        passphrase: &str,
    ) -> Result<Option<Zeroizing<[u8; SECRETS_LEN]>>, KeyError> {
        let Self::Passphrase {
            params,
            salt,
            nonce,
            sealed,
            aad,
        } = self
        else {
            return Ok(None);
        };
        let key = params.derive(passphrase, salt)?;
        let (ciphertext, tag) = sealed.split_at(SECRETS_LEN);
        let mut secrets = Zeroizing::new([0u8; SECRETS_LEN]);
        secrets.copy_from_slice(ciphertext);
        let tag: [u8; TAG_LEN] = tag.try_into().unwrap_or_default();
        let opened = ChaCha20Poly1305::new(&(*key).into()).decrypt_inout_detached(
            &Nonce::from(*nonce),
            aad,
            secrets.as_mut_slice().into(),
            &Tag::from(tag),
        );
        Ok(opened.is_ok().then_some(secrets))
    }
}

fn header(kind: u8, node_id: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[VERSION, kind]);
    out.extend_from_slice(node_id);
    out
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let checksum = Sha256::digest(&out);
    out.extend_from_slice(&checksum);
    out
}

/// Reads fixed-size fields front to back.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Option<&'a [u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(|bytes| u32::from_le_bytes(*bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    fn path() -> &'static Path {
        Path::new("/data/device.key")
    }

    #[test]
    fn unprotected_round_trip() {
        let bytes = KeyFile::encode_unprotected(&[1; 32], &[2; 64]);
        assert_eq!(bytes.len(), HEADER_LEN + SECRETS_LEN + CHECKSUM_LEN);
        let file = KeyFile::decode(path(), &bytes).unwrap();
        assert_eq!(file.node_id, [1; 32]);
        let KeyFileBody::Unprotected { secrets } = file.body else {
            panic!("wrong kind")
        };
        assert_eq!(*secrets, [2; 64]);
    }

    #[test]
    fn keychain_round_trip() {
        let bytes = KeyFile::encode_keychain(&[1; 32], &[9; 16]);
        let file = KeyFile::decode(path(), &bytes).unwrap();
        let KeyFileBody::Keychain { account_id } = file.body else {
            panic!("wrong kind")
        };
        assert_eq!(account_id, [9; 16]);
    }

    #[test]
    fn passphrase_round_trip_and_wrong_passphrase() {
        let bytes =
            KeyFile::encode_passphrase(&[1; 32], &[2; 64], "hunter2", FAST, [7; 28]).unwrap();
        // The secrets do not appear in the file.
        assert!(!bytes.windows(64).any(|w| w == [2; 64]));
        let file = KeyFile::decode(path(), &bytes).unwrap();
        let secrets = file.body.open_with_passphrase("hunter2").unwrap().unwrap();
        assert_eq!(*secrets, [2; 64]);
        assert!(file.body.open_with_passphrase("hunter3").unwrap().is_none());
    }

    #[test]
    fn tampered_parameters_do_not_open() {
        let mut bytes =
            KeyFile::encode_passphrase(&[1; 32], &[2; 64], "pw", FAST, [7; 28]).unwrap();
        // Change the pass count and fix the checksum, as an attacker could.
        bytes[HEADER_LEN + 4] = 2;
        let len = bytes.len();
        let checksum = Sha256::digest(&bytes[..len - 32]);
        bytes[len - 32..].copy_from_slice(&checksum);
        let file = KeyFile::decode(path(), &bytes).unwrap();
        assert!(file.body.open_with_passphrase("pw").unwrap().is_none());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let bytes = KeyFile::encode_unprotected(&[1; 32], &[2; 64]);
        for index in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[index] ^= 0x10;
            assert!(
                matches!(
                    KeyFile::decode(path(), &damaged),
                    Err(KeyError::Corrupt { .. })
                ),
                "flip at {index} not detected"
            );
        }
    }

    #[test]
    fn truncation_and_garbage_are_corrupt() {
        let bytes = KeyFile::encode_unprotected(&[1; 32], &[2; 64]);
        for len in 0..bytes.len() {
            assert!(matches!(
                KeyFile::decode(path(), &bytes[..len]),
                Err(KeyError::Corrupt { .. })
            ));
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(matches!(
            KeyFile::decode(path(), &longer),
            Err(KeyError::Corrupt { .. })
        ));
    }

    #[test]
    fn newer_version_is_reported_as_such() {
        let mut bytes = KeyFile::encode_keychain(&[1; 32], &[9; 16]);
        bytes[18] = 2;
        let len = bytes.len();
        let checksum = Sha256::digest(&bytes[..len - 32]);
        bytes[len - 32..].copy_from_slice(&checksum);
        assert!(matches!(
            KeyFile::decode(path(), &bytes),
            Err(KeyError::UnsupportedVersion { found: 2, .. })
        ));
    }

    #[test]
    fn out_of_range_parameters_are_refused_before_deriving() {
        let huge = Argon2Params {
            memory_kib: u32::MAX,
            passes: 1,
            lanes: 1,
        };
        let mut bytes =
            KeyFile::encode_passphrase(&[1; 32], &[2; 64], "pw", FAST, [7; 28]).unwrap();
        bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&huge.memory_kib.to_le_bytes());
        let len = bytes.len();
        let checksum = Sha256::digest(&bytes[..len - 32]);
        bytes[len - 32..].copy_from_slice(&checksum);
        assert!(matches!(
            KeyFile::decode(path(), &bytes),
            Err(KeyError::Corrupt {
                reason: "Argon2id parameters out of range",
                ..
            })
        ));
    }

    #[test]
    fn argon2id_known_answer() {
        // From the reference implementation's test suite (phc-winner-argon2 src/test.c,
        // Argon2id v0x13, t = 2, m = 2^16 KiB, p = 1, "password", "somesalt"): the same call
        // this file makes, so a change of algorithm, version or parameter order fails here.
        let params = Argon2Params {
            memory_kib: 1 << 16,
            passes: 2,
            lanes: 1,
        };
        let key = params.derive("password", b"somesalt").unwrap();
        assert_eq!(
            hex(&*key),
            "09316115d5cf24ed5a15a31a3ba326e5cf32edc24702987c02b6566f61913cf7"
        );
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
