//! The sender's side of scope: which files a peer may read, and preparing them for sending.
//!
//! The application maps its own entry ids to paths through an [`EntryResolver`]; the engine
//! never reads a path the resolver did not give it, or a file inside a directory it gave. Inside
//! a shared directory, symlinks and special files are skipped (never followed), so a link to
//! `/etc` in a shared folder shares nothing. [`OutgoingTransfer::prepare`] walks and hashes the
//! sources once; during the transfer the peer can only name entries of that manifest, and every
//! file is checked to be unchanged (size and modification time) before each chunk is read.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tether_wire::ContentHash;
use uuid::Uuid;

use crate::chunk::{chunk_count, chunk_len, chunk_offset};
use crate::error::{LocalError, TransferError, UsageError};
use crate::manifest::{EntryKind, ManifestEntry};
use crate::options::SendOptions;
use crate::path::{MAX_DEPTH, RelPath};
use crate::tree::{CHUNK_USIZE, ChunkHash, chunk_hash, root_hash};

/// Maps the application's entry ids to files or directories this peer may read.
pub trait EntryResolver: Send + Sync {
    /// The path behind `entry_id`, or `None` if it does not exist or may not be shared.
    fn resolve(&self, entry_id: Uuid) -> Option<PathBuf>;
}

impl EntryResolver for HashMap<Uuid, PathBuf> {
    fn resolve(&self, entry_id: Uuid) -> Option<PathBuf> {
        self.get(&entry_id).cloned()
    }
}

/// The entry id of a shared path: the first 16 bytes of the BLAKE3 hash of the path's bytes (as
/// the OS gives them), read as a UUID. The same path always gets the same id, so a resumed send
/// names the same entries and the receiver finds what it kept; distinct paths get distinct ids
/// (a collision needs a 128-bit BLAKE3 prefix collision).
///
/// ```
/// let id = tether_transfer::entry_id(std::path::Path::new("/home/me/Photos"));
/// assert_eq!(id, tether_transfer::entry_id(std::path::Path::new("/home/me/Photos")));
/// ```
pub fn entry_id(path: &Path) -> Uuid {
    let mut hasher = blake3::Hasher::new();
    hasher.update(path.as_os_str().as_encoded_bytes());
    // BLAKE3's extendable output starts with its 32-byte hash: this is the hash's first half.
    let mut id = [0u8; 16];
    hasher.finalize_xof().fill(&mut id);
    Uuid::from_bytes(id)
}

/// A file the transfer may read, as it was when hashed.
#[derive(Debug)]
pub(crate) struct SourceFile {
    /// Its index in the manifest.
    pub(crate) entry_index: usize,
    pub(crate) path: PathBuf,
    pub(crate) size: u64,
    pub(crate) modified: Option<SystemTime>,
    /// One per chunk; for a one-chunk file, the file hash.
    pub(crate) hashes: Vec<ChunkHash>,
}

/// A transfer ready to send: every source walked and hashed, the manifest built.
#[derive(Debug)]
pub struct OutgoingTransfer {
    pub(crate) transfer_id: Uuid,
    pub(crate) options: SendOptions,
    pub(crate) entries: Vec<ManifestEntry>,
    pub(crate) files: Vec<SourceFile>,
    skipped: Vec<PathBuf>,
}

impl OutgoingTransfer {
    /// Resolves `entry_ids` through `resolver`, walks directories and hashes every file (on a
    /// blocking thread). A directory is sent with its relative paths under its own name.
    pub async fn prepare(
        resolver: &dyn EntryResolver,
        entry_ids: &[Uuid],
        options: SendOptions,
    ) -> Result<OutgoingTransfer, TransferError> {
        let mut roots = Vec::with_capacity(entry_ids.len());
        for &id in entry_ids {
            let path = resolver.resolve(id).ok_or(UsageError::NotShared(id))?;
            roots.push((id, path));
        }
        let walk = tokio::task::spawn_blocking(move || walk_and_hash(&roots))
            .await
            .map_err(|e| LocalError::task_failed("hashing the files", e))??;
        Ok(OutgoingTransfer {
            transfer_id: Uuid::new_v4(),
            options,
            entries: walk.entries,
            files: walk.files,
            skipped: walk.skipped,
        })
    }

    /// The transfer's id (random unless set with [`with_transfer_id`](Self::with_transfer_id)).
    pub fn transfer_id(&self) -> Uuid {
        self.transfer_id
    }

