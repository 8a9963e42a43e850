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

use crate::control::ControlMessage;
use crate::data::DATA_HEADER_LEN;
use crate::envelope::SEAL_OVERHEAD;
use crate::error::{EncodeError, FrameError};
use crate::limits::{MAX_CHUNK_LEN, MAX_CONTROL_LEN};

/// Bytes before a frame's payload: the `u32` length and the kind byte.
pub const FRAME_HEADER_LEN: usize = 5;

/// The largest payload of any kind (a sealed control frame).
pub const MAX_PAYLOAD_LEN: usize = MAX_CONTROL_LEN + SEAL_OVERHEAD;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// A JSON [`ControlMessage`].
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

    /// A control frame holding `message` as JSON.
    pub fn control(message: &ControlMessage) -> Result<Self, EncodeError> {
        let payload = message.encode()?;
        Frame::new(FrameKind::Control, payload)
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
