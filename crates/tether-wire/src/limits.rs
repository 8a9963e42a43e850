//! Every bound on what a peer may send.
//!
//! Memory is bounded twice: the frame caps are checked before a payload is allocated, so parsing
//! one control message never sees more than [`MAX_CONTROL_LEN`] bytes of JSON; then
//! [`NetworkMessage::validate`] checks each list and string against the limits below, so a handler
//! never sees more than the protocol allows. Encoding validates too, so this side never sends what
//! the peer would refuse.

use crate::error::LimitError;
use crate::message::{NetworkMessage, SyncEntry};

/// Largest control (JSON) payload: 1 MiB.
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
/// Longest `ErrorReply::message`, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Longest piece of an unknown message type name kept in
/// [`MessageError::UnknownMessage`](crate::MessageError::UnknownMessage).
pub const MAX_KIND_ECHO_LEN: usize = 64;

impl NetworkMessage {
    /// Checks every list and string against the limits in this module.
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
            Self::Error(reply) => max_bytes("error message", &reply.message, MAX_ERROR_MESSAGE_LEN),
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

/// `name` cut to at most [`MAX_KIND_ECHO_LEN`] bytes on a character boundary.
pub(crate) fn echo(name: &str) -> String {
    let mut end = name.len().min(MAX_KIND_ECHO_LEN);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_cuts_on_char_boundary() {
        assert_eq!(echo("Ping"), "Ping");
        let long = "é".repeat(100);
        let cut = echo(&long);
        assert!(cut.len() <= MAX_KIND_ECHO_LEN);
        assert_eq!(cut, "é".repeat(MAX_KIND_ECHO_LEN / 2));
    }
}
