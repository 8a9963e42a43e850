//! `secrets.redb`: the paired devices on disk.
//!
//! Tables (redb 4 file format):
//!
//! | table | key | value |
//! |---|---|---|
//! | `tether_meta` | `&str` | `u64`; `"schema_version"` → [`SCHEMA_VERSION`] |
//! | `paired_devices` | node id, 32 bytes | sealed record (see [`crate::record`]) |
//! | `revoked_nodes` | node id, 32 bytes | revocation time, ms since the Unix epoch |
//! | `transfer_history` | entry number, `u64` | sealed entry (see [`crate::history`]) |
//! | `outbox` | entry number, `u64` | sealed queued send (see [`crate::outbox`]) |
//!
//! Every change is one redb write transaction committed with `fsync` before the call returns,
//! so a crash leaves the store as of the last finished call.
//!
//! **Opening never changes a damaged file.** The file is first read into memory and opened
//! there with redb's integrity check (which verifies the checksum of every page); the schema
//! is checked and every record decrypted from that copy. Only when all of that succeeds is the
//! file itself opened for writing, which is when redb finishes a recovery after a crash. A
//! store that fails any check is reported with a [`StoreError`] and left byte for byte as it
//! was.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use redb::backends::InMemoryBackend;
use redb::{
    Builder, Database, DatabaseError, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    StorageBackend, TableDefinition, TableError, WriteTransaction,
};
use tether_identity::NodeId;

use crate::history::{self, HistoryEntry};
use crate::outbox::{self, OutboxRecord};
use crate::record::{OpenFailure, StoredDevice, from_unix_millis, unix_millis};
use crate::{StorageKey, StoreError, private_fs};

/// Name of the store in the data directory.
pub const SECRETS_FILE: &str = "secrets.redb";

/// The schema version this build writes, and the newest it reads.
pub const SCHEMA_VERSION: u64 = 3;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("tether_meta");
const DEVICES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("paired_devices");
const REVOKED: TableDefinition<'_, &[u8], u64> = TableDefinition::new("revoked_nodes");
const HISTORY: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("transfer_history");
const OUTBOX: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("outbox");
const SCHEMA_KEY: &str = "schema_version";
/// The number the next outbox entry gets (numbers are never given twice).
const OUTBOX_NEXT_KEY: &str = "outbox_next";

/// Upgrades, one per old schema version: `MIGRATIONS[i]` turns version `i + 1` into `i + 2`,
/// inside the same write transaction that then records the new version. A new version adds
/// its step here and bumps [`SCHEMA_VERSION`].
const MIGRATIONS: &[Migration] = &[add_history, add_outbox];

/// One schema upgrade step.
type Migration = fn(&WriteTransaction) -> Result<(), redb::Error>;

/// Version 1 → 2: the transfer history, empty.
fn add_history(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(HISTORY)?;
    Ok(())
}

/// Version 2 → 3: the outbox, empty.
fn add_outbox(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(OUTBOX)?;
    Ok(())
}

/// redb's page cache; the store is small.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Everything the store holds, decrypted.
pub(crate) struct Contents {
    pub(crate) devices: Vec<StoredDevice>,
    pub(crate) revoked: HashMap<NodeId, SystemTime>,
}

/// The open store.
pub(crate) struct SecretsStore {
    db: Database,
    key: StorageKey,
    path: PathBuf,
    /// An exclusive advisory lock on the data directory, held while the store is open, so a
    /// second process gets [`StoreError::InUse`] before it reads a file that is being written.
    _dir_lock: fs::File,
}

impl SecretsStore {
    /// Opens (or creates) the store at `path` and reads everything in it.
    pub(crate) fn open(path: &Path, key: StorageKey) -> Result<(Self, Contents), StoreError> {
        let dir_lock = lock_dir(path)?;
        let contents = match fs::metadata(path) {
            Ok(_) => {
                private_fs::ensure_private_file(path).map_err(io_error("set the mode of", path))?;
                let bytes = fs::read(path).map_err(io_error("read", path))?;
                Some(verify_copy(path, &key, bytes)?)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                private_fs::create_private_empty(path).map_err(io_error("create", path))?;
                None
            }
            Err(error) => return Err(io_error("read", path)(error)),
        };
        let db = builder()
            .create(path)
            .map_err(|error| database_error(path, error))?;
        prepare(path, &db)?;
        let store = Self {
            db,
            key,
            path: path.to_owned(),
            _dir_lock: dir_lock,
        };
        let contents = match contents {
            Some(contents) => contents,
            None => load(path, &store.key, &store.db)?,
        };
        Ok((store, contents))
    }

