//! The receiver's data phase: chunks from every lane verified and written, files finalised as
//! they complete, resume records saved on a timer.
//!
//! Each lane reads frames and hands each data frame to a blocking job (open the seal, check the
//! chunk was asked for, decompress, verify its BLAKE3 chunk hash, write it at its offset), at most
//! [`PIPELINE_DEPTH`] in flight, and reports outcomes in order to the session loop. A file whose
//! last chunk is written goes to the transfer's one finaliser thread ([`run_finalizer`]), which
//! puts completed files in place in batches (fsync each file, rename each, fsync each directory
//! once, then report them) while the other files keep arriving.
//!
//! Open descriptors are bounded, however many files the transfer has: partial files are kept
//! open in one small cache of at most [`MAX_OPEN_PARTIALS`] handles (least recently used closed
//! first), opened again when needed through [`disk::reopen_partial`] (same `O_NOFOLLOW` open
//! relative to the directory's handle, same inode or refused). A complete file's handle stays
//! in the cache for the finaliser, which takes it (or opens the file again), syncs it and
//! closes it; fsync makes the inode's data durable whichever descriptor it is called on. So at
//! most the cache, one handle per lane worker and one per sync thread are open at once, beside
//! the destination's few directory handles (see `dest.rs`).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;
use tether_identity::error_chain;
use tether_wire::{ContentHash, DataChunk, Frame, FrameKind};
use tokio::io::{AsyncRead, ReadHalf};
use tokio::sync::{Notify, mpsc};
use uuid::Uuid;

use crate::batch;
use crate::chunk::{ChunkSet, chunk_at, chunk_len};
use crate::compress::{self, Compression};
use crate::error::{LocalError, PeerError, TransferError};
use crate::link::{ByteStream, LaneCipher, eof, read_frame_reusing};
use crate::protocol::Message;
use crate::receive::dest::Destination;
use crate::receive::disk::{self, FilePaths, PartialId};
use crate::resume::ResumeRecord;
use crate::throttle::{RateLimiter, acquire_all};
use crate::tree::{ChunkHash, chunk_hash};

/// Chunks being verified and written at once, per lane.
pub(crate) const PIPELINE_DEPTH: usize = 4;

/// Most completed files put in place as one batch (one directory sync per directory).
pub(crate) const FINALIZE_BATCH: usize = 256;

/// Threads syncing one batch's files at once: the file system commits the syncs that wait
/// together in one journal commit (1,000 fsyncs of 4 KiB files on this machine's ext4: about
/// 60-200 ms on 4 threads, 40-60 ms on 16, 1.4 s on one).
const SYNC_THREADS: usize = 16;

/// Fewest files a sync thread takes.
const MIN_SYNCS_PER_THREAD: usize = 4;

/// Most partial files a transfer keeps open between uses. With chunks sent in order on each
/// lane, only a few files per lane are in progress at once; the rest of the cache holds
/// complete files waiting for the finaliser, which opens them again once evicted.
pub(crate) const MAX_OPEN_PARTIALS: usize = 64;

/// One file being received.
#[derive(Debug)]
pub(crate) struct RecvFile {
    pub(crate) id: Uuid,
    pub(crate) rel: String,
    pub(crate) size: u64,
    pub(crate) mtime_ns: u64,
    pub(crate) hash: ContentHash,
    pub(crate) paths: FilePaths,
    pub(crate) hashes: Vec<ChunkHash>,
    /// The partial file created (or kept) while planning; `None` if the target was already in
    /// place or the file is `deferred`.
    pub(crate) partial: Option<PartialId>,
    /// A one-chunk file whose partial file is created once its chunk verified.
    pub(crate) deferred: bool,
    /// That partial file, written and waiting for the finaliser, which takes it.
    pub(crate) written: Mutex<Option<PartialId>>,
    pub(crate) chunks: Mutex<Chunks>,
    /// Held while the record is written or removed, so the two never interleave.
    pub(crate) record_lock: Mutex<()>,
}

/// Which chunks of a file are written, and where the file stands.
#[derive(Debug)]
pub(crate) struct Chunks {
    pub(crate) have: ChunkSet,
    pub(crate) in_flight: ChunkSet,
    pub(crate) dirty: bool,
    pub(crate) finalized: bool,
}