    /// Uses `id` as the transfer id, e.g. to offer the same transfer again after a restart.
    pub fn with_transfer_id(mut self, id: Uuid) -> Self {
        self.transfer_id = id;
        self
    }

    /// The manifest the receiver will see.
    pub fn manifest(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// All file bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Paths inside shared directories that were left out: symlinks, special files, names that
    /// are not valid UTF-8 or not portable.
    pub fn skipped(&self) -> &[PathBuf] {
        &self.skipped
    }

    /// The options it was prepared with.
    pub fn options(&self) -> &SendOptions {
        &self.options
    }
}

fn walk_and_hash(roots: &[(Uuid, PathBuf)]) -> Result<Walk, TransferError> {
    let mut walk = Walk::default();
    let mut names = HashSet::new();
    for (id, path) in roots {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| RelPath::parse(n).ok())
            .ok_or_else(|| bad_source(path, "its name is not a portable UTF-8 name"))?;
        if !names.insert(name.clone()) {
            return Err(bad_source(path, "another shared entry has the same name").into());
        }
        // The application chose this path: follow it if it is a link.
        let meta = fs::metadata(path).map_err(|e| LocalError::io("inspecting", path, e))?;
        if meta.is_file() {
            walk.add_file(*id, name.as_str().to_owned(), path);
        } else if meta.is_dir() {
            walk.add_dir(*id, name.as_str(), path, 1)?;
        } else {
            return Err(bad_source(path, "not a regular file or directory").into());
        }
    }
    walk.hash_files()?;
    Ok(walk)
}

#[derive(Default)]
struct Walk {
    entries: Vec<ManifestEntry>,
    files: Vec<SourceFile>,
    skipped: Vec<PathBuf>,
}

impl Walk {
    /// Notes a file; [`hash_files`](Self::hash_files) fills in its size, time and hashes.
    fn add_file(&mut self, id: Uuid, rel: String, path: &Path) {
        self.files.push(SourceFile {
            entry_index: self.entries.len(),
            path: path.to_path_buf(),
            size: 0,
            modified: None,
            hashes: Vec::new(),
        });
        self.entries.push(ManifestEntry {
            id,
            path: rel,
            kind: EntryKind::File,
            size: 0,
            mtime_ns: 0,
            hash: None,
        });
    }

    /// Hashes every file noted, on every core (a folder of many small files costs an open, a
    /// stat and a read each, which one thread would do one after another).
    fn hash_files(&mut self) -> Result<(), TransferError> {
        let paths: Vec<&Path> = self.files.iter().map(|f| f.path.as_path()).collect();
        let hashed = hash_all(&paths);
        for (file, hashed) in self.files.iter_mut().zip(hashed) {
            let Hashed {
                hashes,
                root,
                size,
                modified,
            } = hashed?;
            let Some(entry) = self.entries.get_mut(file.entry_index) else {
                return Err(LocalError::Task("a source file without its entry".into()).into());
            };
            entry.size = size;
            entry.mtime_ns = mtime_ns(modified);
            entry.hash = Some(ContentHash(root));
            file.size = size;
            file.modified = modified;
            file.hashes = hashes;
        }
        Ok(())
    }

    fn add_dir(
        &mut self,
        id: Uuid,
        rel: &str,
        path: &Path,
        depth: usize,
    ) -> Result<(), TransferError> {
        self.entries.push(ManifestEntry {
            id,
            path: rel.to_owned(),
            kind: EntryKind::Dir,
            size: 0,
            mtime_ns: 0,
            hash: None,
        });
        let mut children = Vec::new();
        let listing = fs::read_dir(path).map_err(|e| LocalError::io("listing", path, e))?;
        for child in listing {
            let child = child.map_err(|e| LocalError::io("listing", path, e))?;
            children.push(child.path());
        }
        children.sort();
        for child in children {
            let Some(name) = child.file_name().and_then(|n| n.to_str()) else {
                self.skip(child, "name is not UTF-8");
                continue;
            };
            let child_rel = format!("{rel}/{name}");
            if RelPath::parse(&child_rel).is_err() || depth >= MAX_DEPTH {
                self.skip(child, "name or depth not portable");
                continue;
            }
            // Never follow links inside a shared directory.
            let meta = fs::symlink_metadata(&child)
                .map_err(|e| LocalError::io("inspecting", &child, e))?;
            let child_id = child_entry_id(id, name);
            if meta.is_file() {
                self.add_file(child_id, child_rel, &child);
            } else if meta.is_dir() {
                self.add_dir(child_id, &child_rel, &child, depth + 1)?;
            } else {
                self.skip(child, "symlink or special file");
            }
        }
        Ok(())
    }

