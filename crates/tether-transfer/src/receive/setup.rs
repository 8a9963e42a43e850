//! After `Accept`, before data: chunk hashes in and checked, directories created, every file
//! planned (what is in place, what partial data still verifies), requests out.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tether_wire::{ContentHash, FileRequest};
use tokio::io::ReadHalf;
use tokio_util::sync::CancellationToken;

use crate::chunk::{CHUNK, ChunkSet, chunk_count};
use crate::error::{PeerError, TransferError};
use crate::link::{ByteStream, ControlWriter, read_message};
use crate::manifest::CheckedEntry;
use crate::protocol::{
    MAX_FILES_PER_WANTS, MAX_RANGES_PER_WANT, Message, Offer, Want, Wants, decode_hashes,
};
use crate::receive::aborted;
use crate::receive::data::{Chunks, RecvFile, RecvShared};
use crate::receive::disk;
use crate::receive::plan::{PlannedFile, plan_file};
use crate::tree::{ChunkHash, root_hash};

/// Reads the chunk hashes of every file with two or more chunks, in manifest order, and checks
/// each list against the file hash.
pub(super) async fn read_hashes(
    reader: &mut ReadHalf<Box<dyn ByteStream>>,
    files: &[CheckedEntry],
) -> Result<Vec<Vec<ChunkHash>>, TransferError> {
    let mut all = Vec::with_capacity(files.len());
    for entry in files {
        let hash = entry.entry.hash.unwrap_or(ContentHash([0; 32]));
        let chunks = chunk_count(entry.entry.size);
        if chunks < 2 {
            all.push(if chunks == 1 {
                vec![hash.0]
            } else {
                Vec::new()
            });
            continue;
        }
        let bad = || {
            TransferError::from(PeerError::BadHashes {
                path: entry.entry.path.clone(),
            })
        };
        let mut hashes: Vec<ChunkHash> = Vec::new();
        while (hashes.len() as u64) < chunks {
            match read_message(reader).await? {
                Message::ChunkHashes(page) => {
                    let page_hashes = decode_hashes(&page.hashes).ok_or_else(bad)?;
                    if page.entry_id != entry.entry.id
                        || page.first != hashes.len() as u64
                        || page_hashes.is_empty()
                        || hashes.len() as u64 + page_hashes.len() as u64 > chunks
                    {
                        return Err(bad());
                    }
                    hashes.extend(page_hashes);
                }
                Message::Abort(abort) => return Err(aborted(abort)),
                _ => return Err(PeerError::Protocol("expected chunk hashes").into()),
            }
        }
        if root_hash(&hashes) != hash.0 {
            return Err(bad());
        }
        all.push(hashes);
    }
    Ok(all)
}

/// Creates the directories and plans every file (blocking).
pub(super) fn plan_all(
    root: &Path,
    dirs: &[CheckedEntry],
    files: &[CheckedEntry],
    hashes: &[Vec<ChunkHash>],
    overwrite: bool,
    cancel: &CancellationToken,
    created: &mut Vec<PathBuf>,
) -> Result<Vec<PlannedFile>, TransferError> {
    for dir in dirs {
        disk::ensure_dir(root, &dir.path, created)?;
    }
    let mut planned = Vec::with_capacity(files.len());
    // Each parent directory is made (or checked) once, not once per file in it. In one this
    // planning has just made, nothing is looked for (placing never replaces a file anyway).
    let mut ensured = HashMap::new();
    let mut made: HashSet<PathBuf> = created.iter().cloned().collect();
    for (entry, hashes) in files.iter().zip(hashes) {
        let fresh = match entry.path.parent() {
            None => false,
            Some(parent) => match ensured.get(parent.as_str()) {
                Some(fresh) => *fresh,
                None => {
                    let before = created.len();
                    disk::ensure_dir(root, &parent, created)?;
                    made.extend(created.get(before..).unwrap_or_default().iter().cloned());
                    // Made by this planning (as a directory entry or as a file's parent).
                    let fresh = made.contains(&parent.under(root));
                    ensured.insert(parent.as_str().to_owned(), fresh);
                    fresh
                }
            },
        };
        let hash = entry.entry.hash.unwrap_or(ContentHash([0; 32]));
        planned.push(plan_file(
            root, entry, hash, hashes, overwrite, fresh, cancel,
        )?);
    }
    Ok(planned)
}

