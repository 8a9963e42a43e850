//! Every bound on what a peer may send.
//!
//! Memory is bounded twice: the frame caps are checked before a payload is allocated, so parsing
//! one control message never sees more than [`MAX_CONTROL_LEN`] bytes of JSON (or binary); then
//! [`NetworkMessage::validate`](crate::NetworkMessage::validate) checks each list and string against the limits below, so a handler
//! never sees more than the protocol allows. Encoding validates too, so this side never sends what
//! the peer would refuse.

/// Largest control payload (JSON or binary): 1 MiB.
pub const MAX_CONTROL_LEN: usize = 1 << 20;
/// Largest file chunk in one data frame: 256 KiB.
pub const MAX_CHUNK_LEN: usize = 256 << 10;
/// Most libraries in one `LibraryAnnounce`.
pub const MAX_LIBRARIES: usize = 1024;
/// Most entries in one `SyncResponse`; larger answers page with `has_more`.
pub const MAX_SYNC_ENTRIES: usize = 4096;
/// Longest library name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest entry path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Longest `Text::text`, in bytes of UTF-8: 64 KiB (a note, a link, a paragraph; files go as
/// transfers). At most six times that as escaped JSON, well inside [`MAX_CONTROL_LEN`].
pub const MAX_TEXT_LEN: usize = 64 << 10;
/// Longest `ErrorReply::message`, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Longest piece of an unknown message type name kept in
/// [`MessageError::UnknownMessage`](crate::MessageError::UnknownMessage).
pub const MAX_KIND_ECHO_LEN: usize = 64;
