//! The manifest: what a transfer offers, and the receiver's checks on it.
//!
//! A manifest lists every entry of a transfer: files (path, size, modification time, BLAKE3 hash)
//! and directories (so empty ones arrive too). The receiver checks it as it arrives, against
//! [`Limits`], before it allocates anything in proportion to what the peer claims, and holds
//! it in memory linear in its encoded size: each entry once, and each name once in a
//! [`NameTree`] (never a string per ancestor of a path).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tether_wire::ContentHash;
use uuid::Uuid;

use crate::name_tree::{NameTree, Refusal};
use crate::path::{PathError, RelPath};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory (created even when empty).
    Dir,
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Names the entry in requests and data frames.
    pub id: Uuid,
    /// `/`-separated path relative to the receiver's destination (checked by [`RelPath`]).
    pub path: String,
    /// File or directory.
    pub kind: EntryKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 if unknown or before 1970).
    pub mtime_ns: u64,
    /// BLAKE3 of the contents; required for files, absent for directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<ContentHash>,
}

/// Bounds on what a peer may offer. A manifest past any of them is refused before consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Most entries (files and directories) in one transfer; the directories their paths
    /// imply without listing them count too.
    pub max_entries: u64,
    /// Most bytes in one transfer, all files together. The receiver keeps 32 bytes of chunk hash
    /// per 256 KiB (1/8192) in memory, so this also bounds that memory.
    pub max_total_bytes: u64,
    /// Most bytes of manifest JSON, all pages together.
    pub max_manifest_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 100_000,
            max_total_bytes: 1 << 40,
            // 100,000 files with 200-byte names in a folder of their own (tests/folders.rs);
            // a receiver checking a manifest this large stays under 64 MiB
            // (tests/manifest_memory.rs).
            max_manifest_bytes: 64 << 20,
        }
    }
}

impl Limits {
    /// Sets [`max_entries`](Self::max_entries).
    pub fn max_entries(mut self, max: u64) -> Self {
        self.max_entries = max;
        self
    }

    /// Sets [`max_total_bytes`](Self::max_total_bytes).
    pub fn max_total_bytes(mut self, max: u64) -> Self {
        self.max_total_bytes = max;
        self
    }

    /// Sets [`max_manifest_bytes`](Self::max_manifest_bytes).
    pub fn max_manifest_bytes(mut self, max: u64) -> Self {
        self.max_manifest_bytes = max;
        self
    }
}

/// Why a manifest was refused. Always the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// An entry's path is not acceptable.
    #[error("entry path {path:?}: {reason}")]
    Path {
        /// The path, cut to 256 bytes.
        path: String,
        /// What is wrong with it.
        reason: PathError,
    },
    /// A limit was exceeded.
    #[error("{what}: {value} is over the limit of {max}")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The value offered (or reached so far).
        value: u64,
        /// The limit.
        max: u64,
    },
    /// Two entries share an id or a path, or a file sits where another entry needs a directory.
    #[error("entry {path:?} conflicts with another entry")]
    Conflict {
        /// The later entry's path.
        path: String,
    },
    /// Two names differ only in case or Unicode normalisation, so file systems that ignore
    /// those (macOS, Windows, exFAT) would take them for one file.
    #[error(
        "{path:?} and {other:?} name the same file where case or Unicode normalisation is \
         ignored"
    )]
    Collision {
        /// The later entry's path, up to the colliding name (cut to 256 bytes).
        path: String,
        /// The name already in the manifest, with its directories (cut to 256 bytes).
        other: String,
    },
    /// The manifest did not arrive within the receiver's deadline.
    #[error("the manifest did not arrive within {secs} s")]
    TooSlow {
        /// The deadline, in seconds.
        secs: u64,
    },
    /// An entry contradicts itself (a file without a hash, a directory with a size) or the offer
    /// (more entries or bytes than announced).
    #[error("inconsistent manifest: {0}")]
    Inconsistent(&'static str),
}

/// A manifest entry that passed the checks, with its path parsed (made once the offer is
/// accepted: before, the entry alone is kept, so each path is held once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckedEntry {
    pub(crate) entry: ManifestEntry,
    pub(crate) path: RelPath,
}

impl CheckedEntry {
    /// `entry` with its path parsed again (it passed [`ManifestBuilder::push`]).
    pub(crate) fn new(entry: ManifestEntry) -> Result<Self, ManifestError> {
        let path = checked_path(&entry)?;
        Ok(CheckedEntry { entry, path })
    }
}

/// The path of an entry, parsed.
pub(crate) fn checked_path(entry: &ManifestEntry) -> Result<RelPath, ManifestError> {
    RelPath::parse(&entry.path).map_err(|reason| ManifestError::Path {
        path: cut(&entry.path),
        reason,
    })
}