    fn skip(&mut self, path: PathBuf, why: &str) {
        tracing::warn!(path = %path.display(), why, "not sending");
        self.skipped.push(path);
    }
}

/// A stable id for a directory's child, so a restarted sender offers the same ids.
fn child_entry_id(parent: Uuid, name: &str) -> Uuid {
    let mut hasher = blake3::Hasher::new_derive_key("tether-transfer 2026 child entry id");
    hasher.update(parent.as_bytes());
    hasher.update(name.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(hasher.finalize().as_bytes().get(..16).unwrap_or(&[0; 16]));
    Uuid::from_bytes(bytes)
}

/// The chunk hashes of the file at `path`, as a sender computes them (on up to 4 threads for a
/// large file; read again if the file changes while being read): one 32-byte hash per
/// [`CHUNK_SIZE`](crate::CHUNK_SIZE) chunk, each checkable on its own with [`chunk_hash`](crate::chunk_hash).
/// Blocking: call it off the async runtime.
pub fn file_hashes(path: &Path) -> Result<FileHashes, TransferError> {
    let hashed = hash_file(path)?;
    Ok(FileHashes {
        hashes: hashed.hashes,
        root: hashed.root,
        size: hashed.size,
        modified: hashed.modified,
    })
}

/// A file's chunk hashes, whole-file BLAKE3 hash ([`root_hash`](crate::root_hash) of the chunk hashes), size
/// and modification time, read consistently ([`file_hashes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileHashes {
    /// One hash per chunk, in order.
    pub hashes: Vec<ChunkHash>,
    /// The file's BLAKE3 hash.
    pub root: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, where the file system keeps one.
    pub modified: Option<SystemTime>,
}

/// A file's chunk hashes, hash, size and modification time, read consistently.
struct Hashed {
    hashes: Vec<ChunkHash>,
    root: [u8; 32],
    size: u64,
    modified: Option<SystemTime>,
}

/// Files at least this large are hashed on several threads.
const PARALLEL_HASH_MIN: u64 = 8 << 20;

/// Fewest files worth a hashing thread of their own.
const FILES_PER_HASH_THREAD: usize = 16;

/// Hashes `paths` ([`hash_file`] each) on up to one thread per core, each taking the next file
/// not yet taken; the results in the order of `paths`.
fn hash_all(paths: &[&Path]) -> Vec<Result<Hashed, TransferError>> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = cores.min(paths.len() / FILES_PER_HASH_THREAD).max(1);
    if threads <= 1 {
        return paths.iter().map(|path| hash_file(path)).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(path) = paths.get(index) else {
                return done;
            };
            done.push((index, hash_file(path)));
        }
    };
    let mut slots: Vec<Option<Result<Hashed, TransferError>>> =
        paths.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads).map(|_| scope.spawn(work)).collect();
        let mut parts = vec![work()];
        for other in others {
            // A thread that panicked leaves its files' slots empty: reported below.
            parts.extend(other.join().ok());
        }
        for (index, result) in parts.into_iter().flatten() {
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(result);
            }
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| Err(LocalError::Task("hashing thread panicked".into()).into()))
        })
        .collect()
}

/// Hashes `path` chunk by chunk; retries if it changes while being read.
fn hash_file(path: &Path) -> Result<Hashed, TransferError> {
    for _ in 0..3 {
        let file = File::open(path).map_err(|e| LocalError::io("opening", path, e))?;
        let before = file
            .metadata()
            .map_err(|e| LocalError::io("inspecting", path, e))?;
        let size = before.len();
        let hashes = hash_chunks(&file, path, size)?;
        let after = file
            .metadata()
            .map_err(|e| LocalError::io("inspecting", path, e))?;
        if after.len() == size && after.modified().ok() == before.modified().ok() {
            return Ok(Hashed {
                root: root_hash(&hashes),
                hashes,
                size,
                modified: before.modified().ok(),
            });
        }
        tracing::debug!(path = %path.display(), "changed while hashing; again");
    }
    Err(LocalError::SourceChanged(path.to_path_buf()).into())
}