    /// Inserts or replaces a device's record, and lifts any revocation of its node id.
    pub(crate) fn put(&self, record: &StoredDevice) -> Result<(), StoreError> {
        let sealed = record.seal(&self.key).map_err(StoreError::Random)?;
        let node = record.device.node_id;
        self.write(|txn| {
            txn.open_table(DEVICES)?
                .insert(node.as_bytes().as_slice(), sealed.as_slice())?;
            txn.open_table(REVOKED)?
                .remove(node.as_bytes().as_slice())?;
            Ok(())
        })
    }

    /// Removes a device's record and remembers that its node id is revoked.
    pub(crate) fn revoke(&self, node: &NodeId, at: SystemTime) -> Result<(), StoreError> {
        self.write(|txn| {
            txn.open_table(DEVICES)?
                .remove(node.as_bytes().as_slice())?;
            txn.open_table(REVOKED)?
                .insert(node.as_bytes().as_slice(), unix_millis(at))?;
            Ok(())
        })
    }

    /// Adds a history entry under the next number, and drops the oldest entries beyond `cap`
    /// (at least one is kept), in one transaction. Returns the entry's number.
    pub(crate) fn append_history(
        &self,
        node: &NodeId,
        body: &[u8],
        cap: usize,
    ) -> Result<u64, StoreError> {
        let mut nonce = [0u8; history::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(StoreError::Random)?;
        let cap = u64::try_from(cap.max(1)).unwrap_or(u64::MAX);
        let mut id = 0;
        self.write(|txn| {
            let mut table = txn.open_table(HISTORY)?;
            let last = table.last()?.map_or(0, |(number, _)| number.value());
            id = last.saturating_add(1);
            let sealed = history::seal(&self.key, nonce, id, node, body);
            table.insert(id, sealed.as_slice())?;
            while table.len()? > cap {
                if table.pop_first()?.is_none() {
                    break;
                }
            }
            Ok(())
        })?;
        Ok(id)
    }

    /// The newest history entries first, at most `limit`, only those with `node` if given.
    pub(crate) fn history(
        &self,
        node: Option<&NodeId>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let failed = |error: redb::Error| StoreError::Database {
            path: self.path.clone(),
            source: Box::new(error),
        };
        let txn = self.db.begin_read().map_err(|error| failed(error.into()))?;
        let table = txn
            .open_table(HISTORY)
            .map_err(|error| failed(error.into()))?;
        let mut found = Vec::new();
        for entry in table.iter().map_err(|error| failed(error.into()))?.rev() {
            if found.len() >= limit {
                break;
            }
            let (id, value) = entry.map_err(|error| failed(error.into()))?;
            let id = id.value();
            let entry =
                history::open(&self.key, id, value.value()).ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("history entry {id} does not open"),
                })?;
            if node.is_none_or(|node| *node == entry.node_id) {
                found.push(entry);
            }
        }
        Ok(found)
    }

    /// Adds an outbox entry under the next number, unless the outbox holds `max` entries
    /// already (then `Ok(None)`, nothing written). Returns the entry's number.
    pub(crate) fn queue_outbox(
        &self,
        node: &NodeId,
        body: &[u8],
        max: usize,
    ) -> Result<Option<u64>, StoreError> {
        let mut nonce = [0u8; outbox::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(StoreError::Random)?;
        let max = u64::try_from(max).unwrap_or(u64::MAX);
        let mut id = None;
        self.write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            if table.len()? >= max {
                return Ok(());
            }
            let mut meta = txn.open_table(META)?;
            let next = meta.get(OUTBOX_NEXT_KEY)?.map_or(1, |next| next.value());
            meta.insert(OUTBOX_NEXT_KEY, next.saturating_add(1))?;
            let sealed = outbox::seal(&self.key, nonce, next, node, body);
            table.insert(next, sealed.as_slice())?;
            id = Some(next);
            Ok(())
        })?;
        Ok(id)
    }

    /// Replaces the body of outbox entry `id`, sealed anew; `false` (nothing written) if no
    /// entry has that number.
    pub(crate) fn update_outbox(
        &self,
        id: u64,
        node: &NodeId,
        body: &[u8],
    ) -> Result<bool, StoreError> {
        let mut nonce = [0u8; outbox::NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(StoreError::Random)?;
        let mut found = false;
        self.write(|txn| {
            let mut table = txn.open_table(OUTBOX)?;
            if table.get(id)?.is_none() {
                return Ok(());
            }
            let sealed = outbox::seal(&self.key, nonce, id, node, body);
            table.insert(id, sealed.as_slice())?;
            found = true;
            Ok(())
        })?;
        Ok(found)
    }

    /// Removes outbox entry `id`; whether it was there.
    pub(crate) fn remove_outbox(&self, id: u64) -> Result<bool, StoreError> {
        let mut found = false;
        self.write(|txn| {
            found = txn.open_table(OUTBOX)?.remove(id)?.is_some();
            Ok(())
        })?;
        Ok(found)
    }

    /// Every outbox entry, oldest first.
    pub(crate) fn outbox(&self) -> Result<Vec<OutboxRecord>, StoreError> {
        let failed = |error: redb::Error| StoreError::Database {
            path: self.path.clone(),
            source: Box::new(error),
        };
        let txn = self.db.begin_read().map_err(|error| failed(error.into()))?;
        let table = txn
            .open_table(OUTBOX)
            .map_err(|error| failed(error.into()))?;
        let mut found = Vec::new();
        for entry in table.iter().map_err(|error| failed(error.into()))? {
            let (id, value) = entry.map_err(|error| failed(error.into()))?;
            let id = id.value();
            let entry =
                outbox::open(&self.key, id, value.value()).ok_or_else(|| StoreError::Corrupt {
                    path: self.path.clone(),
                    detail: format!("outbox entry {id} does not open"),
                })?;
            found.push(entry);
        }
        Ok(found)
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn write(
        &self,
        change: impl FnOnce(&WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            change(&txn)?;
            txn.commit()?;
            Ok(())
        };
        run().map_err(|error| StoreError::Database {
            path: self.path.clone(),
            source: Box::new(error),
        })
    }
}

fn lock_dir(path: &Path) -> Result<fs::File, StoreError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let handle = fs::File::open(dir).map_err(io_error("open", dir))?;
    match handle.try_lock() {
        Ok(()) => Ok(handle),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::InUse {
            path: path.to_owned(),
        }),
        Err(fs::TryLockError::Error(error)) => Err(io_error("lock", dir)(error)),
    }
}

