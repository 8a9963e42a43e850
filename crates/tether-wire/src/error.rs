//! Errors, one enum per operation.
//!
//! Each type says whose fault it is. [`FrameError`], [`MessageError`] and [`LimitError`] (when it
//! comes from decoding) are always the peer's: the bytes it sent break the protocol. [`EncodeError`]
//! is always the caller's: it asked to send something the protocol cannot carry. Mixed types
//! ([`ReadError`]) answer [`is_peer_fault`](ReadError::is_peer_fault).
//!
//! Messages are short and never echo more than [`MAX_KIND_ECHO_LEN`](crate::limits::MAX_KIND_ECHO_LEN)
//! bytes of peer input, so logging an error cannot be used to flood a log.

use crate::frame::FrameKind;
use crate::message::ErrorCode;

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

/// A well-framed payload is not a valid message. Always the peer's fault.
///
/// The stream stays in sync (the frame boundary is known), so the service may answer with an
/// [`Error`](crate::NetworkMessage::Error) reply carrying [`MessageError::code`] and carry on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The control payload is not the JSON this version expects (syntax, UTF-8, types, missing
    /// fields, nesting deeper than serde_json's limit of 128).
    #[error("malformed control message")]
    Json(#[from] serde_json::Error),
    /// The message type is not one this version knows. The name is cut to
    /// [`MAX_KIND_ECHO_LEN`](crate::limits::MAX_KIND_ECHO_LEN) bytes.
    #[error("unknown message type {kind:?}")]
    UnknownMessage {
        /// The type name the peer sent, possibly cut short.
        kind: String,
    },
    /// A message type that has a body arrived without one.
    #[error("message type {kind} arrived without a body")]
    MissingBody {
        /// The message type.
        kind: &'static str,
    },
    /// A field is over a protocol limit.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A data frame's binary header is malformed.
    #[error("malformed data frame: {reason}")]
    MalformedData {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The frame is of another kind than the one being decoded.
    #[error("expected a {expected:?} frame, got {got:?}")]
    WrongKind {
        /// The kind the decoder handles.
        expected: FrameKind,
        /// The kind of the frame it was given.
        got: FrameKind,
    },
}

impl MessageError {
    /// The code to put in the [`Error`](crate::NetworkMessage::Error) reply to this mistake.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownMessage { .. } => ErrorCode::UnknownMessage,
            Self::Limit(_) => ErrorCode::LimitExceeded,
            Self::Json(_) | Self::MissingBody { .. } | Self::MalformedData { .. } => {
                ErrorCode::Malformed
            }
            Self::WrongKind { .. } => ErrorCode::Unsupported,
        }
    }
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
}

/// Reading a frame from an async stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer broke the framing (including closing the stream inside a frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream itself failed.
    #[error("reading the stream failed")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// Whether the peer is to blame (it broke the framing) rather than the transport or this side.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::Frame(_))
    }
}

/// The hybrid logical clock cannot advance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlcError {
    /// A remote timestamp is further ahead of the local wall clock than
    /// [`MAX_DRIFT_MS`](crate::hlc::MAX_DRIFT_MS) allows. The peer's fault (or its clock's);
    /// the local clock is unchanged.
    #[error(
        "remote time {remote_ms} ms is more than {max_drift_ms} ms ahead of the wall clock {wall_ms} ms"
    )]
    Drift {
        /// The remote physical time.
        remote_ms: u64,
        /// The local wall clock.
        wall_ms: u64,
        /// The largest drift allowed.
        max_drift_ms: u64,
    },
    /// The clock is at its largest representable value and cannot issue a later timestamp.
    #[error("the clock is at its largest value")]
    Exhausted,
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    fn json_error() -> serde_json::Error {
        serde_json::from_slice::<u8>(b"[").expect_err("not a number")
    }

    fn limit() -> LimitError {
        LimitError::TooMany {
            field: "entries",
            len: 9,
            max: 8,
        }
    }

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(MessageError::Json(json_error())),
            Box::new(MessageError::Limit(limit())),
            Box::new(EncodeError::Limit(limit())),
            Box::new(EncodeError::Json(json_error())),
            Box::new(ReadError::Frame(FrameError::Empty)),
            Box::new(ReadError::Io(std::io::Error::other("reset"))),
        ];
        for error in &errors {
            assert_no_repeated_layer(error.as_ref());
        }
        let read = ReadError::Io(std::io::Error::other("reset"));
        assert_eq!(error_chain(&read), "reading the stream failed: reset");
    }
}
