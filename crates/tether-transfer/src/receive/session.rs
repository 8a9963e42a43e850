//! One incoming transfer from offer to `Complete`: the checks and consent (`offer.rs`), the
//! setup after `Accept` (`setup.rs`), then the data phase here. A failure after `Accept` is
//! answered with an `Abort`; resume records are saved; on a full disk the transfer's partial
//! files and new directories are removed so the destination is as it was.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use tether_identity::{ErrorChain, NodeId};
use tokio::io::ReadHalf;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::chunk::CHUNK;
use crate::error::{LocalError, TransferError};
use crate::link::{
    ByteStream, ControlWriter, LaneCipher, PEER_REASON_GRACE, abort_for, eof, is_link,
    is_peer_reason, split,
};
use crate::manifest::{CheckedEntry, EntryKind};
use crate::options::{ReceiverConfig, RunContext, timer_period};
use crate::path::RelPath;
use crate::progress::{
    Direction, FileProgress, Progress, RateMeter, TransferEvent, TransferReport, Waiting, emit, eta,
};
use crate::protocol::{Complete, Message, Offer};
use crate::receive::data::{AttachedLane, RecvShared, run_finalizer, run_lane};
use crate::receive::dest::Destination;
use crate::receive::disk::{self, FilePaths};
use crate::receive::incoming::IncomingOffer;
use crate::receive::offer::{Accepted, before_accept, decline};
use crate::receive::plan::PlannedFile;
use crate::receive::receiver::{LaneGuard, Receiver};
use crate::receive::requester::{Requester, ask_all};
use crate::receive::setup::{plan_all, read_hashes, shared_state};
use crate::receive::task::blocking;
use crate::stall::{Activity, Metered, Verdict, Watchdog};
use crate::throttle::RateLimiter;
use crate::tree::ChunkHash;

impl Receiver {
    /// Runs an offered transfer from `peer` to the end: checks, consent, resume, data, finalising.
    ///
    /// `peer` must be the connection's authenticated identity; lanes are only accepted from it.
    /// For an encrypted offer, `ctx.keys` must hold the per-transfer keys derived with
    /// [`IncomingOffer::transfer_id`].
    pub async fn receive<S: ByteStream>(
        &self,
        offer: IncomingOffer<S>,
        peer: NodeId,
        ctx: RunContext,
    ) -> Result<TransferReport, TransferError> {
        run(self, offer.stream, offer.offer, peer, ctx).await
    }
}

async fn run<S: ByteStream>(
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
        ..
    } = ctx;
    let config = &receiver.config();
    let activity = Activity::new();
    let (mut reader, writer) = split(stream, &activity);
    let writer = ControlWriter::new(writer);
    let mut report = TransferReport::new(offer.transfer_id, Direction::Receive);
    report.bytes_total = offer.total_bytes;

    // Counted from the offer until it is answered; one over the bound is declined at once.
    let accepted = match receiver.claim_offer(peer) {
        Ok(slot) => {
            let before = before_accept(receiver, &mut reader, &writer, &offer, peer, keys);
            let accepted = tokio::select! {
                result = before => result,
                () = cancel.cancelled() => Err(TransferError::Cancelled),
            };
            drop(slot);
            accepted
        }
        Err(error) => Err(error),
    };
    let accepted = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            decline(&writer, &mut reader, config, &error).await;
            return Err(error);
        }
    };
    report.cipher = accepted.cipher;
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
        activity,
        dest: None,
        created_dirs: Vec::new(),
        file_entries: Vec::new(),
    };
    let result = run
        .after_accept(accepted, reader, &writer, &mut report)
        .await;
    report.duration = started.elapsed();
    match result {
        Ok(complete) => {
            writer.close(Some(&Message::Complete(complete))).await;
            tracing::info!(transfer = %offer.transfer_id, bytes = report.bytes_transferred,
                secs = report.duration.as_secs_f64(), "received");
            Ok(report)
        }
        Err(error) => {
            if matches!(error, TransferError::Local(LocalError::DiskFull { .. })) {
                run.remove_traces();
            }
            writer.close(abort_for(&error).as_ref()).await;
            Err(error)
        }
    }
}

/// State of a run after `Accept`.
struct Run<'a> {
    config: &'a ReceiverConfig,
    offer: &'a Offer,
    events: Option<mpsc::Sender<TransferEvent>>,
    cancel: CancellationToken,
    limiters: Vec<RateLimiter>,
    started: Instant,
    activity: Arc<Activity>,
    /// The destination, once accepted.
    dest: Option<Arc<Destination>>,
    created_dirs: Vec<RelPath>,
    file_entries: Vec<CheckedEntry>,
}

