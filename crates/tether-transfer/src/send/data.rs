//! The sender's data phase: requests in, chunks out on every lane, until `Complete`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tether_identity::ErrorChain;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::compress::Compression;
use crate::error::{LocalError, PeerError, TransferError};
use crate::link::{
    ByteStream, ControlWriter, LaneCipher, PEER_REASON_GRACE, abort_for, is_link, is_peer_reason,
    read_message,
};
use crate::options::timer_period;
use crate::progress::{
    Direction, FileProgress, Progress, RateMeter, SendTally, TransferEvent, TransferReport,
    Waiting, emit, eta,
};
use crate::protocol::{Complete, Message};
use crate::send::lane::{LaneWriter, SendShared, run_lane};
use crate::send::requests::{Requested, Step};
use crate::source::OutgoingTransfer;
use crate::stall::{Activity, Verdict, Watchdog};
use crate::throttle::RateLimiter;

/// How long the lanes get, once the transfer ended, to write what they prepared and end their
/// streams before they are aborted.
const LANE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the data phase reports into.
pub(super) struct DataPhase {
    pub(super) events: Option<mpsc::Sender<TransferEvent>>,
    pub(super) started: Instant,
    pub(super) cancel: CancellationToken,
    /// Where what this run sent is added when it ends.
    pub(super) tally: Option<Arc<SendTally>>,
    pub(super) report: TransferReport,
    /// When bytes last moved on the transfer's streams.
    pub(super) activity: Arc<Activity>,
    /// The receiver reads batch frames.
    pub(super) batches: bool,
}

