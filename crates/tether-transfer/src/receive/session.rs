//! One incoming transfer from offer to `Complete`.
//!
//! Before `Accept`: the offer and manifest are checked against the limits, the targets against
//! the destination (free space, existing files), and consent is asked; any failure is answered
//! with a `Decline`. After `Accept`: chunk hashes in, resume planning, requests out, data phase;
//! a failure is answered with an `Abort`, resume records are saved, and on a full disk the
//! transfer's partial files and new directories are removed so the destination is as it was.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether_identity::NodeId;
use tether_wire::{ContentHash, FileRequest};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::chunk::{CHUNK, CHUNK_SIZE, chunk_count};
use crate::compress::Compression;
use crate::consent::{Decision, OfferSummary};
use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{ByteStream, LaneCipher, abort_for, eof, read_frame_from, send_message};
use crate::manifest::{CheckedEntry, EntryKind, ManifestBuilder};
use crate::options::{MAX_LANES, ReceiverConfig, RunContext};
use crate::progress::{
    Direction, FileProgress, Progress, RateMeter, TransferEvent, TransferReport, emit, eta,
};
use crate::protocol::{
    AbortCode, Complete, Decline, MAX_RANGES_PER_WANT, Message, Offer, VERSION, Want, cut_message,
    decode_hashes,
};
use crate::receive::data::{AttachedLane, ChunkDone, Chunks, RecvFile, RecvShared, run_lane};
use crate::receive::disk::{self, Existing, FilePaths};
use crate::receive::plan::{PlannedFile, plan_file};
use crate::receive::{BusyGuard, LaneGuard, Receiver};
use crate::throttle::RateLimiter;
use crate::tree::{ChunkHash, root_hash};

type Reader = ReadHalf<Box<dyn ByteStream>>;
type Writer = Arc<AsyncMutex<WriteHalf<Box<dyn ByteStream>>>>;

/// What consent produced.
struct Accepted {
    entries: Vec<CheckedEntry>,
    _busy: BusyGuard,
    lanes: Option<(LaneGuard, mpsc::Receiver<AttachedLane>)>,
    ciphers: Vec<Arc<LaneCipher>>,
}

pub(super) async fn run<S: ByteStream>(
    receiver: &Receiver,
    stream: S,
    offer: Offer,
    peer: NodeId,
    ctx: RunContext,
) -> Result<TransferReport, TransferError> {
    let started = Instant::now();
    let RunContext {
        keys,
        events,
        cancel,
        shared_limits,
    } = ctx;
    let config = &receiver.inner.config;
    let (mut reader, writer) = tokio::io::split(Box::new(stream) as Box<dyn ByteStream>);
    let writer: Writer = Arc::new(AsyncMutex::new(writer));
    let mut report = TransferReport::new(offer.transfer_id, Direction::Receive);
    report.bytes_total = offer.total_bytes;

    let before = before_accept(receiver, &mut reader, &writer, &offer, peer, keys);
    let accepted = tokio::select! {
        result = before => result,
        () = cancel.cancelled() => Err(TransferError::Cancelled),
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            decline(&writer, &error).await;
            return Err(error);
        }
    };
    report.files = accepted
        .entries
        .iter()
        .filter(|e| e.entry.kind == EntryKind::File)
        .count() as u64;
    let mut limiters = shared_limits;
    if let Some(rate) = config.rate_limit {
        limiters.push(RateLimiter::new(rate));
    }
    let mut run = Run {
        config,
        offer: &offer,
        events,
        cancel,
        limiters,
        started,
        created_dirs: Vec::new(),
        file_entries: Vec::new(),
    };
    let result = run
        .after_accept(accepted, reader, &writer, &mut report)
        .await;
    report.duration = started.elapsed();
    match result {
        Ok(complete) => {
            let _ = send_message(&mut *writer.lock().await, &Message::Complete(complete)).await;
            tracing::info!(transfer = %offer.transfer_id, bytes = report.bytes_transferred,
                secs = report.duration.as_secs_f64(), "received");
            Ok(report)
        }
        Err(error) => {
            if matches!(error, TransferError::Local(LocalError::DiskFull { .. })) {
                run.remove_traces();
            }
            if let Some(message) = abort_for(&error) {
                let send = async { send_message(&mut *writer.lock().await, &message).await };
                let _ = tokio::time::timeout(Duration::from_millis(500), send).await;
            }
            Err(error)
        }
    }
}

