//! After `Accept`, before data: chunk hashes in and checked, directories created, every file
//! planned (what is in place, what partial data still verifies), requests out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tether_wire::{ContentHash, FileRequest};
use tokio::io::ReadHalf;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::chunk::{CHUNK, ChunkSet, chunk_count};
use crate::error::{PeerError, TransferError};
use crate::link::{ByteStream, ControlWriter, read_message};
use crate::manifest::CheckedEntry;
use crate::path::RelPath;
use crate::protocol::{
    MAX_FILES_PER_WANTS, MAX_RANGES_PER_WANT, Message, Offer, Plan, Want, Wants, decode_hashes,
};
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

/// Most bytes asked for and not yet received. Enough to keep a fast link busy between two
/// top-ups; small enough that the sender's queue and the requests in flight stay bounded
/// whatever the number of files.
const WINDOW_BYTES: u64 = 64 << 20;

/// Most files asked for and not yet complete.
const WINDOW_FILES: u64 = 4096;

/// One file's missing chunks, not yet asked for.
#[derive(Debug)]
struct Ask {
    entry_id: Uuid,
    size: u64,
    chunks: u64,
    missing: Vec<Range<u64>>,
}

impl Ask {
    fn bytes(&self) -> u64 {
        self.missing
            .iter()
            .map(|r| {
                r.end
                    .saturating_mul(CHUNK)
                    .min(self.size)
                    .saturating_sub(r.start.saturating_mul(CHUNK))
            })
            .sum()
    }

    /// The missing chunks are one run to the end of a file of several chunks (the common
    /// resume, and every such file of a fresh transfer): asked with one `FileRequest`.
    fn is_tail(&self) -> bool {
        matches!(self.missing.as_slice(), [only] if only.end == self.chunks && self.chunks > 1)
    }
}

/// The receiver's requests for missing chunks, in the order of the manifest, asked a window
/// at a time while the data phase reads: at most [`WINDOW_BYTES`] and [`WINDOW_FILES`]
/// outstanding (a single file's request may exceed the bytes), topped up whenever half of it
/// has arrived. So the requests in flight, and the sender's queue, stay small however many
/// files there are, and the receiver never writes requests without reading: the stream the
/// data comes on is drained all the while.
///
/// For each file: a `FileRequest` when its missing chunks are one run to the end (see
/// [`Ask::is_tail`]), `Want` ranges otherwise; `Want`s are gathered into one `Wants` message
/// of up to [`MAX_FILES_PER_WANTS`] files when the sender reads them.
#[derive(Debug)]
pub(super) struct Requester {
    todo: VecDeque<Ask>,
    batch: bool,
    asked_files: u64,
    plan: Plan,
}

impl Requester {
    /// `batch`: the sender's offer says it reads `Wants`.
    pub(super) fn new(batch: bool) -> Self {
        Requester {
            todo: VecDeque::new(),
            batch,
            asked_files: 0,
            plan: Plan { files: 0, bytes: 0 },
        }
    }

    /// Adds the chunks of one file that `have` lacks, if any.
    pub(super) fn add(&mut self, entry_id: Uuid, size: u64, have: &ChunkSet) {
        let missing = have.missing_ranges();
        if missing.is_empty() {
            return;
        }
        let ask = Ask {
            entry_id,
            size,
            chunks: have.len(),
            missing,
        };
        self.plan.files += 1;
        self.plan.bytes = self.plan.bytes.saturating_add(ask.bytes());
        self.todo.push_back(ask);
    }

    /// What will be asked for in all.
    pub(super) fn plan(&self) -> Plan {
        self.plan
    }

    /// Asks for everything, a window at a time, as `shared` reports chunks and files done.
    pub(super) async fn run(
        mut self,
        writer: &ControlWriter,
        shared: &RecvShared,
    ) -> Result<(), TransferError> {
        while !self.todo.is_empty() {
            loop {
                let progressed = shared.progressed.notified();
                tokio::pin!(progressed);
                progressed.as_mut().enable();
                let (bytes, files) = self.outstanding(shared);
                if bytes <= WINDOW_BYTES / 2 && files <= WINDOW_FILES / 2 {
                    break;
                }
                progressed.await;
            }
            self.top_up(writer, shared).await?;
        }
        Ok(())
    }

    /// Bytes and files asked for and not yet in.
    pub(super) fn outstanding(&self, shared: &RecvShared) -> (u64, u64) {
        let asked = shared.asked.load(Ordering::Relaxed);
        let received = shared.received.load(Ordering::Relaxed);
        let completed = shared.completed.load(Ordering::Relaxed);
        (
            asked.saturating_sub(received),
            self.asked_files.saturating_sub(completed),
        )
    }

    /// Asks for files until the window is full.
    async fn top_up(
        &mut self,
        writer: &ControlWriter,
        shared: &RecvShared,
    ) -> Result<(), TransferError> {
        let mut pending = Pending::default();
        loop {
            let (bytes, files) = self.outstanding(shared);
            if bytes >= WINDOW_BYTES || files >= WINDOW_FILES {
                break;
            }
            let Some(ask) = self.todo.pop_front() else {
                break;
            };
            self.asked_files += 1;
            shared.asked.fetch_add(ask.bytes(), Ordering::Relaxed);
            if ask.is_tail() {
                // Keeps the order asked: what was gathered goes first.
                pending.flush(writer).await?;
                let request = Message::FileRequest(FileRequest {
                    entry_id: ask.entry_id,
                    resume_from: ask.missing.first().map_or(0, |r| r.start) * CHUNK,
                });
                writer.send(&request).await?;
                continue;
            }
            for ranges in ask.missing.chunks(MAX_RANGES_PER_WANT) {
                let want = Want {
                    entry_id: ask.entry_id,
                    ranges: ranges.iter().map(|r| [r.start, r.end]).collect(),
                };
                if !self.batch {
                    writer.send(&Message::Want(want)).await?;
                    continue;
                }
                if pending.wants.len() >= MAX_FILES_PER_WANTS
                    || pending.ranges + want.ranges.len() > MAX_RANGES_PER_WANT
                {
                    pending.flush(writer).await?;
                }
                pending.ranges += want.ranges.len();
                pending.wants.push(want);
            }
        }
        pending.flush(writer).await
    }
}

/// `Want`s gathered for one `Wants` message.
#[derive(Debug, Default)]
struct Pending {
    wants: Vec<Want>,
    ranges: usize,
}

impl Pending {
    /// Sends what was gathered (one `Want` alone as a `Want`).
    async fn flush(&mut self, writer: &ControlWriter) -> Result<(), TransferError> {
        self.ranges = 0;
        let message = match self.wants.len() {
            0 => return Ok(()),
            1 => match self.wants.pop() {
                Some(want) => Message::Want(want),
                None => return Ok(()),
            },
            _ => Message::Wants(Wants {
                files: std::mem::take(&mut self.wants),
            }),
        };
        writer.send(&message).await
    }
}
