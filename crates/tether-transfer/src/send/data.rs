//! The sender's data phase: requests in, chunks out on every lane, until `Complete`.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tether_identity::ErrorChain;
use tether_wire::{FileRequest, FileResponse};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::chunk::{CHUNK, CHUNK_SIZE, ChunkSet, chunk_count, chunk_len};
use crate::compress::Compression;
use crate::error::{LocalError, PeerError, TransferError};
use crate::link::{
    ByteStream, ControlWriter, LaneCipher, PEER_REASON_GRACE, abort_for, is_link, is_peer_reason,
    read_message,
};
use crate::options::timer_period;
use crate::progress::{
    Direction, FileProgress, Progress, RateMeter, TransferEvent, TransferReport, Waiting, emit, eta,
};
use crate::protocol::{Complete, MAX_FILES_PER_WANTS, MAX_RANGES_PER_WANT, Message, Want, Wants};
use crate::send::lane::{LaneWriter, SendShared, run_lane};
use crate::source::OutgoingTransfer;
use crate::stall::{Activity, Verdict, Watchdog};
use crate::throttle::RateLimiter;

/// What the data phase reports into.
pub(super) struct DataPhase {
    pub(super) events: Option<mpsc::Sender<TransferEvent>>,
    pub(super) started: Instant,
    pub(super) cancel: CancellationToken,
    pub(super) report: TransferReport,
    /// When bytes last moved on the transfer's streams.
    pub(super) activity: Arc<Activity>,
}

/// Which chunks the receiver has asked for so far, and their bytes.
#[derive(Debug)]
struct Requested {
    sets: Vec<ChunkSet>,
    bytes: u64,
    /// Bytes the receiver said (in its `Plan`) it will ask for in all.
    planned: Option<u64>,
    /// A `Plan` or a request has arrived: progress can be counted.
    heard: bool,
}