/// Checks the offer and manifest, the destination, and consent; sends `Accept`.
async fn before_accept(
    receiver: &Receiver,
    reader: &mut Reader,
    writer: &Writer,
    offer: &Offer,
    peer: NodeId,
    keys: Option<tether_crypto::SessionKeys>,
) -> Result<Accepted, TransferError> {
    let config = &receiver.inner.config;
    if offer.version != VERSION {
        return Err(PeerError::Version(offer.version).into());
    }
    if offer.chunk_size != CHUNK_SIZE
        || offer.compression == Compression::Unknown
        || offer.lanes == 0
        || offer.lanes > MAX_LANES
    {
        return Err(
            PeerError::Protocol("unsupported chunk size, compression or lane count").into(),
        );
    }
    let mut keys = match (offer.encrypted, keys) {
        (true, None) => return Err(UsageError::KeysRequired.into()),
        (true, keys) => keys,
        (false, _) => None,
    };
    let mut builder = ManifestBuilder::new(config.limits, offer.entries, offer.total_bytes)
        .map_err(PeerError::from)?;
    while !builder.is_complete() {
        let frame = read_frame_from(reader).await?.ok_or_else(eof)?;
        builder
            .page_bytes(frame.payload().len())
            .map_err(PeerError::from)?;
        match Message::from_frame(&frame)? {
            Message::Manifest(page) => {
                for entry in page.entries {
                    builder.push(entry).map_err(PeerError::from)?;
                }
            }
            Message::Abort(abort) => return Err(aborted(abort)),
            _ => return Err(PeerError::Protocol("expected the manifest").into()),
        }
    }
    let entries = builder.finish().map_err(PeerError::from)?;

    let root = config.destination.clone();
    let (targets, needed) = {
        let entries = entries.clone();
        let overwrite = config.overwrite;
        blocking(move || survey(&root, &entries, overwrite)).await??
    };
    if config.check_free_space {
        let available = disk::free_space(&config.destination)?;
        if needed > available {
            return Err(LocalError::DiskFull {
                path: config.destination.clone(),
                needed,
                available,
            }
            .into());
        }
    }
    let busy = receiver.claim_targets(targets)?;
    let manifest: Vec<_> = entries.iter().map(|e| e.entry.clone()).collect();
    let summary = OfferSummary {
        transfer_id: offer.transfer_id,
        peer,
        entries: &manifest,
        files: manifest
            .iter()
            .filter(|e| e.kind == EntryKind::File)
            .count() as u64,
        total_bytes: offer.total_bytes,
        encrypted: offer.encrypted,
    };
    if let Decision::Decline(reason) = config.consent.decide(&summary).await {
        return Err(TransferError::Declined(reason));
    }
    let mut ciphers = Vec::with_capacity(usize::from(offer.lanes));
    for index in 0..offer.lanes {
        ciphers.push(Arc::new(LaneCipher::derive(keys.as_mut(), index)?));
    }
    let lanes =
        (offer.lanes > 1).then(|| receiver.open_lanes(offer.transfer_id, peer, offer.lanes));
    send_message(&mut *writer.lock().await, &Message::Accept).await?;
    Ok(Accepted {
        entries,
        _busy: busy,
        lanes,
        ciphers,
    })
}

/// Every file's target, and the bytes the transfer may still need on disk. Refuses targets that
/// exist with other contents (unless overwriting) or pass through a symlink.
fn survey(
    root: &std::path::Path,
    entries: &[CheckedEntry],
    overwrite: bool,
) -> Result<(Vec<PathBuf>, u64), TransferError> {
    let mut targets = Vec::new();
    let mut needed = 0u64;
    for entry in entries {
        disk::check_dirs(root, &entry.path)?;
        if entry.entry.kind == EntryKind::Dir {
            disk::check_dir_or_absent(&entry.path.under(root))?;
            continue;
        }
        let paths = FilePaths::new(root, &entry.path);
        let size = entry.entry.size;
        match disk::existing(&paths.target)? {
            Existing::Absent => {}
            Existing::File(len) if len == size => {
                targets.push(paths.target);
                continue; // probably in place already; planning checks its hash
            }
            Existing::File(_) if overwrite => {}
            Existing::File(_) | Existing::Other => {
                return Err(LocalError::TargetExists(paths.target).into());
            }
        }
        if !matches!(disk::existing(&paths.partial)?, Existing::File(_)) {
            needed = needed.saturating_add(size);
        }
        targets.push(paths.target);
    }
    Ok((targets, needed))
}

