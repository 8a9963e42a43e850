//! The channels' own redb file: each topic's history and per-sender cursors, so a device
//! restarted on the same data directory numbers its messages on, and asks its peers only for
//! what it missed.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};
use tether::{Hlc, NodeId};

use crate::topic::ChannelMessage;

/// (topic, sender, seq) → a [`Stored`] message.
const MESSAGES: TableDefinition<'_, (&str, [u8; 32], u64), &[u8]> =
    TableDefinition::new("channel_messages");
/// (topic, sender) → the last sequence number delivered (or, for this device, published).
const CURSORS: TableDefinition<'_, (&str, [u8; 32]), u64> = TableDefinition::new("channel_cursors");

/// The file's name in the directory given to [`crate::Channels::open`].
pub const FILE_NAME: &str = "channels.redb";

/// Reading or writing the channels' file failed.
#[derive(Debug, thiserror::Error)]
#[error("channel store failed")]
pub struct StoreError(#[source] redb::Error);

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    hlc: Hlc,
    body: Vec<u8>,
}

/// What one change writes: messages kept, messages evicted, cursors moved.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) kept: Vec<ChannelMessage>,
    pub(crate) evicted: Vec<(NodeId, u64)>,
    pub(crate) cursors: Vec<(NodeId, u64)>,
}

impl Batch {
    pub(crate) fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.evicted.is_empty() && self.cursors.is_empty()
    }
}

/// A topic as kept on disk.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The last sequence number delivered, per sender.
    pub(crate) cursors: Vec<(NodeId, u64)>,
    /// The history, in no particular order.
    pub(crate) history: Vec<ChannelMessage>,
}

/// The open file.
#[derive(Debug)]
pub(crate) struct Store {
    db: Database,
}

impl Store {
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| StoreError(error.into()))?;
        let db = Database::create(dir.join(FILE_NAME))?;
        let txn = db.begin_write()?;
        txn.open_table(MESSAGES)?;
        txn.open_table(CURSORS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// A topic's cursors and history (entries that do not decode are skipped).
    pub(crate) fn load(&self, topic: &str) -> Result<Loaded, StoreError> {
        let txn = self.db.begin_read()?;
        let cursors_table = txn.open_table(CURSORS)?;
        let mut cursors = Vec::new();
        for row in cursors_table.range((topic, [0u8; 32])..=(topic, [0xff; 32]))? {
            let (key, seq) = row?;
            if let Ok(sender) = NodeId::from_bytes(&key.value().1) {
                cursors.push((sender, seq.value()));
            }
        }
        let messages = txn.open_table(MESSAGES)?;
        let mut history = Vec::new();
        for row in messages.range((topic, [0u8; 32], 0)..=(topic, [0xff; 32], u64::MAX))? {
            let (key, value) = row?;
            let (_, sender, seq) = key.value();
            let (Ok(sender), Ok(stored)) = (
                NodeId::from_bytes(&sender),
                postcard::from_bytes::<Stored>(value.value()),
            ) else {
                continue;
            };
            history.push(ChannelMessage {
                sender,
                seq,
                hlc: stored.hlc,
                body: stored.body,
            });
        }
        Ok(Loaded { cursors, history })
    }

    /// Writes one change of a topic in one transaction.
    pub(crate) fn write(&self, topic: &str, batch: &Batch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        {
            let mut messages = txn.open_table(MESSAGES)?;
            for entry in &batch.kept {
                let stored = Stored {
                    hlc: entry.hlc,
                    body: entry.body.clone(),
                };
                let bytes = postcard::to_allocvec(&stored).unwrap_or_default();
                messages.insert(
                    (topic, *entry.sender.as_bytes(), entry.seq),
                    bytes.as_slice(),
                )?;
            }
            for (sender, seq) in &batch.evicted {
                messages.remove((topic, *sender.as_bytes(), *seq))?;
            }
            let mut cursors = txn.open_table(CURSORS)?;
            for (sender, seq) in &batch.cursors {
                cursors.insert((topic, *sender.as_bytes()), *seq)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}
