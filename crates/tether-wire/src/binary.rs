//! The binary control payload ([`Encoding::Binary`](crate::Encoding::Binary)): the same envelope
//! as the JSON one (id, once, kind, body), in postcard.
//!
//! ```text
//! binary control = flags: u8 | id: varint u64 (when flags bit 0) | kind: varint u32 | body
//! flags          = bit 0: an id follows | bit 1: once | bits 2-7: zero
//! body           = postcard of the kind's struct (nothing for Ack), to the payload's end
//! ```
//!
//! Varints are LEB128 (postcard's, at most 10 bytes for a u64); strings and lists are a varint
//! length and their items; a `Uuid` is a varint 16 and its bytes; a [`ContentHash`] and a
//! signature are their bare 32 and 64 bytes; an `Option` is a 0 or 1 byte; a `bool` is 0 or 1;
//! an [`ErrorCode`] is the varint index of its variant (one this version does not know decodes
//! as [`ErrorCode::Other`]). The kind numbers are [`MessageKind::number`].
//!
//! Decoding is strict where JSON is lenient: the layout does not grow within an encoding (unknown
//! flag bits, bytes after the body, a non-canonical `bool` or `Option` tag are errors). A layout
//! change is a new [`Encoding`](crate::Encoding), which the session handshake negotiates, not a
//! new protocol version. Memory is bounded as with JSON: the frame cap bounds the payload, every
//! item costs at least one input byte, a length is checked against the bytes left before a
//! string is taken, and serde preallocates at most 1 MiB for a list whatever its length says;
//! then [`NetworkMessage::validate`] applies the limits.
//!
//! [`ContentHash`]: crate::ContentHash
//! [`ErrorCode`]: crate::ErrorCode
//! [`ErrorCode::Other`]: crate::ErrorCode::Other

use postcard::ser_flavors::{Flavor, Size};
use serde::de::DeserializeOwned;
use serde::ser::{Serialize, SerializeTuple, Serializer};

use crate::control::{ControlMessage, MessageError, RequestId};
use crate::frame::EncodeError;
use crate::message::{MessageKind, NetworkMessage};

const HAS_ID: u8 = 0b01;
const ONCE: u8 = 0b10;

/// Appends the binary payload of `message` to `out` (validated by the caller).
pub(crate) fn encode_into(message: &ControlMessage, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    postcard::serialize_with_flavor(&Envelope(message), Extend(out)).map_err(|error| {
        out.truncate(start);
        EncodeError::Binary(error)
    })
}

/// How many bytes [`encode_into`] appends.
pub(crate) fn encoded_len(message: &ControlMessage) -> Result<usize, EncodeError> {
    postcard::serialize_with_flavor(&Envelope(message), Size::default())
        .map_err(EncodeError::Binary)
}

/// Parses a binary payload (the caller validates the message against the limits).
pub(crate) fn decode(bytes: &[u8]) -> Result<ControlMessage, MessageError> {
    let (header, body) = Header::read(bytes)?;
    let Some(kind) = MessageKind::from_number(header.kind) else {
        return Err(MessageError::UnknownMessageNumber {
            number: header.kind,
        });
    };
    let message = match kind {
        MessageKind::LibraryAnnounce => NetworkMessage::LibraryAnnounce(parse(body)?),
        MessageKind::LibraryRequest => NetworkMessage::LibraryRequest(parse(body)?),
        MessageKind::SyncRequest => NetworkMessage::SyncRequest(parse(body)?),
        MessageKind::SyncResponse => NetworkMessage::SyncResponse(parse(body)?),
        MessageKind::FileRequest => NetworkMessage::FileRequest(parse(body)?),
        MessageKind::FileResponse => NetworkMessage::FileResponse(parse(body)?),
        MessageKind::Ping => NetworkMessage::Ping(parse(body)?),
        MessageKind::Pong => NetworkMessage::Pong(parse(body)?),
        MessageKind::NameUpdate => NetworkMessage::NameUpdate(parse(body)?),
        MessageKind::Text => NetworkMessage::Text(parse(body)?),
        MessageKind::Ack => {
            parse::<()>(body)?;
            NetworkMessage::Ack
        }
        MessageKind::Error => NetworkMessage::Error(parse(body)?),
    };
    Ok(ControlMessage {
        id: header.id,
        once: header.once,
        message,
    })
}

/// The request id of a binary payload whose header reads, whatever follows it.
pub(crate) fn request_id(bytes: &[u8]) -> Option<RequestId> {
    Header::read(bytes).ok()?.0.id
}

/// The envelope's fields before the body.
struct Header {
    id: Option<RequestId>,
    once: bool,
    kind: u32,
}

impl Header {
    fn read(bytes: &[u8]) -> Result<(Self, &[u8]), MessageError> {
        let (&flags, rest) = bytes.split_first().ok_or(MessageError::MalformedBinary {
            reason: "empty payload",
        })?;
        if flags & !(HAS_ID | ONCE) != 0 {
            return Err(MessageError::MalformedBinary {
                reason: "unknown flag bits",
            });
        }
        let (id, rest) = if flags & HAS_ID != 0 {
            let (id, rest) = postcard::take_from_bytes::<u64>(rest)?;
            (Some(RequestId(id)), rest)
        } else {
            (None, rest)
        };
        let (kind, body) = postcard::take_from_bytes::<u32>(rest)?;
        let header = Header {
            id,
            once: flags & ONCE != 0,
            kind,
        };
        Ok((header, body))
    }
}

/// The body as `T`, which must use every byte.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, MessageError> {
    let (value, rest) = postcard::take_from_bytes::<T>(body)?;
    if !rest.is_empty() {
        return Err(MessageError::MalformedBinary {
            reason: "bytes after the body",
        });
    }
    Ok(value)
}

/// Serialises a [`ControlMessage`] in the binary layout (postcard writes a tuple's elements one
/// after the other, with no count).
struct Envelope<'a>(&'a ControlMessage);

impl Serialize for Envelope<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ControlMessage { id, once, message } = self.0;
        let flags = if id.is_some() { HAS_ID } else { 0 } | if *once { ONCE } else { 0 };
        let mut out = serializer.serialize_tuple(4)?;
        out.serialize_element(&flags)?;
        if let Some(RequestId(id)) = id {
            out.serialize_element(id)?;
        }
        out.serialize_element(&message.kind().number())?;
        match message {
            NetworkMessage::LibraryAnnounce(body) => out.serialize_element(body)?,
            NetworkMessage::LibraryRequest(body) => out.serialize_element(body)?,
            NetworkMessage::SyncRequest(body) => out.serialize_element(body)?,
            NetworkMessage::SyncResponse(body) => out.serialize_element(body)?,
            NetworkMessage::FileRequest(body) => out.serialize_element(body)?,
            NetworkMessage::FileResponse(body) => out.serialize_element(body)?,
            NetworkMessage::Ping(body) => out.serialize_element(body)?,
            NetworkMessage::Pong(body) => out.serialize_element(body)?,
            NetworkMessage::NameUpdate(body) => out.serialize_element(body)?,
            NetworkMessage::Text(body) => out.serialize_element(body)?,
            NetworkMessage::Ack => {}
            NetworkMessage::Error(body) => out.serialize_element(body)?,
        }
        out.end()
    }
}

/// A postcard output that appends to a caller's buffer.
struct Extend<'a>(&'a mut Vec<u8>);

impl Flavor for Extend<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}
