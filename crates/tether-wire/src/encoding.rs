//! Which encoding a connection's control payloads use, and the control payload's methods that
//! take it.

use crate::binary;
use crate::codec::FrameEncoder;
use crate::control::{ControlMessage, MessageError, RequestId};
use crate::frame::{EncodeError, Frame, FrameKind};

/// How control payloads are encoded on a connection. Both encodings carry the same envelope (id,
/// once, kind, body) under the same [`limits`](crate::limits); the session handshake picks one
/// per connection, and both directions use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Encoding {
    /// JSON (`{"id": 7, "type": "Ping", "body": {...}}`): what every version reads, and the one
    /// to read by eye. A connection uses it unless both sides chose another.
    #[default]
    Json,
    /// postcard: varints, length-prefixed strings and lists, kinds by number (layout in the
    /// crate's front page).
    Binary,
}

impl Encoding {
    /// Every encoding this version reads, the preferred first.
    pub const ALL: [Encoding; 2] = [Self::Binary, Self::Json];

    /// The encoding's one-byte id in the session handshake.
    pub const fn id(self) -> u8 {
        match self {
            Self::Json => 1,
            Self::Binary => 2,
        }
    }

    /// The encoding with handshake id `id`, if this version knows it.
    pub fn from_id(id: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|encoding| encoding.id() == id)
    }

    /// The encoding's name, for logs and reports.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Binary => "binary",
        }
    }
}

impl ControlMessage {
    /// The payload in `encoding`, after checking the message against the
    /// [`limits`](crate::limits).
    pub fn encode_with(&self, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into_with(encoding, &mut out)?;
        Ok(out)
    }

    /// Appends the payload in `encoding` to `out`; on error `out` is left as it was.
    pub fn encode_into_with(
        &self,
        encoding: Encoding,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        match encoding {
            Encoding::Json => self.encode_into(out),
            Encoding::Binary => {
                self.message.validate()?;
                binary::encode_into(self, out)
            }
        }
    }

    /// How many bytes [`encode_with`](Self::encode_with) produces, without allocating them.
    pub fn encoded_len_with(&self, encoding: Encoding) -> Result<usize, EncodeError> {
        match encoding {
            Encoding::Json => self.encoded_len(),
            Encoding::Binary => binary::encoded_len(self),
        }
    }

    /// A control frame holding this message in `encoding`.
    pub fn to_frame_with(&self, encoding: Encoding) -> Result<Frame, EncodeError> {
        Frame::new(FrameKind::Control, self.encode_with(encoding)?)
    }

    /// Parses and validates a control payload in `encoding`. An unknown kind is
    /// [`MessageError::UnknownMessage`] (JSON, by name) or
    /// [`MessageError::UnknownMessageNumber`] (binary, by number).
    pub fn decode_with(encoding: Encoding, bytes: &[u8]) -> Result<Self, MessageError> {
        match encoding {
            Encoding::Json => Self::decode(bytes),
            Encoding::Binary => {
                let message = binary::decode(bytes)?;
                message.message.validate()?;
                Ok(message)
            }
        }
    }
}

impl RequestId {
    /// [`of_payload`](Self::of_payload) for a payload in `encoding`.
    pub fn of_payload_with(encoding: Encoding, bytes: &[u8]) -> Option<Self> {
        match encoding {
            Encoding::Json => Self::of_payload(bytes),
            Encoding::Binary => binary::request_id(bytes),
        }
    }
}

impl FrameEncoder {
    /// Appends a control frame holding `message` in `encoding`. On error the buffer is
    /// unchanged.
    pub fn push_control_with(
        &mut self,
        message: &ControlMessage,
        encoding: Encoding,
    ) -> Result<(), EncodeError> {
        self.push_with(FrameKind::Control, |out| {
            message.encode_into_with(encoding, out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_distinct() {
        for encoding in Encoding::ALL {
            assert_eq!(Encoding::from_id(encoding.id()), Some(encoding));
        }
        assert_eq!(Encoding::from_id(0), None);
        assert_eq!(Encoding::from_id(3), None);
    }
}
