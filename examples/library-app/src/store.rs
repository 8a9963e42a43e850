//! The app's local store: libraries, their entries, and a change log in HLC order, in redb.
//!
//! | table | key | value |
//! |---|---|---|
//! | `ids` | `"device"` | this device's id in the app |
//! | `clock` | `"clock"` | the last HLC timestamp issued or seen |
//! | `libraries` | library id | JSON [`Library`] |
//! | `entries` | entry id | JSON [`StoredEntry`] |
//! | `changes` | (library id, HLC) | entry id |
//! | `cursors` | (peer's node id, library id) | the last HLC synced from that peer |
//!
//! Each entry has exactly one row in `changes`, at its latest HLC, so "what changed after
//! this cursor" is one range scan in HLC order, and an entry changed twice is sent once. The
//! wall clock is passed in (`wall_ms`): tests drive it.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tether::{ContentHash, Hlc, LibraryInfo, NodeId, SyncEntry, Uuid};

use crate::StoreError;

type HlcKey = (u64, u32, u64);
type ChangeKey = (u128, u64, u32, u64);

const IDS: TableDefinition<'_, &str, u128> = TableDefinition::new("ids");
const CLOCK: TableDefinition<'_, &str, HlcKey> = TableDefinition::new("clock");
const LIBRARIES: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("libraries");
const ENTRIES: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("entries");
const CHANGES: TableDefinition<'_, ChangeKey, u128> = TableDefinition::new("changes");
const CURSORS: TableDefinition<'_, ([u8; 32], u128), HlcKey> = TableDefinition::new("cursors");

/// The longest library name, in bytes (the wire's limit for names).
pub const MAX_LIBRARY_NAME_LEN: usize = tether::limits::MAX_NAME_LEN;

/// A library: a named set of entries that devices share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    /// Its id, the same on every device.
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// Whether it is open on this device (what the presence protocol reports).
    pub open: bool,
}

/// An entry as kept here: the entry that syncs, which library it is in, and the local file
/// it was made from (`None` for entries learnt from a peer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The library it belongs to.
    pub library_id: Uuid,
    /// What a peer gets in a `SyncResponse`.
    pub entry: SyncEntry,
    /// The file on this device, if the entry was added here.
    pub source: Option<PathBuf>,
}

/// The store (see the module docs). All methods are blocking (redb); call them from
/// `spawn_blocking` on a busy runtime.
#[derive(Debug)]
pub struct Store {
    db: Database,
    device_id: Uuid,
    /// The clock, always at the last timestamp issued or seen; persisted with every change.
    clock: Mutex<Hlc>,
}

