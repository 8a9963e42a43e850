//! The three handshake messages and their fixed byte layouts.
//!
//! | message | layout | bytes |
//! |---|---|---|
//! | [`HelloMessage`] | `0x04` · responder ephemeral (32) | 33 |
//! | [`InitMessage`] | `0x05` · initiator ephemeral (32) · confirmation (32) · signature (64) | 129 |
//! | [`ResponseMessage`] | `0x06` · confirmation (32) · signature (64) | 97 |
//!
//! The type bytes differ from those of the handshake that had the initiator speak first
//! (`0x01`–`0x03`), so a message of one layout is never taken for the other's.

use tether_identity::Signature;

use crate::{CryptoError, EphemeralPublicKey};

const HELLO_TYPE: u8 = 0x04;
const INIT_TYPE: u8 = 0x05;
const RESPONSE_TYPE: u8 = 0x06;

/// Responder → initiator, first: the responder's ephemeral public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloMessage {
    pub(crate) ephemeral: EphemeralPublicKey,
}

/// Initiator → responder: the initiator's ephemeral key, its key confirmation and its
/// signature over the transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitMessage {
    pub(crate) ephemeral: EphemeralPublicKey,
    pub(crate) confirmation: [u8; 32],
    pub(crate) signature: Signature,
}

/// Responder → initiator, last: the responder's key confirmation and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseMessage {
    pub(crate) confirmation: [u8; 32],
    pub(crate) signature: Signature,
}

impl HelloMessage {
    /// Encoded length in bytes.
    pub const LEN: usize = 1 + 32;

    /// The encoding: type byte, then the ephemeral key.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = Writer::<{ Self::LEN }>::new(HELLO_TYPE);
        out.put(self.ephemeral.as_bytes());
        out.finish()
    }

    /// Decodes a message, checking its type byte and length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut input = Reader::new(bytes, HELLO_TYPE, Self::LEN)?;
        Ok(Self {
            ephemeral: EphemeralPublicKey::from_bytes(input.take()?),
        })
    }
}

impl InitMessage {
    /// Encoded length in bytes.
    pub const LEN: usize = 1 + 32 + 32 + 64;

    /// The encoding: type byte, ephemeral key, confirmation, signature.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = Writer::<{ Self::LEN }>::new(INIT_TYPE);
        out.put(self.ephemeral.as_bytes());
        out.put(&self.confirmation);
        out.put(&self.signature.to_bytes());
        out.finish()
    }

    /// Decodes a message, checking its type byte and length.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut input = Reader::new(bytes, INIT_TYPE, Self::LEN)?;
        Ok(Self {
            ephemeral: EphemeralPublicKey::from_bytes(input.take()?),
            confirmation: input.take()?,
            signature: Signature::from_bytes(&input.take()?),
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
        }
    }

    #[test]
    fn layouts_round_trip() {
        let hello = HelloMessage {
            ephemeral: EphemeralPublicKey::from_bytes([7; 32]),
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
