//! Errors, split by whose fault they are.
//!
//! * [`PeerError`]: the other side broke the protocol, sent something over a limit, refused, or
//!   aborted. Its messages are never trusted text.
//! * [`LocalError`]: this machine failed (disk, file system, a source that changed); IO errors
//!   name the path.
//! * [`UsageError`]: the caller asked for something impossible.
//! * [`TransferError::Link`]: the stream broke. The transfer can be resumed.
//! * [`TransferError::Cancelled`]: the caller's token fired. The transfer can be resumed.
//! * [`TransferError::Declined`]: this side's consent policy said no.

use std::io;
use std::path::PathBuf;

use uuid::Uuid;

use crate::abort::{Abort, AbortCode};
use crate::compress::DecodeError;
use crate::manifest::ManifestError;
use crate::negotiate::CipherError;
use crate::progress::Waiting;

/// Any failure of a transfer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The peer's fault.
    #[error("peer")]
    Peer(#[from] PeerError),
    /// This machine's fault.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// The caller's fault.
    #[error("usage")]
    Usage(#[from] UsageError),
    /// The stream failed or ended early; partial files and resume records are kept.
    #[error("link lost")]
    Link(#[source] io::Error),
    /// The cancel token fired; partial files and resume records are kept.
    #[error("cancelled")]
    Cancelled,
    /// No byte moved on any of the transfer's streams for longer than the run's stall bound;
    /// partial files and resume records are kept, and running it again resumes.
    #[error("stalled: nothing moved for {} s while waiting for {waiting_for}", idle.as_secs())]
    Stalled {
        /// What this side was waiting for.
        waiting_for: Waiting,
        /// How long nothing had moved.
        idle: std::time::Duration,
    },
    /// This side's consent policy declined the offer (the reason is the policy's; the sender
    /// is told it).
    #[error("declined: {0}")]
    Declined(String),
}

impl TransferError {
    /// Whether running the same transfer again can pick up where this one stopped.
    pub fn is_resumable(&self) -> bool {
        match self {
            TransferError::Link(_) | TransferError::Cancelled | TransferError::Stalled { .. } => {
                true
            }
            TransferError::Peer(PeerError::Aborted { code, .. }) => {
                matches!(
                    code,
                    AbortCode::Cancelled
                        | AbortCode::Internal
                        | AbortCode::Stalled
                        | AbortCode::BandwidthQuota
                )
            }
            _ => false,
        }
    }
}

/// The peer broke the protocol, refused, or aborted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// A frame could not be read (bad header, over the cap, cut short).
    #[error("bad frame: {0}")]
    Frame(String),
    /// A control message could not be parsed.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A message this side could not encode (never the peer's doing; kept here because it
    /// surfaces at the same place). Only on a bug.
    #[error("encode: {0}")]
    Encode(String),
    /// A message or frame arrived where the protocol does not allow it.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The offer's version is not ours.
    #[error("unsupported protocol version {0}")]
    Version(u32),
    /// The device already has as many offers being answered as this receiver takes at once.
    #[error("already answering {max} offers from this device; offer again once one is answered")]
    TooManyOffers {
        /// The receiver's bound.
        max: usize,
    },
    /// The offer is plain and this receiver takes only encrypted transfers.
    #[error("the offer is not encrypted, and this receiver takes only encrypted transfers")]
    EncryptionRequired,
    /// The offer's cipher list or the answer's cipher was refused.
    #[error("cipher refused")]
    Cipher(#[from] CipherError),
    /// The manifest was refused.
    #[error("manifest refused")]
    Manifest(#[from] ManifestError),
    /// Chunk hashes do not add up to the file's hash, or are missing.
    #[error("chunk hashes of {path:?} do not match its file hash")]
    BadHashes {
        /// The file's relative path.
        path: String,
    },
    /// A chunk's bytes did not match its hash: the source changed or the data is corrupt.
    #[error("chunk {index} of {path:?} failed verification")]
    ChunkMismatch {
        /// The file's relative path.
        path: String,
        /// The chunk index.
        index: u64,
    },
    /// A chunk could not be decoded.
    #[error("chunk {index} of {path:?} could not be decoded")]
    ChunkEncoding {
        /// The file's relative path.
        path: String,
        /// The chunk index.
        index: u64,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// A data frame that was not asked for, or for an unknown entry or offset.
    #[error("unsolicited chunk for entry {entry_id} at offset {offset}")]
    Unsolicited {
        /// The entry named.
        entry_id: Uuid,
        /// The offset named.
        offset: u64,
    },
    /// A request for an entry the sender did not offer, or for chunks it does not have.
    #[error("request for unknown entry {0} or chunks beyond its end")]
    UnknownEntry(Uuid),
    /// A sealed frame did not open (tampered, replayed, or wrong keys), or a plain frame arrived
    /// in an encrypted transfer.
    #[error("data frame failed authentication: {0}")]
    Seal(String),
    /// The sharer answered a pull request with a refusal: it shares no entry with this id
    /// with this device. It opened and read nothing.
    #[error("entry {0} is not shared with this device")]
    NotShared(Uuid),
    /// The receiver declined the offer.
    #[error("declined ({code:?}): {message}")]
    Declined {
        /// Why, for programs.
        code: AbortCode,
        /// Why, for people (untrusted).
        message: String,
    },
    /// The peer aborted the transfer.
    #[error("aborted by peer ({code:?}): {message}")]
    Aborted {
        /// Why, for programs.
        code: AbortCode,
        /// Why, for people (untrusted).
        message: String,
    },
}

impl From<Abort> for PeerError {
    /// The peer's `Abort` message, as the error it ends this side's run with.
    fn from(Abort { code, message }: Abort) -> Self {
        PeerError::Aborted { code, message }
    }
}

/// This machine failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// A file-system operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Not enough room at the destination; nothing was written.
    #[error("not enough space in {path}: {needed} bytes needed, {available} available")]
    DiskFull {
        /// The destination (or the file that could not grow).
        path: PathBuf,
        /// Bytes still needed.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// Receiving would leave less free space than the reserve
    /// ([`ReceiverConfig::space_reserve`](crate::ReceiverConfig::space_reserve)). Found before
    /// `Accept`, nothing was written; found while receiving (another program filled the disk),
    /// the file that would have eaten into it was not allocated, and partial data is kept for
    /// a resume.
    #[error(
        "not enough space in {path}: {needed} bytes needed, {available} free, {reserve} kept free"
    )]
    ReserveReached {
        /// The destination, or the partial file that was to be allocated.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes free.
        available: u64,
        /// Bytes kept free.
        reserve: u64,
    },
    /// The offer's files, resume records and new directories do not fit in the free inodes
    /// less the reserve ([`ReceiverConfig::inode_reserve`](crate::ReceiverConfig::inode_reserve));
    /// nothing was written.
    #[error(
        "not enough free inodes in {path}: {needed} needed, {available} free, {reserve} kept free"
    )]
    InodesShort {
        /// The destination.
        path: PathBuf,
        /// Inodes needed.
        needed: u64,
        /// Inodes free.
        available: u64,
        /// Inodes kept free.
        reserve: u64,
    },
    /// The sending device's storage quota ([`StorageQuota`](crate::StorageQuota)) has no room
    /// for the offer; nothing was written.
    #[error(
        "the device's storage quota is used up: {needed} bytes offered, {used} of {quota} used"
    )]
    QuotaExceeded {
        /// Bytes the offer would store.
        needed: u64,
        /// Bytes the device has stored.
        used: u64,
        /// The device's quota.
        quota: u64,
    },
    /// The sending device's bandwidth quota ([`ReceiveBudget`](crate::ReceiveBudget)) has no
    /// room for the offer in its current period; nothing was written.
    #[error(
        "the device's receive quota has no room: {needed} bytes offered, {used} of {quota} used \
         this period"
    )]
    BandwidthQuota {
        /// Bytes the offer would bring.
        needed: u64,
        /// Bytes used in the current period.
        used: u64,
        /// Bytes per period.
        quota: u64,
        /// When the period ends.
        resets_at: std::time::SystemTime,
    },
    /// The storage quota's count could not be read or updated; nothing was written.
    #[error("the device's storage quota could not be checked")]
    QuotaUnavailable,
    /// A target exists with other contents and overwriting is off.
    #[error("{0} exists and overwriting is off")]
    TargetExists(PathBuf),
    /// A target or one of its directories is (or is behind) a symlink or not a directory.
    #[error("{0} is a symlink or not a directory; refusing to write through it")]
    NotADirectory(PathBuf),
    /// A target is being received by another transfer right now.
    #[error("{0} is being received by another transfer")]
    TargetBusy(PathBuf),
    /// A source file changed (size or modification time) since it was offered.
    #[error("source {0} changed during the transfer")]
    SourceChanged(PathBuf),
    /// A blocking task failed to run.
    #[error("background task failed: {0}")]
    Task(String),
    /// A task or thread of this transfer panicked: a bug in Tether, not the peer's doing nor
    /// the disk's. Partial files and resume records are kept.
    #[error("{what} panicked ({message})")]
    Panicked {
        /// Which task: "a send lane", "the finaliser", ...
        what: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The process (or the system) has as many files open as it may. Partial files and resume
    /// records are kept, so the transfer resumes once descriptors are free again.
    #[error(
        "{op} {path}: too many open files (the process's or the system's descriptor limit, \
         `ulimit -n`, is reached); partial data is kept for a resume"
    )]
    TooManyOpenFiles {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
    },
    /// A partial file was replaced, moved or swapped for a link while the transfer ran; it is
    /// never written through, and never reported as placed (found when it is opened again, or
    /// when the target after the rename is not the inode that was verified).
    #[error("partial file {0} was replaced during the transfer; refusing to write or place it")]
    PartialReplaced(PathBuf),
}

