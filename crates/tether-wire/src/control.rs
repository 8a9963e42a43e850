//! The control payload: a [`NetworkMessage`] with an optional request id, in JSON (below) or in
//! the binary encoding (`binary.rs`); the `*_with` methods (`encoding.rs`) take the connection's
//! [`Encoding`](crate::Encoding).
//!
//! ```text
//! {"id": 7, "type": "SyncRequest", "body": {"library_id": "…", "after": {…}}}
//! {"id": 9018320917455201, "once": true, "type": "SyncRequest", "body": {…}}
//! ```
//!
//! A request with `"once": true` names itself across connections: its id (the lowest bit aside,
//! which says which side of the connection sent it) is the same on every connection its sender
//! sends it on, so a repeat (sent again after a connection died before the answer came) is the
//! same request, to be answered once. Without it an id means something on its own connection
//! only. Older peers neither send nor read the field.
//!
//! Decoding reads the envelope first (`id`, `type`, and the body as an unparsed span), looks the
//! type up, and only then parses the body as that kind's struct. So an unknown type is
//! [`MessageError::UnknownMessage`] carrying its name, not an opaque serde error.

use std::borrow::Cow;
use std::io;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::codec::FrameEncoder;
use crate::frame::{EncodeError, Frame, FrameKind, LimitError};
use crate::limits::MAX_KIND_ECHO_LEN;
use crate::message::{ErrorCode, MessageKind, NetworkMessage};

/// Correlates a response with its request: a request carries an id chosen by its sender, and the
/// response (`Ack`, `Error` or the kind's answer) carries the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u64);

/// What a control frame carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlMessage {
    /// Set on requests and on their responses; `None` on unsolicited messages such as a
    /// `LibraryAnnounce` sent after a change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<RequestId>,
    /// The request's id names it across connections: a repeat from the same device is the
    /// same request (see the module's documentation). Sent only when set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub once: bool,
    /// The message.
    #[serde(flatten)]
    pub message: NetworkMessage,
}

/// The envelope, with the body left unparsed until the type is known.
#[derive(Deserialize)]
struct RawControl<'a> {
    #[serde(default)]
    id: Option<RequestId>,
    #[serde(default)]
    once: bool,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<&'a RawValue>,
}

impl ControlMessage {
    /// A message without a request id.
    pub fn new(message: impl Into<NetworkMessage>) -> Self {
        ControlMessage {
            id: None,
            once: false,
            message: message.into(),
        }
    }

    /// A request or response carrying `id`.
    pub fn with_id(id: RequestId, message: impl Into<NetworkMessage>) -> Self {
        ControlMessage {
            id: Some(id),
            once: false,
            message: message.into(),
        }
    }

    /// A request carrying `id` that names it across connections (`"once": true`).
    pub fn once(id: RequestId, message: impl Into<NetworkMessage>) -> Self {
        ControlMessage {
            id: Some(id),
            once: true,
            message: message.into(),
        }
    }

    /// The JSON bytes, after checking the message against the [`limits`](crate::limits).
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Appends the JSON bytes to `out`; on error `out` is left as it was.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.message.validate()?;
        let start = out.len();
        serde_json::to_writer(&mut *out, self).inspect_err(|_| out.truncate(start))?;
        Ok(())
    }

    /// A control frame holding this message as JSON.
    pub fn to_frame(&self) -> Result<Frame, EncodeError> {
        Frame::new(FrameKind::Control, self.encode()?)
    }

    /// How many bytes [`encode`](Self::encode) produces, without allocating them.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, self)?;
        Ok(counter.0)
    }

    /// Parses and validates a control payload.
    ///
    /// Unknown fields are ignored; an unknown `type` is [`MessageError::UnknownMessage`]; see the
    /// crate docs for why.
    pub fn decode(bytes: &[u8]) -> Result<Self, MessageError> {
        let raw: RawControl<'_> = serde_json::from_slice(bytes)?;
        let Some(kind) = MessageKind::from_name(&raw.kind) else {
            return Err(MessageError::UnknownMessage {
                kind: echo(&raw.kind),
            });
        };
        let body = raw.body;
        let message = match kind {
            MessageKind::LibraryAnnounce => NetworkMessage::LibraryAnnounce(parse(kind, body)?),
            MessageKind::LibraryRequest => NetworkMessage::LibraryRequest(parse(kind, body)?),
            MessageKind::SyncRequest => NetworkMessage::SyncRequest(parse(kind, body)?),
            MessageKind::SyncResponse => NetworkMessage::SyncResponse(parse(kind, body)?),
            MessageKind::FileRequest => NetworkMessage::FileRequest(parse(kind, body)?),
            MessageKind::FileResponse => NetworkMessage::FileResponse(parse(kind, body)?),
            MessageKind::Ping => NetworkMessage::Ping(parse(kind, body)?),
            MessageKind::Pong => NetworkMessage::Pong(parse(kind, body)?),
            MessageKind::NameUpdate => NetworkMessage::NameUpdate(parse(kind, body)?),
            MessageKind::Text => NetworkMessage::Text(parse(kind, body)?),
            // A body on Ack is an unknown field: ignored.
            MessageKind::Ack => NetworkMessage::Ack,
            MessageKind::Error => NetworkMessage::Error(parse(kind, body)?),
        };
        message.validate()?;
        Ok(ControlMessage {
            id: raw.id,
            once: raw.once,
            message,
        })
    }
}

