//! The AEADs (ChaCha20-Poly1305, RFC 8439; AES-256-GCM, SP 800-38D) with counter nonces, and
//! the per-epoch key ratchet.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;
use crate::cipher::TransferCipher;
use crate::kdf::Prk;
use crate::labels::REKEY_LABEL;
use crate::lengths::{KEY_LEN, NONCE_LEN, TAG_LEN};

/// The nonce for a frame counter: four zero bytes, then the counter little-endian (as in
/// WireGuard). Keys change every epoch, and a counter is used once per direction per session.
pub(crate) fn nonce_for(counter: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    let (_, tail) = nonce.split_at_mut(NONCE_LEN - 8);
    tail.copy_from_slice(&counter.to_le_bytes());
    nonce
}

/// The key of the next epoch: `HKDF-Expand(PRK = key, "tether/v1/session/rekey")`.
fn next_epoch_key(key: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    Prk::from_bytes(*key).expand_key(&[REKEY_LABEL])
}

/// A keyed AEAD. Each holds its own copy of the key (expanded) and wipes it on drop
/// (the `zeroize` features of `chacha20poly1305` and `aes-gcm`).
enum Aead {
    ChaCha(ChaCha20Poly1305),
    // Boxed: the expanded AES key schedule and GHASH key are several hundred bytes.
    Aes(Box<Aes256Gcm>),
}

impl Aead {
    fn new(cipher: TransferCipher, key: &[u8; KEY_LEN]) -> Self {
        match cipher {
            TransferCipher::ChaCha20Poly1305 => Aead::ChaCha(ChaCha20Poly1305::new(&(*key).into())),
            TransferCipher::Aes256Gcm => Aead::Aes(Box::new(Aes256Gcm::new(&(*key).into()))),
        }
    }

    fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let nonce = Nonce::from(*nonce);
        let tag = match self {
            Aead::ChaCha(cipher) => cipher.encrypt_inout_detached(&nonce, aad, buf.into()),
            Aead::Aes(cipher) => cipher.encrypt_inout_detached(&nonce, aad, buf.into()),
        }
        .map_err(|_| CryptoError::MessageTooLong)?;
        Ok(tag.into())
    }

    /// The tag is checked (in constant time) before anything is decrypted, so on failure `buf`
    /// still holds the ciphertext.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let (nonce, tag) = (Nonce::from(*nonce), Tag::from(*tag));
        match self {
            Aead::ChaCha(cipher) => cipher.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
            Aead::Aes(cipher) => cipher.decrypt_inout_detached(&nonce, aad, buf.into(), &tag),
        }
        .map_err(|_| CryptoError::Authentication)
    }
}

/// The key of one direction in one epoch, ready to seal or open.
pub(crate) struct EpochKey {
    epoch: u64,
    cipher: TransferCipher,
    secret: [u8; KEY_LEN],
    aead: Aead,
}

impl EpochKey {
    pub(crate) fn new(cipher: TransferCipher, epoch: u64, secret: [u8; KEY_LEN]) -> Self {
        Self {
            epoch,
            cipher,
            aead: Aead::new(cipher, &secret),
            secret,
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The key of the following epoch. The caller drops (and so wipes) `self` once it no
    /// longer needs it, which is what makes old epochs unrecoverable.
    pub(crate) fn next(&self) -> Self {
        let mut secret = next_epoch_key(&self.secret);
        let next = Self::new(self.cipher, self.epoch.saturating_add(1), secret);
        secret.zeroize();
        next
    }

    /// The same key under another epoch number; only for [`crate::SessionKeys`]' test hook.
    #[cfg(any(test, feature = "danger"))]
    pub(crate) fn relabelled(&self, epoch: u64) -> Self {
        Self::new(self.cipher, epoch, self.secret)
    }

    pub(crate) fn seal(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        self.aead.seal(&nonce_for(counter), aad, buf)
    }

    pub(crate) fn open(
        &self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.aead.open(&nonce_for(counter), aad, buf, tag)
    }
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ZeroizeOnDrop for EpochKey {}

/// Raw seal with a caller-chosen nonce, for the RFC 8439 and NIST known-answer tests and for
/// benchmarks only. Choosing nonces by hand is how nonces get reused; use
/// [`crate::SessionKeys`].
#[doc(hidden)]
#[cfg(any(test, feature = "danger"))]
pub fn danger_seal_with_nonce(
    cipher: TransferCipher,
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], CryptoError> {
    Aead::new(cipher, key).seal(nonce, aad, buf)
}

/// Raw open with a caller-chosen nonce, for known-answer tests only.
#[doc(hidden)]
#[cfg(any(test, feature = "danger"))]
pub fn danger_open_with_nonce(
    cipher: TransferCipher,
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), CryptoError> {
    Aead::new(cipher, key).open(nonce, aad, buf, tag)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn nonce_layout() {
        assert_eq!(nonce_for(0), [0; 12]);
        assert_eq!(
            nonce_for(0x0102_0304_0506_0708),
            [0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
    }

    #[test]
    fn epoch_key_seals_with_counter_nonce() {
        let key = [3u8; 32];
        let epoch = EpochKey::new(TransferCipher::ChaCha20Poly1305, 0, key);
        let mut a = b"hello".to_vec();
        let tag_a = epoch.seal(5, b"aad", &mut a).unwrap();
        let mut b = b"hello".to_vec();
        let tag_b = danger_seal_with_nonce(
            TransferCipher::ChaCha20Poly1305,
            &key,
            &nonce_for(5),
            b"aad",
            &mut b,
        )
        .unwrap();
        assert_eq!((a, tag_a), (b, tag_b));
    }

    #[test]
    fn ratchet_changes_key_and_counts_epochs() {
        let first = EpochKey::new(TransferCipher::ChaCha20Poly1305, 0, [3u8; 32]);
        let second = first.next();
        assert_eq!(second.epoch(), 1);
        assert_ne!(second.secret, first.secret);
        assert_eq!(second.secret, next_epoch_key(&first.secret));
    }

    #[test]
    fn failed_open_leaves_buffer_untouched() {
        for cipher in TransferCipher::ALL {
            failed_open_leaves_buffer_untouched_with(cipher);
        }
    }

    fn failed_open_leaves_buffer_untouched_with(cipher: TransferCipher) {
        let key = EpochKey::new(cipher, 0, [9u8; 32]);
        let mut buf = b"secret message".to_vec();
        let tag = key.seal(1, b"", &mut buf).unwrap();
        let sealed = buf.clone();
        let mut bad_tag = tag;
        bad_tag[0] ^= 1;
        assert_eq!(
            key.open(1, b"", &mut buf, &bad_tag),
            Err(CryptoError::Authentication)
        );
        assert_eq!(buf, sealed);
        key.open(1, b"", &mut buf, &tag).unwrap();
        assert_eq!(buf, b"secret message");
    }
}
