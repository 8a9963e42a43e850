//! [`AppEvent`]: what happened, for the app's UI.

use tether::{LibraryInfo, NodeId, TransferReport, Uuid};

/// What happened, for the app's UI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AppEvent {
    /// A paired device announced its libraries.
    LibrariesAnnounced {
        /// Who.
        from: NodeId,
        /// Its libraries (names chosen by the peer: escape them before showing them).
        libraries: Vec<LibraryInfo>,
    },
    /// A pull this device asked for moved forward.
    PullProgress {
        /// The device pulled from.
        from: NodeId,
        /// The entry pulled.
        entry_id: Uuid,
        /// How much is done, from 0.0 to 100.0.
        percentage: f64,
        /// File bytes done (resumed bytes included).
        bytes_done: u64,
        /// All the entry's bytes.
        bytes_total: u64,
    },
    /// A paired device pulled an entry of this device's and verified it.
    EntryServed {
        /// Who pulled it.
        to: NodeId,
        /// The entry.
        entry_id: Uuid,
        /// This side's (the sender's) account of it.
        report: TransferReport,
    },
    /// A pushed transfer was accepted, received and verified.
    FilesReceived {
        /// Who sent it.
        from: NodeId,
        /// The receiver's account of it.
        report: TransferReport,
    },
}