/// The chunk hashes of the first `size` bytes of `file`. Chunks are independent subtrees, so a
/// large file is split into contiguous runs hashed on one thread each.
fn hash_chunks(file: &File, path: &Path, size: u64) -> Result<Vec<ChunkHash>, TransferError> {
    let chunks = chunk_count(size);
    let threads = if size >= PARALLEL_HASH_MIN {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u64
    } else {
        1
    };
    let per_thread = chunks.div_ceil(threads.max(1)).max(1);
    let run = |range: std::ops::Range<u64>| -> Result<Vec<ChunkHash>, TransferError> {
        let mut buf = vec![0u8; CHUNK_USIZE];
        let mut hashes = Vec::with_capacity(usize::try_from(range.end - range.start).unwrap_or(0));
        for index in range {
            let len =
                chunk_len(size, index).ok_or(LocalError::SourceChanged(path.to_path_buf()))?;
            let chunk = buf.get_mut(..len).unwrap_or_default();
            file.read_exact_at(chunk, chunk_offset(index))
                .map_err(|e| LocalError::io("reading", path, e))?;
            hashes.push(
                chunk_hash(size, index, chunk)
                    .ok_or(LocalError::SourceChanged(path.to_path_buf()))?,
            );
        }
        Ok(hashes)
    };
    if threads <= 1 {
        return run(0..chunks);
    }
    let results: Vec<_> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..chunks)
            .step_by(usize::try_from(per_thread).unwrap_or(usize::MAX))
            .map(|start| scope.spawn(move || run(start..(start + per_thread).min(chunks))))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(LocalError::Task("hashing thread panicked".into()).into())
                })
            })
            .collect()
    });
    let mut hashes = Vec::with_capacity(usize::try_from(chunks).unwrap_or(0));
    for part in results {
        hashes.extend(part?);
    }
    Ok(hashes)
}

/// Nanoseconds since the Unix epoch, 0 if unknown or earlier.
pub(crate) fn mtime_ns(modified: Option<SystemTime>) -> u64 {
    modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn bad_source(path: &Path, reason: &str) -> UsageError {
    UsageError::BadSource {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_the_first_half_of_the_paths_blake3() {
        let path = Path::new("/home/me/Photos");
        let id = entry_id(path);
        assert_eq!(id.to_string(), "878f30a4-72f9-c9f6-1c8d-f2f45f5ed8c6");
        let hash = blake3::hash(b"/home/me/Photos");
        assert_eq!(id.as_bytes(), &hash.as_bytes()[..16]);
        assert_ne!(id, entry_id(Path::new("/home/me/Photos/")));
    }

    #[test]
    fn large_files_hash_on_several_threads_to_the_same_result() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let data: Vec<u8> = (0..PARALLEL_HASH_MIN as usize + 777_777)
            .map(|i| (i % 241) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let hashed = hash_file(&path).unwrap();
        assert_eq!(hashed.root, *blake3::hash(&data).as_bytes());
        assert_eq!(hashed.hashes.len() as u64, chunk_count(data.len() as u64));
    }

    #[tokio::test]
    async fn walks_a_tree_skipping_links_and_hashes_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        fs::create_dir_all(root.join("sub/empty")).unwrap();
        fs::write(root.join("a.txt"), b"hello").unwrap();
        fs::write(root.join("sub/b.bin"), vec![7u8; 300_000]).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let id = Uuid::from_u128(1);
        let resolver: HashMap<Uuid, PathBuf> = [(id, root.clone())].into();
        let out = OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default())
            .await
            .unwrap();
        let paths: Vec<_> = out.manifest().iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "share",
                "share/a.txt",
                "share/sub",
                "share/sub/b.bin",
                "share/sub/empty"
            ]
        );
        assert_eq!(out.skipped(), &[root.join("link")]);
        let b = &out.manifest()[3];
        assert_eq!(
            b.hash,
            Some(ContentHash(*blake3::hash(&vec![7u8; 300_000]).as_bytes()))
        );
        assert_eq!(out.total_bytes(), 300_005);
        assert_eq!(out.files.len(), 2);
        assert_eq!(out.files[1].hashes.len(), 2);

        let unknown = Uuid::from_u128(2);
        assert!(matches!(
            OutgoingTransfer::prepare(&resolver, &[unknown], SendOptions::default()).await,
            Err(TransferError::Usage(UsageError::NotShared(_)))
        ));
    }
}
