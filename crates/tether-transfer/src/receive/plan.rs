//! Deciding, per file, what the receiver already has and what it must ask for.
//!
//! For each file of an accepted manifest (in a blocking task):
//!
//! 1. A target already in place with the right size and hash is kept as it is (stray partial
//!    data removed). Another file at the target is refused unless overwriting is on.
//! 2. A partial file whose resume record describes this exact source (size, modification time,
//!    hash) keeps the chunks the record lists **that still verify** against their chunk hashes;
//!    a chunk that fails is counted and asked for again. Any other partial file is discarded.
//! 3. The partial file is opened (created and preallocated if new) and its record saved, so a
//!    partial file never exists without a record saying what it is. It is then closed again:
//!    planning keeps only its identity (device and inode), and the data phase opens it again,
//!    checked against that identity, while chunks arrive (see `data.rs`), so a directory of many
//!    files never has them all open at once.
//!
//! Every name is used relative to the handle of the file's directory (see `dest.rs` and
//! `disk.rs`).
//!
//! A file of one chunk (or none) has nothing inside it to resume: it gets no record, any partial
//! data of an earlier attempt is dropped, and a one-chunk file's partial file is only created
//! when its chunk has arrived and verified (see `data.rs`), so planning it costs no file
//! creation and a cut costs at most refetching it.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tether_wire::ContentHash;
use tokio_util::sync::CancellationToken;

use crate::chunk::{ChunkSet, chunk_count, chunk_len, chunk_offset};
use crate::error::{LocalError, TransferError};
use crate::manifest::CheckedEntry;
use crate::receive::dest::Placing;
use crate::receive::disk::{self, Existing, FilePaths, PartialId};
use crate::resume::ResumeRecord;
use crate::tree::{ChunkHash, chunk_hash};

/// One file after planning.
#[derive(Debug)]
pub(crate) struct PlannedFile {
    pub(crate) paths: FilePaths,
    /// Chunks already verified on disk (kept from an earlier attempt).
    pub(crate) have: ChunkSet,
    /// The partial file created or kept (closed again); `None` when the target is already in
    /// place or the file is `deferred`.
    pub(crate) partial: Option<PartialId>,
    /// A one-chunk file whose partial file is created when its chunk arrives.
    pub(crate) deferred: bool,
    /// Bytes already in place or kept.
    pub(crate) kept_bytes: u64,
    /// Bytes whose hash was checked while planning.
    pub(crate) verified_bytes: u64,
    /// Kept chunks that failed verification.
    pub(crate) corrupt_chunks: u64,
}

impl PlannedFile {
    /// Whether the target already holds the file.
    pub(crate) fn in_place(&self) -> bool {
        self.partial.is_none() && !self.deferred
    }
}

