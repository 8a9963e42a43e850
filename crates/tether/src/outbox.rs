//! The outbox: sends queued for a paired device and delivered by the running service when the
//! device is reachable ([`crate::NetworkingService::queue_send`]).
//!
//! Each entry is kept in the device's store (`secrets.redb`, sealed under the storage key like
//! the paired devices, at most [`MAX_OUTBOX`] entries), so it survives a restart or a crash of
//! either side: a service that starts again resumes delivering it, and the transfer engine's
//! resume sends only what the receiver does not hold verified yet. An entry leaves the outbox
//! when the receiver verified everything (the transfer is then in the history like any send),
//! or when it is cancelled ([`crate::NetworkingService::cancel_queued`]). A permanent failure
//! (refused, a path gone, the device unpaired) keeps it, marked [`OutboxState::Failed`], for
//! the person to see and cancel.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tether_identity::{DeviceName, NodeId};
use tether_registry::OutboxRecord;
use tracing::warn;

use crate::{NetworkError, TransferOptions};

pub(crate) mod id;

pub use id::OutboxId;
pub use tether_registry::MAX_OUTBOX;

/// Where a queued send stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxState {
    /// Waiting for the device (never tried yet, or its last try failed in a way that reaching
    /// the device again cures: it is tried again).
    Pending,
    /// Failed in a way trying again does not cure (refused by the device, a path gone, the
    /// device unpaired); [`OutboxEntry::last_error`] says why. Not tried again: cancel it.
    Failed,
}

/// One queued send ([`crate::NetworkingService::outbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxEntry {
    /// Its number.
    pub id: OutboxId,
    /// The device it is for.
    pub node_id: NodeId,
    /// That device's name here now (`None` if it is no longer paired).
    pub device_name: Option<DeviceName>,
    /// What is sent: absolute paths, canonicalised when it was queued; read when it is
    /// delivered, as a send would.
    pub paths: Vec<PathBuf>,
    /// How it is sent (compression, encryption, rate limit, stall bound, retry window).
    pub options: TransferOptions,
    /// Files under `paths` when it was queued.
    pub files: u64,
    /// Their bytes when it was queued.
    pub bytes: u64,
    /// When it was queued, by this device's clock.
    pub queued_at: SystemTime,
    /// How many times delivering it was tried.
    pub attempts: u32,
    /// Why the last try failed (`None` before the first failure).
    pub last_error: Option<String>,
    /// Pending or failed for good.
    pub state: OutboxState,
}

/// An entry as stored (JSON, inside the registry's sealed entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Body {
    pub(crate) paths: Vec<PathBuf>,
    compress: bool,
    encrypt: bool,
    rate_limit: Option<u64>,
    stall_timeout_ms: u64,
    retry_for_ms: u64,
    files: u64,
    bytes: u64,
    queued_at_ms: u64,
    pub(crate) attempts: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) failed: bool,
}

impl Body {
    /// A new entry for `paths` (canonical already) sent with `options`, queued now.
    pub(crate) fn new(
        paths: Vec<PathBuf>,
        options: &TransferOptions,
    ) -> Result<Self, NetworkError> {
        let (files, bytes) = measure(&paths)?;
        Ok(Body {
            paths,
            compress: options.compress,
            encrypt: options.encrypt,
            rate_limit: options.rate_limit,
            stall_timeout_ms: millis(options.stall_timeout),
            retry_for_ms: millis(options.retry_for),
            files,
            bytes,
            queued_at_ms: millis(
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default(),
            ),
            attempts: 0,
            last_error: None,
            failed: false,
        })
    }

    /// The options it is sent with.
    pub(crate) fn options(&self) -> TransferOptions {
        TransferOptions::default()
            .compress(self.compress)
            .encrypt(self.encrypt)
            .rate_limit(self.rate_limit)
            .stall_timeout(Duration::from_millis(self.stall_timeout_ms))
            .retry_for(Duration::from_millis(self.retry_for_ms))
    }

    /// Its JSON.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, NetworkError> {
        serde_json::to_vec(self).map_err(|error| {
            NetworkError::Usage(format!("a queued send must have UTF-8 paths ({error})"))
        })
    }

    /// The body stored in `record`; `None` (with a warning) when this version cannot read it.
    pub(crate) fn decode(record: &OutboxRecord) -> Option<Self> {
        match serde_json::from_slice(&record.body) {
            Ok(body) => Some(body),
            Err(error) => {
                warn!(id = record.id, %error, "skipped a queued send this version cannot read");
                None
            }
        }
    }

    /// The entry as the app sees it.
    pub(crate) fn entry(&self, id: u64, node_id: NodeId, name: Option<DeviceName>) -> OutboxEntry {
        OutboxEntry {
            id: OutboxId::new(id),
            node_id,
            device_name: name,
            paths: self.paths.clone(),
            options: self.options(),
            files: self.files,
            bytes: self.bytes,
            queued_at: UNIX_EPOCH
                .checked_add(Duration::from_millis(self.queued_at_ms))
                .unwrap_or(UNIX_EPOCH),
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            state: if self.failed {
                OutboxState::Failed
            } else {
                OutboxState::Pending
            },
        }
    }
}

/// `paths`, each made absolute and canonical (it must exist now).
pub(crate) fn canonical(paths: &[PathBuf]) -> Result<Vec<PathBuf>, NetworkError> {
    if paths.is_empty() {
        return Err(NetworkError::Usage("nothing to queue: no paths".to_owned()));
    }
    paths
        .iter()
        .map(|path| {
            std::fs::canonicalize(path).map_err(|source| NetworkError::Io {
                path: path.clone(),
                source,
            })
        })
        .collect()
}

/// The files under `paths` and their bytes (symbolic links are not followed).
fn measure(paths: &[PathBuf]) -> Result<(u64, u64), NetworkError> {
    let mut stack: Vec<PathBuf> = paths.to_vec();
    let (mut files, mut bytes) = (0u64, 0u64);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| NetworkError::Io { path, source }
    };
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(io(&path))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(io(&path))? {
                stack.push(entry.map_err(io(&path))?.path());
            }
        } else if meta.is_file() {
            files = files.saturating_add(1);
            bytes = bytes.saturating_add(meta.len());
        }
    }
    Ok((files, bytes))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