/// The data phase's running parts, between its start and its end.
struct Running {
    shared: Arc<SendShared>,
    requested: Arc<Mutex<Requested>>,
    lanes: JoinSet<Result<(), TransferError>>,
    meter: RateMeter,
    /// Bytes sent as of the last tick.
    counted: u64,
    watchdog: Watchdog,
    /// The stall bound once the receiver has said what it lacks.
    bound: Duration,
    planning: bool,
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
        let mut running = match self.start(transfer, &control_tx, lane_writers, ciphers, limiters) {
            Ok(running) => running,
            Err(error) => {
                control_tx.close(abort_for(&error).as_ref()).await;
                return Err(error);
            }
        };
        // If this future is dropped half way, the guard still stops the lanes' workers.
        let _close = CloseQueueOnDrop(running.shared.clone());
        let mut control = Box::pin(serve_requests(
            control_rx,
            control_tx.clone(),
            running.shared.clone(),
            running.requested.clone(),
        ));
        let mut ticks = tokio::time::interval(timer_period(interval));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut control_ended = false;
        let mut outcome = loop {
            tokio::select! {
                () = self.cancel.cancelled() => break Err(TransferError::Cancelled),
                served = &mut control => {
                    control_ended = true;
                    break served;
                }
                Some(joined) = running.lanes.join_next() => match joined {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => break Err(error),
                    Err(e) => break Err(LocalError::task_failed("a send lane", e).into()),
                },
                _ = ticks.tick() => {
                    if let Err(error) = self.tick(&mut running) {
                        break Err(error);
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
        running.shared.queue.close();
        drop(control);
        drain(&mut running.lanes).await;
        self.finish(&running, outcome, &control_tx).await
    }

    /// Spawns every lane over the work queue; nothing is asked yet.
    fn start(
        &self,
        transfer: OutgoingTransfer,
        control_tx: &ControlWriter,
        lane_writers: Vec<WriteHalf<Box<dyn ByteStream>>>,
        ciphers: Vec<Arc<LaneCipher>>,
        limiters: Vec<RateLimiter>,
    ) -> Result<Running, TransferError> {
        let compression = if transfer.options.compress {
            Compression::Zstd
        } else {
            Compression::None
        };
        let mut shared = SendShared::new(transfer.files, &transfer.entries, compression, limiters)?;
        shared.batches = self.batches;
        let shared = Arc::new(shared);
        let mut lanes = JoinSet::new();
        let mut ciphers = ciphers.into_iter();
        if let Some(cipher) = ciphers.next() {
            let writer = LaneWriter::<WriteHalf<Box<dyn ByteStream>>>::Control(control_tx.clone());
            lanes.spawn(run_lane(shared.clone(), cipher, writer));
        }
        for (writer, cipher) in lane_writers.into_iter().zip(ciphers) {
            lanes.spawn(run_lane(shared.clone(), cipher, LaneWriter::Own(writer)));
        }
        let requested = Requested::new(shared.files.iter().map(|f| f.size));
        // Until the receiver speaks (its `Plan` or first request) it is planning: creating the
        // directories and partial files of what it lacks, seconds for tens of thousands of
        // files on a slow disk, with nothing on the wire. That wait gets PLANNING_GRACE bounds.
        let bound = transfer.options.stall_timeout;
        let watchdog = Watchdog::new(self.activity.clone(), bound.saturating_mul(PLANNING_GRACE));
        Ok(Running {
            shared,
            requested: Arc::new(Mutex::new(requested)),
            lanes,
            meter: RateMeter::new(self.started),
            counted: 0,
            watchdog,
            bound,
            planning: true,
        })
    }

    /// Progress, and the watchdog: an error once nothing has moved for the stall bound.
    fn tick(&self, running: &mut Running) -> Result<(), TransferError> {
        let now = Instant::now();
        let sent = running.shared.counters.plain.load(Ordering::Relaxed);
        running.meter.record(sent - running.counted, now);
        running.counted = sent;
        let (asked, heard) = {
            let requested = running.requested.lock();
            (requested.bytes(), requested.heard())
        };
        if sent > 0 {
            self.progress(running, sent, now);
        }
        let waiting_for = if asked > sent {
            Waiting::ReceiverReading
        } else {
            Waiting::Requests
        };
        if running.planning && heard {
            running.planning = false;
            running.watchdog.set_bound(running.bound);
        }
        match running.watchdog.check(now) {
            Verdict::Fine => Ok(()),
            Verdict::Report(idle) => {
                self.waiting(waiting_for, idle);
                Ok(())
            }
            Verdict::Stalled(idle) => Err(TransferError::Stalled { waiting_for, idle }),
        }
    }

    /// The report, once the lanes have ended; the receiver is told why when this side failed.
    async fn finish(
        self,
        running: &Running,
        outcome: Result<Complete, TransferError>,
        control_tx: &ControlWriter,
    ) -> Result<TransferReport, TransferError> {
        let counters = &running.shared.counters;
        let mut report = self.report;
        report.bytes_transferred = counters.plain.load(Ordering::Relaxed);
        report.wire_bytes = counters.wire.load(Ordering::Relaxed);
        report.duration = self.started.elapsed();
        if let Some(tally) = &self.tally {
            let requested = running.requested.lock();
            let needed = match (requested.planned(), &outcome) {
                (Some(planned), _) => Some(planned),
                (None, Ok(_)) => Some(requested.bytes()),
                (None, Err(_)) => None,
            };
            tally.add_run(report.bytes_transferred, needed);
        }
        match outcome {
            Ok(complete) => {
                control_tx.close(None).await;
                report.bytes_verified = complete.bytes_verified;
                let asked = running.requested.lock().bytes();
                report.bytes_resumed = report.bytes_total.saturating_sub(asked);
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

    fn progress(&self, running: &Running, sent: u64, now: Instant) {
        let shared = &running.shared;
        let total = self.report.bytes_total;
        let done = running.requested.lock().done(total, sent);
        let rate = running.meter.rate(sent, self.started, now);
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

/// Lets the lanes drain what they prepared (at most a few frames) and end their streams.
async fn drain(lanes: &mut JoinSet<Result<(), TransferError>>) {
    let drained = tokio::time::timeout(LANE_DRAIN_TIMEOUT, async {
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
}

/// Reads the receiver's requests until it reports `Complete`, and carries out what each asks
/// (see [`Requested::handle`]).
async fn serve_requests(
    mut control_rx: ReadHalf<Box<dyn ByteStream>>,
    control_tx: ControlWriter,
    shared: Arc<SendShared>,
    requested: Arc<Mutex<Requested>>,
) -> Result<Complete, TransferError> {
    loop {
        let message = read_message(&mut control_rx).await?;
        let step = requested.lock().handle(message, &*shared)?;
        let (response, ranges) = match step {
            Step::Complete(complete) => return Ok(complete),
            Step::Nothing => continue,
            Step::Serve { response, ranges } => (response, ranges),
        };
        if let Some(response) = response {
            control_tx.send(&Message::FileResponse(response)).await?;
        }
        for (file, start, end) in ranges {
            // Counted before queued, so the lane taking the last of them closes the file.
            shared.asked(file, end.saturating_sub(start));
            if !shared.queue.push(file, start, end) {
                return Err(PeerError::Protocol("too many outstanding requests").into());
            }
        }
    }
}
