//! The control messages: [`NetworkMessage`] and the payload type of each kind.
//!
//! Each kind with a body has its own struct, so a handler can take exactly the message it handles
//! (`fn on_sync(req: SyncRequest)`) and the decoder can parse the body of the kind it was told,
//! which is what makes an unknown kind a typed error (see the crate docs). On the wire a message is
//! `{"type": "<Kind>", "body": {...}}`; [`Ack`](NetworkMessage::Ack) has no body.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::content_hash::ContentHash;
use crate::frame::LimitError;
use crate::hlc::Hlc;
use crate::limits::{
    MAX_CHUNK_LEN, MAX_ERROR_MESSAGE_LEN, MAX_LIBRARIES, MAX_NAME_LEN, MAX_PATH_LEN,
    MAX_SYNC_ENTRIES, MAX_TEXT_LEN,
};

/// A control message. Encode and decode it inside a [`ControlMessage`](crate::ControlMessage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "body")]
#[non_exhaustive]
pub enum NetworkMessage {
    /// The libraries this device shares with the peer.
    LibraryAnnounce(LibraryAnnounce),
    /// Asks for one library's [`LibraryInfo`] (answered by a `LibraryAnnounce`).
    LibraryRequest(LibraryRequest),
    /// Asks for a library's entries changed after a timestamp.
    SyncRequest(SyncRequest),
    /// One page of entries answering a `SyncRequest`.
    SyncResponse(SyncResponse),
    /// Asks for a file's bytes, possibly from an offset (resume).
    FileRequest(FileRequest),
    /// Accepts a `FileRequest`; the bytes follow in data frames.
    FileResponse(FileResponse),
    /// Liveness probe; the peer answers with a `Pong` echoing the timestamp.
    Ping(Ping),
    /// Answer to a `Ping`.
    Pong(Pong),
    /// The sender renamed itself (answered by an `Ack`).
    NameUpdate(NameUpdate),
    /// A short text for the person at the other device (acknowledged with an `Ack`).
    Text(Text),
    /// A request succeeded and has nothing to return.
    Ack,
    /// A request failed, or a message could not be handled.
    Error(ErrorReply),
}

/// The kinds of [`NetworkMessage`], as named on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// [`NetworkMessage::LibraryAnnounce`].
    LibraryAnnounce,
    /// [`NetworkMessage::LibraryRequest`].
    LibraryRequest,
    /// [`NetworkMessage::SyncRequest`].
    SyncRequest,
    /// [`NetworkMessage::SyncResponse`].
    SyncResponse,
    /// [`NetworkMessage::FileRequest`].
    FileRequest,
    /// [`NetworkMessage::FileResponse`].
    FileResponse,
    /// [`NetworkMessage::Ping`].
    Ping,
    /// [`NetworkMessage::Pong`].
    Pong,
    /// [`NetworkMessage::NameUpdate`].
    NameUpdate,
    /// [`NetworkMessage::Text`].
    Text,
    /// [`NetworkMessage::Ack`].
    Ack,
    /// [`NetworkMessage::Error`].
    Error,
}

impl MessageKind {
    /// Every kind, in declaration order.
    pub const ALL: [MessageKind; 12] = [
        Self::LibraryAnnounce,
        Self::LibraryRequest,
        Self::SyncRequest,
        Self::SyncResponse,
        Self::FileRequest,
        Self::FileResponse,
        Self::Ping,
        Self::Pong,
        Self::NameUpdate,
        Self::Text,
        Self::Ack,
        Self::Error,
    ];

    /// The name in the JSON `"type"` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LibraryAnnounce => "LibraryAnnounce",
            Self::LibraryRequest => "LibraryRequest",
            Self::SyncRequest => "SyncRequest",
            Self::SyncResponse => "SyncResponse",
            Self::FileRequest => "FileRequest",
            Self::FileResponse => "FileResponse",
            Self::Ping => "Ping",
            Self::Pong => "Pong",
            Self::NameUpdate => "NameUpdate",
            Self::Text => "Text",
            Self::Ack => "Ack",
            Self::Error => "Error",
        }
    }

    /// The kind's number in the binary encoding (see [`Encoding::Binary`](crate::Encoding::Binary)).
    /// Fixed per kind: a new kind gets the next number, a number is never reused.
    pub const fn number(self) -> u32 {
        match self {
            Self::LibraryAnnounce => 1,
            Self::LibraryRequest => 2,
            Self::SyncRequest => 3,
            Self::SyncResponse => 4,
            Self::FileRequest => 5,
            Self::FileResponse => 6,
            Self::Ping => 7,
            Self::Pong => 8,
            Self::NameUpdate => 9,
            Self::Text => 10,
            Self::Ack => 11,
            Self::Error => 12,
        }
    }

    /// The kind numbered `number`, if this version knows it.
    pub fn from_number(number: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.number() == number)
    }

    /// The kind named `name`, if this version knows it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl NetworkMessage {
    /// This message's kind.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::LibraryAnnounce(_) => MessageKind::LibraryAnnounce,
            Self::LibraryRequest(_) => MessageKind::LibraryRequest,
            Self::SyncRequest(_) => MessageKind::SyncRequest,
            Self::SyncResponse(_) => MessageKind::SyncResponse,
            Self::FileRequest(_) => MessageKind::FileRequest,
            Self::FileResponse(_) => MessageKind::FileResponse,
            Self::Ping(_) => MessageKind::Ping,
            Self::Pong(_) => MessageKind::Pong,
            Self::NameUpdate(_) => MessageKind::NameUpdate,
            Self::Text(_) => MessageKind::Text,
            Self::Ack => MessageKind::Ack,
            Self::Error(_) => MessageKind::Error,
        }
    }
}