/// Plans `entry` (a file) under `root`; `hashes` are its verified chunk hashes. The caller has
/// made its parent directories and passes the handle of its own, `dir` (see
/// `Destination::ensure`, which refuses anything but real directories).
#[allow(clippy::too_many_arguments)] // the file, where it goes, and how
pub(crate) fn plan_file(
    dir: &OwnedFd,
    root: &Path,
    entry: &CheckedEntry,
    hash: ContentHash,
    hashes: &[ChunkHash],
    overwrite: bool,
    in_new_dir: bool,
    placing: Placing,
    cancel: &CancellationToken,
) -> Result<PlannedFile, TransferError> {
    let size = entry.entry.size;
    let paths = FilePaths::new(root, &entry.path);
    let chunks = chunk_count(size);
    if in_new_dir && chunks <= 1 {
        // A directory planning has just made holds neither a target nor a partial file.
        return plan_unresumable(dir, paths, size, false);
    }
    match disk::existing(dir, &paths.name, &paths.target)? {
        Existing::Absent => {}
        Existing::File(len) if len == size && disk::hash_target(dir, &paths)? == hash.0 => {
            disk::remove_if_exists(dir, &paths.partial_name(), &paths.partial())?;
            disk::drop_records(dir, &paths)?;
            return Ok(PlannedFile {
                paths,
                have: ChunkSet::full(chunks),
                partial: None,
                deferred: false,
                kept_bytes: size,
                verified_bytes: size,
                corrupt_chunks: 0,
            });
        }
        Existing::File(_) if overwrite => {}
        Existing::File(_) | Existing::Other => {
            return Err(LocalError::TargetExists(paths.target).into());
        }
    }

    if chunks <= 1 {
        return plan_unresumable(dir, paths, size, true);
    }
    let record = ResumeRecord::read(dir, &paths.record_name())
        .map_err(|e| LocalError::io("reading", paths.record(), e))?;
    let listed = record.and_then(|r| r.kept_chunks(&entry.entry, hash));
    let kept = match listed {
        Some(listed) => disk::open_kept_partial(dir, &paths, size, placing.keep_free)?
            .map(|file| (file, listed)),
        None => None,
    };
    let mut have = ChunkSet::new(chunks);
    let (mut kept_bytes, mut verified_bytes, mut corrupt_chunks) = (0, 0, 0);
    let file = match kept {
        Some((file, listed)) => {
            let mut buf = Vec::new();
            for index in listed.iter() {
                if cancel.is_cancelled() {
                    return Err(TransferError::Cancelled);
                }
                let Some(len) = chunk_len(size, index) else {
                    continue;
                };
                buf.resize(len, 0);
                let ok = file.read_exact_at(&mut buf, chunk_offset(index)).is_ok()
                    && chunk_hash(size, index, &buf).as_ref() == hashes.get(index_usize(index));
                verified_bytes += len as u64;
                if ok {
                    have.insert(index);
                    kept_bytes += len as u64;
                } else {
                    tracing::info!(path = %paths.partial().display(), index, "kept chunk failed verification; fetching it again");
                    corrupt_chunks += 1;
                }
            }
            file
        }
        // Unknown, stale or foreign partial data (or none): start over.
        None => disk::create_partial(dir, &paths, size, placing.keep_free)?,
    };
    let partial = disk::partial_id(&file, &paths.partial())?;
    drop(file);
    ResumeRecord::new(&entry.entry, hash, &have)
        .sender(placing.sender)
        .write(
            dir,
            &paths.record_name(),
            &paths.record_tmp_name(),
            &paths.record(),
        )?;
    Ok(PlannedFile {
        paths,
        have,
        partial: Some(partial),
        deferred: false,
        kept_bytes,
        verified_bytes,
        corrupt_chunks,
    })
}

/// Plans a file of one chunk or none: whatever an earlier attempt left is dropped; an empty
/// file's partial file is created now, a one-chunk file's when its chunk arrives. `look`: whether
/// an earlier attempt may have left something (not in a directory planning has just made).
fn plan_unresumable(
    dir: &OwnedFd,
    paths: FilePaths,
    size: u64,
    look: bool,
) -> Result<PlannedFile, TransferError> {
    let partial_name = paths.partial_name();
    if look && disk::existing(dir, &partial_name, &paths.partial())? != Existing::Absent {
        disk::remove_if_exists(dir, &partial_name, &paths.partial())?;
        disk::drop_records(dir, &paths)?;
    }
    let chunks = chunk_count(size);
    let partial = if chunks == 0 {
        let file = disk::create_partial(dir, &paths, size, 0)?;
        Some(disk::partial_id(&file, &paths.partial())?)
    } else {
        None
    };
    Ok(PlannedFile {
        paths,
        have: ChunkSet::new(chunks),
        deferred: partial.is_none(),
        partial,
        kept_bytes: 0,
        verified_bytes: 0,
        corrupt_chunks: 0,
    })
}