/// A manifest that passed every check, as the receiver holds it: each entry's fields, and its
/// path as a node of the manifest's name tree (each name kept once), so it costs memory linear
/// in its encoded size however deep or long its paths. Entries come out one at a time with
/// their paths spelled out.
#[derive(Debug, Clone)]
pub struct Manifest {
    names: NameTree,
    entries: Vec<StoredEntry>,
}

/// One entry of a [`Manifest`], its path a node of the name tree.
#[derive(Debug, Clone)]
struct StoredEntry {
    id: Uuid,
    node: u32,
    kind: EntryKind,
    size: u64,
    mtime_ns: u64,
    hash: Option<ContentHash>,
}

impl Manifest {
    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many entries are files.
    pub(crate) fn files(&self) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64
    }

    /// Entry `index`, its path spelled out.
    pub fn get(&self, index: usize) -> Option<ManifestEntry> {
        self.entries.get(index).map(|stored| self.spelled(stored))
    }

    /// Every entry in the order it was offered, each path spelled out as it comes.
    pub fn iter(&self) -> impl Iterator<Item = ManifestEntry> + '_ {
        self.entries.iter().map(|stored| self.spelled(stored))
    }

    fn spelled(&self, stored: &StoredEntry) -> ManifestEntry {
        ManifestEntry {
            id: stored.id,
            path: self.names.path(stored.node),
            kind: stored.kind,
            size: stored.size,
            mtime_ns: stored.mtime_ns,
            hash: stored.hash,
        }
    }
}

/// Collects manifest pages, checking each entry as it arrives.
#[derive(Debug)]
pub(crate) struct ManifestBuilder {
    limits: Limits,
    announced_entries: u64,
    announced_bytes: u64,
    entries: Vec<StoredEntry>,
    ids: HashSet<Uuid>,
    /// Every name so far, and whether it is a directory (explicit or implied by a deeper path).
    names: NameTree,
    total_bytes: u64,
    manifest_bytes: u64,
}

impl ManifestBuilder {
    /// Starts a manifest the offer announced as `entries` entries holding `total_bytes`; refuses
    /// the announcement itself if it is over the limits.
    pub(crate) fn new(
        limits: Limits,
        entries: u64,
        total_bytes: u64,
    ) -> Result<Self, ManifestError> {
        limit("entries", entries, limits.max_entries)?;
        limit("total bytes", total_bytes, limits.max_total_bytes)?;
        Ok(ManifestBuilder {
            limits,
            announced_entries: entries,
            announced_bytes: total_bytes,
            // Grows with what actually arrives, not with what was announced.
            entries: Vec::new(),
            ids: HashSet::new(),
            names: NameTree::new(limits.max_entries),
            total_bytes: 0,
            manifest_bytes: 0,
        })
    }

    /// Accounts for one page of `bytes` bytes of JSON.
    pub(crate) fn page_bytes(&mut self, bytes: usize) -> Result<(), ManifestError> {
        self.manifest_bytes = self.manifest_bytes.saturating_add(bytes as u64);
        limit(
            "manifest bytes",
            self.manifest_bytes,
            self.limits.max_manifest_bytes,
        )
    }

    /// Checks and adds one entry.
    pub(crate) fn push(&mut self, entry: &ManifestEntry) -> Result<(), ManifestError> {
        let count = self.entries.len() as u64 + 1;
        if count > self.announced_entries {
            return Err(ManifestError::Inconsistent("more entries than announced"));
        }
        checked_path(entry)?;
        match entry.kind {
            EntryKind::File if entry.hash.is_none() => {
                return Err(ManifestError::Inconsistent("file without a hash"));
            }
            EntryKind::Dir if entry.size != 0 || entry.hash.is_some() => {
                return Err(ManifestError::Inconsistent("directory with a size or hash"));
            }
            _ => {}
        }
        self.total_bytes = self
            .total_bytes
            .checked_add(entry.size)
            .ok_or(ManifestError::Inconsistent("sizes overflow"))?;
        limit("total bytes", self.total_bytes, self.limits.max_total_bytes)?;
        if self.total_bytes > self.announced_bytes {
            return Err(ManifestError::Inconsistent("more bytes than announced"));
        }
        if !self.ids.insert(entry.id) {
            return Err(ManifestError::Conflict {
                path: cut(&entry.path),
            });
        }
        let node = self.claim_path(&entry.path, entry.kind == EntryKind::Dir)?;
        self.entries.push(StoredEntry {
            id: entry.id,
            node,
            kind: entry.kind,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            hash: entry.hash,
        });
        Ok(())
    }

    /// Records `path` and the directories it implies, refusing a file where a directory is
    /// needed, twice the same path, and two spellings of one name.
    fn claim_path(&mut self, path: &str, is_dir: bool) -> Result<u32, ManifestError> {
        self.names
            .insert(path, is_dir)
            .map_err(|refusal| match refusal {
                Refusal::Conflict => ManifestError::Conflict { path: cut(path) },
                Refusal::Collision { at, other } => ManifestError::Collision {
                    path: cut(&at),
                    other: cut(&other),
                },
                Refusal::Full { names } => ManifestError::Limit {
                    what: "entries and the directories their paths imply",
                    value: names.saturating_add(1),
                    max: self.limits.max_entries,
                },
            })
    }