impl RequestId {
    /// The request id of a control payload that does not decode as a message (an unknown
    /// type, a field over a limit), so that the `Error` reply to it can carry the id and the
    /// peer's request ends at once instead of at its timeout. `None` when the payload has no
    /// id or is not a JSON object.
    pub fn of_payload(bytes: &[u8]) -> Option<Self> {
        #[derive(Deserialize)]
        struct IdOnly {
            #[serde(default)]
            id: Option<RequestId>,
        }
        serde_json::from_slice::<IdOnly>(bytes).ok()?.id
    }
}

fn parse<T: DeserializeOwned>(
    kind: MessageKind,
    body: Option<&RawValue>,
) -> Result<T, MessageError> {
    let body = body.ok_or(MessageError::MissingBody {
        kind: kind.as_str(),
    })?;
    Ok(serde_json::from_str(body.get())?)
}

/// An `io::Write` that only counts.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Frame {
    /// A control frame holding `message` as JSON (the same as [`ControlMessage::to_frame`]).
    pub fn control(message: &ControlMessage) -> Result<Self, EncodeError> {
        message.to_frame()
    }
}

impl FrameEncoder {
    /// Appends a control frame, serialising `message` straight into the buffer. On error the buffer
    /// is unchanged.
    pub fn push_control(&mut self, message: &ControlMessage) -> Result<(), EncodeError> {
        self.push_with(FrameKind::Control, |out| message.encode_into(out))
    }
}

