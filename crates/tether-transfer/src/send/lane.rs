//! One sending lane: a blocking worker that reads, compresses and seals chunks while the lane's
//! stream writes the previous ones.
//!
//! The worker (one long-lived thread of tokio's blocking pool) takes chunks from the shared
//! [`WorkQueue`] and hands frames to the writer through a channel of [`PIPELINE_DEPTH`]; the
//! writer waits for the rate limiters and writes. A busy lane thus costs no thread hand-off per
//! chunk (a blocking task per chunk cost a third of the plain throughput; see BENCHMARKS.md).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tether_wire::{ContentHash, DataChunk, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::batch;
use crate::chunk::{chunk_count, chunk_len, chunk_offset};
use crate::compress::{self, Compression, GIVE_UP_AFTER, PROBE_EVERY};
use crate::error::{LocalError, TransferError};
use crate::link::{ControlWriter, LaneCipher, write_paced};
use crate::manifest::ManifestEntry;
use crate::send::queue::{Work, WorkQueue};
use crate::send::requests::Offered;
use crate::source::SourceFile;
use crate::throttle::RateLimiter;

/// Chunks prepared ahead of the writer, per lane.
pub(crate) const PIPELINE_DEPTH: usize = 4;

/// What every lane of one transfer shares.
#[derive(Debug)]
pub(crate) struct SendShared {
    pub(crate) files: Vec<SourceFile>,
    /// Per file: entry id, manifest path, hash.
    pub(crate) ids: Vec<Uuid>,
    pub(crate) paths: Vec<String>,
    pub(crate) hashes: Vec<ContentHash>,
    pub(crate) compression: Compression,
    /// The receiver reads batch frames: small files go several to a frame.
    pub(crate) batches: bool,
    pub(crate) queue: WorkQueue,
    pub(crate) limiters: Vec<RateLimiter>,
    by_id: HashMap<Uuid, usize>,
    open: Vec<Mutex<Option<Arc<File>>>>,
    /// Per file, chunks asked for and not yet taken by a lane: the shared handle is closed
    /// when this reaches zero.
    pending: Vec<AtomicU64>,
    /// Chunks in a row that did not shrink, per file.
    misses: Vec<AtomicU32>,
    /// What went out, for the report and progress (read on a timer, not per chunk).
    pub(crate) counters: SentCounters,
}

/// Bytes sent so far, updated by the lanes as frames go out.
#[derive(Debug, Default)]
pub(crate) struct SentCounters {
    /// File bytes (before compression).
    pub(crate) plain: AtomicU64,
    /// Frame bytes on the wire.
    pub(crate) wire: AtomicU64,
    /// Per file, file bytes.
    pub(crate) per_file: Vec<AtomicU64>,
    /// The file of the latest chunk.
    pub(crate) last_file: AtomicUsize,
}

impl Offered for SendShared {
    fn find(&self, id: Uuid) -> Option<usize> {
        self.file_index(id)
    }

    fn size(&self, index: usize) -> Option<u64> {
        self.files.get(index).map(|f| f.size)
    }

    fn hash(&self, index: usize) -> Option<ContentHash> {
        self.hashes.get(index).copied()
    }
}

/// A frame ready to go out: one chunk, or a batch of small files.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    /// Each file in the frame and its bytes (before compression).
    pub(crate) files: Vec<(usize, u64)>,
    pub(crate) wire: u64,
}