impl Store {
    /// Opens the store at `path`, creating it (and this device's id) if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(db_error)?;
        let txn = db.begin_write().map_err(db_error)?;
        let (device_id, clock) = {
            let mut ids = txn.open_table(IDS).map_err(db_error)?;
            let stored = ids.get("device").map_err(db_error)?.map(|id| id.value());
            let device_id = match stored {
                Some(id) => Uuid::from_u128(id),
                None => {
                    let id = Uuid::new_v4();
                    ids.insert("device", id.as_u128()).map_err(db_error)?;
                    id
                }
            };
            let clock = txn
                .open_table(CLOCK)
                .map_err(db_error)?
                .get("clock")
                .map_err(db_error)?
                .map(|last| hlc(last.value()))
                // The node tiebreak: the device id's first eight bytes.
                .unwrap_or(Hlc::new(device_id.as_u64_pair().0));
            for table in [LIBRARIES, ENTRIES] {
                txn.open_table(table).map_err(db_error)?;
            }
            txn.open_table(CHANGES).map_err(db_error)?;
            txn.open_table(CURSORS).map_err(db_error)?;
            (device_id, clock)
        };
        txn.commit().map_err(db_error)?;
        Ok(Self {
            db,
            device_id,
            clock: Mutex::new(clock),
        })
    }

    /// This device's id in the app (also the HLC tiebreak), made when the store was created.
    pub fn device_id(&self) -> Uuid {
        self.device_id
    }

    /// Creates an open library.
    pub fn create_library(&self, name: &str) -> Result<Library, StoreError> {
        let library = Library {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            open: true,
        };
        self.put_library(&library)?;
        Ok(library)
    }

    /// Adds or replaces a library record (a library learnt from a peer, or a rename).
    pub fn put_library(&self, library: &Library) -> Result<(), StoreError> {
        if library.name.is_empty() || library.name.len() > MAX_LIBRARY_NAME_LEN {
            return Err(StoreError::BadName);
        }
        let json = serde_json::to_vec(library).map_err(StoreError::Corrupt)?;
        let txn = self.db.begin_write().map_err(db_error)?;
        txn.open_table(LIBRARIES)
            .map_err(db_error)?
            .insert(library.id.as_u128(), json.as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)
    }

    /// Opens or closes a library on this device.
    pub fn set_open(&self, library_id: Uuid, open: bool) -> Result<(), StoreError> {
        let mut library = self
            .library(library_id)?
            .ok_or(StoreError::UnknownLibrary(library_id))?;
        library.open = open;
        self.put_library(&library)
    }

    /// One library.
    pub fn library(&self, id: Uuid) -> Result<Option<Library>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(LIBRARIES).map_err(db_error)?;
        let json = table.get(id.as_u128()).map_err(db_error)?;
        json.map(|json| serde_json::from_slice(json.value()).map_err(StoreError::Corrupt))
            .transpose()
    }

    /// Every library, in id order.
    pub fn libraries(&self) -> Result<Vec<Library>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(LIBRARIES).map_err(db_error)?;
        let mut libraries = Vec::new();
        for row in table.iter().map_err(db_error)? {
            let (_, json) = row.map_err(db_error)?;
            libraries.push(serde_json::from_slice(json.value()).map_err(StoreError::Corrupt)?);
        }
        Ok(libraries)
    }

    /// A library as announced: its entry count and latest change.
    pub fn library_info(&self, id: Uuid) -> Result<Option<LibraryInfo>, StoreError> {
        let Some(library) = self.library(id)? else {
            return Ok(None);
        };
        let txn = self.db.begin_read().map_err(db_error)?;
        let changes = txn.open_table(CHANGES).map_err(db_error)?;
        let range = changes
            .range(library_range(id, Hlc::ZERO, true))
            .map_err(db_error)?;
        let mut entry_count = 0u64;
        let mut updated = Hlc::ZERO;
        for row in range {
            let (key, _) = row.map_err(db_error)?;
            let (_, physical, logical, node) = key.value();
            entry_count += 1;
            updated = hlc((physical, logical, node));
        }
        Ok(Some(LibraryInfo {
            id: library.id,
            name: library.name,
            entry_count,
            updated,
        }))
    }

    /// Adds the file at `source` to a library as `path`: its size and BLAKE3 hash, stamped
    /// with a new HLC timestamp.
    pub fn add_file(
        &self,
        library_id: Uuid,
        path: &str,
        source: &Path,
        wall_ms: u64,
    ) -> Result<SyncEntry, StoreError> {
        let read = |error| StoreError::Read {
            path: source.to_owned(),
            source: error,
        };
        let (size, hash) = hash_file(source).map_err(read)?;
        self.write_local(library_id, Uuid::new_v4(), wall_ms, |hlc, entry_id| {
            let entry = SyncEntry {
                entry_id,
                path: path.to_owned(),
                size,
                hash: Some(hash),
                hlc,
                deleted: false,
            };
            (entry, Some(source.to_owned()))
        })
    }

    /// Records that an entry was deleted (a tombstone that syncs like any change).
    pub fn delete_entry(&self, entry_id: Uuid, wall_ms: u64) -> Result<SyncEntry, StoreError> {
        let stored = self
            .entry(entry_id)?
            .ok_or(StoreError::UnknownEntry(entry_id))?;
        self.write_local(stored.library_id, entry_id, wall_ms, |hlc, entry_id| {
            let entry = SyncEntry {
                entry_id,
                path: stored.entry.path.clone(),
                size: 0,
                hash: None,
                hlc,
                deleted: true,
            };
            (entry, None)
        })
    }

    /// One entry.
    pub fn entry(&self, entry_id: Uuid) -> Result<Option<StoredEntry>, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(ENTRIES).map_err(db_error)?;
        let json = table.get(entry_id.as_u128()).map_err(db_error)?;
        json.map(|json| serde_json::from_slice(json.value()).map_err(StoreError::Corrupt))
            .transpose()
    }

    /// Records `file` as this device's copy of an entry, if the entry still has the content
    /// `hash` (it may have changed since the file was checked). Returns whether it was
    /// recorded. A local fact: the entry's timestamp does not move, nothing syncs.
    pub fn set_local_file(
        &self,
        entry_id: Uuid,
        hash: ContentHash,
        file: &Path,
    ) -> Result<bool, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let Some(mut stored) = read_entry(&txn, entry_id)? else {
            return Ok(false);
        };
        if stored.entry.deleted || stored.entry.hash != Some(hash) {
            return Ok(false);
        }
        stored.source = Some(file.to_owned());
        let json = serde_json::to_vec(&stored).map_err(StoreError::Corrupt)?;
        txn.open_table(ENTRIES)
            .map_err(db_error)?
            .insert(entry_id.as_u128(), json.as_slice())
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        Ok(true)
    }

    /// At most `limit` entries of a library changed strictly after `after`, in HLC order, and
    /// whether more follow.
    pub fn changes_after(
        &self,
        library_id: Uuid,
        after: Hlc,
        limit: usize,
    ) -> Result<(Vec<SyncEntry>, bool), StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let changes = txn.open_table(CHANGES).map_err(db_error)?;
        let entries = txn.open_table(ENTRIES).map_err(db_error)?;
        let mut page = Vec::new();
        for row in changes
            .range(library_range(library_id, after, false))
            .map_err(db_error)?
        {
            if page.len() == limit {
                return Ok((page, true));
            }
            let (_, entry_id) = row.map_err(db_error)?;
            let json = entries
                .get(entry_id.value())
                .map_err(db_error)?
                .ok_or(StoreError::UnknownEntry(Uuid::from_u128(entry_id.value())))?;
            let stored: StoredEntry =
                serde_json::from_slice(json.value()).map_err(StoreError::Corrupt)?;
            page.push(stored.entry);
        }
        Ok((page, false))
    }

    /// Merges one page of a peer's entries into a library (last writer wins, by HLC) and
    /// moves that peer's cursor to `cursor`, in one transaction. The clock moves past every
    /// timestamp seen; one too far ahead of the wall clock refuses the whole page. Returns
    /// how many entries changed here. An entry this device keeps in another library is
    /// left alone: a peer cannot move entries between libraries.
    pub fn merge_remote(
        &self,
        peer: &NodeId,
        library_id: Uuid,
        page: &[SyncEntry],
        cursor: Hlc,
        wall_ms: u64,
    ) -> Result<usize, StoreError> {
        let txn = self.db.begin_write().map_err(db_error)?;
        let mut clock = self.clock.lock();
        let mut next_clock = *clock;
        let mut applied = 0;
        for remote in page {
            next_clock
                .update(&remote.hlc, wall_ms)
                .map_err(|error| StoreError::Clock(Box::new(error)))?;
            let newer = match read_entry(&txn, remote.entry_id)? {
                None => true,
                Some(local) => local.library_id == library_id && local.entry.hlc < remote.hlc,
            };
            if newer {
                let stored = StoredEntry {
                    library_id,
                    entry: remote.clone(),
                    source: None,
                };
                write_entry(&txn, &stored)?;
                applied += 1;
            }
        }
        txn.open_table(CURSORS)
            .map_err(db_error)?
            .insert((*peer.as_bytes(), library_id.as_u128()), key(&cursor))
            .map_err(db_error)?;
        txn.open_table(CLOCK)
            .map_err(db_error)?
            .insert("clock", key(&next_clock))
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        *clock = next_clock;
        Ok(applied)
    }

    /// The last timestamp synced from `peer` for a library ([`Hlc::ZERO`] before the first
    /// sync).
    pub fn cursor(&self, peer: &NodeId, library_id: Uuid) -> Result<Hlc, StoreError> {
        let txn = self.db.begin_read().map_err(db_error)?;
        let table = txn.open_table(CURSORS).map_err(db_error)?;
        let cursor = table
            .get((*peer.as_bytes(), library_id.as_u128()))
            .map_err(db_error)?
            .map_or(Hlc::ZERO, |last| hlc(last.value()));
        Ok(cursor)
    }

    /// Writes an entry made on this device with a new timestamp.
    fn write_local(
        &self,
        library_id: Uuid,
        entry_id: Uuid,
        wall_ms: u64,
        make: impl FnOnce(Hlc, Uuid) -> (SyncEntry, Option<PathBuf>),
    ) -> Result<SyncEntry, StoreError> {
        if self.library(library_id)?.is_none() {
            return Err(StoreError::UnknownLibrary(library_id));
        }
        let txn = self.db.begin_write().map_err(db_error)?;
        let mut clock = self.clock.lock();
        let mut next_clock = *clock;
        let stamp = next_clock
            .now(wall_ms)
            .map_err(|error| StoreError::Clock(Box::new(error)))?;
        let (entry, source) = make(stamp, entry_id);
        write_entry(
            &txn,
            &StoredEntry {
                library_id,
                entry: entry.clone(),
                source,
            },
        )?;
        txn.open_table(CLOCK)
            .map_err(db_error)?
            .insert("clock", key(&next_clock))
            .map_err(db_error)?;
        txn.commit().map_err(db_error)?;
        *clock = next_clock;
        Ok(entry)
    }
}

