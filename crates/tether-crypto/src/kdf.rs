//! HKDF-SHA256 (RFC 5869), the one key-derivation function of Tether.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;
use crate::lengths::KEY_LEN;

/// The longest output HKDF-SHA256 can give (255 blocks of 32 bytes).
pub const HKDF_MAX_OUTPUT: usize = 255 * KEY_LEN;

/// An HKDF-SHA256 pseudorandom key: the output of HKDF-Extract, the input of HKDF-Expand.
///
/// Wiped from memory on drop; `Debug` shows no bytes.
///
/// ```
/// use tether_crypto::Prk;
///
/// let prk = Prk::extract(b"salt", b"input key material");
/// let mut key = [0u8; 32];
/// prk.expand(&[b"tether/v1/example"], &mut key)?;
/// # Ok::<(), tether_crypto::CryptoError>(())
/// ```
pub struct Prk([u8; KEY_LEN]);

impl Prk {
    /// HKDF-Extract: `PRK = HMAC-SHA256(salt, ikm)`.
    ///
    /// An empty salt is the same as the RFC's "not provided" (32 zero bytes).
    pub fn extract(salt: &[u8], ikm: &[u8]) -> Self {
        Self::extract_multi(salt, &[ikm])
    }

    /// HKDF-Extract over the concatenation of several input parts.
    pub fn extract_multi(salt: &[u8], ikm_parts: &[&[u8]]) -> Self {
        let mut extract = hkdf::HkdfExtract::<Sha256>::new(Some(salt));
        for part in ikm_parts {
            extract.input_ikm(part);
        }
        let (mut prk, _) = extract.finalize();
        let mut bytes = [0u8; KEY_LEN];
        bytes.copy_from_slice(&prk);
        prk.as_mut_slice().zeroize();
        Self(bytes)
    }

    /// Uses 32 uniformly random secret bytes (such as a key derived earlier) as a PRK.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// HKDF-Expand: fills `okm` from this key and the concatenation of the `info` parts.
    ///
    /// Fails only if `okm` is longer than [`HKDF_MAX_OUTPUT`].
    pub fn expand(&self, info: &[&[u8]], okm: &mut [u8]) -> Result<(), CryptoError> {
        // `from_prk` only fails for a key shorter than 32 bytes, which ours never is.
        let hkdf = Hkdf::<Sha256>::from_prk(&self.0)
            .map_err(|_| CryptoError::HkdfLength { len: okm.len() })?;
        hkdf.expand_multi_info(info, okm)
            .map_err(|_| CryptoError::HkdfLength { len: okm.len() })
    }

    /// HKDF-Expand to one 32-byte key; `info` is the concatenation of the parts.
    pub fn expand_key(&self, info: &[&[u8]]) -> [u8; KEY_LEN] {
        let mut okm = [0u8; KEY_LEN];
        // 32 bytes is always within the HKDF limit; on the impossible error the key stays zero
        // and every derived value would visibly mismatch, rather than panic.
        let _ = self.expand(info, &mut okm);
        okm
    }

    /// The raw pseudorandom key, for known-answer tests only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl fmt::Debug for Prk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prk(..)")
    }
}

impl Drop for Prk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for Prk {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn too_long_output_is_an_error_not_a_panic() {
        let prk = Prk::extract(b"", b"ikm");
        let mut okm = vec![0u8; HKDF_MAX_OUTPUT + 1];
        assert_eq!(
            prk.expand(&[b"x"], &mut okm),
            Err(CryptoError::HkdfLength {
                len: HKDF_MAX_OUTPUT + 1
            })
        );
        let mut okm = vec![0u8; HKDF_MAX_OUTPUT];
        prk.expand(&[b"x"], &mut okm).unwrap();
    }

    #[test]
    fn multi_part_inputs_equal_concatenation() {
        let a = Prk::extract_multi(b"salt", &[b"ab", b"cd"]);
        let b = Prk::extract(b"salt", b"abcd");
        assert_eq!(a.danger_to_bytes(), b.danger_to_bytes());
        assert_eq!(a.expand_key(&[b"x", b"y"]), b.expand_key(&[b"xy"]));
    }

    #[test]
    fn debug_shows_no_bytes() {
        assert_eq!(format!("{:?}", Prk::from_bytes([7; 32])), "Prk(..)");
    }
}
