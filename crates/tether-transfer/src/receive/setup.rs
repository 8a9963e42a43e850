//! After `Accept`, before data: chunk hashes in and checked, directories created, every file
//! planned (what is in place, what partial data still verifies), the shared state of the data
//! phase built.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use tether_wire::ContentHash;
use tokio::io::ReadHalf;
use tokio_util::sync::CancellationToken;

use crate::chunk::{ChunkSet, chunk_count};
use crate::error::{PeerError, TransferError};
use crate::link::{ByteStream, read_message};
use crate::manifest::CheckedEntry;
use crate::path::RelPath;
use crate::protocol::{Message, Offer, decode_hashes};
use crate::receive::data::{Chunks, RecvFile, RecvShared};
use crate::receive::dest::Destination;
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
                Message::Abort(abort) => return Err(PeerError::from(abort).into()),
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

/// Creates the directories and plans every file (blocking), each relative to its directory's
/// handle.
pub(super) fn plan_all(
    dest: &Destination,
    dirs: &[CheckedEntry],
    files: &[CheckedEntry],
    hashes: &[Vec<ChunkHash>],
    overwrite: bool,
    cancel: &CancellationToken,
    created: &mut Vec<RelPath>,
) -> Result<Vec<PlannedFile>, TransferError> {
    for dir in dirs {
        dest.ensure(&dir.path, created)?;
    }
    let mut planned = Vec::with_capacity(files.len());
    // Each parent directory is made (or checked) once, not once per file in it. In one this
    // planning has just made, nothing is looked for (placing never replaces a file anyway).
    let mut ensured: HashMap<String, bool> = HashMap::new();
    let mut made: HashSet<String> = created.iter().map(|d| d.as_str().to_owned()).collect();
    for (entry, hashes) in files.iter().zip(hashes) {
        let (dir, fresh) = match entry.path.parent() {
            None => (dest.dir("")?, false),
            Some(parent) => match ensured.get(parent.as_str()) {
                // Most often still cached; opened again beneath the destination otherwise.
                Some(&fresh) => (dest.dir(parent.as_str())?, fresh),
                None => {
                    let before = created.len();
                    let dir = dest.ensure(&parent, created)?;
                    made.extend(
                        created
                            .get(before..)
                            .unwrap_or_default()
                            .iter()
                            .map(|d| d.as_str().to_owned()),
                    );
                    // Made by this planning (as a directory entry or as a file's parent).
                    let fresh = made.contains(parent.as_str());
                    ensured.insert(parent.as_str().to_owned(), fresh);
                    (dir, fresh)
                }
            },
        };
        let hash = entry.entry.hash.unwrap_or(ContentHash([0; 32]));
        planned.push(plan_file(
            &dir,
            dest.path(),
            entry,
            hash,
            hashes,
            overwrite,
            fresh,
            dest.placing(),
            cancel,
        )?);
    }
    Ok(planned)
}

pub(super) fn shared_state(
    dest: Arc<Destination>,
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
        dest,
        files: recv_files,
        by_id,
        compression: offer.compression,
        overwrite,
        received: Default::default(),
        wire: Default::default(),
        last_file: Default::default(),
        open: Default::default(),
        asked: Default::default(),
        completed: Default::default(),
        progressed: Default::default(),
    }
}