/// What every lane of one incoming transfer shares.
#[derive(Debug)]
pub(crate) struct RecvShared {
    /// The destination, and the handles of its directories.
    pub(crate) dest: Arc<Destination>,
    pub(crate) files: Vec<RecvFile>,
    pub(crate) by_id: HashMap<Uuid, usize>,
    pub(crate) compression: Compression,
    pub(crate) overwrite: bool,
    /// Plain bytes of chunks verified and written in this run.
    pub(crate) received: AtomicU64,
    /// Wire bytes of those chunks' frames.
    pub(crate) wire: AtomicU64,
    /// The file of the latest chunk, for progress.
    pub(crate) last_file: AtomicUsize,
    /// Partial files open between uses (at most [`MAX_OPEN_PARTIALS`]).
    pub(crate) open: OpenPartials,
    /// Plain bytes of the chunks asked for so far in this run.
    pub(crate) asked: AtomicU64,
    /// Files whose last missing chunk was written in this run.
    pub(crate) completed: AtomicU64,
    /// Woken on every chunk written, for the requester's window.
    pub(crate) progressed: Notify,
}

/// The partial files kept open, by file index, least recently used first.
#[derive(Debug, Default)]
pub(crate) struct OpenPartials {
    handles: Mutex<VecDeque<(usize, Arc<File>)>>,
}

impl OpenPartials {
    /// The handle of file `index`, if open (it becomes the most recently used).
    fn get(&self, index: usize) -> Option<Arc<File>> {
        let mut handles = self.handles.lock();
        let at = handles.iter().position(|(i, _)| *i == index)?;
        let entry = handles.remove(at)?;
        let file = entry.1.clone();
        handles.push_back(entry);
        Some(file)
    }

    /// Keeps `file` open as file `index`'s handle, closing the least recently used beyond the
    /// bound (a handle still in use elsewhere closes when that use ends).
    fn put(&self, index: usize, file: Arc<File>) {
        let evicted = {
            let mut handles = self.handles.lock();
            if handles.iter().any(|(i, _)| *i == index) {
                return;
            }
            handles.push_back((index, file));
            if handles.len() > MAX_OPEN_PARTIALS {
                handles.pop_front()
            } else {
                None
            }
        };
        // Closed outside the lock.
        drop(evicted);
    }

    /// Takes file `index`'s handle out of the cache.
    fn take(&self, index: usize) -> Option<Arc<File>> {
        let mut handles = self.handles.lock();
        let at = handles.iter().position(|(i, _)| *i == index)?;
        handles.remove(at).map(|(_, file)| file)
    }

    /// How many handles are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.handles.lock().len()
    }
}

/// A chunk verified and written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkDone {
    pub(crate) file: usize,
    /// This was the file's last missing chunk.
    pub(crate) completes: bool,
}

impl RecvFile {
    /// Whether this run still has to put the file in place.
    pub(crate) fn to_place(&self) -> bool {
        self.partial.is_some() || self.deferred
    }

    /// Whether the file keeps a resume record (files of one chunk or none have nothing to
    /// resume).
    fn recorded(&self) -> bool {
        self.hashes.len() >= 2
    }
}

/// Where a verified chunk goes.
#[derive(Clone, Copy)]
enum WriteTo {
    /// The partial file created while planning.
    Planned(PartialId),
    /// A deferred one-chunk file: created now.
    Deferred,
}