fn builder() -> Builder {
    let mut builder = Builder::new();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// Opens an in-memory copy of the file with redb's integrity check, brings its schema up to
/// date there and decrypts everything, without touching the file.
fn verify_copy(path: &Path, key: &StorageKey, bytes: Vec<u8>) -> Result<Contents, StoreError> {
    if bytes.is_empty() {
        // Created, then interrupted before redb wrote anything: a new store.
        return Ok(Contents {
            devices: Vec::new(),
            revoked: HashMap::new(),
        });
    }
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    let backend = InMemoryBackend::new();
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    backend
        .set_len(len)
        .and_then(|()| backend.write(0, &bytes))
        .map_err(|error| corrupt(format!("cannot copy it into memory: {error}")))?;
    drop(bytes);
    // redb documents that only an open *without* the integrity check may panic on a file
    // damaged outside redb; the check is on, and a panic is still caught, as a last line.
    let opened = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut builder = builder();
        builder.set_check_integrity_on_open(true);
        let db = builder
            .create_with_backend(backend)
            .map_err(|error| corrupt(error.to_string()))?;
        prepare(path, &db)?;
        load(path, key, &db)
    }));
    opened.unwrap_or_else(|_| Err(corrupt("redb could not read it".to_owned())))
}

/// Checks the schema version; creates the tables of a new store, or migrates an older one.
fn prepare(path: &Path, db: &Database) -> Result<(), StoreError> {
    let failed = |error: redb::Error| StoreError::Database {
        path: path.to_owned(),
        source: Box::new(error),
    };
    let version = schema_version(db).map_err(failed)?;
    let from = match version {
        Some(SCHEMA_VERSION) => return Ok(()),
        Some(found) if found > SCHEMA_VERSION => {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Some(0) => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail: "schema version 0".to_owned(),
            });
        }
        Some(older) => older,
        None if has_table(db, DEVICES).map_err(failed)? => {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                detail: "it has devices but no schema version".to_owned(),
            });
        }
        None => 0,
    };
    let run = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        if from == 0 {
            txn.open_table(DEVICES)?;
            txn.open_table(REVOKED)?;
            txn.open_table(HISTORY)?;
            txn.open_table(OUTBOX)?;
        } else {
            for version in from..SCHEMA_VERSION {
                let step = usize::try_from(version - 1)
                    .ok()
                    .and_then(|index| MIGRATIONS.get(index));
                match step {
                    Some(step) => step(&txn)?,
                    None => {
                        return Err(redb::StorageError::Corrupted(format!(
                            "no migration from schema version {version}"
                        ))
                        .into());
                    }
                }
            }
        }
        txn.open_table(META)?.insert(SCHEMA_KEY, SCHEMA_VERSION)?;
        txn.commit()?;
        Ok(())
    };
    run().map_err(failed)?;
    if from > 0 {
        tracing::info!(
            path = %path.display(),
            from,
            to = SCHEMA_VERSION,
            "migrated the device store"
        );
    }
    Ok(())
}