/// A library as announced to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryInfo {
    /// The library's id.
    pub id: Uuid,
    /// Its display name, at most [`MAX_NAME_LEN`](crate::limits::MAX_NAME_LEN) bytes.
    pub name: String,
    /// How many entries it holds.
    pub entry_count: u64,
    /// The latest change in it.
    pub updated: Hlc,
}

/// One entry (file, directory or deletion) in a [`SyncResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncEntry {
    /// The entry's id; [`FileRequest::entry_id`] names it.
    pub entry_id: Uuid,
    /// Path relative to the library root, `/`-separated, at most
    /// [`MAX_PATH_LEN`](crate::limits::MAX_PATH_LEN) bytes. Untrusted: the receiver must check it
    /// before touching a file system.
    pub path: String,
    /// Size in bytes (0 for directories and deletions).
    pub size: u64,
    /// BLAKE3 of the contents; `None` for directories and deletions.
    pub hash: Option<ContentHash>,
    /// When the entry last changed.
    pub hlc: Hlc,
    /// Whether this entry records a deletion.
    pub deleted: bool,
}

/// Body of [`NetworkMessage::LibraryAnnounce`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryAnnounce {
    /// At most [`MAX_LIBRARIES`](crate::limits::MAX_LIBRARIES).
    pub libraries: Vec<LibraryInfo>,
}

/// Body of [`NetworkMessage::LibraryRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryRequest {
    /// The library asked about.
    pub library_id: Uuid,
}

/// Body of [`NetworkMessage::SyncRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// The library to sync.
    pub library_id: Uuid,
    /// Only entries changed strictly after this; [`Hlc::ZERO`] for all.
    pub after: Hlc,
}

/// Body of [`NetworkMessage::SyncResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The library the entries belong to.
    pub library_id: Uuid,
    /// At most [`MAX_SYNC_ENTRIES`](crate::limits::MAX_SYNC_ENTRIES), in ascending `hlc` order.
    pub entries: Vec<SyncEntry>,
    /// More entries follow: ask again with `after` set to the last entry's `hlc`.
    pub has_more: bool,
}

/// Body of [`NetworkMessage::FileRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRequest {
    /// The entry whose bytes are wanted.
    pub entry_id: Uuid,
    /// The first byte wanted (0 for the whole file; the size of a kept partial file to resume).
    pub resume_from: u64,
}

/// Body of [`NetworkMessage::FileResponse`]. Data frames for `entry_id` follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileResponse {
    /// The entry being sent.
    pub entry_id: Uuid,
    /// The whole file's size in bytes.
    pub size: u64,
    /// BLAKE3 of the whole file, to verify after the last chunk.
    pub hash: ContentHash,
    /// The size of every chunk but the last, in `1..=`[`MAX_CHUNK_LEN`](crate::limits::MAX_CHUNK_LEN).
    pub chunk_size: u32,
    /// The offset of the first data frame (the request's `resume_from`, or 0 if the sender cannot resume).
    pub offset: u64,
}

/// Body of [`NetworkMessage::Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The sender's clock in milliseconds; echoed in the [`Pong`] to measure round trips.
    pub timestamp_ms: u64,
}

/// Body of [`NetworkMessage::Pong`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The [`Ping::timestamp_ms`] being answered.
    pub timestamp_ms: u64,
}

/// Body of [`NetworkMessage::NameUpdate`]: a device's new name, signed by its device key so
/// that the name is the device's own word whichever way it arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameUpdate {
    /// The new name, at most [`MAX_NAME_LEN`](crate::limits::MAX_NAME_LEN) bytes. Untrusted:
    /// the receiver checks it as a device name before showing it.
    pub name: String,
    /// When the sender renamed itself, in milliseconds since the Unix epoch; a receiver takes a
    /// newer stamp over an older one and ignores the rest.
    pub changed_ms: u64,
    /// The sender's Ed25519 signature over the stamp and the name (see the facade's
    /// `names` module for the signed bytes). JSON: 128 hex digits.
    #[serde(with = "crate::hex_bytes")]
    pub signature: [u8; 64],
}

