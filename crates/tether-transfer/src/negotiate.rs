//! Which AEAD seals an encrypted transfer's chunks: the sender offers the ciphers it accepts in
//! its order of preference, the receiver picks one and names it in its `Accept`. Sans-IO.
//!
//! On the wire a cipher is its [`TransferCipher::wire_id`] (`"ciphers": [2, 1]` in the offer,
//! `"cipher": 2` in the accept). A list is read with bounded memory whatever its length, and an
//! empty, over-long, duplicated or unknown entry is refused with a [`CipherError`].

use std::fmt;

use serde::de::{IgnoredAny, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tether_crypto::TransferCipher;

/// Most ciphers an offer may list (this version knows two).
pub(crate) const MAX_OFFERED_CIPHERS: usize = 8;

/// What was wrong with an offer's or an answer's cipher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// An encrypted offer listed no cipher.
    #[error("an encrypted offer lists no cipher")]
    Empty,
    /// An offer listed more ciphers than anyone knows.
    #[error("{len} ciphers offered, at most {max} allowed", max = MAX_OFFERED_CIPHERS)]
    TooMany {
        /// How many were listed.
        len: usize,
    },
    /// An offer listed a cipher id this version does not know.
    #[error("unknown cipher id {0}")]
    Unknown(u64),
    /// An offer listed the same cipher twice.
    #[error("cipher {0} offered twice")]
    Duplicate(TransferCipher),
    /// None of the offered ciphers is one this side accepts.
    #[error("no cipher in common")]
    NoneInCommon,
    /// The answer named a cipher the offer did not list (or an unknown id).
    #[error("the answer names cipher id {0}, which was not offered")]
    NotOffered(u64),
    /// An encrypted transfer was accepted without naming a cipher, or a plain one with one.
    #[error("the answer's cipher does not match whether the transfer is encrypted")]
    Mismatch,
}

/// The cipher ids of an offer as read from the wire: at most [`MAX_OFFERED_CIPHERS`] kept,
/// the length counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OfferedCiphers {
    ids: Vec<u64>,
    len: usize,
}

impl OfferedCiphers {
    /// The list a sender offers.
    pub(crate) fn new(ciphers: &[TransferCipher]) -> Self {
        OfferedCiphers {
            ids: ciphers.iter().map(|c| u64::from(c.wire_id())).collect(),
            len: ciphers.len(),
        }
    }

    /// The listed ciphers, in the sender's order; refuses an empty, long, duplicated or
    /// unknown list.
    pub(crate) fn ciphers(&self) -> Result<Vec<TransferCipher>, CipherError> {
        if self.len > MAX_OFFERED_CIPHERS {
            return Err(CipherError::TooMany { len: self.len });
        }
        if self.len == 0 {
            return Err(CipherError::Empty);
        }
        let mut out: Vec<TransferCipher> = Vec::with_capacity(self.ids.len());
        for &id in &self.ids {
            let cipher = u8::try_from(id)
                .ok()
                .and_then(TransferCipher::from_wire_id)
                .ok_or(CipherError::Unknown(id))?;
            if out.contains(&cipher) {
                return Err(CipherError::Duplicate(cipher));
            }
            out.push(cipher);
        }
        Ok(out)
    }

    /// Whether nothing is listed.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Serialize for OfferedCiphers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.ids)
    }
}

impl<'de> Deserialize<'de> for OfferedCiphers {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Ids;
        impl<'de> Visitor<'de> for Ids {
            type Value = OfferedCiphers;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of cipher ids")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OfferedCiphers, A::Error> {
                let mut list = OfferedCiphers::default();
                while list.ids.len() < MAX_OFFERED_CIPHERS {
                    match seq.next_element::<u64>()? {
                        Some(id) => list.ids.push(id),
                        None => {
                            list.len = list.ids.len();
                            return Ok(list);
                        }
                    }
                }
                // Past the cap: only count, keep nothing.
                list.len = list.ids.len();
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    list.len = list.len.saturating_add(1);
                }
                Ok(list)
            }
        }
        deserializer.deserialize_seq(Ids)
    }
}

/// The receiver's pick from the sender's list: the first the receiver `accepts`, in the
/// sender's order, except that a receiver without AES hardware takes ChaCha20-Poly1305 when it
/// was offered (and accepted), since AES-GCM in software is slow there.
pub(crate) fn choose(
    offered: &[TransferCipher],
    accepted: &[TransferCipher],
    aes_hardware: bool,
) -> Result<TransferCipher, CipherError> {
    let usable = |c: &&TransferCipher| accepted.contains(c);
    let chacha = TransferCipher::ChaCha20Poly1305;
    if !aes_hardware && offered.contains(&chacha) && accepted.contains(&chacha) {
        return Ok(chacha);
    }
    offered
        .iter()
        .find(usable)
        .copied()
        .ok_or(CipherError::NoneInCommon)
}