fn schema_version(db: &Database) -> Result<Option<u64>, redb::Error> {
    let txn = db.begin_read()?;
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    Ok(table.get(SCHEMA_KEY)?.map(|value| value.value()))
}

fn has_table<V: redb::Value + 'static>(
    db: &Database,
    table: TableDefinition<'_, &[u8], V>,
) -> Result<bool, redb::Error> {
    match db.begin_read()?.open_table(table) {
        Ok(_) => Ok(true),
        Err(TableError::TableDoesNotExist(_)) => Ok(false),
        Err(error) => Err(error.into()),
    }
}

/// Reads and decrypts every record.
fn load(path: &Path, key: &StorageKey, db: &Database) -> Result<Contents, StoreError> {
    let failed = |error: redb::Error| StoreError::Corrupt {
        path: path.to_owned(),
        detail: error.to_string(),
    };
    let bad_key = |what: &str| StoreError::Corrupt {
        path: path.to_owned(),
        detail: format!("a {what} key is not a node id"),
    };
    let txn = db.begin_read().map_err(|error| failed(error.into()))?;
    let devices_table = txn
        .open_table(DEVICES)
        .map_err(|error| failed(error.into()))?;
    let mut devices = Vec::new();
    for entry in devices_table.iter().map_err(|error| failed(error.into()))? {
        let (node, value) = entry.map_err(|error| failed(error.into()))?;
        let node = NodeId::from_slice(node.value()).map_err(|_| bad_key("device"))?;
        let record =
            StoredDevice::open(key, node, value.value()).map_err(|failure| match failure {
                OpenFailure::Undecryptable => StoreError::Undecryptable {
                    path: path.to_owned(),
                    node: node.to_string(),
                },
                OpenFailure::Malformed => StoreError::Corrupt {
                    path: path.to_owned(),
                    detail: format!("the record of node {node} is malformed"),
                },
            })?;
        devices.push(record);
    }
    let revoked_table = txn
        .open_table(REVOKED)
        .map_err(|error| failed(error.into()))?;
    let mut revoked = HashMap::new();
    for entry in revoked_table.iter().map_err(|error| failed(error.into()))? {
        let (node, at) = entry.map_err(|error| failed(error.into()))?;
        let node = NodeId::from_slice(node.value()).map_err(|_| bad_key("revocation"))?;
        revoked.insert(node, from_unix_millis(at.value()));
    }
    Ok(Contents { devices, revoked })
}

fn database_error(path: &Path, error: DatabaseError) -> StoreError {
    match error {
        DatabaseError::DatabaseAlreadyOpen => StoreError::InUse {
            path: path.to_owned(),
        },
        other => StoreError::Database {
            path: path.to_owned(),
            source: Box::new(other),
        },
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError + use<> {
    let path = path.to_owned();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}
