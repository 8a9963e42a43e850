//! The app's errors, one enum per part. Each message describes its own layer; the cause is
//! its `source()` (print chains with [`tether::error_chain`]).

use std::path::PathBuf;

use tether::{NetworkError, NodeId, Uuid};

/// A failure of the local store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed.
    #[error("the library database failed")]
    Database(#[source] redb::Error),
    /// A record could not be encoded or decoded.
    #[error("a library record is malformed")]
    Corrupt(#[source] serde_json::Error),
    /// No such library here.
    #[error("no library {0}")]
    UnknownLibrary(Uuid),
    /// No such entry here.
    #[error("no entry {0}")]
    UnknownEntry(Uuid),
    /// The hybrid logical clock refused a timestamp (a peer's too far ahead, or the clock
    /// at its end). The source is `tether-wire`'s `HlcError`, which `tether` does not
    /// re-export.
    #[error("the library clock refused a timestamp")]
    Clock(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A file added to a library could not be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A library name is empty or too long.
    #[error("a library name is 1 to {} bytes", tether::limits::MAX_NAME_LEN)]
    BadName,
}

/// A failure of the presence protocol's client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// Tether could not connect (not paired, offline, refused by the device's gate).
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The connection or stream failed.
    #[error("presence stream failed: {0}")]
    Stream(String),
    /// The device refused the request.
    #[error("the device refused: {0}")]
    Refused(String),
    /// The answer does not follow the protocol.
    #[error("malformed presence answer: {0}")]
    Malformed(&'static str),
}

/// A failure of one of the app's operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The network service failed (or the device answered with an error).
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The presence protocol failed.
    #[error(transparent)]
    Presence(#[from] PresenceError),
    /// A device answered a request with the wrong kind of message.
    #[error("{device} answered {request} with {answer}")]
    UnexpectedAnswer {
        /// Who.
        device: String,
        /// What was asked.
        request: &'static str,
        /// What came back.
        answer: &'static str,
    },
    /// A device's page of entries was refused; nothing of it was merged.
    #[error("a sync page from {device} was refused")]
    BadPage {
        /// Who sent it.
        device: String,
        /// Why.
        #[source]
        source: PageError,
    },
    /// A device sent more pages than any sync needs.
    #[error("{0} sent more sync pages than allowed")]
    TooManyPages(String),
    /// The entry was not made from a file on this device, so there is nothing to send.
    #[error("entry {0} has no file on this device")]
    NoLocalFile(Uuid),
    /// The entry is deleted or has no content hash: there is nothing to pull or check.
    #[error("entry {0} has no content to pull")]
    NothingToPull(Uuid),
    /// The device ended the pull without sending the entry's file (it shared something
    /// else, such as a directory, under that id).
    #[error("the device sent no file for entry {0}")]
    NoFileReceived(Uuid),
    /// The pulled file's BLAKE3 is not the entry's hash in the synced store (the sharer's
    /// file changed since it was added, or the sharer lies). The file is left where it is
    /// and not recorded.
    #[error("the file pulled for entry {entry_id} does not match its hash: {}", path.display())]
    HashMismatch {
        /// The entry.
        entry_id: Uuid,
        /// The file received.
        path: PathBuf,
    },
    /// The entry changed here (a sync) while it was being pulled; the file was not recorded.
    #[error("entry {0} changed while it was pulled")]
    EntryChanged(Uuid),
    /// A directory of the app could not be created.
    #[error("could not create {}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task of the app died.
    #[error("a background task of the app failed")]
    Task(#[source] tokio::task::JoinError),
}

impl AppError {
    pub(crate) fn unexpected(device: NodeId, request: &'static str, answer: &'static str) -> Self {
        Self::UnexpectedAnswer {
            device: device.fmt_short(),
            request,
            answer,
        }
    }
}

/// Why a page of a peer's answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    /// The page is for another library.
    #[error("the page is for another library")]
    WrongLibrary,
    /// An entry is not strictly after the one before it (or the cursor).
    #[error("entries are not in ascending HLC order after the cursor")]
    OutOfOrder,
    /// `has_more` with no entries: the requester would ask the same question forever.
    #[error("more entries promised but none sent")]
    NoProgress,
}
