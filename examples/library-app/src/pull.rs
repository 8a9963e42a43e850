//! Pulling a file by entry id: what this device shares ([`OpenLibraryFiles`], the service's
//! [`ShareProvider`]) and a pull this device asked for ([`EntryPull`]), checked against the
//! entry's hash in the synced store before it is recorded as this device's copy.

use std::path::PathBuf;
use std::sync::Arc;

use tether::{
    DeviceInfo, NodeId, ShareProvider, SharedEntry, SyncEntry, TransferEvent, TransferHandle,
    TransferReport, Uuid,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::store::hash_file;
use crate::{AppError, AppEvent, Store, StoreError};

/// The app's [`ShareProvider`]: a paired device may pull an entry when it is in this store,
/// not deleted, has a content hash and a file on this device, and its library is open here.
///
/// The rule is the same for every paired device (Tether asks only about paired ones), as
/// [`LibraryHandler`](crate::LibraryHandler) lets every paired device sync every library. A
/// closed library is not loaded on this node: its entries still sync, but its files are not
/// served. An id not in the store is never resolved, and the path served is only ever the one
/// the store recorded for that id (added here, or pulled and verified). An app with
/// per-library sharing would check `from` here.
///
/// Tether calls it on its tasks and wants a quick answer: it is two redb reads.
#[derive(Debug, Clone)]
pub struct OpenLibraryFiles {
    store: Arc<Store>,
}

impl OpenLibraryFiles {
    /// A provider that answers from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    fn file_of(&self, entry_id: Uuid) -> Result<Option<PathBuf>, StoreError> {
        let Some(stored) = self.store.entry(entry_id)? else {
            return Ok(None);
        };
        if stored.entry.deleted || stored.entry.hash.is_none() {
            return Ok(None);
        }
        let open = self
            .store
            .library(stored.library_id)?
            .is_some_and(|library| library.open);
        Ok(stored.source.filter(|_| open))
    }
}

impl ShareProvider for OpenLibraryFiles {
    fn resolve(&self, from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        match self.file_of(entry_id) {
            Ok(file) => file.map(SharedEntry::new),
            Err(error) => {
                tracing::warn!(device = %from.public_key.fmt_short(), %entry_id,
                    error = %tether::error_chain(&error), "not sharing: the store failed");
                None
            }
        }
    }
}

/// A pull of one entry this device asked for, from
/// [`LibraryApp::pull_entry`](crate::LibraryApp::pull_entry). Its progress goes to the app's
/// events as [`AppEvent::PullProgress`] whether or not [`EntryPull::finish`] is awaited yet.
#[derive(Debug)]
pub struct EntryPull {
    from: NodeId,
    entry: SyncEntry,
    handle: TransferHandle,
    /// Turns the transfer's events into the app's; ends with where the file was placed.
    forwarder: JoinHandle<Option<PathBuf>>,
    store: Arc<Store>,
}

/// A pulled entry, verified against its hash and recorded as this device's copy.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PulledFile {
    /// The entry, as the store holds it.
    pub entry: SyncEntry,
    /// Where the file is now (what this device shares onwards).
    pub path: PathBuf,
    /// The transfer's report (bytes sent in this run, resumed, verified).
    pub report: TransferReport,
}

impl EntryPull {
    pub(crate) fn start(
        from: NodeId,
        entry: SyncEntry,
        mut handle: TransferHandle,
        store: Arc<Store>,
        app_events: broadcast::Sender<AppEvent>,
    ) -> Self {
        // The forwarder reads the transfer's events; the handle keeps cancel and finish.
        let events = handle.take_events();
        let forwarder = tokio::spawn(forward(events, from, entry.entry_id, app_events));
        Self {
            from,
            entry,
            handle,
            forwarder,
            store,
        }
    }

    /// The device asked.
    pub fn from(&self) -> NodeId {
        self.from
    }

    /// The entry asked for, as the store held it when the pull began.
    pub fn entry(&self) -> &SyncEntry {
        &self.entry
    }

    /// Stops the pull; what was received and verified stays in the destination, and the next
    /// pull of the entry into the same directory resumes from it.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// Waits for the end, checks the file's BLAKE3 against the entry's hash, and records it as
    /// this device's copy of the entry. A file that does not match is left where it is, not
    /// recorded, and reported as [`AppError::HashMismatch`].
    pub async fn finish(self) -> Result<PulledFile, AppError> {
        let outcome = self.handle.finish().await;
        let target = self.forwarder.await.map_err(AppError::Task)?;
        let report = outcome?;
        let entry_id = self.entry.entry_id;
        let path = target.ok_or(AppError::NoFileReceived(entry_id))?;
        let expected = self.entry.hash.ok_or(AppError::NothingToPull(entry_id))?;
        let store = Arc::clone(&self.store);
        let file = path.clone();
        let recorded = tokio::task::spawn_blocking(move || {
            let (_, hash) = hash_file(&file).map_err(|source| StoreError::Read {
                path: file.clone(),
                source,
            })?;
            if hash != expected {
                return Ok(None);
            }
            store.set_local_file(entry_id, expected, &file).map(Some)
        })
        .await
        .map_err(AppError::Task)??;
        match recorded {
            None => Err(AppError::HashMismatch { entry_id, path }),
            Some(false) => Err(AppError::EntryChanged(entry_id)),
            Some(true) => Ok(PulledFile {
                entry: self.entry,
                path,
                report,
            }),
        }
    }
}

/// Sends the pull's progress to the app; returns where the entry's file was placed.
async fn forward(
    mut events: mpsc::Receiver<TransferEvent>,
    from: NodeId,
    entry_id: Uuid,
    app_events: broadcast::Sender<AppEvent>,
) -> Option<PathBuf> {
    let mut placed = None;
    while let Some(event) = events.recv().await {
        match event {
            TransferEvent::Progress(progress) => {
                // Nobody listening is fine.
                let _ = app_events.send(AppEvent::PullProgress {
                    from,
                    entry_id,
                    percentage: progress.percentage(),
                    bytes_done: progress.bytes_done,
                    bytes_total: progress.bytes_total,
                });
            }
            TransferEvent::FileDone {
                entry_id: done,
                target: Some(target),
                ..
            } if done == entry_id => placed = Some(target),
            _ => {}
        }
    }
    placed
}