/// The sender's check of the receiver's answer: an encrypted transfer must name one of the
/// offered ciphers, a plain one none.
pub(crate) fn check_answer(
    offered: &[TransferCipher],
    encrypted: bool,
    answer: Option<u64>,
) -> Result<Option<TransferCipher>, CipherError> {
    match (encrypted, answer) {
        (false, None) => Ok(None),
        (true, Some(id)) => u8::try_from(id)
            .ok()
            .and_then(TransferCipher::from_wire_id)
            .filter(|c| offered.contains(c))
            .map(Some)
            .ok_or(CipherError::NotOffered(id)),
        _ => Err(CipherError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const AES: TransferCipher = TransferCipher::Aes256Gcm;
    const CHACHA: TransferCipher = TransferCipher::ChaCha20Poly1305;

    fn read(json: &str) -> Result<Vec<TransferCipher>, CipherError> {
        serde_json::from_str::<OfferedCiphers>(json)
            .unwrap()
            .ciphers()
    }

    #[test]
    fn offers_round_trip_in_order() {
        let list = OfferedCiphers::new(&[AES, CHACHA]);
        let json = serde_json::to_string(&list).unwrap();
        assert_eq!(json, "[2,1]");
        assert_eq!(read(&json).unwrap(), vec![AES, CHACHA]);
        assert_eq!(read("[1]").unwrap(), vec![CHACHA]);
    }

    #[test]
    fn hostile_offers_are_refused() {
        assert_eq!(read("[]"), Err(CipherError::Empty));
        assert_eq!(read("[2,7]"), Err(CipherError::Unknown(7)));
        assert_eq!(read("[0]"), Err(CipherError::Unknown(0)));
        assert_eq!(read("[258]"), Err(CipherError::Unknown(258)));
        assert_eq!(read("[1,2,1]"), Err(CipherError::Duplicate(CHACHA)));
        assert_eq!(
            read("[1,2,3,4,5,6,7,8,9]"),
            Err(CipherError::TooMany { len: 9 })
        );
        // A huge list is counted, not kept.
        let huge = format!("[{}1]", "1,".repeat(200_000));
        let list: OfferedCiphers = serde_json::from_str(&huge).unwrap();
        assert_eq!(list.ids.len(), MAX_OFFERED_CIPHERS);
        assert_eq!(list.ciphers(), Err(CipherError::TooMany { len: 200_001 }));
        // Not numbers at all: a parse error.
        assert!(serde_json::from_str::<OfferedCiphers>(r#"["aes"]"#).is_err());
        assert!(serde_json::from_str::<OfferedCiphers>("[-1]").is_err());
    }

    #[test]
    fn receiver_follows_the_senders_order_with_aes_hardware() {
        assert_eq!(choose(&[AES, CHACHA], &[CHACHA, AES], true), Ok(AES));
        assert_eq!(choose(&[CHACHA, AES], &[AES, CHACHA], true), Ok(CHACHA));
        assert_eq!(choose(&[AES], &[AES, CHACHA], true), Ok(AES));
    }

    #[test]
    fn receiver_without_aes_hardware_prefers_chacha() {
        assert_eq!(choose(&[AES, CHACHA], &[AES, CHACHA], false), Ok(CHACHA));
        // Only AES offered: still AES (slow, but it works).
        assert_eq!(choose(&[AES], &[AES, CHACHA], false), Ok(AES));
        // ChaCha not accepted by the receiver: the sender's order.
        assert_eq!(choose(&[AES, CHACHA], &[AES], false), Ok(AES));
    }

    #[test]
    fn no_common_cipher_is_an_error() {
        assert_eq!(
            choose(&[AES], &[CHACHA], true),
            Err(CipherError::NoneInCommon)
        );
        assert_eq!(
            choose(&[], &[CHACHA], false),
            Err(CipherError::NoneInCommon)
        );
    }

    #[test]
    fn answers_are_checked_against_the_offer() {
        assert_eq!(check_answer(&[AES, CHACHA], true, Some(2)), Ok(Some(AES)));
        assert_eq!(
            check_answer(&[AES, CHACHA], true, Some(1)),
            Ok(Some(CHACHA))
        );
        assert_eq!(
            check_answer(&[AES], true, Some(1)),
            Err(CipherError::NotOffered(1))
        );
        assert_eq!(
            check_answer(&[AES], true, Some(99)),
            Err(CipherError::NotOffered(99))
        );
        assert_eq!(check_answer(&[AES], true, None), Err(CipherError::Mismatch));
        assert_eq!(check_answer(&[], false, None), Ok(None));
        assert_eq!(
            check_answer(&[], false, Some(1)),
            Err(CipherError::Mismatch)
        );
    }
}
