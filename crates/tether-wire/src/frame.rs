//! Frames: what a byte stream is cut into.
//!
//! ```text
//! +----------------+---------+----------------------------+
//! | length: u32 BE | kind u8 | payload (length - 1 bytes) |
//! +----------------+---------+----------------------------+
//! ```
//!
//! The length counts the kind byte and the payload. Each kind has a payload cap
//! ([`FrameKind::max_payload_len`]); a decoder checks it as soon as the five header bytes are in,
//! before allocating anything.

use tether_crypto::TAG_LEN;

use crate::limits::{MAX_CHUNK_LEN, MAX_CONTROL_LEN};

/// Bytes before a frame's payload: the `u32` length and the kind byte.
pub const FRAME_HEADER_LEN: usize = 5;

/// Bytes before the chunk's data in a data frame's payload (see [`DataChunk`](crate::DataChunk)).
pub const DATA_HEADER_LEN: usize = 16 + 8 + 1;

/// Bytes of the counter at the end of a sealed payload.
pub const COUNTER_LEN: usize = 8;

/// Bytes a seal adds to a payload: the tag and the counter.
pub const SEAL_OVERHEAD: usize = TAG_LEN + COUNTER_LEN;

/// The largest payload of any kind (a sealed control frame).
pub const MAX_PAYLOAD_LEN: usize = MAX_CONTROL_LEN + SEAL_OVERHEAD;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A JSON [`ControlMessage`](crate::ControlMessage).
    Control,
    /// A binary [`DataChunk`](crate::DataChunk): file bytes.
    Data,
    /// A control frame sealed with session keys (see [`Frame::seal`]).
    SealedControl,
    /// A data frame sealed with session keys.
    SealedData,
}

impl FrameKind {
    /// The byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Control => 0x01,
            Self::Data => 0x02,
            Self::SealedControl => 0x81,
            Self::SealedData => 0x82,
        }
    }

    /// The kind with wire byte `byte`, if this version knows it.
    pub const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0x01 => Some(Self::Control),
            0x02 => Some(Self::Data),
            0x81 => Some(Self::SealedControl),
            0x82 => Some(Self::SealedData),
            _ => None,
        }
    }

    /// The largest payload a frame of this kind may carry.
    pub const fn max_payload_len(self) -> usize {
        match self {
            Self::Control => MAX_CONTROL_LEN,
            Self::Data => DATA_HEADER_LEN + MAX_CHUNK_LEN,
            Self::SealedControl => MAX_CONTROL_LEN + SEAL_OVERHEAD,
            Self::SealedData => DATA_HEADER_LEN + MAX_CHUNK_LEN + SEAL_OVERHEAD,
        }
    }

    /// Whether frames of this kind are encrypted.
    pub const fn is_sealed(self) -> bool {
        matches!(self, Self::SealedControl | Self::SealedData)
    }

    /// The sealed kind carrying this kind, or itself if already sealed.
    pub const fn sealed(self) -> Self {
        match self {
            Self::Control | Self::SealedControl => Self::SealedControl,
            Self::Data | Self::SealedData => Self::SealedData,
        }
    }

    /// The plain kind a sealed kind carries, or itself if plain.
    pub const fn plain(self) -> Self {
        match self {
            Self::Control | Self::SealedControl => Self::Control,
            Self::Data | Self::SealedData => Self::Data,
        }
    }
}

/// One frame: a kind and a payload no larger than the kind's cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    kind: FrameKind,
    payload: Vec<u8>,
}

impl Frame {
    /// A frame of `kind` holding `payload`, if it fits the kind's cap.
    pub fn new(kind: FrameKind, payload: Vec<u8>) -> Result<Self, EncodeError> {
        let cap = kind.max_payload_len();
        if payload.len() > cap {
            return Err(EncodeError::TooLarge {
                kind,
                len: payload.len(),
                cap,
            });
        }
        Ok(Frame { kind, payload })
    }

    /// Builds a frame whose payload is known to fit the cap.
    pub(crate) fn from_parts(kind: FrameKind, payload: Vec<u8>) -> Self {
        debug_assert!(payload.len() <= kind.max_payload_len());
        Frame { kind, payload }
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The payload bytes.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, giving up the frame.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The five header bytes: length (kind byte plus payload) and kind.
    pub fn header(&self) -> [u8; FRAME_HEADER_LEN] {
        header_bytes(self.kind, self.payload.len())
    }

    /// Bytes this frame takes on the wire.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.payload.len()
    }

    /// Appends the frame's wire bytes to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.payload);
    }
}

/// The header for a payload of `payload_len` bytes, which must fit the kind's cap (so the length
/// fits a `u32`).
pub(crate) fn header_bytes(kind: FrameKind, payload_len: usize) -> [u8; FRAME_HEADER_LEN] {
    // Every cap is far below u32::MAX, so this never saturates for a valid frame.
    let len = u32::try_from(payload_len + 1).unwrap_or(u32::MAX);
    let [a, b, c, d] = len.to_be_bytes();
    [a, b, c, d, kind.to_byte()]
}