impl LocalError {
    /// The destination has no room for the transfer: no space, no inodes, no quota left.
    pub(crate) fn is_no_room(&self) -> bool {
        matches!(
            self,
            LocalError::DiskFull { .. }
                | LocalError::ReserveReached { .. }
                | LocalError::InodesShort { .. }
                | LocalError::QuotaExceeded { .. }
        )
    }

    /// What the peer is told of this failure in a `Decline` or `Abort`: the kind of shortage,
    /// never a local path.
    pub(crate) fn peer_message(&self) -> String {
        match self {
            LocalError::DiskFull { .. } => "the receiver's disk is full".into(),
            LocalError::ReserveReached { .. } => {
                "the receiver keeps free space in reserve and this would eat into it".into()
            }
            LocalError::InodesShort { .. } => {
                "too many files and folders for the receiver's free inodes".into()
            }
            LocalError::QuotaExceeded {
                needed,
                used,
                quota,
            } => format!(
                "over this device's storage quota on the receiver: {needed} bytes offered, \
                 {used} of {quota} used"
            ),
            LocalError::BandwidthQuota {
                needed,
                used,
                quota,
                resets_at,
            } => {
                let minutes = resets_at
                    .duration_since(std::time::SystemTime::now())
                    .map_or(0, |left| left.as_secs().div_ceil(60));
                format!(
                    "over this device's bandwidth quota on the receiver: {needed} bytes offered, \
                     {used} of {quota} used; it resets in {minutes} min"
                )
            }
            _ => String::new(),
        }
    }

