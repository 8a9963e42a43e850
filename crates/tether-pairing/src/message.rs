//! The pairing messages and their binary encoding.
//!
//! Every message starts with the same 18 bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | protocol version, [`PROTOCOL_VERSION`] |
//! | 1 | message kind, see [`MessageKind`] |
//! | 16 | session id, chosen at random by the joiner |
//!
//! then, by kind (`u16` lengths are big-endian):
//!
//! | kind | body |
//! |---|---|
//! | 1 `Hello` (joiner → initiator) | credential kind (1 code, 2 ticket), slot `u16`, SPAKE2 message (33) |
//! | 2 `Reply` (initiator → joiner) | SPAKE2 message (33) |
//! | 3 `JoinerConfirm` | MAC (32), sealed length `u16`, sealed joiner device info |
//! | 4 `InitiatorConfirm` | MAC (32), sealed length `u16`, sealed initiator device info and signature |
//! | 5 `JoinerSignature` | sealed joiner signature (80) |
//! | 6 `Abort` (either way) | reason (1) |
//!
//! Decoding checks the total length against [`MAX_MESSAGE_LEN`] before anything else, every
//! field's length and range, and that nothing follows the message. The encoding is canonical:
//! a byte string that decodes re-encodes to itself, which the fuzz target checks.

use std::fmt;

use crate::cursor::{ByteReader, Truncated};
use crate::kinds::{AbortReason, CredentialKind, MessageKind};
use crate::{MessageError, Slot};

/// The pairing protocol version this crate speaks; the ALPN is `tether/pairing/1`.
pub const PROTOCOL_VERSION: u8 = 1;
/// No pairing message is longer than this.
pub const MAX_MESSAGE_LEN: usize = 1280;
/// A SPAKE2 message: a side byte and a compressed Edwards point.
pub(crate) const PAKE_MESSAGE_LEN: usize = 33;
/// A key-confirmation MAC (HMAC-SHA256).
pub(crate) const MAC_LEN: usize = 32;
/// The ChaCha20-Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// Longest sealed payload (device info and signature, plus the tag).
pub(crate) const MAX_SEALED_LEN: usize = 1200;
/// A sealed Ed25519 signature.
pub(crate) const SEALED_SIGNATURE_LEN: usize = 64 + TAG_LEN;

const HEADER_LEN: usize = 2 + SessionId::LEN;

/// A handshake's id: 16 random bytes chosen by the joiner, carried by every message and bound
/// into the transcript, so a message from another session is refused.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; SessionId::LEN]);

impl SessionId {
    /// Length in bytes.
    pub const LEN: usize = 16;

    pub(crate) fn from_bytes(bytes: [u8; Self::LEN]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// One pairing message: a session id and a body.
///
/// The state machines make and read these; a transport only moves the bytes of
/// [`PairingMessage::to_bytes`] and may use [`PairingMessage::from_bytes`] to look at the kind
/// and session id (for logs or routing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingMessage {
    pub(crate) session: SessionId,
    pub(crate) body: Body,
}

/// The kind-specific part of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    Hello {
        credential: CredentialKind,
        slot: Slot,
        pake: [u8; PAKE_MESSAGE_LEN],
    },
    Reply {
        pake: [u8; PAKE_MESSAGE_LEN],
    },
    JoinerConfirm {
        mac: [u8; MAC_LEN],
        sealed: Vec<u8>,
    },
    InitiatorConfirm {
        mac: [u8; MAC_LEN],
        sealed: Vec<u8>,
    },
    JoinerSignature {
        sealed: [u8; SEALED_SIGNATURE_LEN],
    },
    Abort {
        reason: AbortReason,
    },
}

impl PairingMessage {
    pub(crate) fn new(session: SessionId, body: Body) -> Self {
        Self { session, body }
    }

    /// The session this message belongs to.
    pub fn session_id(&self) -> SessionId {
        self.session
    }

    /// Which message this is.
    pub fn kind(&self) -> MessageKind {
        match self.body {
            Body::Hello { .. } => MessageKind::Hello,
            Body::Reply { .. } => MessageKind::Reply,
            Body::JoinerConfirm { .. } => MessageKind::JoinerConfirm,
            Body::InitiatorConfirm { .. } => MessageKind::InitiatorConfirm,
            Body::JoinerSignature { .. } => MessageKind::JoinerSignature,
            Body::Abort { .. } => MessageKind::Abort,
        }
    }

    /// The reason, if this is an abort.
    pub fn abort_reason(&self) -> Option<AbortReason> {
        match self.body {
            Body::Abort { reason } => Some(reason),
            _ => None,
        }
    }

    /// The encoding; never longer than [`MAX_MESSAGE_LEN`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + PAKE_MESSAGE_LEN);
        out.push(PROTOCOL_VERSION);
        out.push(self.kind().byte());
        out.extend_from_slice(self.session.as_bytes());
        match &self.body {
            Body::Hello {
                credential,
                slot,
                pake,
            } => {
                out.push(credential.byte());
                out.extend_from_slice(&slot.index().to_be_bytes());
                out.extend_from_slice(pake);
            }
            Body::Reply { pake } => out.extend_from_slice(pake),
            Body::JoinerConfirm { mac, sealed } | Body::InitiatorConfirm { mac, sealed } => {
                out.extend_from_slice(mac);
                // Constructors keep `sealed` within MAX_SEALED_LEN, far below u16::MAX.
                let len = u16::try_from(sealed.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(sealed);
            }
            Body::JoinerSignature { sealed } => out.extend_from_slice(sealed),
            Body::Abort { reason } => out.push(reason.byte()),
        }
        out
    }

