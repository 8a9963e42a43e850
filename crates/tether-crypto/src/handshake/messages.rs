//! The three handshake messages and their fixed byte layouts.
//!
//! | message | layout | bytes |
//! |---|---|---|
//! | [`HelloMessage`] | `0x04` · responder ephemeral (32) · [count (1..=8) · encoding ids] | 33, or 35–42 |
//! | [`InitMessage`] | `0x05` · initiator ephemeral (32) · confirmation (32) · signature (64) | 129 |
//! | [`InitMessage`] choosing | `0x07` · the same · chosen encoding id, `0` for none (1) | 130 |
//! | [`ResponseMessage`] | `0x06` · confirmation (32) · signature (64) | 97 |
//!
//! The type bytes differ from those of the handshake that had the initiator speak first
//! (`0x01`–`0x03`), so a message of one layout is never taken for the other's.
//!
//! The hello's offer is a trailing field on a stream of its own: a reader that takes only the
//! first 33 bytes (an older build) never sees it. An initiator sends the `0x07` init, and only
//! that, to a responder whose hello offered encodings (choosing `0` when it reads none of them,
//! so the offer it saw is bound all the same), so an older responder, which reads `0x05` only,
//! never gets one. Encoding ids are never `0`.

use tether_identity::Signature;

use crate::{CryptoError, EphemeralPublicKey};

const HELLO_TYPE: u8 = 0x04;
const INIT_TYPE: u8 = 0x05;
const RESPONSE_TYPE: u8 = 0x06;
const INIT_CHOOSING_TYPE: u8 = 0x07;
/// The choice byte of a `0x07` init whose initiator reads none of the offered encodings.
pub(crate) const NONE_CHOSEN: u8 = 0;

/// The encodings a responder reads, offered in its hello: one-byte ids that this crate does not
/// interpret (the wire crate names them), at most [`EncodingOffer::MAX`], in the responder's
/// order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingOffer {
    ids: [u8; EncodingOffer::MAX],
    len: u8,
}

impl EncodingOffer {
    /// The most ids an offer holds.
    pub const MAX: usize = 8;

    /// An offer of `ids`; `None` when there are none, more than [`Self::MAX`], or one is `0`
    /// (which an init uses for "none of these").
    pub fn new(ids: &[u8]) -> Option<Self> {
        if ids.is_empty() || ids.len() > Self::MAX || ids.contains(&NONE_CHOSEN) {
            return None;
        }
        let mut offer = Self {
            ids: [0; Self::MAX],
            len: u8::try_from(ids.len()).ok()?,
        };
        offer.ids.get_mut(..ids.len())?.copy_from_slice(ids);
        Some(offer)
    }

    /// The offered ids, in the responder's order.
    pub fn ids(&self) -> &[u8] {
        self.ids.get(..usize::from(self.len)).unwrap_or_default()
    }

    /// Whether `id` is offered.
    pub fn contains(&self, id: u8) -> bool {
        self.ids().contains(&id)
    }
}

/// Responder → initiator, first: the responder's ephemeral public key, and the encodings it
/// reads (none from an older build).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloMessage {
    pub(crate) ephemeral: EphemeralPublicKey,
    pub(crate) offer: Option<EncodingOffer>,
}

/// Initiator → responder: the initiator's ephemeral key, its key confirmation and its
/// signature over the transcript, and, when the hello offered encodings, the one it chose
/// (`0`: none of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitMessage {
    pub(crate) ephemeral: EphemeralPublicKey,
    pub(crate) confirmation: [u8; 32],
    pub(crate) signature: Signature,
    pub(crate) encoding: Option<u8>,
}

/// Responder → initiator, last: the responder's key confirmation and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMessage {
    pub(crate) confirmation: [u8; 32],
    pub(crate) signature: Signature,
}

impl HelloMessage {
    /// Encoded length in bytes without an offer (what an older build sends and reads).
    pub const LEN: usize = 1 + 32;
    /// The longest encoding: with an offer of [`EncodingOffer::MAX`] ids.
    pub const MAX_LEN: usize = Self::LEN + 1 + EncodingOffer::MAX;

    /// The encodings the responder offered; `None` from an older build.
    pub fn offer(&self) -> Option<&EncodingOffer> {
        self.offer.as_ref()
    }