/// A file's size and BLAKE3 hash, read in one pass.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, ContentHash)> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let hash = blake3::Hasher::new().update_reader(file)?.finalize();
    Ok((size, ContentHash(*hash.as_bytes())))
}

/// Replaces an entry and moves its row in the change log to its new timestamp.
fn write_entry(txn: &WriteTransaction, stored: &StoredEntry) -> Result<(), StoreError> {
    let id = stored.entry.entry_id;
    let mut changes = txn.open_table(CHANGES).map_err(db_error)?;
    if let Some(old) = read_entry(txn, id)? {
        let (physical, logical, node) = key(&old.entry.hlc);
        changes
            .remove((old.library_id.as_u128(), physical, logical, node))
            .map_err(db_error)?;
    }
    let (physical, logical, node) = key(&stored.entry.hlc);
    changes
        .insert(
            (stored.library_id.as_u128(), physical, logical, node),
            id.as_u128(),
        )
        .map_err(db_error)?;
    let json = serde_json::to_vec(stored).map_err(StoreError::Corrupt)?;
    txn.open_table(ENTRIES)
        .map_err(db_error)?
        .insert(id.as_u128(), json.as_slice())
        .map_err(db_error)?;
    Ok(())
}

fn read_entry(txn: &WriteTransaction, entry_id: Uuid) -> Result<Option<StoredEntry>, StoreError> {
    let table = txn.open_table(ENTRIES).map_err(db_error)?;
    let json = table.get(entry_id.as_u128()).map_err(db_error)?;
    json.map(|json| serde_json::from_slice(json.value()).map_err(StoreError::Corrupt))
        .transpose()
}