/// The finaliser thread of one run and its channels: files to put in place in, files placed
/// out.
struct Finalizer {
    /// Completed files, by index (the lanes hold clones).
    todo: mpsc::UnboundedSender<usize>,
    placed: mpsc::UnboundedReceiver<Result<usize, TransferError>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    /// Files this run still has to put in place.
    remaining: usize,
}

impl Finalizer {
    /// Starts it, with the files already complete (kept whole by a resume) queued.
    fn start(shared: &Arc<RecvShared>) -> Finalizer {
        let (todo, todo_rx) = mpsc::unbounded_channel::<usize>();
        let (placed_tx, placed) = mpsc::unbounded_channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut remaining = 0usize;
        for (index, file) in shared.files.iter().enumerate() {
            let complete = file.chunks.lock().have.is_full();
            if file.to_place() {
                remaining += 1;
                if complete {
                    let _ = todo.send(index);
                }
            }
        }
        let task = tokio::task::spawn_blocking({
            let shared = shared.clone();
            let stop = stop.clone();
            move || run_finalizer(&shared, todo_rx, &placed_tx, &stop)
        });
        Finalizer {
            todo,
            placed,
            stop,
            task,
            remaining,
        }
    }

    /// Stops it once the batch being put in place is done (it cannot be stopped half way), so
    /// nothing of this transfer runs after the run returns; files still queued stay complete
    /// partial files that a resume puts in place.
    async fn stop(self) -> Result<(), TransferError> {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.todo);
        self.task
            .await
            .map_err(|e| LocalError::task_failed("the finaliser", e).into())
    }
}

/// The data phase's running parts, between its start and its end.
struct Receiving {
    lanes: JoinSet<Result<(), TransferError>>,
    meter: RateMeter,
    /// Bytes received as of the last tick.
    counted: u64,
    watchdog: Watchdog,
}