/// `name` cut to at most [`MAX_KIND_ECHO_LEN`] bytes on a character boundary.
pub(crate) fn echo(name: &str) -> String {
    let mut end = name.len().min(MAX_KIND_ECHO_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().to_owned()
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
    /// The binary payload's message kind number is not one this version knows.
    #[error("unknown message kind number {number}")]
    UnknownMessageNumber {
        /// The kind number the peer sent.
        number: u32,
    },
    /// The binary payload is not the postcard this version expects (a varint too long, a
    /// length past the end, invalid UTF-8, a bad tag).
    #[error("malformed binary control message")]
    Binary(#[from] postcard::Error),
    /// The binary payload breaks the envelope's layout.
    #[error("malformed binary control message: {reason}")]
    MalformedBinary {
        /// What is wrong with it.
        reason: &'static str,
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
            Self::UnknownMessage { .. } | Self::UnknownMessageNumber { .. } => {
                ErrorCode::UnknownMessage
            }
            Self::Limit(_) => ErrorCode::LimitExceeded,
            Self::Json(_)
            | Self::Binary(_)
            | Self::MalformedBinary { .. }
            | Self::MissingBody { .. }
            | Self::MalformedData { .. } => ErrorCode::Malformed,
            Self::WrongKind { .. } => ErrorCode::Unsupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ErrorCode, ErrorReply, Ping};

    #[test]
    fn shape_with_and_without_id() {
        let ping = ControlMessage::with_id(RequestId(7), Ping { timestamp_ms: 9 });
        let json = String::from_utf8(ping.encode().unwrap()).unwrap();
        assert_eq!(json, r#"{"id":7,"type":"Ping","body":{"timestamp_ms":9}}"#);
        assert_eq!(ControlMessage::decode(json.as_bytes()).unwrap(), ping);

        let once = ControlMessage::once(RequestId(7), Ping { timestamp_ms: 9 });
        let json = String::from_utf8(once.encode().unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"id":7,"once":true,"type":"Ping","body":{"timestamp_ms":9}}"#
        );
        assert_eq!(ControlMessage::decode(json.as_bytes()).unwrap(), once);
        // What an older peer sends, and what it makes of the field: nothing.
        let old = br#"{"id":7,"once":false,"type":"Ping","body":{"timestamp_ms":9}}"#;
        assert_eq!(ControlMessage::decode(old).unwrap(), ping);

        let ack = ControlMessage::new(NetworkMessage::Ack);
        let json = String::from_utf8(ack.encode().unwrap()).unwrap();
        assert_eq!(json, r#"{"type":"Ack"}"#);
        assert_eq!(ControlMessage::decode(json.as_bytes()).unwrap(), ack);
    }

    #[test]
    fn unknown_type_is_typed_and_cut_short() {
        let err = ControlMessage::decode(br#"{"type":"Teleport","body":{}}"#).unwrap_err();
        assert!(matches!(&err, MessageError::UnknownMessage { kind } if kind == "Teleport"));
        assert_eq!(err.code(), ErrorCode::UnknownMessage);

        let long = format!(r#"{{"type":"{}"}}"#, "x".repeat(10_000));
        let err = ControlMessage::decode(long.as_bytes()).unwrap_err();
        assert!(matches!(&err, MessageError::UnknownMessage { kind } if kind.len() == 64));
    }

    #[test]
    fn unknown_fields_are_ignored_at_every_level() {
        let json =
            br#"{"v":2,"type":"Ping","id":1,"body":{"timestamp_ms":3,"extra":[1,{"a":null}]}}"#;
        let message = ControlMessage::decode(json).unwrap();
        assert_eq!(
            message,
            ControlMessage::with_id(RequestId(1), Ping { timestamp_ms: 3 })
        );
        let ack_with_body = br#"{"type":"Ack","body":{"future":true}}"#;
        assert_eq!(
            ControlMessage::decode(ack_with_body).unwrap().message,
            NetworkMessage::Ack
        );
    }

    #[test]
    fn missing_or_duplicate_parts_are_errors() {
        for json in [
            &br#"{"body":{"timestamp_ms":3}}"#[..],
            br#"{"type":"Ping"}"#,
            br#"{"type":"Ping","body":null}"#,
            br#"{"type":"Ping","body":{}}"#,
            br#"{"type":"Ping","type":"Ping","body":{"timestamp_ms":3}}"#,
            br#"{"type":"Ping","body":{"timestamp_ms":-1}}"#,
            br#"{"type":"Ping","body":{"timestamp_ms":3}} trailing"#,
            br#"[]"#,
            b"",
        ] {
            assert!(
                ControlMessage::decode(json).is_err(),
                "{}",
                String::from_utf8_lossy(json)
            );
        }
    }

    #[test]
    fn encoding_refuses_what_the_peer_would_refuse() {
        let reply = ErrorReply {
            code: ErrorCode::Internal,
            message: "x".repeat(crate::limits::MAX_ERROR_MESSAGE_LEN + 1),
        };
        let err = ControlMessage::new(reply).encode().unwrap_err();
        assert!(matches!(
            err,
            EncodeError::Limit(LimitError::TooLong { .. })
        ));
    }

    #[test]
    fn encode_into_appends_and_encoded_len_matches() {
        let message = ControlMessage::new(Ping { timestamp_ms: 1 });
        let mut out = b"prefix".to_vec();
        message.encode_into(&mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(out.len() - 6, message.encoded_len().unwrap());
    }

    #[test]
    fn the_id_of_a_payload_that_does_not_decode_is_found() {
        let unknown = br#"{"id":9,"type":"Teleport","body":{"to":"mars"}}"#;
        assert!(ControlMessage::decode(unknown).is_err());
        assert_eq!(RequestId::of_payload(unknown), Some(RequestId(9)));
        assert_eq!(RequestId::of_payload(br#"{"type":"Teleport"}"#), None);
        assert_eq!(RequestId::of_payload(br#"{"id":-1,"type":"Ping"}"#), None);
        assert_eq!(RequestId::of_payload(b"[1,2]"), None);
        assert_eq!(RequestId::of_payload(b"{\"id\":9"), None);
    }

    #[test]
    fn echo_cuts_on_char_boundary() {
        assert_eq!(echo("Ping"), "Ping");
        let long = "é".repeat(100);
        let cut = echo(&long);
        assert!(cut.len() <= MAX_KIND_ECHO_LEN);
        assert_eq!(cut, "é".repeat(MAX_KIND_ECHO_LEN / 2));
    }
}