impl DataPhase {
    pub(super) async fn run(
        self,
        transfer: OutgoingTransfer,
        control_rx: ReadHalf<Box<dyn ByteStream>>,
        control_tx: ControlWriter,
        lane_writers: Vec<WriteHalf<Box<dyn ByteStream>>>,
        ciphers: Vec<Arc<LaneCipher>>,
        limiters: Vec<RateLimiter>,
    ) -> Result<TransferReport, TransferError> {
        let interval = transfer.options.progress_interval;
        let compression = if transfer.options.compress {
            Compression::Zstd
        } else {
            Compression::None
        };
        let shared = Arc::new(SendShared::new(
            transfer.files,
            &transfer.entries,
            compression,
            limiters,
        )?);
        let mut lanes = JoinSet::new();
        let mut ciphers = ciphers.into_iter();
        if let Some(cipher) = ciphers.next() {
            let writer = LaneWriter::<WriteHalf<Box<dyn ByteStream>>>::Control(control_tx.clone());
            lanes.spawn(run_lane(shared.clone(), cipher, writer));
        }
        for (writer, cipher) in lane_writers.into_iter().zip(ciphers) {
            lanes.spawn(run_lane(shared.clone(), cipher, LaneWriter::Own(writer)));
        }
        let requested = Arc::new(Mutex::new(Requested {
            sets: shared
                .files
                .iter()
                .map(|f| ChunkSet::new(chunk_count(f.size)))
                .collect(),
            bytes: 0,
            planned: None,
            heard: false,
        }));
        // If this future is dropped half way, the guard still stops the lanes' workers.
        let _close = CloseQueueOnDrop(shared.clone());
        let mut control = Box::pin(serve_requests(
            control_rx,
            control_tx.clone(),
            shared.clone(),
            requested.clone(),
        ));

        let mut meter = RateMeter::new(self.started);
        let mut ticks = tokio::time::interval(timer_period(interval));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counted = 0u64;
        // Until the receiver speaks (its `Plan` or first request) it is planning: creating the
        // directories and partial files of what it lacks, seconds for tens of thousands of
        // files on a slow disk, with nothing on the wire. That wait gets PLANNING_GRACE bounds.
        let bound = transfer.options.stall_timeout;
        let mut watchdog =
            Watchdog::new(self.activity.clone(), bound.saturating_mul(PLANNING_GRACE));
        let mut planning = true;
        let mut control_ended = false;
        let mut outcome = loop {
            tokio::select! {
                () = self.cancel.cancelled() => break Err(TransferError::Cancelled),
                served = &mut control => {
                    control_ended = true;
                    break served;
                }
                Some(joined) = lanes.join_next() => match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => break Err(error),
                    Err(e) => break Err(LocalError::task_failed("a send lane", e).into()),
                },
                _ = ticks.tick() => {
                    let now = Instant::now();
                    let sent = shared.counters.plain.load(Ordering::Relaxed);
                    meter.record(sent - counted, now);
                    counted = sent;
                    if sent > 0 {
                        self.progress(&shared, &requested, &meter, sent, now);
                    }
                    let waiting_for = || {
                        if requested_bytes(&requested) > sent {
                            Waiting::ReceiverReading
                        } else {
                            Waiting::Requests
                        }
                    };
                    if planning && heard(&requested) {
                        planning = false;
                        watchdog.set_bound(bound);
                    }
                    match watchdog.check(now) {
                        Verdict::Fine => {}
                        Verdict::Report(idle) => self.waiting(waiting_for(), idle),
                        Verdict::Stalled(idle) => {
                            break Err(TransferError::Stalled { waiting_for: waiting_for(), idle });
                        }
                    }
                }
            }
        };
        // A lane that lost its link first: the receiver's `Abort`, if it sent one, may be
        // waiting on the control stream, and says why.
        if !control_ended
            && outcome.as_ref().is_err_and(is_link)
            && let Ok(Err(reason)) = tokio::time::timeout(PEER_REASON_GRACE, &mut control).await
            && is_peer_reason(&reason)
        {
            outcome = Err(reason);
        }
        shared.queue.close();
        drop(control);
        // The lanes drain what they prepared (at most a few frames) and end their streams.
        let drained = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(joined) = lanes.join_next().await {
                if let Ok(Err(error)) = joined {
                    tracing::debug!(
                        error = %ErrorChain(&error),
                        "lane ended with an error after the transfer ended"
                    );
                }
            }
        })
        .await;
        if drained.is_err() {
            lanes.abort_all();
        }
        let mut report = self.report;
        report.bytes_transferred = shared.counters.plain.load(Ordering::Relaxed);
        report.wire_bytes = shared.counters.wire.load(Ordering::Relaxed);
        report.duration = self.started.elapsed();
        match outcome {
            Ok(complete) => {
                control_tx.close(None).await;
                report.bytes_verified = complete.bytes_verified;
                report.bytes_resumed = report
                    .bytes_total
                    .saturating_sub(requested_bytes(&requested));
                tracing::info!(
                    transfer = %report.transfer_id,
                    bytes = report.bytes_transferred,
                    secs = report.duration.as_secs_f64(),
                    "sent"
                );
                Ok(report)
            }
            Err(error) => {
                control_tx.close(abort_for(&error).as_ref()).await;
                Err(error)
            }
        }
    }

    /// Says what this side waits for after a spell with nothing moving.
    fn waiting(&self, waiting_for: Waiting, idle: Duration) {
        tracing::info!(transfer = %self.report.transfer_id, idle_secs = idle.as_secs(),
            "sending: nothing moved; waiting for {waiting_for}");
        emit(
            self.events.as_ref(),
            TransferEvent::Waiting {
                transfer_id: self.report.transfer_id,
                direction: Direction::Send,
                waiting_for,
                idle,
            },
        );
    }

    fn progress(
        &self,
        shared: &SendShared,
        requested: &Mutex<Requested>,
        meter: &RateMeter,
        sent: u64,
        now: Instant,
    ) {
        let total = self.report.bytes_total;
        let done = {
            let requested = requested.lock().unwrap_or_else(PoisonError::into_inner);
            // What the receiver will not ask for counts as done once it said so: in its
            // `Plan`, or (a receiver that sends none asks for everything at once) by asking.
            let skipped = match (requested.planned, requested.heard) {
                (Some(planned), _) => total.saturating_sub(planned),
                (None, true) => total.saturating_sub(requested.bytes),
                (None, false) => 0,
            };
            skipped.saturating_add(sent).min(total)
        };
        let rate = meter.rate(sent, self.started, now);
        let file = shared.counters.last_file.load(Ordering::Relaxed);
        let file = shared.files.get(file).map(|f| FileProgress {
            entry_id: shared.ids.get(file).copied().unwrap_or_default(),
            path: shared.paths.get(file).cloned().unwrap_or_default(),
            bytes_done: shared
                .counters
                .per_file
                .get(file)
                .map_or(0, |b| b.load(Ordering::Relaxed)),
            size: f.size,
        });
        emit(
            self.events.as_ref(),
            TransferEvent::Progress(Progress {
                transfer_id: self.report.transfer_id,
                direction: Direction::Send,
                bytes_done: done,
                bytes_total: total,
                rate,
                eta: eta(total.saturating_sub(done), rate),
                file,
            }),
        );
    }
}

/// Closes the work queue when dropped, so the lanes' blocking workers always end.
struct CloseQueueOnDrop(Arc<SendShared>);

impl Drop for CloseQueueOnDrop {
    fn drop(&mut self) {
        self.0.queue.close();
    }
}