impl SendShared {
    pub(crate) fn new(
        files: Vec<SourceFile>,
        entries: &[ManifestEntry],
        compression: Compression,
        limiters: Vec<RateLimiter>,
    ) -> Result<Self, LocalError> {
        let mut ids = Vec::with_capacity(files.len());
        let mut paths = Vec::with_capacity(files.len());
        let mut hashes = Vec::with_capacity(files.len());
        for file in &files {
            // Every source file was hashed from a file entry of this manifest.
            let (id, path, hash) = entries
                .get(file.entry_index)
                .and_then(|e| Some((e.id, e.path.clone(), e.hash?)))
                .ok_or_else(|| LocalError::Task("a source file without its entry".into()))?;
            ids.push(id);
            paths.push(path);
            hashes.push(hash);
        }
        let open = files.iter().map(|_| Mutex::new(None)).collect();
        let pending = files.iter().map(|_| AtomicU64::new(0)).collect();
        let misses = files.iter().map(|_| AtomicU32::new(0)).collect();
        let counters = SentCounters {
            per_file: files.iter().map(|_| AtomicU64::new(0)).collect(),
            ..SentCounters::default()
        };
        let by_id = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        Ok(SendShared {
            by_id,
            files,
            ids,
            paths,
            hashes,
            compression,
            batches: false,
            queue: WorkQueue::default(),
            limiters,
            open,
            pending,
            misses,
            counters,
        })
    }

    /// The index of the file with entry id `id`.
    pub(crate) fn file_index(&self, id: Uuid) -> Option<usize> {
        self.by_id.get(&id).copied()
    }

    /// Notes that `count` chunks of file `index` were asked for (before they are queued).
    pub(crate) fn asked(&self, index: usize, count: u64) {
        if let Some(pending) = self.pending.get(index) {
            pending.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// The open source file for one chunk asked for, opened on first use (each read is then
    /// checked against what was hashed). The shared handle is closed once no chunk of the file
    /// is left to take (whichever lane takes the last one, in whatever order the lanes get to
    /// their reads), so a transfer of many files holds only the files being sent open; a file
    /// asked for again is opened again.
    fn file(&self, index: usize) -> Result<(Arc<File>, &SourceFile), TransferError> {
        let (Some(source), Some(slot), Some(pending)) = (
            self.files.get(index),
            self.open.get(index),
            self.pending.get(index),
        ) else {
            return Err(LocalError::Task("chunk of an unknown file".into()).into());
        };
        let mut slot = slot.lock();
        let file = match slot.as_ref() {
            Some(file) => file.clone(),
            None => {
                let file = File::open(&source.path)
                    .map_err(|e| LocalError::io("opening", &source.path, e))?;
                Arc::new(file)
            }
        };
        // Taken under the slot's lock, so a handle is never left behind by lanes racing.
        let left = pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            })
            .map_or(0, |n| n.saturating_sub(1));
        *slot = (left > 0).then(|| file.clone());
        Ok((file, source))
    }

    /// Whether file `index`'s handle is kept open.
    #[cfg(test)]
    fn is_open(&self, index: usize) -> bool {
        self.open
            .get(index)
            .is_some_and(|slot| slot.lock().is_some())
    }

    /// Reads, encodes and seals one chunk (blocking). The file is read straight into the
    /// frame's payload, built in `buf` (a sent frame's payload, reused; empty for a new one).
    fn prepare(
        &self,
        cipher: &LaneCipher,
        work: Work,
        buf: Vec<u8>,
    ) -> Result<(Frame, Sent), TransferError> {
        let (file, source) = self.file(work.file)?;
        let last = work.index + 1 >= chunk_count(source.size);
        let changed = || TransferError::from(LocalError::SourceChanged(source.path.clone()));
        let len = chunk_len(source.size, work.index).ok_or_else(changed)?;
        let offset = chunk_offset(work.index);
        let id = self
            .ids
            .get(work.file)
            .copied()
            .ok_or_else(|| LocalError::Task("chunk of an unknown file".into()))?;
        let mut chunk = DataChunk::with_buffer(id, offset, last, len, buf)
            .map_err(|e| LocalError::Task(e.to_string()))?;
        // The chunk is sent only if this read filled all its bytes.
        if let Err(error) = file.read_exact_at(chunk.bytes_mut(), offset) {
            // A file that shrank under us is a changed source, not a broken disk.
            check_unchanged(&file, source)?;
            return Err(LocalError::io("reading", &source.path, error).into());
        }
        // After the read: a change before or during it has moved the modification time.
        check_unchanged(&file, source)?;
        let packed = match self.compression {
            Compression::Zstd if self.worth_trying(work) => {
                let packed = compress::compress(chunk.bytes());
                self.note_result(work.file, packed.is_some());
                packed
            }
            _ => None,
        };
        if let Some(packed) = packed {
            chunk = DataChunk::new(id, offset, last, &packed)
                .map_err(|e| LocalError::Task(e.to_string()))?;
        }
        let frame = cipher.seal(chunk.into_frame())?;
        let sent = Sent {
            files: vec![(work.file, len as u64)],
            wire: frame.encoded_len() as u64,
        };
        Ok((frame, sent))
    }