pub(super) fn shared_state(
    files: &[CheckedEntry],
    hashes: Vec<Vec<ChunkHash>>,
    planned: &[PlannedFile],
    offer: &Offer,
    overwrite: bool,
) -> RecvShared {
    let mut recv_files = Vec::with_capacity(files.len());
    for ((entry, hashes), plan) in files.iter().zip(hashes).zip(planned) {
        recv_files.push(RecvFile {
            id: entry.entry.id,
            rel: entry.entry.path.clone(),
            size: entry.entry.size,
            mtime_ns: entry.entry.mtime_ns,
            hash: entry.entry.hash.unwrap_or(ContentHash([0; 32])),
            paths: plan.paths.clone(),
            hashes,
            partial: plan.partial,
            deferred: plan.deferred,
            written: Mutex::new(None),
            chunks: Mutex::new(Chunks {
                have: plan.have.clone(),
                in_flight: ChunkSet::new(plan.have.len()),
                dirty: false,
                finalized: plan.in_place(),
            }),
            record_lock: Mutex::new(()),
        });
    }
    let by_id = recv_files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id, i))
        .collect();
    RecvShared {
        files: recv_files,
        by_id,
        compression: offer.compression,
        overwrite,
        received: Default::default(),
        wire: Default::default(),
        last_file: Default::default(),
        open: Default::default(),
    }
}

/// The receiver's requests for missing chunks, in the order files are asked for. For each file:
/// a `FileRequest` when its missing chunks are one run to the end of a file of several chunks
/// (the common resume), `Want` ranges otherwise (a one-chunk file's `Want` needs no
/// `FileResponse` back). `Want`s are gathered into one `Wants` message of up to
/// [`MAX_FILES_PER_WANTS`] files when the sender reads them (1,000 small files: one control
/// frame, not 1,000).
pub(super) struct Requests<'a> {
    writer: &'a ControlWriter,
    batch: bool,
    pending: Vec<Want>,
    pending_ranges: usize,
}

impl<'a> Requests<'a> {
    /// `batch`: the sender's offer says it reads `Wants`.
    pub(super) fn new(writer: &'a ControlWriter, batch: bool) -> Self {
        Requests {
            writer,
            batch,
            pending: Vec::new(),
            pending_ranges: 0,
        }
    }

    /// Asks for the chunks of one file that `have` lacks.
    pub(super) async fn ask(
        &mut self,
        entry_id: uuid::Uuid,
        have: &ChunkSet,
    ) -> Result<(), TransferError> {
        let missing = have.missing_ranges();
        if let [only] = missing.as_slice()
            && only.end == have.len()
            && have.len() > 1
        {
            // Keeps the order asked: what was gathered goes first.
            self.flush().await?;
            let request = Message::FileRequest(FileRequest {
                entry_id,
                resume_from: only.start * CHUNK,
            });
            return self.writer.send(&request).await;
        }
        for ranges in missing.chunks(MAX_RANGES_PER_WANT) {
            let want = Want {
                entry_id,
                ranges: ranges.iter().map(|r| [r.start, r.end]).collect(),
            };
            if !self.batch {
                self.writer.send(&Message::Want(want)).await?;
                continue;
            }
            if self.pending.len() >= MAX_FILES_PER_WANTS
                || self.pending_ranges + want.ranges.len() > MAX_RANGES_PER_WANT
            {
                self.flush().await?;
            }
            self.pending_ranges += want.ranges.len();
            self.pending.push(want);
        }
        Ok(())
    }

    /// Sends what was gathered (one `Want` alone as a `Want`).
    pub(super) async fn flush(&mut self) -> Result<(), TransferError> {
        self.pending_ranges = 0;
        let message = match self.pending.len() {
            0 => return Ok(()),
            1 => match self.pending.pop() {
                Some(want) => Message::Want(want),
                None => return Ok(()),
            },
            _ => Message::Wants(Wants {
                files: std::mem::take(&mut self.pending),
            }),
        };
        self.writer.send(&message).await
    }
}