/// The change-log keys of a library from `after` (included or not) to its end.
fn library_range(
    library_id: Uuid,
    after: Hlc,
    include: bool,
) -> (Bound<ChangeKey>, Bound<ChangeKey>) {
    let id = library_id.as_u128();
    let (physical, logical, node) = key(&after);
    let start = (id, physical, logical, node);
    let start = if include {
        Bound::Included(start)
    } else {
        Bound::Excluded(start)
    };
    (start, Bound::Included((id, u64::MAX, u32::MAX, u64::MAX)))
}

fn key(hlc: &Hlc) -> HlcKey {
    (hlc.physical_ms, hlc.logical, hlc.node)
}

fn hlc((physical_ms, logical, node): HlcKey) -> Hlc {
    Hlc {
        physical_ms,
        logical,
        node,
    }
}

fn db_error(error: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(error.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("library.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn changes_come_in_hlc_order_in_pages_and_once_per_entry() {
        let (dir, store) = store();
        let library = store.create_library("Photos").unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"hello").unwrap();
        // The wall clock steps back: the HLC does not.
        let added: Vec<_> = [5_000, 4_000, 4_000, 6_000, 1]
            .into_iter()
            .map(|wall| store.add_file(library.id, "a.txt", &file, wall).unwrap())
            .collect();
        let (first, more) = store.changes_after(library.id, Hlc::ZERO, 3).unwrap();
        assert!(more);
        let (rest, more) = store.changes_after(library.id, first[2].hlc, 3).unwrap();
        assert!(!more);
        let all: Vec<_> = first.into_iter().chain(rest).collect();
        assert_eq!(all, added);
        assert!(all.windows(2).all(|pair| pair[0].hlc < pair[1].hlc));

        // Deleting the first entry moves it to the end of the log: sent once, as a tombstone.
        let tombstone = store.delete_entry(added[0].entry_id, 7_000).unwrap();
        let (all, _) = store.changes_after(library.id, Hlc::ZERO, 100).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all.last(), Some(&tombstone));
        let (after, _) = store.changes_after(library.id, added[4].hlc, 100).unwrap();
        assert_eq!(after, [tombstone]);
    }

    #[test]
    fn a_local_copy_is_recorded_only_for_the_same_content() {
        let (dir, store) = store();
        let library = store.create_library("Photos").unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"hello").unwrap();
        let entry = store.add_file(library.id, "a.txt", &file, 1_000).unwrap();
        let copy = dir.path().join("copy.txt");
        let hash = entry.hash.unwrap();

        assert!(
            !store
                .set_local_file(entry.entry_id, ContentHash([0; 32]), &copy)
                .unwrap()
        );
        assert!(!store.set_local_file(Uuid::new_v4(), hash, &copy).unwrap());
        assert!(store.set_local_file(entry.entry_id, hash, &copy).unwrap());
        let stored = store.entry(entry.entry_id).unwrap().unwrap();
        assert_eq!(stored.source, Some(copy.clone()));
        // Not a change: nothing new to sync.
        assert_eq!(stored.entry, entry);
        let (after, _) = store.changes_after(library.id, entry.hlc, 10).unwrap();
        assert!(after.is_empty());

        store.delete_entry(entry.entry_id, 2_000).unwrap();
        assert!(!store.set_local_file(entry.entry_id, hash, &copy).unwrap());
    }

    #[test]
    fn the_clock_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("library.redb");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"hello").unwrap();
        let (library, first) = {
            let store = Store::open(&path).unwrap();
            let library = store.create_library("Docs").unwrap();
            (
                library.id,
                store.add_file(library.id, "a", &file, 9_000).unwrap(),
            )
        };
        let store = Store::open(&path).unwrap();
        let second = store.add_file(library, "b", &file, 1_000).unwrap();
        assert!(second.hlc > first.hlc);
    }
}