/// State of a run after `Accept`.
struct Run<'a> {
    config: &'a ReceiverConfig,
    offer: &'a Offer,
    events: Option<mpsc::Sender<TransferEvent>>,
    cancel: CancellationToken,
    limiters: Vec<RateLimiter>,
    started: Instant,
    created_dirs: Vec<PathBuf>,
    file_entries: Vec<CheckedEntry>,
}

impl Run<'_> {
    async fn after_accept(
        &mut self,
        accepted: Accepted,
        mut reader: Reader,
        writer: &Writer,
        report: &mut TransferReport,
    ) -> Result<Complete, TransferError> {
        let Accepted {
            entries,
            _busy,
            lanes,
            ciphers,
        } = accepted;
        let (dirs, files): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|e| e.entry.kind == EntryKind::Dir);
        self.file_entries = files.clone();
        let cancel = self.cancel.clone();
        let hashes = tokio::select! {
            result = read_hashes(&mut reader, &files) => result?,
            () = cancel.cancelled() => return Err(TransferError::Cancelled),
        };

        let root = self.config.destination.clone();
        let overwrite = self.config.overwrite;
        let plan_input = (files.clone(), hashes.clone());
        let (created, planned) = blocking(move || {
            let mut created = Vec::new();
            let result = plan_all(
                &root,
                &dirs,
                &plan_input.0,
                &plan_input.1,
                overwrite,
                &cancel,
                &mut created,
            );
            (created, result)
        })
        .await?;
        self.created_dirs = created;
        let planned = planned?;

        let shared = Arc::new(shared_state(
            &files,
            hashes,
            planned.as_slice(),
            self.offer,
            overwrite,
        ));
        for (index, plan) in planned.iter().enumerate() {
            report.bytes_resumed += plan.kept_bytes;
            report.bytes_verified += plan.verified_bytes;
            report.chunks_refetched += plan.corrupt_chunks;
            if plan.in_place() || plan.have.is_full() {
                continue;
            }
            let entry_id = shared.files.get(index).map(|f| f.id).unwrap_or_default();
            send_wants(writer, entry_id, &plan.have).await?;
        }
        emit(
            self.events.as_ref(),
            TransferEvent::Started {
                transfer_id: self.offer.transfer_id,
                direction: Direction::Receive,
                files: report.files,
                bytes_total: report.bytes_total,
                bytes_resumed: report.bytes_resumed,
            },
        );
        let in_place: Vec<usize> = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.in_place())
            .map(|(i, _)| i)
            .collect();
        drop(planned);
        for index in in_place {
            self.file_done(&shared, index);
        }
        let result = self
            .data_phase(&shared, reader, lanes, ciphers, report)
            .await;
        if result.is_err() {
            let shared = shared.clone();
            if let Ok(Err(error)) = blocking(move || shared.checkpoint()).await {
                tracing::warn!(%error, "could not save resume records");
            }
        }
        result?;
        Ok(Complete {
            files: report.files,
            bytes_verified: report.bytes_verified,
        })
    }

    /// Receives until every file is in place.
    async fn data_phase(
        &self,
        shared: &Arc<RecvShared>,
        control: Reader,
        lanes: Option<(LaneGuard, mpsc::Receiver<AttachedLane>)>,
        ciphers: Vec<Arc<LaneCipher>>,
        report: &mut TransferReport,
    ) -> Result<(), TransferError> {
        let mut remaining = 0usize;
        let mut finalizers = JoinSet::new();
        for (index, file) in shared.files.iter().enumerate() {
            let complete = file
                .chunks
                .lock()
                .map(|c| c.have.is_full())
                .unwrap_or(false);
            if file.file.is_some() {
                remaining += 1;
                if complete {
                    let shared = shared.clone();
                    finalizers.spawn_blocking(move || shared.finalize(index));
                }
            }
        }
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ChunkDone>();
        let mut lane_tasks = JoinSet::new();
        let cipher = |index: u8| ciphers.get(usize::from(index)).cloned();
        if remaining > 0
            && let Some(cipher) = cipher(0)
        {
            lane_tasks.spawn(run_lane(
                control,
                true,
                shared.clone(),
                cipher,
                self.limiters.clone(),
                done_tx.clone(),
            ));
        }
        let (_lane_guard, mut lane_rx) = match lanes {
            Some((guard, rx)) => (Some(guard), Some(rx)),
            None => (None, None),
        };
        let mut checkpoints = tokio::time::interval(self.config.checkpoint_interval);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut meter = RateMeter::new(self.started);
        let mut last_event = Instant::now();
        let mut received = 0u64;
        let mut per_file: HashMap<usize, u64> = HashMap::new();
        let result = loop {
            if remaining == 0 {
                break Ok(());
            }
            tokio::select! {
                () = self.cancel.cancelled() => break Err(TransferError::Cancelled),
                Some(lane) = recv_lane(&mut lane_rx) => {
                    if let Some(cipher) = cipher(lane.index) {
                        let (reader, _writer) = tokio::io::split(lane.stream);
                        lane_tasks.spawn(run_lane(
                            reader,
                            false,
                            shared.clone(),
                            cipher,
                            self.limiters.clone(),
                            done_tx.clone(),
                        ));
                    }
                }
                Some(chunk) = done_rx.recv() => {
                    received += chunk.plain;
                    let now = Instant::now();
                    meter.record(chunk.plain, now);
                    *per_file.entry(chunk.file).or_default() += chunk.plain;
                    if chunk.completes {
                        let shared = shared.clone();
                        finalizers.spawn_blocking(move || shared.finalize(chunk.file));
                    }
                    if now.duration_since(last_event) >= self.config.progress_interval {
                        last_event = now;
                        self.progress(shared, report, received, &meter, chunk.file, &per_file, now);
                    }
                }
                Some(joined) = finalizers.join_next() => {
                    match joined {
                        Ok(Ok(index)) => {
                            remaining -= 1;
                            self.file_done(shared, index);
                        }
                        Ok(Err(error)) => break Err(error),
                        Err(e) => break Err(LocalError::Task(e.to_string()).into()),
                    }
                }
                Some(joined) = lane_tasks.join_next() => {
                    match joined {
                        Ok(Ok(())) => break Err(eof()),
                        Ok(Err(error)) => break Err(error),
                        Err(e) => break Err(LocalError::Task(e.to_string()).into()),
                    }
                }
                _ = checkpoints.tick() => {
                    let shared = shared.clone();
                    blocking(move || shared.checkpoint()).await??;
                }
            }
        };
        lane_tasks.abort_all();
        let received = shared.received.load(std::sync::atomic::Ordering::Relaxed);
        report.bytes_transferred = received;
        report.bytes_verified += received;
        report.wire_bytes = shared.wire.load(std::sync::atomic::Ordering::Relaxed);
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn progress(
        &self,
        shared: &RecvShared,
        report: &TransferReport,
        received: u64,
        meter: &RateMeter,
        file: usize,
        per_file: &HashMap<usize, u64>,
        now: Instant,
    ) {
        let done = (report.bytes_resumed + received).min(report.bytes_total);
        let rate = meter.rate(received, self.started, now);
        let file = shared.files.get(file).map(|f| {
            let kept = f.chunks.lock().map(|c| c.have.count()).unwrap_or(0);
            FileProgress {
                entry_id: f.id,
                path: f.rel.clone(),
                bytes_done: (kept * CHUNK)
                    .min(f.size)
                    .max(per_file.get(&file).copied().unwrap_or(0)),
                size: f.size,
            }
        });
        emit(
            self.events.as_ref(),
            TransferEvent::Progress(Progress {
                transfer_id: self.offer.transfer_id,
                direction: Direction::Receive,
                bytes_done: done,
                bytes_total: report.bytes_total,
                rate,
                eta: eta(report.bytes_total.saturating_sub(done), rate),
                file,
            }),
        );
    }

    fn file_done(&self, shared: &RecvShared, index: usize) {
        if let Some(file) = shared.files.get(index) {
            emit(
                self.events.as_ref(),
                TransferEvent::FileDone {
                    transfer_id: self.offer.transfer_id,
                    entry_id: file.id,
                    path: file.rel.clone(),
                    target: Some(file.paths.target.clone()),
                },
            );
        }
    }

    /// After a full disk: remove this transfer's partial files, records and new directories.
    fn remove_traces(&self) {
        for entry in &self.file_entries {
            let paths = FilePaths::new(&self.config.destination, &entry.path);
            for path in [&paths.partial, &paths.record, &paths.record_tmp] {
                if let Err(error) = disk::remove_if_exists(path) {
                    tracing::warn!(%error, "could not clean up");
                }
            }
        }
        for dir in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

async fn recv_lane(rx: &mut Option<mpsc::Receiver<AttachedLane>>) -> Option<AttachedLane> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Reads the chunk hashes of every file with two or more chunks, in manifest order, and checks
/// each list against the file hash.
async fn read_hashes(
    reader: &mut Reader,
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

async fn read_message(reader: &mut Reader) -> Result<Message, TransferError> {
    crate::link::read_message(reader).await
}

/// Creates the directories and plans every file (blocking).
fn plan_all(
    root: &std::path::Path,
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
    for (entry, hashes) in files.iter().zip(hashes) {
        if let Some(parent) = entry.path.parent() {
            disk::ensure_dir(root, &parent, created)?;
        }
        let hash = entry.entry.hash.unwrap_or(ContentHash([0; 32]));
        planned.push(plan_file(root, entry, hash, hashes, overwrite, cancel)?);
    }
    Ok(planned)
}

fn shared_state(
    files: &[CheckedEntry],
    hashes: Vec<Vec<ChunkHash>>,
    planned: &[PlannedFile],
    offer: &Offer,
    overwrite: bool,
) -> RecvShared {
    let mut recv_files = Vec::with_capacity(files.len());
    for ((entry, hashes), plan) in files.iter().zip(hashes).zip(planned) {
        let file = plan
            .file
            .as_ref()
            .and_then(|f| f.try_clone().ok())
            .map(Arc::new);
        recv_files.push(RecvFile {
            id: entry.entry.id,
            rel: entry.entry.path.clone(),
            size: entry.entry.size,
            mtime_ns: entry.entry.mtime_ns,
            hash: entry.entry.hash.unwrap_or(ContentHash([0; 32])),
            paths: plan.paths.clone(),
            hashes,
            file,
            chunks: Mutex::new(Chunks {
                have: plan.have.clone(),
                in_flight: crate::chunk::ChunkSet::new(plan.have.len()),
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
    }
}

/// Asks for the chunks of one file that `have` lacks: a `FileRequest` when they are one run to
/// the end of the file (the common resume), `Want` ranges otherwise.
async fn send_wants(
    writer: &Writer,
    entry_id: uuid::Uuid,
    have: &crate::chunk::ChunkSet,
) -> Result<(), TransferError> {
    let missing = have.missing_ranges();
    let mut writer = writer.lock().await;
    if let [only] = missing.as_slice()
        && only.end == have.len()
    {
        let request = Message::FileRequest(FileRequest {
            entry_id,
            resume_from: only.start * CHUNK,
        });
        return send_message(&mut *writer, &request).await;
    }
    for ranges in missing.chunks(MAX_RANGES_PER_WANT) {
        let want = Message::Want(Want {
            entry_id,
            ranges: ranges.iter().map(|r| [r.start, r.end]).collect(),
        });
        send_message(&mut *writer, &want).await?;
    }
    Ok(())
}

/// Answers an offer this side will not take.
async fn decline(writer: &Writer, error: &TransferError) {
    let code = match error {
        TransferError::Link(_) | TransferError::Peer(PeerError::Aborted { .. }) => return,
        TransferError::Declined(_) => AbortCode::Declined,
        TransferError::Cancelled => AbortCode::Cancelled,
        TransferError::Local(LocalError::DiskFull { .. }) => AbortCode::NoSpace,
        TransferError::Peer(_) | TransferError::Local(_) => AbortCode::Refused,
        TransferError::Usage(_) => AbortCode::Internal,
    };
    let message = match error {
        TransferError::Peer(error) => cut_message(&error.to_string()),
        _ => String::new(),
    };
    let send = async {
        send_message(
            &mut *writer.lock().await,
            &Message::Decline(Decline { code, message }),
        )
        .await
    };
    let _ = tokio::time::timeout(Duration::from_millis(500), send).await;
}

fn aborted(abort: crate::protocol::Abort) -> TransferError {
    PeerError::Aborted {
        code: abort.code,
        message: abort.message,
    }
    .into()
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LocalError::Task(e.to_string()).into())
}
