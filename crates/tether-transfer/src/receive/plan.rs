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

/// What an earlier attempt left of one file that still verifies: the chunks a resume keeps (and
/// so never asks for), and its accounting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Kept {
    /// Chunks kept: listed by the resume record and verified.
    pub(crate) have: ChunkSet,
    /// Bytes of those chunks.
    pub(crate) kept_bytes: u64,
    /// Bytes of every listed chunk, whose hash was checked.
    pub(crate) verified_bytes: u64,
    /// Listed chunks that failed verification (asked for again).
    pub(crate) corrupt_chunks: u64,
}

impl Kept {
    /// Nothing kept, of a file of `chunks` chunks.
    pub(crate) fn none(chunks: u64) -> Kept {
        Kept {
            have: ChunkSet::new(chunks),
            kept_bytes: 0,
            verified_bytes: 0,
            corrupt_chunks: 0,
        }
    }

    /// Checks each chunk `listed` by a resume record of a file of `size` bytes with
    /// `verifies(index, len)` (read it and compare its hash); keeps those that pass. An error
    /// from `verifies` (a cancel) stops the check.
    pub(crate) fn verify<E>(
        size: u64,
        listed: &ChunkSet,
        mut verifies: impl FnMut(u64, usize) -> Result<bool, E>,
    ) -> Result<Kept, E> {
        let mut kept = Kept::none(listed.len());
        for index in listed.iter() {
            let Some(len) = chunk_len(size, index) else {
                continue;
            };
            kept.verified_bytes += len as u64;
            if verifies(index, len)? {
                kept.have.insert(index);
                kept.kept_bytes += len as u64;
            } else {
                kept.corrupt_chunks += 1;
            }
        }
        Ok(kept)
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
    let (file, kept) = match kept {
        Some((file, listed)) => {
            let mut buf = Vec::new();
            let kept = Kept::verify(size, &listed, |index, len| {
                if cancel.is_cancelled() {
                    return Err(TransferError::Cancelled);
                }
                buf.resize(len, 0);
                let ok = file.read_exact_at(&mut buf, chunk_offset(index)).is_ok()
                    && chunk_hash(size, index, &buf).as_ref() == hashes.get(index_usize(index));
                if !ok {
                    tracing::info!(path = %paths.partial().display(), index, "kept chunk failed verification; fetching it again");
                }
                Ok(ok)
            })?;
            (file, kept)
        }
        // Unknown, stale or foreign partial data (or none): start over.
        None => (
            disk::create_partial(dir, &paths, size, placing.keep_free)?,
            Kept::none(chunks),
        ),
    };
    let partial = disk::partial_id(&file, &paths.partial())?;
    drop(file);
    ResumeRecord::new(&entry.entry, hash, &kept.have)
        .sender(placing.sender)
        .write(
            dir,
            &paths.record_name(),
            &paths.record_tmp_name(),
            &paths.record(),
        )?;
    Ok(PlannedFile {
        paths,
        have: kept.have,
        partial: Some(partial),
        deferred: false,
        kept_bytes: kept.kept_bytes,
        verified_bytes: kept.verified_bytes,
        corrupt_chunks: kept.corrupt_chunks,
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

    mod resume {
        use proptest::prelude::*;

        use super::super::Kept;
        use crate::chunk::{CHUNK, ChunkSet, chunk_count, chunk_len};
        use crate::protocol::Message;
        use crate::receive::requester::Requester;

        fn set(flags: &[bool]) -> ChunkSet {
            let mut set = ChunkSet::new(flags.len() as u64);
            for (index, _) in flags.iter().enumerate().filter(|(_, f)| **f) {
                set.insert(index as u64);
            }
            set
        }

        fn bytes(size: u64, set: &ChunkSet) -> u64 {
            set.iter().map(|i| chunk_len(size, i).unwrap() as u64).sum()
        }

        /// A file, the chunks its resume record lists, and which of those still verify.
        fn case() -> impl Strategy<Value = (u64, Vec<bool>, Vec<bool>)> {
            (0u64..12 << 20).prop_flat_map(|size| {
                let chunks = usize::try_from(chunk_count(size)).unwrap();
                (
                    Just(size),
                    prop::collection::vec(any::<bool>(), chunks),
                    prop::collection::vec(any::<bool>(), chunks),
                )
            })
        }

        proptest! {
            /// The chunks kept are exactly the listed ones that verify; the resume then asks
            /// for every other chunk once and never for a kept one, and the bytes resumed plus
            /// the bytes asked (and so transferred) are the file's size.
            #[test]
            fn a_resume_asks_for_exactly_what_did_not_verify((size, listed, passes) in case()) {
                let listed = set(&listed);
                let mut checked = Vec::new();
                let kept = Kept::verify(size, &listed, |index, len| {
                    prop_assert_eq!(len, chunk_len(size, index).unwrap());
                    checked.push(index);
                    Ok(passes[usize::try_from(index).unwrap()])
                })?;
                prop_assert_eq!(checked, listed.iter().collect::<Vec<_>>());
                let expected: Vec<u64> =
                    listed.iter().filter(|&i| passes[usize::try_from(i).unwrap()]).collect();
                prop_assert_eq!(kept.have.iter().collect::<Vec<_>>(), expected);
                prop_assert_eq!(kept.corrupt_chunks, listed.count() - kept.have.count());
                prop_assert_eq!(kept.kept_bytes, bytes(size, &kept.have));
                prop_assert_eq!(kept.verified_bytes, bytes(size, &listed));

                let mut requester = Requester::new(true);
                requester.add(uuid::Uuid::nil(), size, &kept.have);
                let mut asked = ChunkSet::new(chunk_count(size));
                while !requester.is_done() {
                    let received = requester.asked_bytes();
                    for message in requester.top_up(received, 0) {
                        let ranges = match message {
                            Message::FileRequest(r) => vec![[r.resume_from / CHUNK, chunk_count(size)]],
                            Message::Want(w) => w.ranges,
                            other => return Err(TestCaseError::fail(format!("{other:?}"))),
                        };
                        for [start, end] in ranges {
                            for index in start..end {
                                prop_assert!(!kept.have.contains(index), "asked for kept {index}");
                                prop_assert!(asked.insert(index), "asked twice for {index}");
                            }
                        }
                    }
                }
                prop_assert_eq!(asked.count() + kept.have.count(), chunk_count(size));
                prop_assert_eq!(kept.kept_bytes + requester.asked_bytes(), size);
            }
        }

        #[test]
        fn a_cancel_stops_the_check() {
            let listed = set(&[true, true, true]);
            let mut calls = 0;
            let result = Kept::verify(3 * CHUNK, &listed, |_, _| {
                calls += 1;
                if calls == 2 {
                    Err("cancelled")
                } else {
                    Ok(true)
                }
            });
            assert_eq!(result, Err("cancelled"));
            assert_eq!(calls, 2);
        }
    }
}