/// Reads a header: the kind and payload length, checked against the kind's cap.
pub(crate) fn parse_header(
    header: [u8; FRAME_HEADER_LEN],
) -> Result<(FrameKind, usize), FrameError> {
    let [a, b, c, d, kind_byte] = header;
    let len = u32::from_be_bytes([a, b, c, d]);
    let payload_len = len.checked_sub(1).ok_or(FrameError::Empty)?;
    let kind = FrameKind::from_byte(kind_byte).ok_or(FrameError::UnknownKind(kind_byte))?;
    let cap = kind.max_payload_len();
    match usize::try_from(payload_len) {
        Ok(payload_len) if payload_len <= cap => Ok((kind, payload_len)),
        _ => Err(FrameError::TooLarge {
            kind,
            len: u64::from(payload_len),
            cap,
        }),
    }
}

/// The framing of a byte stream is broken. Always the peer's fault.
///
/// A stream cannot be resynchronised after a framing error: close it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces a payload larger than the cap for its kind. Nothing was allocated.
    #[error("{kind:?} frame announces {len} payload bytes, over the cap of {cap}")]
    TooLarge {
        /// The frame's kind.
        kind: FrameKind,
        /// The announced payload length.
        len: u64,
        /// The cap for this kind.
        cap: usize,
    },
    /// The kind byte is not one this version knows.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The length prefix is zero, so there is not even a kind byte.
    #[error("frame of length zero")]
    Empty,
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame after {received} of its bytes")]
    Truncated {
        /// How many bytes of the unfinished frame (header included) had arrived.
        received: usize,
    },
    /// The decoder already returned an error; the stream is unusable.
    #[error("frame decoder used after an error")]
    Poisoned,
}

/// The caller asked to send something the protocol cannot carry. Never the peer's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload is over the cap for its frame kind; split it (a `SyncResponse` pages with
    /// `has_more`, file bytes go in chunks of at most [`MAX_CHUNK_LEN`](crate::limits::MAX_CHUNK_LEN)).
    #[error("{kind:?} payload of {len} bytes is over the cap of {cap}")]
    TooLarge {
        /// The frame kind.
        kind: FrameKind,
        /// The payload length.
        len: usize,
        /// The cap.
        cap: usize,
    },
    /// The message breaks a limit the peer would reject it for.
    #[error("message breaks a wire limit")]
    Limit(#[from] LimitError),
    /// serde_json failed to serialise the message.
    #[error("serialising the message failed")]
    Json(#[from] serde_json::Error),
    /// postcard failed to serialise the message (binary encoding).
    #[error("serialising the message failed")]
    Binary(#[source] postcard::Error),
}

/// A message field is over a protocol limit (see [`limits`](crate::limits)).
///
/// From decoding it is the peer's fault; inside an [`EncodeError`] it is the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// A list has more items than allowed.
    #[error("{field} has {len} items, over the limit of {max}")]
    TooMany {
        /// Which field.
        field: &'static str,
        /// How many items it has.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string or byte field is longer than allowed.
    #[error("{field} is {len} bytes long, over the limit of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A number is outside its allowed range.
    #[error("{field} is {value}, outside {min}..={max}")]
    OutOfRange {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_bytes_round_trip() {
        for byte in 0..=u8::MAX {
            if let Some(kind) = FrameKind::from_byte(byte) {
                assert_eq!(kind.to_byte(), byte);
                assert_eq!(kind.sealed().plain(), kind.plain());
                assert!(kind.sealed().is_sealed());
                assert!(!kind.plain().is_sealed());
            }
        }
    }

    #[test]
    fn header_checks() {
        assert_eq!(parse_header([0, 0, 0, 0, 1]), Err(FrameError::Empty));
        assert_eq!(
            parse_header([0, 0, 0, 9, 7]),
            Err(FrameError::UnknownKind(7))
        );
        assert_eq!(parse_header([0, 0, 0, 1, 1]), Ok((FrameKind::Control, 0)));
        assert!(matches!(
            parse_header([0xff, 0xff, 0xff, 0xff, 1]),
            Err(FrameError::TooLarge {
                kind: FrameKind::Control,
                len: 0xffff_fffe,
                ..
            })
        ));
        let at_cap = header_bytes(FrameKind::Data, FrameKind::Data.max_payload_len());
        assert_eq!(
            parse_header(at_cap),
            Ok((FrameKind::Data, FrameKind::Data.max_payload_len()))
        );
        let over = header_bytes(FrameKind::Data, FrameKind::Data.max_payload_len() + 1);
        assert!(matches!(
            parse_header(over),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn new_checks_the_cap() {
        let big = vec![0; MAX_CONTROL_LEN + 1];
        assert!(matches!(
            Frame::new(FrameKind::Control, big.clone()),
            Err(EncodeError::TooLarge { .. })
        ));
        assert!(Frame::new(FrameKind::SealedControl, big).is_ok());
    }
}