    /// The encoding: type byte, the ephemeral key, then the offer if any (its count, then the
    /// ids).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::MAX_LEN);
        out.push(HELLO_TYPE);
        out.extend_from_slice(self.ephemeral.as_bytes());
        if let Some(offer) = &self.offer {
            out.push(offer.len);
            out.extend_from_slice(offer.ids());
        }
        out
    }

    /// Decodes a message, checking its type byte and length: 33 bytes, or 34 plus the count
    /// in the 34th (1 to [`EncodingOffer::MAX`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let (base, tail) = bytes.split_at_checked(Self::LEN).unwrap_or((bytes, &[]));
        let mut input = Reader::new(base, HELLO_TYPE, Self::LEN)?;
        let ephemeral = EphemeralPublicKey::from_bytes(input.take()?);
        let offer = match tail.split_first() {
            None => None,
            Some((&count, ids)) => {
                let expected = Self::LEN + 1 + usize::from(count);
                let offer = (usize::from(count) == ids.len())
                    .then(|| EncodingOffer::new(ids))
                    .flatten()
                    .ok_or(CryptoError::MessageLength {
                        expected,
                        actual: bytes.len(),
                    })?;
                Some(offer)
            }
        };
        Ok(Self { ephemeral, offer })
    }
}

impl InitMessage {
    /// Encoded length in bytes without a chosen encoding (type `0x05`).
    pub const LEN: usize = 1 + 32 + 32 + 64;
    /// Encoded length in bytes with a chosen encoding (type `0x07`).
    pub const CHOOSING_LEN: usize = Self::LEN + 1;

    /// The length of the init whose type byte is `message_type`, so a reader knows how much
    /// to read after the first byte; `None` for a byte that starts no init.
    pub fn len_for_type(message_type: u8) -> Option<usize> {
        match message_type {
            INIT_TYPE => Some(Self::LEN),
            INIT_CHOOSING_TYPE => Some(Self::CHOOSING_LEN),
            _ => None,
        }
    }

    /// The encoding the initiator chose from the hello's offer; `None` when it chose none (the
    /// hello offered none, or none the initiator reads).
    pub fn encoding(&self) -> Option<u8> {
        self.encoding.filter(|&id| id != NONE_CHOSEN)
    }

    /// The encoding: type byte, ephemeral key, confirmation, signature, then, when the hello
    /// offered encodings, the choice (type `0x07` instead of `0x05`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::CHOOSING_LEN);
        out.push(match self.encoding {
            None => INIT_TYPE,
            Some(_) => INIT_CHOOSING_TYPE,
        });
        out.extend_from_slice(self.ephemeral.as_bytes());
        out.extend_from_slice(&self.confirmation);
        out.extend_from_slice(&self.signature.to_bytes());
        out.extend(self.encoding);
        out
    }

    /// Decodes a message, checking its type byte and length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let message_type = match bytes.first() {
            Some(&INIT_CHOOSING_TYPE) => INIT_CHOOSING_TYPE,
            _ => INIT_TYPE,
        };
        let len = Self::len_for_type(message_type).unwrap_or(Self::LEN);
        let mut input = Reader::new(bytes, message_type, len)?;
        Ok(Self {
            ephemeral: EphemeralPublicKey::from_bytes(input.take()?),
            confirmation: input.take()?,
            signature: Signature::from_bytes(&input.take()?),
            encoding: match message_type {
                INIT_CHOOSING_TYPE => Some(u8::from_be_bytes(input.take()?)),
                _ => None,
            },
        })
    }
}

impl ResponseMessage {
    /// Encoded length in bytes.
    pub const LEN: usize = 1 + 32 + 64;

    /// The encoding: type byte, confirmation, signature.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = Writer::<{ Self::LEN }>::new(RESPONSE_TYPE);
        out.put(&self.confirmation);
        out.put(&self.signature.to_bytes());
        out.finish()
    }

    /// Decodes a message, checking its type byte and length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut input = Reader::new(bytes, RESPONSE_TYPE, Self::LEN)?;
        Ok(Self {
            confirmation: input.take()?,
            signature: Signature::from_bytes(&input.take()?),
        })
    }
}

/// Fills a fixed-size message front to back.
struct Writer<const N: usize> {
    bytes: [u8; N],
    at: usize,
}

impl<const N: usize> Writer<N> {
    fn new(message_type: u8) -> Self {
        let mut bytes = [0u8; N];
        if let Some(first) = bytes.first_mut() {
            *first = message_type;
        }
        Self { bytes, at: 1 }
    }

    fn put(&mut self, part: &[u8]) {
        let end = self.at + part.len();
        if let Some(slot) = self.bytes.get_mut(self.at..end) {
            slot.copy_from_slice(part);
        }
        self.at = end;
    }

    fn finish(self) -> [u8; N] {
        debug_assert_eq!(self.at, N, "message layout fills its buffer exactly");
        self.bytes
    }
}