    /// Decodes one message, refusing anything not produced by [`Self::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(MessageError::TooLong {
                len: bytes.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let mut reader = ByteReader::new(bytes);
        let version = reader.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(MessageError::UnsupportedVersion(version));
        }
        let kind = reader.u8()?;
        let session = SessionId(reader.array()?);
        let body = match kind {
            1 => Body::Hello {
                credential: CredentialKind::from_byte(reader.u8()?)
                    .ok_or(MessageError::InvalidField("credential kind"))?,
                slot: Slot::from_index(reader.u16()?).ok_or(MessageError::InvalidField("slot"))?,
                pake: reader.array()?,
            },
            2 => Body::Reply {
                pake: reader.array()?,
            },
            3 => {
                let (mac, sealed) = read_confirm(&mut reader)?;
                Body::JoinerConfirm { mac, sealed }
            }
            4 => {
                let (mac, sealed) = read_confirm(&mut reader)?;
                Body::InitiatorConfirm { mac, sealed }
            }
            5 => Body::JoinerSignature {
                sealed: reader.array()?,
            },
            6 => Body::Abort {
                reason: AbortReason::from_byte(reader.u8()?)
                    .ok_or(MessageError::InvalidField("abort reason"))?,
            },
            other => return Err(MessageError::UnknownKind(other)),
        };
        if !reader.is_empty() {
            return Err(MessageError::TrailingBytes);
        }
        Ok(Self { session, body })
    }

    /// The session id of bytes that may not decode as a whole, so an abort can name it.
    pub(crate) fn session_hint(bytes: &[u8]) -> Option<SessionId> {
        let mut reader = ByteReader::new(bytes);
        reader.take(2).ok()?;
        reader.array().ok().map(SessionId)
    }
}

fn read_confirm(reader: &mut ByteReader<'_>) -> Result<([u8; MAC_LEN], Vec<u8>), MessageError> {
    let mac = reader.array()?;
    let len = usize::from(reader.u16()?);
    if !(TAG_LEN < len && len <= MAX_SEALED_LEN) {
        return Err(MessageError::InvalidField("sealed payload length"));
    }
    Ok((mac, reader.take(len)?.to_vec()))
}

impl From<Truncated> for MessageError {
    fn from(_: Truncated) -> Self {
        Self::Truncated
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn body() -> impl Strategy<Value = Body> {
        let pake = any::<[u8; 33]>();
        let mac = any::<[u8; 32]>();
        let sealed = proptest::collection::vec(any::<u8>(), TAG_LEN + 1..=MAX_SEALED_LEN);
        prop_oneof![
            (any::<bool>(), 0u16..2048, pake).prop_map(|(ticket, slot, pake)| Body::Hello {
                credential: if ticket {
                    CredentialKind::Ticket
                } else {
                    CredentialKind::Code
                },
                slot: Slot::from_index(slot).unwrap(),
                pake,
            }),
            pake.prop_map(|pake| Body::Reply { pake }),
            (mac, sealed.clone()).prop_map(|(mac, sealed)| Body::JoinerConfirm { mac, sealed }),
            (mac, sealed).prop_map(|(mac, sealed)| Body::InitiatorConfirm { mac, sealed }),
            proptest::collection::vec(any::<u8>(), SEALED_SIGNATURE_LEN).prop_map(|v| {
                Body::JoinerSignature {
                    sealed: v.try_into().unwrap(),
                }
            }),
            (1u8..=8).prop_map(|b| Body::Abort {
                reason: AbortReason::from_byte(b).unwrap()
            }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(session in any::<[u8; 16]>(), body in body()) {
            let message = PairingMessage::new(SessionId(session), body);
            let bytes = message.to_bytes();
            prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
            prop_assert_eq!(PairingMessage::from_bytes(&bytes), Ok(message.clone()));
            // Any shorter prefix or longer extension is refused.
            for cut in 0..bytes.len() {
                prop_assert!(PairingMessage::from_bytes(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert_eq!(PairingMessage::from_bytes(&longer), Err(MessageError::TrailingBytes));
        }

        #[test]
        fn decoding_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(message) = PairingMessage::from_bytes(&bytes) {
                prop_assert_eq!(message.to_bytes(), bytes);
            }
        }
    }

    #[test]
    fn typed_errors() {
        let header = |version: u8, kind: u8| {
            let mut bytes = vec![version, kind];
            bytes.extend_from_slice(&[0; 16]);
            bytes
        };
        assert_eq!(
            PairingMessage::from_bytes(&[]),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            PairingMessage::from_bytes(&header(2, 1)),
            Err(MessageError::UnsupportedVersion(2))
        );
        assert_eq!(
            PairingMessage::from_bytes(&header(1, 9)),
            Err(MessageError::UnknownKind(9))
        );
        let mut abort = header(1, 6);
        abort.push(0);
        assert_eq!(
            PairingMessage::from_bytes(&abort),
            Err(MessageError::InvalidField("abort reason"))
        );
        let mut hello = header(1, 1);
        hello.extend_from_slice(&[1, 0x08, 0x00]);
        hello.extend_from_slice(&[0; 33]);
        assert_eq!(
            PairingMessage::from_bytes(&hello),
            Err(MessageError::InvalidField("slot"))
        );
        let mut confirm = header(1, 3);
        confirm.extend_from_slice(&[0; 32]);
        confirm.extend_from_slice(&16u16.to_be_bytes());
        confirm.extend_from_slice(&[0; 16]);
        assert_eq!(
            PairingMessage::from_bytes(&confirm),
            Err(MessageError::InvalidField("sealed payload length"))
        );
        assert!(matches!(
            PairingMessage::from_bytes(&vec![1; MAX_MESSAGE_LEN + 1]),
            Err(MessageError::TooLong { .. })
        ));
    }
}
