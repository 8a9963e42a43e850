//! The AEADs a [`crate::SessionKeys`] can seal with, their wire ids and their usage limits.
//!
//! Sessions (messages) always use ChaCha20-Poly1305. A transfer's chunk layer may use
//! AES-256-GCM instead, which is several times faster on CPUs with AES and carry-less
//! multiplication instructions; the two ends agree on one per transfer.
//!
//! # Usage limits
//!
//! Each key seals messages of at most [`TransferCipher::max_message_len`] bytes (plaintext plus
//! associated data), so that the bounds below hold; longer ones fail with
//! [`crate::CryptoError::MessageTooLong`]. With `l` the length of such a message in 16-byte
//! blocks and an attacker advantage target of 2^-57 (RFC 9001 §6.6 and Appendix B):
//!
//! * **AES-256-GCM**, messages up to 256 KiB + 256 B (a 256 KiB transfer chunk and its
//!   headers), so `l ≤ 2^14 + 17`. Confidentiality (RFC 9001 B.1.1): `q ≤ 2^35 / l ≈ 2^20.99`
//!   messages per key, so keys are replaced every 2^20 messages. Integrity (RFC 9001 B.1.2,
//!   which applies AES-128-GCM's bound to AES-256-GCM too): `v ≤ 2^64 / l ≈ 2^49.99` forgery
//!   attempts, so the limit is 2^49.
//! * **ChaCha20-Poly1305**, messages up to 1 MiB + 256 B (the largest sealed frame), so
//!   `L' ≤ 2^16 + 17`. No confidentiality limit below 2^64 messages. Integrity
//!   (draft-irtf-cfrg-aead-limits-13 §6.3.2): `v ≤ 2^-57 · 2^103 / (L' + 1) ≈ 2^29.99`, so the
//!   limit is 2^29. (RFC 9001's 2^36 assumes QUIC packets of at most 2^16 bytes.)
//!
//! Failed opens are counted over the whole life of a [`crate::SessionKeys`], across rekeys.

use std::fmt;

/// The AEAD of a transfer's chunk layer. Sessions always use [`Self::ChaCha20Poly1305`].
///
/// On the wire a cipher is its one-byte [`wire_id`](Self::wire_id), which never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransferCipher {
    /// ChaCha20-Poly1305 (RFC 8439): fast everywhere, constant time in software.
    ChaCha20Poly1305,
    /// AES-256-GCM (NIST SP 800-38D, RFC 5116): the faster choice where the CPU has AES and
    /// carry-less multiplication instructions.
    Aes256Gcm,
}

impl TransferCipher {
    /// Every cipher, in the order of their wire ids.
    pub const ALL: [TransferCipher; 2] = [Self::ChaCha20Poly1305, Self::Aes256Gcm];

    /// The stable one-byte id that names the cipher on the wire.
    pub const fn wire_id(self) -> u8 {
        match self {
            Self::ChaCha20Poly1305 => 1,
            Self::Aes256Gcm => 2,
        }
    }

    /// The cipher with this wire id, if this version knows it.
    pub const fn from_wire_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Self::ChaCha20Poly1305),
            2 => Some(Self::Aes256Gcm),
            _ => None,
        }
    }

    /// A short lowercase name (`chacha20-poly1305`, `aes-256-gcm`), also part of the labels
    /// the transfer keys are derived with.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ChaCha20Poly1305 => "chacha20-poly1305",
            Self::Aes256Gcm => "aes-256-gcm",
        }
    }

    /// Whether this CPU has the instructions that make AES-256-GCM fast and constant time
    /// (x86-64: AES-NI and PCLMULQDQ; aarch64: the AES extension, which includes PMULL).
    pub fn aes_hardware() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("aes")
                && std::arch::is_x86_feature_detected!("pclmulqdq")
        }
        #[cfg(target_arch = "aarch64")]
        {
            std::arch::is_aarch64_feature_detected!("aes")
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        {
            false
        }
    }

    /// Every cipher in the order a device prefers them: AES-256-GCM first when
    /// `aes_hardware` (see [`Self::aes_hardware`]), else ChaCha20-Poly1305 first.
    pub fn preference(aes_hardware: bool) -> Vec<TransferCipher> {
        if aes_hardware {
            vec![Self::Aes256Gcm, Self::ChaCha20Poly1305]
        } else {
            vec![Self::ChaCha20Poly1305, Self::Aes256Gcm]
        }
    }

    /// The longest message (plaintext plus associated data) one seal may cover, in bytes.
    pub const fn max_message_len(self) -> usize {
        match self {
            Self::ChaCha20Poly1305 => (1 << 20) + 256,
            Self::Aes256Gcm => (1 << 18) + 256,
        }
    }

    /// After this many failed opens, keys of this cipher refuse to open anything more.
    pub const fn integrity_limit(self) -> u64 {
        match self {
            Self::ChaCha20Poly1305 => 1 << 29,
            Self::Aes256Gcm => 1 << 49,
        }
    }

    /// Keys of this cipher are replaced at least every `2^max_rekey_interval_log2` messages.
    pub const fn max_rekey_interval_log2(self) -> u32 {
        match self {
            Self::ChaCha20Poly1305 => 32,
            Self::Aes256Gcm => 20,
        }
    }
}

impl fmt::Display for TransferCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_ids_are_stable_and_round_trip() {
        assert_eq!(TransferCipher::ChaCha20Poly1305.wire_id(), 1);
        assert_eq!(TransferCipher::Aes256Gcm.wire_id(), 2);
        for cipher in TransferCipher::ALL {
            assert_eq!(TransferCipher::from_wire_id(cipher.wire_id()), Some(cipher));
        }
        assert_eq!(TransferCipher::from_wire_id(0), None);
        assert_eq!(TransferCipher::from_wire_id(3), None);
    }

    #[test]
    fn limits_hold_for_the_longest_message() {
        for cipher in TransferCipher::ALL {
            // Blocks of the longest message, rounded up, plus one for a partial block.
            let l = (cipher.max_message_len() as u64).div_ceil(16) + 1;
            let v = cipher.integrity_limit() as f64;
            match cipher {
                TransferCipher::Aes256Gcm => {
                    let q = (1u64 << cipher.max_rekey_interval_log2()) as f64;
                    assert!(q <= 2f64.powi(35) / l as f64, "confidentiality");
                    assert!(v <= 2f64.powi(64) / l as f64, "integrity");
                }
                TransferCipher::ChaCha20Poly1305 => {
                    assert!(v <= 2f64.powi(46) / (l + 1) as f64, "integrity");
                }
            }
        }
    }

    #[test]
    fn preference_follows_hardware() {
        assert_eq!(
            TransferCipher::preference(true).first(),
            Some(&TransferCipher::Aes256Gcm)
        );
        assert_eq!(
            TransferCipher::preference(false).first(),
            Some(&TransferCipher::ChaCha20Poly1305)
        );
    }
}