fn index_usize(index: u64) -> usize {
    usize::try_from(index).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::CHUNK;
    use crate::manifest::{EntryKind, ManifestEntry};
    use crate::path::RelPath;
    use crate::receive::dest::Destination;
    use crate::tree::root_hash;
    use uuid::Uuid;

    fn root(dir: &tempfile::TempDir) -> Destination {
        Destination::open(dir.path()).unwrap()
    }

    fn setup(data: &[u8]) -> (tempfile::TempDir, CheckedEntry, ContentHash, Vec<ChunkHash>) {
        let size = data.len() as u64;
        let hashes: Vec<ChunkHash> = data
            .chunks(CHUNK as usize)
            .enumerate()
            .map(|(i, c)| chunk_hash(size, i as u64, c).unwrap())
            .collect();
        let hash = ContentHash(root_hash(&hashes));
        let entry = CheckedEntry {
            entry: ManifestEntry {
                id: Uuid::nil(),
                path: "f".into(),
                kind: EntryKind::File,
                size,
                mtime_ns: 5,
                hash: Some(hash),
            },
            path: RelPath::parse("f").unwrap(),
        };
        (tempfile::tempdir().unwrap(), entry, hash, hashes)
    }

    #[test]
    fn fresh_resumed_corrupt_and_in_place() {
        let data: Vec<u8> = (0..3 * CHUNK as usize + 10)
            .map(|i| (i % 253) as u8)
            .collect();
        let (dir, entry, hash, hashes) = setup(&data);
        let cancel = CancellationToken::new();
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &entry,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert_eq!((plan.have.count(), plan.kept_bytes), (0, 0));
        assert!(plan.paths.record().exists());

        // Write chunks 0, 1 and 3, list them in the record, and corrupt chunk 1.
        let dest = root(&dir);
        let file = disk::reopen_partial(dest.root(), &plan.paths, plan.partial.unwrap()).unwrap();
        let mut have = ChunkSet::new(4);
        for i in [0u64, 1, 3] {
            let start = (i * CHUNK) as usize;
            let end = (start + CHUNK as usize).min(data.len());
            file.write_all_at(&data[start..end], i * CHUNK).unwrap();
            have.insert(i);
        }
        file.write_all_at(&[0xff], CHUNK + 7).unwrap();
        ResumeRecord::new(&entry.entry, hash, &have)
            .write(
                dest.root(),
                &plan.paths.record_name(),
                &plan.paths.record_tmp_name(),
                &plan.paths.record(),
            )
            .unwrap();
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &entry,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert_eq!(plan.have.iter().collect::<Vec<_>>(), vec![0, 3]);
        assert_eq!(plan.corrupt_chunks, 1);
        assert_eq!(plan.kept_bytes, CHUNK + 10);

        // Another source version (mtime moved): everything is fetched again.
        let mut touched = entry.clone();
        touched.entry.mtime_ns = 6;
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &touched,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert_eq!(plan.have.count(), 0);

        // The file in place: nothing to do, stray partial removed.
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &entry,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert!(plan.in_place());
        assert!(!plan.paths.partial().exists() && !plan.paths.record().exists());

        // Something else in place: refused unless overwriting.
        std::fs::write(dir.path().join("f"), b"other").unwrap();
        assert!(matches!(
            plan_file(
                root(&dir).root(),
                dir.path(),
                &entry,
                hash,
                &hashes,
                false,
                false,
                Placing::default(),
                &cancel
            ),
            Err(TransferError::Local(LocalError::TargetExists(_)))
        ));
        assert!(
            plan_file(
                root(&dir).root(),
                dir.path(),
                &entry,
                hash,
                &hashes,
                true,
                false,
                Placing::default(),
                &cancel
            )
            .is_ok()
        );
    }

    #[test]
    fn one_chunk_files_are_deferred_without_records() {
        let data = vec![9u8; 4096];
        let (dir, entry, hash, hashes) = setup(&data);
        let cancel = CancellationToken::new();
        // What an earlier attempt (or an older version) left is dropped.
        let paths = FilePaths::new(dir.path(), &entry.path);
        std::fs::write(paths.partial(), b"stale").unwrap();
        std::fs::write(paths.record(), b"{}").unwrap();
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &entry,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert!(plan.deferred && plan.partial.is_none() && !plan.in_place());
        assert_eq!((plan.have.len(), plan.have.count()), (1, 0));
        assert!(!paths.partial().exists() && !paths.record().exists());
        // Planning created nothing.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

        // An empty file is opened now, still without a record.
        let (dir, entry, hash, hashes) = setup(&[]);
        let plan = plan_file(
            root(&dir).root(),
            dir.path(),
            &entry,
            hash,
            &hashes,
            false,
            false,
            Placing::default(),
            &cancel,
        )
        .unwrap();
        assert!(!plan.deferred && plan.partial.is_some() && plan.have.is_full());
        assert!(plan.paths.partial().exists() && !plan.paths.record().exists());
    }
}