    /// Whether chunk `work` may go in a batch: the whole of a small file, sent uncompressed
    /// to a receiver that reads batches.
    fn batchable(&self, work: Work) -> bool {
        self.batches
            && self.compression == Compression::None
            && work.index == 0
            && self
                .files
                .get(work.file)
                .is_some_and(|f| f.size > 0 && f.size <= batch::SMALL_FILE)
    }

    /// `first` and the small files queued right behind it, as many as fit one frame; just
    /// `first` when it is not a small file or nothing joins it.
    fn take_batch(&self, first: Work) -> Vec<Work> {
        let mut works = vec![first];
        if !self.batchable(first) {
            return works;
        }
        let mut total = self
            .files
            .get(first.file)
            .map_or(0, |f| batch::piece_len(f.size));
        while let Some(work) = self.queue.pop_if(|work| {
            self.batchable(work)
                && self
                    .files
                    .get(work.file)
                    .is_some_and(|f| batch::fits(total.saturating_add(batch::piece_len(f.size))))
        }) {
            total += self
                .files
                .get(work.file)
                .map_or(0, |f| batch::piece_len(f.size));
            works.push(work);
        }
        works
    }

    /// Reads and seals several small files as one batch frame (blocking), built in `buf`; each
    /// file is opened, read and closed in turn, so a batch holds one file open at a time.
    fn prepare_batch(
        &self,
        cipher: &LaneCipher,
        works: &[Work],
        buf: Vec<u8>,
    ) -> Result<(Frame, Sent), TransferError> {
        let unknown = || TransferError::from(LocalError::Task("a batch of unknown files".into()));
        let total: u64 = works
            .iter()
            .map(|w| self.files.get(w.file).map(|f| batch::piece_len(f.size)))
            .sum::<Option<u64>>()
            .ok_or_else(unknown)?;
        let total = usize::try_from(total).map_err(|_| unknown())?;
        let mut chunk = DataChunk::with_buffer(Uuid::nil(), batch::BATCH_OFFSET, false, total, buf)
            .map_err(|e| LocalError::Task(e.to_string()))?;
        let mut rest = chunk.bytes_mut();
        let mut sent = Vec::with_capacity(works.len());
        for work in works {
            let (file, source) = self.file(work.file)?;
            let id = self.ids.get(work.file).ok_or_else(unknown)?;
            let len = u32::try_from(source.size).map_err(|_| unknown())?;
            let piece = usize::try_from(batch::piece_len(source.size)).map_err(|_| unknown())?;
            let (piece, tail) = std::mem::take(&mut rest)
                .split_at_mut_checked(piece)
                .ok_or_else(unknown)?;
            let (header, bytes) = piece
                .split_at_mut_checked(batch::PIECE_HEADER_LEN)
                .ok_or_else(unknown)?;
            batch::write_piece_header(header, *id, len);
            if let Err(error) = file.read_exact_at(bytes, 0) {
                check_unchanged(&file, source)?;
                return Err(LocalError::io("reading", &source.path, error).into());
            }
            check_unchanged(&file, source)?;
            sent.push((work.file, source.size));
            rest = tail;
        }
        let frame = cipher.seal(chunk.into_frame())?;
        let wire = frame.encoded_len() as u64;
        Ok((frame, Sent { files: sent, wire }))
    }