/// Body of [`NetworkMessage::Text`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// The text, at most [`MAX_TEXT_LEN`](crate::limits::MAX_TEXT_LEN) bytes of UTF-8. Untrusted:
    /// escape control characters before showing it.
    pub text: String,
}

/// Body of [`NetworkMessage::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people; at most
    /// [`MAX_ERROR_MESSAGE_LEN`](crate::limits::MAX_ERROR_MESSAGE_LEN) bytes. Never shown as trusted text.
    pub message: String,
}

/// Why a request failed, in an [`ErrorReply`]. In JSON a `snake_case` string; in the binary
/// encoding the variant's index (declaration order), so a new code goes after the last one
/// before `Other`, and no code is ever removed or reordered.
///
/// A code this version does not know decodes as [`ErrorCode::Other`], so newer peers can add codes
/// without breaking older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message type is unknown to the receiver.
    UnknownMessage,
    /// The message could not be parsed.
    Malformed,
    /// The message is over a protocol limit.
    LimitExceeded,
    /// The message is understood but not supported here.
    Unsupported,
    /// The library or entry does not exist.
    NotFound,
    /// The peer may not do this.
    Denied,
    /// Try again later.
    Busy,
    /// The receiver failed for its own reasons.
    Internal,
    /// A code this version does not know. Never sent by this version.
    #[serde(other)]
    Other,
}

macro_rules! impl_from_body {
    ($($body:ident => $variant:ident),* $(,)?) => {$(
        impl From<$body> for NetworkMessage {
            fn from(body: $body) -> Self {
                NetworkMessage::$variant(body)
            }
        }
    )*};
}

impl_from_body! {
    LibraryAnnounce => LibraryAnnounce,
    LibraryRequest => LibraryRequest,
    SyncRequest => SyncRequest,
    SyncResponse => SyncResponse,
    FileRequest => FileRequest,
    FileResponse => FileResponse,
    Ping => Ping,
    Pong => Pong,
    NameUpdate => NameUpdate,
    Text => Text,
    ErrorReply => Error,
}

impl NetworkMessage {
    /// Checks every list and string against the [`limits`](crate::limits).
    ///
    /// [`ControlMessage::decode`](crate::ControlMessage::decode) and the encoders call this; call it
    /// yourself only for messages built by other means.
    pub fn validate(&self) -> Result<(), LimitError> {
        match self {
            Self::LibraryAnnounce(announce) => {
                max_items("libraries", announce.libraries.len(), MAX_LIBRARIES)?;
                announce
                    .libraries
                    .iter()
                    .try_for_each(|library| max_bytes("library name", &library.name, MAX_NAME_LEN))
            }
            Self::SyncResponse(response) => {
                max_items("entries", response.entries.len(), MAX_SYNC_ENTRIES)?;
                response.entries.iter().try_for_each(validate_entry)
            }
            Self::FileResponse(response) => {
                let chunk_size = u64::from(response.chunk_size);
                let max = MAX_CHUNK_LEN as u64;
                if chunk_size == 0 || chunk_size > max {
                    return Err(LimitError::OutOfRange {
                        field: "chunk_size",
                        value: chunk_size,
                        min: 1,
                        max,
                    });
                }
                Ok(())
            }
            Self::Text(text) => max_bytes("text", &text.text, MAX_TEXT_LEN),
            Self::Error(reply) => max_bytes("error message", &reply.message, MAX_ERROR_MESSAGE_LEN),
            Self::NameUpdate(update) => max_bytes("device name", &update.name, MAX_NAME_LEN),
            Self::LibraryRequest(_)
            | Self::SyncRequest(_)
            | Self::FileRequest(_)
            | Self::Ping(_)
            | Self::Pong(_)
            | Self::Ack => Ok(()),
        }
    }
}

fn validate_entry(entry: &SyncEntry) -> Result<(), LimitError> {
    max_bytes("entry path", &entry.path, MAX_PATH_LEN)
}

fn max_items(field: &'static str, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        return Err(LimitError::TooMany { field, len, max });
    }
    Ok(())
}

fn max_bytes(field: &'static str, value: &str, max: usize) -> Result<(), LimitError> {
    if value.len() > max {
        return Err(LimitError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_round_trip() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(
            MessageKind::from_name("ping"),
            None,
            "names are case-sensitive"
        );
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(MessageKind::from_number(0), None);
        assert_eq!(MessageKind::from_number(13), None);
    }

    #[test]
    fn unknown_error_code_decodes_as_other() {
        let code: ErrorCode = serde_json::from_str("\"teapot\"").unwrap();
        assert_eq!(code, ErrorCode::Other);
        let code: ErrorCode = serde_json::from_str("\"not_found\"").unwrap();
        assert_eq!(code, ErrorCode::NotFound);
    }
}