    /// An IO error on `path`, or [`LocalError::DiskFull`] when the OS says the disk is full.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if source.kind() == io::ErrorKind::StorageFull {
            return LocalError::DiskFull {
                path,
                needed: 0,
                available: 0,
            };
        }
        let emfile = rustix::io::Errno::MFILE.raw_os_error();
        let enfile = rustix::io::Errno::NFILE.raw_os_error();
        if matches!(source.raw_os_error(), Some(code) if code == emfile || code == enfile) {
            return LocalError::TooManyOpenFiles { op, path };
        }
        LocalError::Io { op, path, source }
    }

    /// What a task of this transfer that did not finish means: [`LocalError::Panicked`] with
    /// the panic's message, or [`LocalError::Task`] when it was cancelled (the runtime shut
    /// down). `what` names the task: "a send lane", "the finaliser", ...
    pub(crate) fn task_failed(what: &'static str, error: tokio::task::JoinError) -> Self {
        match error.try_into_panic() {
            Ok(payload) => LocalError::Panicked {
                what,
                message: panic_message(payload.as_ref()),
            },
            Err(_) => LocalError::Task(format!("{what} was cancelled")),
        }
    }
}

/// The text of a panic's payload (a `&str` or a `String`, as `panic!` makes it).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

/// The caller asked for something impossible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The resolver does not know (or does not allow) an entry.
    #[error("entry {0} is not shared")]
    NotShared(Uuid),
    /// A shared path is neither a regular file nor a directory, or its name is not usable.
    #[error("{path} cannot be sent: {reason}")]
    BadSource {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// `encrypt` was asked for (or the peer's offer is encrypted) but no keys were given.
    #[error("encryption needs per-transfer keys")]
    KeysRequired,
    /// An option is out of range.
    #[error("bad option: {0}")]
    BadOption(&'static str),
    /// The offer or lane belongs to another transfer or peer.
    #[error("no such transfer {0} from this peer")]
    NoSuchTransfer(Uuid),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_exhaustion_is_its_own_error() {
        for errno in [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE] {
            let source = io::Error::from_raw_os_error(errno.raw_os_error());
            let error = LocalError::io("opening", "/d/.f.tether-partial", source);
            assert!(
                matches!(&error, LocalError::TooManyOpenFiles { op: "opening", path }
                    if path.as_os_str() == "/d/.f.tether-partial"),
                "{error:?}"
            );
            assert!(error.to_string().contains("too many open files"));
        }
        let other = LocalError::io("opening", "/x", io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(other, LocalError::Io { .. }));
    }

    #[tokio::test]
    async fn a_panicked_task_is_named_with_its_message() {
        let joined = tokio::spawn(async { panic!("lane {} broke", 3) }).await;
        let error = LocalError::task_failed("a send lane", joined.expect_err("it panicked"));
        assert!(
            matches!(&error, LocalError::Panicked { what: "a send lane", message }
                if message == "lane 3 broke"),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "a send lane panicked (lane 3 broke)");
        let joined = tokio::spawn(async { std::panic::panic_any(7_u8) }).await;
        let error = LocalError::task_failed("the finaliser", joined.expect_err("it panicked"));
        assert_eq!(
            error.to_string(),
            "the finaliser panicked (unknown panic payload)"
        );
        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let error = LocalError::task_failed("a receive lane", task.await.expect_err("aborted"));
        assert!(matches!(error, LocalError::Task(_)), "{error:?}");
    }
}

#[cfg(test)]
mod chain_tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;
    use crate::manifest::ManifestError;
    use crate::negotiate::CipherError;

    fn declined() -> PeerError {
        PeerError::Declined {
            code: AbortCode::NoSpace,
            message: "disk full".into(),
        }
    }

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(TransferError::Peer(declined())),
            Box::new(TransferError::Peer(PeerError::Cipher(CipherError::Empty))),
            Box::new(TransferError::Local(LocalError::Io {
                op: "opening",
                path: "/d/f".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })),
            Box::new(TransferError::Usage(UsageError::KeysRequired)),
            Box::new(TransferError::Link(io::Error::other("connection lost"))),
            Box::new(PeerError::Cipher(CipherError::Empty)),
            Box::new(PeerError::Manifest(ManifestError::TooSlow { secs: 30 })),
            Box::new(PeerError::ChunkEncoding {
                path: "f".into(),
                index: 3,
                source: DecodeError::Zstd("bad frame".into()),
            }),
        ];
        for error in &errors {
            assert_no_repeated_layer(error.as_ref());
        }
        assert_eq!(
            error_chain(&TransferError::Peer(declined())),
            "peer: declined (NoSpace): disk full"
        );
    }
}