/// Reads a message after checking its type byte and exact length.
struct Reader<'a> {
    rest: &'a [u8],
    expected_len: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], message_type: u8, len: usize) -> Result<Self, CryptoError> {
        let length_error = CryptoError::MessageLength {
            expected: len,
            actual: bytes.len(),
        };
        let (&found, rest) = bytes.split_first().ok_or(length_error.clone())?;
        if found != message_type {
            return Err(CryptoError::MessageType {
                expected: message_type,
                found,
            });
        }
        if bytes.len() != len {
            return Err(length_error);
        }
        Ok(Self {
            rest,
            expected_len: len,
        })
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], CryptoError> {
        let (head, tail) =
            self.rest
                .split_first_chunk::<N>()
                .ok_or(CryptoError::MessageLength {
                    expected: self.expected_len,
                    actual: 0,
                })?;
        self.rest = tail;
        Ok(*head)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn init() -> InitMessage {
        InitMessage {
            ephemeral: EphemeralPublicKey::from_bytes([1; 32]),
            confirmation: [2; 32],
            signature: Signature::from_bytes(&[3; 64]),
            encoding: None,
        }
    }

    #[test]
    fn layouts_round_trip() {
        let hello = HelloMessage {
            ephemeral: EphemeralPublicKey::from_bytes([7; 32]),
            offer: None,
        };
        let bytes = hello.to_bytes();
        assert_eq!(bytes[0], 0x04);
        assert_eq!(&bytes[1..], &[7; 32]);
        assert_eq!(HelloMessage::from_bytes(&bytes).unwrap(), hello);

        let bytes = init().to_bytes();
        assert_eq!(bytes[0], 0x05);
        assert_eq!(&bytes[1..33], &[1; 32]);
        assert_eq!(&bytes[33..65], &[2; 32]);
        assert_eq!(&bytes[65..], &[3; 64]);
        assert_eq!(InitMessage::from_bytes(&bytes).unwrap(), init());

        let response = ResponseMessage {
            confirmation: [4; 32],
            signature: Signature::from_bytes(&[5; 64]),
        };
        let bytes = response.to_bytes();
        assert_eq!(bytes[0], 0x06);
        assert_eq!(&bytes[1..33], &[4; 32]);
        assert_eq!(&bytes[33..], &[5; 64]);
        assert_eq!(ResponseMessage::from_bytes(&bytes).unwrap(), response);
    }

    #[test]
    fn the_offer_and_the_choice_are_trailing_fields() {
        let hello = HelloMessage {
            ephemeral: EphemeralPublicKey::from_bytes([7; 32]),
            offer: EncodingOffer::new(&[2, 1]),
        };
        let bytes = hello.to_bytes();
        assert_eq!(bytes.len(), 36);
        assert_eq!(&bytes[33..], &[2, 2, 1]);
        assert_eq!(HelloMessage::from_bytes(&bytes).unwrap(), hello);
        // What an older build reads: the first 33 bytes, a hello without an offer.
        let old = HelloMessage::from_bytes(&bytes[..33]).unwrap();
        assert_eq!(old.offer(), None);
        // A count that does not match what follows, zero, or over the maximum.
        for bad in [
            &[2, 2][..],
            &[1, 2, 1],
            &[0],
            &[9, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ] {
            let mut long = bytes[..33].to_vec();
            long.extend_from_slice(bad);
            assert!(HelloMessage::from_bytes(&long).is_err(), "{bad:?}");
        }
        assert!(EncodingOffer::new(&[]).is_none());
        assert!(EncodingOffer::new(&[1; 9]).is_none());
        assert!(EncodingOffer::new(&[2, 0]).is_none());
        let mut zero_id = bytes.clone();
        zero_id[35] = 0;
        assert!(HelloMessage::from_bytes(&zero_id).is_err());

        let choosing = InitMessage {
            encoding: Some(2),
            ..init()
        };
        let bytes = choosing.to_bytes();
        assert_eq!(bytes.len(), InitMessage::CHOOSING_LEN);
        assert_eq!((bytes[0], bytes[129]), (0x07, 2));
        assert_eq!(InitMessage::len_for_type(bytes[0]), Some(130));
        assert_eq!(InitMessage::from_bytes(&bytes).unwrap(), choosing);
        assert!(InitMessage::from_bytes(&bytes[..129]).is_err());
        assert_eq!(InitMessage::len_for_type(0x05), Some(129));
        assert_eq!(InitMessage::len_for_type(0x06), None);
    }

    #[test]
    fn wrong_type_and_length_are_errors() {
        let bytes = init().to_bytes();
        assert_eq!(
            HelloMessage::from_bytes(&bytes),
            Err(CryptoError::MessageType {
                expected: 0x04,
                found: 0x05
            })
        );
        assert_eq!(
            InitMessage::from_bytes(&bytes[..128]),
            Err(CryptoError::MessageLength {
                expected: 129,
                actual: 128
            })
        );
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(InitMessage::from_bytes(&long).is_err());
        assert_eq!(
            ResponseMessage::from_bytes(&[]),
            Err(CryptoError::MessageLength {
                expected: 97,
                actual: 0
            })
        );
        // The first handshake's layouts (type bytes 0x01-0x03) are not taken.
        let mut old_init = [0u8; 33];
        old_init[0] = 0x01;
        assert!(HelloMessage::from_bytes(&old_init).is_err());
    }
}