impl RecvShared {
    /// Verifies and writes one data frame (blocking): one chunk, or each file of a batch (see
    /// `batch.rs`), in order. Each file whose last missing chunk it wrote goes to `done`; false
    /// once `done` is closed. Gives back the frame's buffer for the next read.
    fn accept(
        &self,
        cipher: &LaneCipher,
        frame: Frame,
        done: &mpsc::UnboundedSender<usize>,
    ) -> Result<(bool, Vec<u8>), TransferError> {
        let wire = frame.encoded_len() as u64;
        let frame = cipher.open(frame)?;
        let chunk = DataChunk::decode(frame).map_err(|e| PeerError::Frame(error_chain(&e)))?;
        let written = |outcome: ChunkDone| !outcome.completes || done.send(outcome.file).is_ok();
        if chunk.offset() != batch::BATCH_OFFSET || !chunk.entry_id().is_nil() {
            let outcome = self.accept_chunk(chunk.entry_id(), chunk.offset(), chunk.bytes())?;
            self.wire.fetch_add(wire, Ordering::Relaxed);
            return Ok((written(outcome), chunk.into_frame().into_payload()));
        }
        let pieces =
            batch::pieces(chunk.bytes()).map_err(|reason| PeerError::Frame(reason.into()))?;
        self.wire.fetch_add(wire, Ordering::Relaxed);
        for (entry_id, bytes) in pieces {
            if !written(self.accept_chunk(entry_id, 0, bytes)?) {
                return Ok((false, Vec::new()));
            }
        }
        Ok((true, chunk.into_frame().into_payload()))
    }