/// How many stall bounds the sender waits for a receiver that has not yet said what it lacks.
const PLANNING_GRACE: u32 = 5;

/// Whether the receiver has said what it lacks (a `Plan` or a request).
fn heard(requested: &Mutex<Requested>) -> bool {
    requested
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .heard
}

/// Bytes of all chunks the receiver has asked for so far.
fn requested_bytes(requested: &Mutex<Requested>) -> u64 {
    requested
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .bytes
}

/// Reads the receiver's requests until it reports `Complete`. Only entries of the manifest can
/// be named, only chunks they have.
async fn serve_requests(
    mut control_rx: ReadHalf<Box<dyn ByteStream>>,
    control_tx: ControlWriter,
    shared: Arc<SendShared>,
    requested: Arc<Mutex<Requested>>,
) -> Result<Complete, TransferError> {
    loop {
        let asked: Vec<(usize, Vec<[u64; 2]>)> = match read_message(&mut control_rx).await? {
            Message::Want(want) => vec![checked_want(&shared, want)?],
            Message::Wants(Wants { files }) => {
                if files.len() > MAX_FILES_PER_WANTS {
                    return Err(PeerError::Protocol("too many files in one Wants").into());
                }
                let ranges: usize = files.iter().map(|w| w.ranges.len()).sum();
                if ranges > MAX_RANGES_PER_WANT {
                    return Err(PeerError::Protocol("too many ranges in one Wants").into());
                }
                files
                    .into_iter()
                    .map(|want| checked_want(&shared, want))
                    .collect::<Result<_, _>>()?
            }
            Message::FileRequest(FileRequest {
                entry_id,
                resume_from,
            }) => {
                let file = file_of(&shared, entry_id)?;
                let size = shared.files.get(file).map_or(0, |f| f.size);
                if resume_from > size {
                    return Err(PeerError::UnknownEntry(entry_id).into());
                }
                // Resume at the chunk holding `resume_from`: chunks are the unit of verification.
                let first = resume_from / CHUNK;
                let response = Message::FileResponse(FileResponse {
                    entry_id,
                    size,
                    hash: shared.hashes.get(file).copied().ok_or_else(|| {
                        LocalError::Task("a requested file without its hash".into())
                    })?,
                    chunk_size: CHUNK_SIZE,
                    offset: first * CHUNK,
                });
                control_tx.send(&response).await?;
                vec![(file, vec![[first, chunk_count(size)]])]
            }
            Message::Plan(plan) => {
                let mut requested = requested.lock().unwrap_or_else(PoisonError::into_inner);
                if requested.heard {
                    return Err(PeerError::Protocol("a Plan after the first request").into());
                }
                requested.planned = Some(plan.bytes);
                requested.heard = true;
                continue;
            }
            Message::Complete(complete) => return Ok(complete),
            Message::Abort(abort) => {
                return Err(PeerError::from(abort).into());
            }
            _ => return Err(PeerError::Protocol("unexpected message from the receiver").into()),
        };
        let mut requested = requested.lock().unwrap_or_else(PoisonError::into_inner);
        requested.heard = true;
        for (file, ranges) in asked {
            let size = shared.files.get(file).map_or(0, |f| f.size);
            for [start, end] in ranges {
                let Requested { sets, bytes, .. } = &mut *requested;
                if let Some(set) = sets.get_mut(file) {
                    for index in start..end {
                        if set.insert(index) {
                            *bytes += chunk_len(size, index).map_or(0, |l| l as u64);
                        }
                    }
                }
                // Counted before queued, so the lane taking the last of them closes the file.
                shared.asked(file, end.saturating_sub(start));
                if !shared.queue.push(file, start, end) {
                    return Err(PeerError::Protocol("too many outstanding requests").into());
                }
            }
        }
    }
}

/// The file a `Want` names and its ranges, checked: an entry of the manifest, at most
/// [`MAX_RANGES_PER_WANT`] non-empty ranges of chunks it has.
fn checked_want(
    shared: &SendShared,
    Want { entry_id, ranges }: Want,
) -> Result<(usize, Vec<[u64; 2]>), TransferError> {
    let file = file_of(shared, entry_id)?;
    let chunks = chunk_count(shared.files.get(file).map_or(0, |f| f.size));
    if ranges.len() > MAX_RANGES_PER_WANT || ranges.iter().any(|[s, e]| s >= e || *e > chunks) {
        return Err(PeerError::UnknownEntry(entry_id).into());
    }
    Ok((file, ranges))
}

fn file_of(shared: &SendShared, entry_id: Uuid) -> Result<usize, TransferError> {
    shared
        .file_index(entry_id)
        .ok_or_else(|| PeerError::UnknownEntry(entry_id).into())
}