    fn worth_trying(&self, work: Work) -> bool {
        let misses = self
            .misses
            .get(work.file)
            .map_or(0, |m| m.load(Ordering::Relaxed));
        misses < GIVE_UP_AFTER || work.index.is_multiple_of(PROBE_EVERY)
    }

    fn note_result(&self, file: usize, shrank: bool) {
        if let Some(misses) = self.misses.get(file) {
            if shrank {
                misses.store(0, Ordering::Relaxed);
            } else {
                misses.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The source must still be what was hashed: same size, same modification time.
fn check_unchanged(file: &File, source: &SourceFile) -> Result<(), TransferError> {
    let meta = file
        .metadata()
        .map_err(|e| LocalError::io("inspecting", &source.path, e))?;
    if meta.len() != source.size || meta.modified().ok() != source.modified {
        return Err(LocalError::SourceChanged(source.path.clone()).into());
    }
    Ok(())
}

/// Where a lane writes: its own stream, or the control stream shared with control messages.
pub(crate) enum LaneWriter<W> {
    /// A data-only lane.
    Own(W),
    /// Lane 0, shared with the session's control messages.
    Control(ControlWriter),
}

/// Runs one lane until the queue closes; counts what it sent in [`SendShared::counters`].
pub(crate) async fn run_lane<W>(
    shared: Arc<SendShared>,
    cipher: Arc<LaneCipher>,
    writer: LaneWriter<W>,
) -> Result<(), TransferError>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (frames_tx, mut frames_rx) =
        mpsc::channel::<Result<(Frame, Sent), TransferError>>(PIPELINE_DEPTH);
    // Sent frames' payloads go back to the worker, which reads the next chunks into them: a
    // busy lane reuses a handful of buffers instead of allocating one per chunk.
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let runtime = tokio::runtime::Handle::current();
    let worker_shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        while let Some(work) = runtime.block_on(worker_shared.queue.pop()) {
            let buf = spare_rx.try_recv().unwrap_or_default();
            let works = worker_shared.take_batch(work);
            let prepared = if works.len() > 1 {
                worker_shared.prepare_batch(&cipher, &works, buf)
            } else {
                worker_shared.prepare(&cipher, work, buf)
            };
            let failed = prepared.is_err();
            if frames_tx.blocking_send(prepared).is_err() || failed {
                break;
            }
        }
    });
    let mut writer = writer;
    while let Some(prepared) = frames_rx.recv().await {
        let (frame, sent) = prepared?;
        match &mut writer {
            LaneWriter::Own(w) => write_paced(w, &frame, &shared.limiters).await?,
            LaneWriter::Control(w) => w.send_paced(&frame, &shared.limiters).await?,
        }
        // The worker may have stopped; then the buffer is simply dropped.
        let _ = spare_tx.send(frame.into_payload());
        let counters = &shared.counters;
        counters.wire.fetch_add(sent.wire, Ordering::Relaxed);
        for &(file, plain) in &sent.files {
            counters.plain.fetch_add(plain, Ordering::Relaxed);
            if let Some(file) = counters.per_file.get(file) {
                file.fetch_add(plain, Ordering::Relaxed);
            }
            counters.last_file.store(file, Ordering::Relaxed);
        }
    }
    if let LaneWriter::Own(w) = &mut writer {
        // The queue closed after the receiver's `Complete`: end this lane's stream.
        let _ = w.shutdown().await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn a_file_is_closed_by_whichever_lane_takes_its_last_asked_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 3 * 256 * 1024]).unwrap();
        let source = SourceFile {
            entry_index: 0,
            path,
            size: 3 * 256 * 1024,
            modified: None,
            hashes: Vec::new(),
        };
        let entry = ManifestEntry {
            id: Uuid::from_u128(1),
            path: "f".into(),
            kind: crate::manifest::EntryKind::File,
            size: 3 * 256 * 1024,
            mtime_ns: 0,
            hash: Some(ContentHash([1; 32])),
        };
        let shared =
            SendShared::new(vec![source], &[entry], Compression::None, Vec::new()).unwrap();
        // Chunks 0..3 asked for; lanes take the last chunk first, then the others.
        shared.asked(0, 3);
        let (last, _) = shared.file(0).unwrap();
        assert!(shared.is_open(0));
        let (first, _) = shared.file(0).unwrap();
        assert!(Arc::ptr_eq(&last, &first), "one shared handle");
        let _ = shared.file(0).unwrap();
        assert!(!shared.is_open(0), "closed once every asked chunk is taken");
        // Asked for again (a chunk in the middle): opened again, and closed after it.
        shared.asked(0, 1);
        let _ = shared.file(0).unwrap();
        assert!(!shared.is_open(0));
    }

    /// Small files go several to a frame only to a receiver that reads batches, only
    /// uncompressed, and only as many as fit one frame; a larger file goes alone.
    #[test]
    fn only_a_receiver_that_reads_batches_gets_small_files_together() {
        let sizes = [
            4096u64,
            100,
            64 << 10,
            64 << 10,
            64 << 10,
            64 << 10,
            300_000,
        ];
        let files: Vec<SourceFile> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| SourceFile {
                entry_index: i,
                path: format!("/nowhere/{i}").into(),
                size,
                modified: None,
                hashes: Vec::new(),
            })
            .collect();
        let entries: Vec<ManifestEntry> = sizes
            .iter()
            .enumerate()
            .map(|(i, &size)| ManifestEntry {
                id: Uuid::from_u128(i as u128 + 1),
                path: format!("{i}"),
                kind: crate::manifest::EntryKind::File,
                size,
                mtime_ns: 0,
                hash: Some(ContentHash([1; 32])),
            })
            .collect();
        let shared = SendShared::new(files, &entries, Compression::None, Vec::new()).unwrap();
        let queue_all = |shared: &SendShared| {
            for (i, &size) in sizes.iter().enumerate() {
                shared.queue.push(i, 0, chunk_count(size));
            }
        };
        let first = Work { file: 0, index: 0 };
        let batch = |shared: &SendShared| {
            let mut works = Vec::new();
            while let Some(work) = shared.queue.pop_if(|_| true) {
                works.push(
                    shared
                        .take_batch(work)
                        .iter()
                        .map(|w| w.file)
                        .collect::<Vec<_>>(),
                );
            }
            works
        };
        // An older receiver (its Accept has no `batches`): one file per frame.
        queue_all(&shared);
        assert_eq!(shared.take_batch(first), vec![first]);
        // A receiver that reads batches, the same files queued afresh.
        let SendShared { files, .. } = shared;
        let mut shared = SendShared::new(files, &entries, Compression::None, Vec::new()).unwrap();
        shared.batches = true;
        queue_all(&shared);
        // 4 KiB + 100 B + three 64 KiB files fit 256 KiB with their headers; the fourth does
        // not; the 300,000-byte file (two chunks) goes alone, chunk by chunk.
        assert_eq!(
            batch(&shared),
            vec![vec![0, 1, 2, 3, 4], vec![5], vec![6], vec![6]]
        );
        shared.compression = Compression::Zstd;
        queue_all(&shared);
        assert_eq!(batch(&shared).len(), 8, "compressed: one frame per chunk");
    }

    #[test]
    fn a_source_file_without_its_entry_is_an_internal_error() {
        let source = SourceFile {
            entry_index: 3,
            path: "/nowhere".into(),
            size: 1,
            modified: None,
            hashes: Vec::new(),
        };
        let error = SendShared::new(vec![source], &[], Compression::None, Vec::new()).unwrap_err();
        assert!(matches!(error, LocalError::Task(_)), "{error:?}");
    }
}