    /// Whether every announced entry has arrived.
    pub(crate) fn is_complete(&self) -> bool {
        self.entries.len() as u64 == self.announced_entries
    }

    /// The checked manifest, once complete.
    pub(crate) fn finish(self) -> Result<Manifest, ManifestError> {
        if !self.is_complete() || self.total_bytes != self.announced_bytes {
            return Err(ManifestError::Inconsistent(
                "fewer entries or bytes than announced",
            ));
        }
        Ok(Manifest {
            names: self.names,
            entries: self.entries,
        })
    }
}

fn limit(what: &'static str, value: u64, max: u64) -> Result<(), ManifestError> {
    if value > max {
        return Err(ManifestError::Limit { what, value, max });
    }
    Ok(())
}

fn cut(path: &str) -> String {
    let mut end = path.len().min(256);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    path.get(..end).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(id: u128, path: &str, size: u64) -> ManifestEntry {
        ManifestEntry {
            id: Uuid::from_u128(id),
            path: path.into(),
            kind: EntryKind::File,
            size,
            mtime_ns: 1,
            hash: Some(ContentHash([0; 32])),
        }
    }

    fn dir(id: u128, path: &str) -> ManifestEntry {
        ManifestEntry {
            kind: EntryKind::Dir,
            size: 0,
            hash: None,
            ..file(id, path, 0)
        }
    }

    #[test]
    fn a_directory_tree_passes() {
        let mut b = ManifestBuilder::new(Limits::default(), 4, 30).unwrap();
        b.push(&file(1, "d/a", 10)).unwrap();
        b.push(&file(2, "d/e/b", 20)).unwrap();
        b.push(&dir(3, "d")).unwrap();
        b.push(&dir(4, "empty")).unwrap();
        let entries = b.finish().unwrap();
        assert_eq!(entries.len(), 4);
    }

    #[test]
    fn announcements_over_limits_refused_before_anything_is_allocated() {
        let err = ManifestBuilder::new(Limits::default(), 1_000_000, 0).unwrap_err();
        assert!(matches!(
            err,
            ManifestError::Limit {
                what: "entries",
                ..
            }
        ));
        let err = ManifestBuilder::new(Limits::default(), 1, u64::MAX).unwrap_err();
        assert!(matches!(
            err,
            ManifestError::Limit {
                what: "total bytes",
                ..
            }
        ));
    }

    #[test]
    fn lies_and_conflicts_refused() {
        let new = || ManifestBuilder::new(Limits::default(), 2, 100).unwrap();
        let mut b = new();
        b.push(&file(1, "a", 10)).unwrap();
        assert!(matches!(
            b.push(&file(1, "b", 10)),
            Err(ManifestError::Conflict { .. })
        ));
        let mut b = new();
        b.push(&file(1, "a", 10)).unwrap();
        assert!(matches!(
            b.push(&file(2, "a", 10)),
            Err(ManifestError::Conflict { .. })
        ));
        let mut b = new();
        b.push(&file(1, "a", 10)).unwrap();
        assert!(matches!(
            b.push(&file(2, "a/b", 10)),
            Err(ManifestError::Conflict { .. })
        ));
        let mut b = new();
        b.push(&file(1, "a/b", 10)).unwrap();
        assert!(matches!(
            b.push(&file(2, "a", 10)),
            Err(ManifestError::Conflict { .. })
        ));
        let mut b = new();
        assert!(matches!(
            b.push(&file(1, "a", 101)),
            Err(ManifestError::Inconsistent(_))
        ));
        let mut b = new();
        b.push(&file(1, "a", 10)).unwrap();
        b.push(&file(2, "b", 10)).unwrap();
        assert!(matches!(
            b.push(&file(3, "c", 0)),
            Err(ManifestError::Inconsistent(_))
        ));
        assert!(matches!(b.finish(), Err(ManifestError::Inconsistent(_))));
        let mut b = new();
        assert!(matches!(
            b.push(&file(1, "../x", 1)),
            Err(ManifestError::Path { .. })
        ));
        let mut b = new();
        let mut no_hash = file(1, "a", 1);
        no_hash.hash = None;
        assert!(matches!(
            b.push(&no_hash),
            Err(ManifestError::Inconsistent(_))
        ));
        let mut b = new();
        assert!(matches!(
            b.push(&file(1, "a", u64::MAX)),
            Err(ManifestError::Limit { .. })
        ));
        let mut b = ManifestBuilder::new(Limits::default().max_manifest_bytes(10), 1, 1).unwrap();
        assert!(b.page_bytes(11).is_err());
    }
}