impl Run<'_> {
    async fn after_accept(
        &mut self,
        accepted: Accepted,
        mut reader: ReadHalf<Box<dyn ByteStream>>,
        writer: &ControlWriter,
        report: &mut TransferReport,
    ) -> Result<Complete, TransferError> {
        let Accepted {
            dest,
            entries,
            busy: _busy,
            lanes,
            ciphers,
            ..
        } = accepted;
        let (dirs, files): (Vec<_>, Vec<_>) = entries
            .into_iter()
            .partition(|e| e.entry.kind == EntryKind::Dir);
        self.file_entries = files.clone();
        self.dest = Some(dest.clone());
        let cancel = self.cancel.clone();
        let hashes = tokio::select! {
            result = read_hashes(&mut reader, &files) => result?,
            () = cancel.cancelled() => return Err(TransferError::Cancelled),
        };
        let (files, hashes, planned) = self.plan(&dest, dirs, files, hashes).await?;
        let shared = Arc::new(shared_state(
            dest,
            &files,
            hashes,
            planned.as_slice(),
            self.offer,
            self.config.overwrite,
        ));
        let requester = account(&planned, &shared, self.offer.wants, report);
        if self.offer.plan {
            writer.send(&Message::Plan(requester.plan())).await?;
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
        let in_place = planned.iter().enumerate().filter(|(_, p)| p.in_place());
        for (index, _) in in_place {
            self.file_done(&shared, index);
        }
        drop(planned);
        let result = self
            .data_phase(&shared, reader, writer, requester, lanes, ciphers, report)
            .await;
        if result.is_err() {
            let shared = shared.clone();
            if let Ok(Err(error)) = blocking(move || shared.checkpoint(true)).await {
                tracing::warn!(error = %ErrorChain(&error), "could not save resume records");
            }
        }
        result?;
        Ok(Complete {
            files: report.files,
            bytes_verified: report.bytes_verified,
        })
    }

    /// Creates the directories and plans every file (on a blocking thread): what is in place,
    /// what partial data still verifies. The directories made are noted for a clean-up.
    async fn plan(
        &mut self,
        dest: &Arc<Destination>,
        dirs: Vec<CheckedEntry>,
        files: Vec<CheckedEntry>,
        hashes: Vec<Vec<ChunkHash>>,
    ) -> Result<(Vec<CheckedEntry>, Vec<Vec<ChunkHash>>, Vec<PlannedFile>), TransferError> {
        let overwrite = self.config.overwrite;
        let cancel = self.cancel.clone();
        // Shared with the planning thread, not copied: the hashes are 1/8192 of the data.
        let plan_input = Arc::new((files, hashes));
        let (created, planned) = blocking({
            let plan_input = plan_input.clone();
            let dest = dest.clone();
            move || {
                let mut created = Vec::new();
                let (files, hashes) = &*plan_input;
                let result = plan_all(
                    &dest,
                    &dirs,
                    files,
                    hashes,
                    overwrite,
                    &cancel,
                    &mut created,
                );
                (created, result)
            }
        })
        .await?;
        self.created_dirs = created;
        let planned = planned?;
        let (files, hashes) =
            Arc::try_unwrap(plan_input).unwrap_or_else(|shared| (*shared).clone());
        Ok((files, hashes, planned))
    }

    /// Receives until every file is in place, asking for chunks a window at a time meanwhile.
    #[allow(clippy::too_many_arguments)] // the run's parts, each used once
    async fn data_phase(
        &self,
        shared: &Arc<RecvShared>,
        control: ReadHalf<Box<dyn ByteStream>>,
        writer: &ControlWriter,
        requester: Requester,
        lanes: Option<(LaneGuard, mpsc::Receiver<AttachedLane>)>,
        ciphers: Vec<Arc<LaneCipher>>,
        report: &mut TransferReport,
    ) -> Result<(), TransferError> {
        // One finaliser thread per transfer puts completed files in place in batches; the
        // lanes hand it files whose last chunk is written (no hop through this loop).
        let mut finalizer = Finalizer::start(shared);
        let mut running = Receiving {
            lanes: JoinSet::new(),
            meter: RateMeter::new(self.started),
            counted: 0,
            watchdog: Watchdog::new(self.activity.clone(), self.config.stall_timeout),
        };
        if finalizer.remaining > 0
            && let Some(cipher) = ciphers.first()
        {
            let lane = run_lane(
                control,
                true,
                shared.clone(),
                cipher.clone(),
                self.limiters.clone(),
                finalizer.todo.clone(),
            );
            running.lanes.spawn(lane);
        }
        let (_lane_guard, mut lane_rx) = lanes.unzip();
        let mut checkpoints = interval(self.config.checkpoint_interval);
        let mut ticks = interval(self.config.progress_interval);
        let mut requests = std::pin::pin!(ask_all(requester, writer, shared));
        let mut requests_done = false;
        let mut result = loop {
            if finalizer.remaining == 0 {
                break Ok(());
            }
            tokio::select! {
                () = self.cancel.cancelled() => break Err(TransferError::Cancelled),
                asked = &mut requests, if !requests_done => {
                    requests_done = true;
                    if let Err(error) = asked {
                        break Err(error);
                    }
                }
                Some(lane) = recv_lane(&mut lane_rx) => {
                    self.attach(&mut running, lane, shared, &ciphers, &finalizer.todo);
                }
                _ = ticks.tick() => {
                    if let Err(error) = self.tick(&mut running, shared, report) {
                        break Err(error);
                    }
                }
                placed = finalizer.placed.recv() => match placed {
                    Some(Ok(index)) => {
                        finalizer.remaining -= 1;
                        self.activity.touch();
                        self.file_done(shared, index);
                    }
                    Some(Err(error)) => break Err(error),
                    None => break Err(LocalError::Task("the finaliser stopped".into()).into()),
                },
                Some(joined) = running.lanes.join_next() => match joined {
                    Ok(Ok(())) => break Err(eof()),
                    Ok(Err(error)) => break Err(error),
                    Err(e) => break Err(LocalError::task_failed("a receive lane", e).into()),
                },
                _ = checkpoints.tick() => {
                    let shared = shared.clone();
                    blocking(move || shared.checkpoint(false)).await??;
                }
            }
        };
        // A lost link: the sender's `Abort`, if it sent one, may still be on the control lane
        // (whose reader is one of the lane tasks), and says why.
        if result.as_ref().is_err_and(is_link)
            && let Some(reason) = peer_reason(&mut running.lanes).await
        {
            result = Err(reason);
        }
        running.lanes.abort_all();
        let result = result.and(finalizer.stop().await);
        let received = shared.received.load(Ordering::Relaxed);
        report.bytes_transferred = received;
        report.bytes_verified += received;
        report.wire_bytes = shared.wire.load(Ordering::Relaxed);
        result
    }

    /// Starts reading a lane that attached, if its index has a cipher.
    fn attach(
        &self,
        running: &mut Receiving,
        lane: AttachedLane,
        shared: &Arc<RecvShared>,
        ciphers: &[Arc<LaneCipher>],
        done: &mpsc::UnboundedSender<usize>,
    ) {
        let Some(cipher) = ciphers.get(usize::from(lane.index)) else {
            return;
        };
        let stream = Metered::new(lane.stream, self.activity.clone());
        let (reader, _writer) = tokio::io::split(stream);
        running.lanes.spawn(run_lane(
            reader,
            false,
            shared.clone(),
            cipher.clone(),
            self.limiters.clone(),
            done.clone(),
        ));
    }

    /// Progress, and the watchdog: an error once nothing has moved for the stall bound.
    fn tick(
        &self,
        running: &mut Receiving,
        shared: &RecvShared,
        report: &TransferReport,
    ) -> Result<(), TransferError> {
        let now = Instant::now();
        let received = shared.received.load(Ordering::Relaxed);
        running.meter.record(received - running.counted, now);
        running.counted = received;
        if received > 0 {
            self.progress(shared, report, received, &running.meter, now);
        }
        let waiting_for = if shared.asked.load(Ordering::Relaxed) > received {
            Waiting::Data
        } else {
            Waiting::Disk
        };
        match running.watchdog.check(now) {
            Verdict::Fine => Ok(()),
            Verdict::Report(idle) => {
                self.waiting(waiting_for, idle);
                Ok(())
            }
            Verdict::Stalled(idle) => Err(TransferError::Stalled { waiting_for, idle }),
        }
    }

    fn progress(
        &self,
        shared: &RecvShared,
        report: &TransferReport,
        received: u64,
        meter: &RateMeter,
        now: Instant,
    ) {
        let done = report
            .bytes_resumed
            .saturating_add(received)
            .min(report.bytes_total);
        let rate = meter.rate(received, self.started, now);
        let last = shared.last_file.load(Ordering::Relaxed);
        let file = shared.files.get(last).map(|f| {
            let have = f.chunks.lock().have.count();
            FileProgress {
                entry_id: f.id,
                path: f.rel.clone(),
                bytes_done: have.saturating_mul(CHUNK).min(f.size),
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

    /// Says what this side waits for after a spell with nothing moving.
    fn waiting(&self, waiting_for: Waiting, idle: std::time::Duration) {
        tracing::warn!(transfer = %self.offer.transfer_id, idle_secs = idle.as_secs(),
            "receiving: nothing moved; waiting for {waiting_for}");
        emit(
            self.events.as_ref(),
            TransferEvent::Waiting {
                transfer_id: self.offer.transfer_id,
                direction: Direction::Receive,
                waiting_for,
                idle,
            },
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

    /// After a full disk: remove this transfer's partial files, records and new directories,
    /// each by name relative to its directory's handle.
    fn remove_traces(&self) {
        let Some(dest) = &self.dest else {
            return;
        };
        for entry in &self.file_entries {
            let paths = FilePaths::new(dest.path(), &entry.path);
            let Ok(Some(dir)) = dest.find(&paths.dir) else {
                continue;
            };
            for name in [
                paths.partial_name(),
                paths.record_name(),
                paths.record_tmp_name(),
            ] {
                if let Err(error) = disk::remove_if_exists(&dir, &name, &paths.partial()) {
                    tracing::warn!(error = %ErrorChain(&error), "could not clean up");
                }
            }
        }
        dest.remove_empty(&self.created_dirs);
    }
}

/// The report's resume accounting from the plan (bytes kept, checked, refetched), and the
/// requests for everything else.
fn account(
    planned: &[PlannedFile],
    shared: &RecvShared,
    batch: bool,
    report: &mut TransferReport,
) -> Requester {
    let mut requester = Requester::new(batch);
    for (index, plan) in planned.iter().enumerate() {
        report.bytes_resumed += plan.kept_bytes;
        report.bytes_verified += plan.verified_bytes;
        report.chunks_refetched += plan.corrupt_chunks;
        if plan.in_place() || plan.have.is_full() {
            continue;
        }
        if let Some(file) = shared.files.get(index) {
            requester.add(file.id, file.size, &plan.have);
        }
    }
    requester
}

/// Waits (a little) for a lane task to end with the peer's own account of why it stopped.
async fn peer_reason(lanes: &mut JoinSet<Result<(), TransferError>>) -> Option<TransferError> {
    let reason = tokio::time::timeout(PEER_REASON_GRACE, async {
        while let Some(joined) = lanes.join_next().await {
            if let Ok(Err(error)) = joined
                && is_peer_reason(&error)
            {
                return Some(error);
            }
        }
        None
    })
    .await;
    reason.ok().flatten()
}

/// A timer every `period`, which skips the ticks it missed.
fn interval(period: std::time::Duration) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(timer_period(period));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn recv_lane(rx: &mut Option<mpsc::Receiver<AttachedLane>>) -> Option<AttachedLane> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