    /// Verifies and writes the chunk at `offset` of entry `entry_id` (blocking).
    fn accept_chunk(
        &self,
        entry_id: Uuid,
        offset: u64,
        bytes: &[u8],
    ) -> Result<ChunkDone, TransferError> {
        let unsolicited = || PeerError::Unsolicited { entry_id, offset };
        let index_file = self.by_id.get(&entry_id).copied();
        let Some((file_index, file)) = index_file.and_then(|i| Some((i, self.files.get(i)?)))
        else {
            return Err(unsolicited().into());
        };
        let to = match (file.partial, file.deferred) {
            (Some(partial), _) => WriteTo::Planned(partial),
            (None, true) => WriteTo::Deferred,
            (None, false) => return Err(unsolicited().into()),
        };
        let Some(index) = chunk_at(file.size, offset) else {
            return Err(unsolicited().into());
        };
        {
            let mut chunks = file.chunks.lock();
            if chunks.have.contains(index) || !chunks.in_flight.insert(index) {
                return Err(unsolicited().into());
            }
        }
        let result = self.verify_and_write(file_index, file, to, index, bytes);
        let mut chunks = file.chunks.lock();
        chunks.in_flight.remove(index);
        let plain = result?;
        chunks.have.insert(index);
        chunks.dirty = true;
        // Counted here, not where outcomes are collected: a file can complete (and the run end)
        // through another lane before this outcome is reported.
        self.received.fetch_add(plain, Ordering::Relaxed);
        self.last_file.store(file_index, Ordering::Relaxed);
        let completes = chunks.have.is_full();
        drop(chunks);
        if completes {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
        self.progressed.notify_one();
        Ok(ChunkDone {
            file: file_index,
            completes,
        })
    }

    fn verify_and_write(
        &self,
        file_index: usize,
        file: &RecvFile,
        to: WriteTo,
        index: u64,
        bytes: &[u8],
    ) -> Result<u64, TransferError> {
        let expected = chunk_len(file.size, index).unwrap_or(0);
        let decoded = compress::decode(self.compression, bytes, expected).map_err(|source| {
            PeerError::ChunkEncoding {
                path: file.rel.clone(),
                index,
                source,
            }
        })?;
        let plain = decoded.as_deref().unwrap_or(bytes);
        let ok = chunk_hash(file.size, index, plain).as_ref()
            == file
                .hashes
                .get(usize::try_from(index).unwrap_or(usize::MAX));
        if !ok {
            return Err(PeerError::ChunkMismatch {
                path: file.rel.clone(),
                index,
            }
            .into());
        }
        let write = |partial: &File| {
            partial
                .write_all_at(plain, crate::chunk::chunk_offset(index))
                .map_err(|e| LocalError::io("writing", file.paths.partial(), e))
        };
        match to {
            WriteTo::Planned(id) => {
                let partial = self.partial_handle(file_index, file, id)?;
                write(&partial)?;
            }
            WriteTo::Deferred => {
                let dir = self.dest.dir(&file.paths.dir)?;
                let partial = disk::create_partial(
                    &dir,
                    &file.paths,
                    file.size,
                    self.dest.placing().keep_free,
                )?;
                drop(dir);
                write(&partial)?;
                let id = disk::partial_id(&partial, &file.paths.partial())?;
                *file.written.lock() = Some(id);
                // Kept open for the finaliser while there is room.
                self.open.put(file_index, Arc::new(partial));
            }
        }
        Ok(plain.len() as u64)
    }

    /// File `index`'s partial file: the cached handle, or the file opened again (checked to be
    /// the inode `id`) and cached.
    fn partial_handle(
        &self,
        index: usize,
        file: &RecvFile,
        id: PartialId,
    ) -> Result<Arc<File>, LocalError> {
        if let Some(handle) = self.open.get(index) {
            return Ok(handle);
        }
        let dir = self.dest.dir(&file.paths.dir)?;
        let handle = Arc::new(disk::reopen_partial(&dir, &file.paths, id)?);
        self.open.put(index, handle.clone());
        Ok(handle)
    }

    /// The handle the finaliser syncs file `index` through: taken out of the cache (so it is
    /// closed once synced), or the file opened again.
    fn handle_to_seal(
        &self,
        index: usize,
        file: &RecvFile,
        id: PartialId,
    ) -> Result<Arc<File>, LocalError> {
        match self.open.take(index) {
            Some(handle) => Ok(handle),
            None => {
                let dir = self.dest.dir(&file.paths.dir)?;
                Ok(Arc::new(disk::reopen_partial(&dir, &file.paths, id)?))
            }
        }
    }

    /// Puts the files of `batch` in place (blocking): every partial file synced (by up to
    /// [`SYNC_THREADS`] threads, so the file system can group the syncs), then every rename,
    /// then each directory synced once, and only then their resume records removed and the
    /// files added to `placed`. A file is never reported before its rename is durable. On an
    /// error, the files renamed before it are still synced and reported, then the error returned.
    pub(crate) fn finalize_batch(
        &self,
        batch: &[usize],
        placed: &mut Vec<usize>,
    ) -> Result<(), TransferError> {
        let mut items: Vec<(usize, &RecvFile, PartialId)> = Vec::with_capacity(batch.len());
        for &index in batch {
            let Some(file) = self.files.get(index) else {
                return Err(LocalError::Task("finalising an unknown file".into()).into());
            };
            if file.deferred {
                let written = file.written.lock().take();
                let Some(partial) = written else {
                    return Err(LocalError::Task("finalising a file not written".into()).into());
                };
                items.push((index, file, partial));
                continue;
            }
            match file.partial {
                Some(partial) => items.push((index, file, partial)),
                // Already in place.
                None => placed.push(index),
            }
        }
        // Held until the records are gone, so a checkpoint never writes one back.
        let _records: Vec<_> = items
            .iter()
            .map(|(_, file, _)| file.record_lock.lock())
            .collect();
        let mut error = self.seal_all(&items).err();
        let mut renamed = Vec::with_capacity(items.len());
        if error.is_none() {
            for &(index, file, id) in &items {
                let placed = self
                    .dest
                    .dir(&file.paths.dir)
                    .and_then(|dir| disk::place(&dir, &file.paths, id, self.overwrite));
                match placed {
                    Ok(()) => renamed.push((index, file)),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
        }
        let dirs: BTreeSet<&str> = renamed.iter().map(|(_, f)| f.paths.dir.as_str()).collect();
        for dir in dirs {
            disk::sync_dir(&*self.dest.dir(dir)?, &self.dest.display(dir))?;
        }
        for (index, file) in renamed {
            if file.recorded() {
                disk::drop_records(&*self.dest.dir(&file.paths.dir)?, &file.paths)?;
            }
            file.chunks.lock().finalized = true;
            tracing::debug!(path = %file.paths.target.display(), "verified and in place");
            placed.push(index);
        }
        error.map_or(Ok(()), |e| Err(e.into()))
    }

    /// Saves the resume record of every file with new chunks (blocking). With `all` off (the
    /// periodic checkpoint), complete files are left out: they are queued to be put in place
    /// within moments, and their record locks may be held by the finaliser meanwhile. The
    /// checkpoint after a failed run saves them too, so a resume keeps their chunks.
    pub(crate) fn checkpoint(&self, all: bool) -> Result<(), TransferError> {
        for file in self
            .files
            .iter()
            .filter(|f| f.partial.is_some() && f.recorded())
        {
            if !all && file.chunks.lock().have.is_full() {
                continue;
            }
            let _record = file.record_lock.lock();
            let have = {
                let mut chunks = file.chunks.lock();
                if chunks.finalized || !chunks.dirty {
                    continue;
                }
                chunks.dirty = false;
                chunks.have.clone()
            };
            let entry = crate::manifest::ManifestEntry {
                id: file.id,
                path: file.rel.clone(),
                kind: crate::manifest::EntryKind::File,
                size: file.size,
                mtime_ns: file.mtime_ns,
                hash: Some(file.hash),
            };
            let dir = self.dest.dir(&file.paths.dir)?;
            ResumeRecord::new(&entry, file.hash, &have)
                .sender(self.dest.placing().sender)
                .write(
                    &dir,
                    &file.paths.record_name(),
                    &file.paths.record_tmp_name(),
                    &file.paths.record(),
                )?;
        }
        Ok(())
    }

    /// Syncs the partial files of a batch, spread over up to [`SYNC_THREADS`] scoped threads
    /// (on this thread alone on a file system in memory); each thread holds one file open at a
    /// time.
    fn seal_all(&self, items: &[(usize, &RecvFile, PartialId)]) -> Result<(), LocalError> {
        let seal = |part: &[(usize, &RecvFile, PartialId)]| {
            part.iter().try_for_each(|&(index, file, id)| {
                let partial = self.handle_to_seal(index, file, id)?;
                disk::seal(&partial, &file.paths, file.mtime_ns)
            })
        };
        // On tmpfs a sync is free: a thread per few files would cost more than the syncs.
        if items.len() <= 1 || self.dest.in_memory() {
            return seal(items);
        }
        // At least a few files per thread: on a file system where a sync costs little (tmpfs), a
        // batch is small and a thread per file would cost more than its syncs.
        let per_thread = items.len().div_ceil(SYNC_THREADS).max(MIN_SYNCS_PER_THREAD);
        std::thread::scope(|scope| {
            let mut parts = items.chunks(per_thread);
            let first = parts.next().unwrap_or_default();
            let others: Vec<_> = parts.map(|part| scope.spawn(move || seal(part))).collect();
            let mut result = seal(first);
            for handle in others {
                let joined = handle
                    .join()
                    .unwrap_or_else(|_| Err(LocalError::Task("a sync thread panicked".into())));
                result = result.and(joined);
            }
            result
        })
    }
}

/// Puts completed files in place until `todo` closes or `stop` is set (blocking; one thread
/// per transfer, however many files). Takes whatever has queued up, up to
/// [`FINALIZE_BATCH`] files, as one batch; reports each placed file, or the error that stopped
/// it, to `placed`.
pub(crate) fn run_finalizer(
    shared: &RecvShared,
    mut todo: mpsc::UnboundedReceiver<usize>,
    placed: &mpsc::UnboundedSender<Result<usize, TransferError>>,
    stop: &AtomicBool,
) {
    let mut batch = Vec::with_capacity(FINALIZE_BATCH);
    let mut done = Vec::with_capacity(FINALIZE_BATCH);
    while let Some(first) = todo.blocking_recv() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        batch.clear();
        batch.push(first);
        while batch.len() < FINALIZE_BATCH {
            match todo.try_recv() {
                Ok(index) => batch.push(index),
                Err(_) => break,
            }
        }
        done.clear();
        let result = shared.finalize_batch(&batch, &mut done);
        for &index in &done {
            if placed.send(Ok(index)).is_err() {
                return;
            }
        }
        if let Err(error) = result {
            let _ = placed.send(Err(error));
            return;
        }
    }
}

/// Runs one lane until its stream ends or fails; a file whose last chunk it wrote goes to `done`.
///
/// The reader stays on the runtime; verifying and writing run on one long-lived blocking
/// thread fed through a bounded channel, so a busy lane costs no thread hand-off per chunk.
pub(crate) async fn run_lane<R>(
    mut reader: ReadHalf<R>,
    is_control: bool,
    shared: Arc<RecvShared>,
    cipher: Arc<LaneCipher>,
    limiters: Vec<RateLimiter>,
    done: mpsc::UnboundedSender<usize>,
) -> Result<(), TransferError>
where
    R: AsyncRead + Send + 'static,
{
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(PIPELINE_DEPTH);
    // Written frames' buffers go back to the reader, which reads the next frames into them: a
    // busy lane reuses a handful of buffers (at most the frames in flight) instead of
    // allocating, and faulting in, one per frame.
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let worker_shared = shared.clone();
    let mut worker = tokio::task::spawn_blocking(move || {
        while let Some(frame) = frames_rx.blocking_recv() {
            let (more, spare) = worker_shared.accept(&cipher, frame, &done)?;
            if !more {
                break;
            }
            // The reader may have stopped; then the buffer is simply dropped.
            let _ = spare_tx.send(spare);
        }
        Ok::<(), TransferError>(())
    });
    let read = async move {
        loop {
            let spare = spare_rx.try_recv().unwrap_or_default();
            let frame = read_frame_reusing(&mut reader, spare)
                .await?
                .ok_or_else(eof)?;
            match frame.kind() {
                FrameKind::Control if is_control => on_control(&shared, &frame)?,
                FrameKind::Control | FrameKind::SealedControl => {
                    return Err(PeerError::Protocol("control frame on a data lane").into());
                }
                _ => {
                    acquire_all(&limiters, frame.encoded_len() as u64).await;
                    if frames_tx.send(frame).await.is_err() {
                        // The worker stopped; its result says why.
                        return Ok::<(), TransferError>(());
                    }
                }
            }
        }
    };
    let task_failed = |e| TransferError::from(LocalError::task_failed("a lane's write worker", e));
    tokio::select! {
        read = read => {
            // The reader is done (and its end of the channel gone): the worker finishes the
            // frames it was given before the lane ends, so nothing outlives the lane. Its
            // error, if any, says more than the reader's.
            worker.await.map_err(task_failed)??;
            read
        }
        worked = &mut worker => worked.map_err(task_failed)?,
    }
}

/// A control message on the control lane during the data phase.
fn on_control(shared: &RecvShared, frame: &Frame) -> Result<(), TransferError> {
    match Message::from_frame(frame)? {
        Message::Abort(abort) => Err(PeerError::from(abort).into()),
        Message::FileResponse(response) => {
            let file = shared
                .by_id
                .get(&response.entry_id)
                .and_then(|&i| shared.files.get(i));
            match file {
                Some(f) if f.size == response.size && f.hash == response.hash => Ok(()),
                _ => Err(PeerError::Protocol("FileResponse does not match the manifest").into()),
            }
        }
        _ => Err(PeerError::Protocol("unexpected message during the data phase").into()),
    }
}

/// The lane streams a receiving session gets, with their index.
pub(crate) struct AttachedLane {
    pub(crate) index: u8,
    pub(crate) stream: Box<dyn ByteStream>,
}

impl std::fmt::Debug for AttachedLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedLane")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_partials_keep_at_most_the_bound_closing_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let open = OpenPartials::default();
        let handle = |i: usize| Arc::new(File::create(dir.path().join(format!("{i}"))).unwrap());
        for i in 0..MAX_OPEN_PARTIALS {
            open.put(i, handle(i));
        }
        // File 0 used again: file 1 is now the least recently used.
        assert!(open.get(0).is_some());
        open.put(MAX_OPEN_PARTIALS, handle(MAX_OPEN_PARTIALS));
        assert_eq!(open.len(), MAX_OPEN_PARTIALS);
        assert!(open.get(1).is_none() && open.get(0).is_some());
        // A handle in use elsewhere stays open after eviction; taking removes it.
        let in_use = open.get(2).unwrap();
        for i in 100..100 + MAX_OPEN_PARTIALS {
            open.put(i, handle(i));
        }
        assert!(open.get(2).is_none());
        assert!(in_use.metadata().is_ok());
        assert!(open.take(100).is_some() && open.take(100).is_none());
        assert_eq!(open.len(), MAX_OPEN_PARTIALS - 1);
    }
}
