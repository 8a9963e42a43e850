//! The sender's run of a transfer.
//!
//! Offer and manifest out; `Accept` (or `Decline`) back; chunk hashes out; lanes greeted; then the
//! receiver's `Want`s and `FileRequest`s feed the [`WorkQueue`](queue::WorkQueue) and every lane
//! sends from it until the receiver reports `Complete`.

mod lane;
mod queue;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_wire::{ContentHash, FileRequest, FileResponse};
use tokio::io::{AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex as AsyncMutex, mpsc};
use tokio::task::JoinSet;

use crate::chunk::{CHUNK, CHUNK_SIZE, ChunkSet, chunk_count, chunk_len};
use crate::compress::Compression;
use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{ByteStream, LaneCipher, abort_for, read_message, send_message};
use crate::options::{MAX_LANES, RunContext};
use crate::progress::{
    Direction, FileProgress, Progress, RateMeter, TransferEvent, TransferReport, emit, eta,
};
use crate::protocol::{
    ChunkHashes, Complete, LaneHello, MANIFEST_PAGE_BYTES, MAX_HASHES_PER_PAGE, ManifestPage,
    Message, Offer, VERSION, Want, encode_hashes,
};
use crate::source::OutgoingTransfer;
use crate::throttle::RateLimiter;
use lane::{LaneWriter, SendShared, Sent, TornFlag, run_lane};

/// The control stream's halves; boxed so lanes of any stream type fit one session.
type ControlWriter = Arc<AsyncMutex<WriteHalf<Box<dyn ByteStream>>>>;

impl OutgoingTransfer {
    /// Sends the transfer over `control` and the extra `lanes` (data-only streams; may be empty)
    /// until the receiver has verified and placed every file.
    ///
    /// Resuming is running a transfer with the same files again: the receiver asks only for what
    /// it lacks. Cancelling (the context's token) tells the receiver and returns
    /// [`TransferError::Cancelled`].
    pub async fn send<S: ByteStream>(
        self,
        control: S,
        lanes: Vec<S>,
        ctx: RunContext,
    ) -> Result<TransferReport, TransferError> {
        let started = Instant::now();
        let lane_count = lanes.len() + 1;
        if lane_count > usize::from(MAX_LANES) {
            return Err(UsageError::BadOption("too many lanes").into());
        }
        let RunContext {
            keys,
            events,
            cancel,
            shared_limits,
        } = ctx;
        let mut keys = match (self.options.encrypt, keys) {
            (true, None) => return Err(UsageError::KeysRequired.into()),
            (true, keys) => keys,
            (false, _) => None,
        };
        let mut ciphers = Vec::with_capacity(lane_count);
        for index in 0..lane_count {
            let index = u8::try_from(index).unwrap_or(u8::MAX);
            ciphers.push(Arc::new(LaneCipher::derive(keys.as_mut(), index)?));
        }
        let (mut control_rx, control_tx) =
            tokio::io::split(Box::new(control) as Box<dyn ByteStream>);
        let control_tx: ControlWriter = Arc::new(AsyncMutex::new(control_tx));
        let mut report = TransferReport::new(self.transfer_id, Direction::Send);
        report.files = self.files.len() as u64;
        report.bytes_total = self.total_bytes();

        let handshake = self.handshake(&mut control_rx, &control_tx, lane_count);
        let handshake = tokio::select! {
            result = handshake => result,
            () = cancel.cancelled() => Err(TransferError::Cancelled),
        };
        if let Err(error) = handshake {
            tell_peer(&control_tx, &error, None).await;
            return Err(error);
        }
        let mut lane_writers = Vec::with_capacity(lanes.len());
        for (index, lane) in lanes.into_iter().enumerate() {
            let (_, mut writer) = tokio::io::split(Box::new(lane) as Box<dyn ByteStream>);
            let hello = Message::Lane(LaneHello {
                transfer_id: self.transfer_id,
                index: u8::try_from(index + 1).unwrap_or(u8::MAX),
            });
            send_message(&mut writer, &hello).await?;
            lane_writers.push(writer);
        }
        let mut limiters = shared_limits;
        if let Some(rate) = self.options.rate_limit {
            limiters.push(RateLimiter::new(rate));
        }
        emit(
            events.as_ref(),
            TransferEvent::Started {
                transfer_id: self.transfer_id,
                direction: Direction::Send,
                files: report.files,
                bytes_total: report.bytes_total,
                bytes_resumed: 0,
            },
        );
        let session = DataPhase {
            transfer: self,
            events,
            started,
        };
        session
            .run(
                control_rx,
                control_tx,
                lane_writers,
                ciphers,
                limiters,
                cancel,
                report,
            )
            .await
    }

    /// Offer, manifest, the receiver's answer, chunk hashes.
    async fn handshake(
        &self,
        control_rx: &mut ReadHalf<Box<dyn ByteStream>>,
        control_tx: &ControlWriter,
        lanes: usize,
    ) -> Result<(), TransferError> {
        let mut writer = control_tx.lock().await;
        let offer = Message::Offer(Offer {
            version: VERSION,
            transfer_id: self.transfer_id,
            entries: self.entries.len() as u64,
            total_bytes: self.total_bytes(),
            chunk_size: CHUNK_SIZE,
            compression: if self.options.compress {
                Compression::Zstd
            } else {
                Compression::None
            },
            encrypted: self.options.encrypt,
            lanes: u8::try_from(lanes).unwrap_or(MAX_LANES),
        });
        send_message(&mut *writer, &offer).await?;
        let mut page = Vec::new();
        let mut page_bytes = 0;
        for entry in &self.entries {
            let len = serde_json::to_vec(entry).map_or(0, |json| json.len());
            if !page.is_empty() && page_bytes + len > MANIFEST_PAGE_BYTES {
                let full = Message::Manifest(ManifestPage {
                    entries: std::mem::take(&mut page),
                });
                send_message(&mut *writer, &full).await?;
                page_bytes = 0;
            }
            page.push(entry.clone());
            page_bytes += len + 1;
        }
        if !page.is_empty() {
            send_message(
                &mut *writer,
                &Message::Manifest(ManifestPage { entries: page }),
            )
            .await?;
        }
        match read_message(control_rx).await? {
            Message::Accept => {}
            Message::Decline(decline) => {
                return Err(PeerError::Declined {
                    code: decline.code,
                    message: decline.message,
                }
                .into());
            }
            Message::Abort(abort) => {
                return Err(PeerError::Aborted {
                    code: abort.code,
                    message: abort.message,
                }
                .into());
            }
            _ => return Err(PeerError::Protocol("expected Accept or Decline").into()),
        }
        for file in self.files.iter().filter(|f| f.hashes.len() >= 2) {
            let entry_id = self
                .entries
                .get(file.entry_index)
                .map(|e| e.id)
                .unwrap_or_default();
            for (page, hashes) in file.hashes.chunks(MAX_HASHES_PER_PAGE).enumerate() {
                let message = Message::ChunkHashes(ChunkHashes {
                    entry_id,
                    first: (page * MAX_HASHES_PER_PAGE) as u64,
                    hashes: encode_hashes(hashes),
                });
                send_message(&mut *writer, &message).await?;
            }
        }
        Ok(())
    }
}

/// State of the data phase.
struct DataPhase {
    transfer: OutgoingTransfer,
    events: Option<mpsc::Sender<TransferEvent>>,
    started: Instant,
}

impl DataPhase {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        self,
        control_rx: ReadHalf<Box<dyn ByteStream>>,
        control_tx: ControlWriter,
        lane_writers: Vec<WriteHalf<Box<dyn ByteStream>>>,
        ciphers: Vec<Arc<LaneCipher>>,
        limiters: Vec<RateLimiter>,
        cancel: tokio_util::sync::CancellationToken,
        mut report: TransferReport,
    ) -> Result<TransferReport, TransferError> {
        let DataPhase {
            transfer,
            events,
            started,
        } = self;
        let transfer_id = transfer.transfer_id;
        let interval = transfer.options.progress_interval;
        let compression = if transfer.options.compress {
            Compression::Zstd
        } else {
            Compression::None
        };
        let ids = transfer
            .files
            .iter()
            .map(|f| {
                transfer
                    .entries
                    .get(f.entry_index)
                    .map(|e| e.id)
                    .unwrap_or_default()
            })
            .collect();
        let paths: Vec<String> = transfer
            .files
            .iter()
            .map(|f| {
                transfer
                    .entries
                    .get(f.entry_index)
                    .map(|e| e.path.clone())
                    .unwrap_or_default()
            })
            .collect();
        let hashes: Vec<ContentHash> = transfer
            .files
            .iter()
            .map(|f| {
                transfer
                    .entries
                    .get(f.entry_index)
                    .and_then(|e| e.hash)
                    .unwrap_or(ContentHash([0; 32]))
            })
            .collect();
        let shared = Arc::new(SendShared::new(transfer.files, ids, compression, limiters));
        let torn = Arc::new(TornFlag::default());
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<Sent>();
        let mut lanes = JoinSet::new();
        let mut ciphers = ciphers.into_iter();
        if let Some(cipher) = ciphers.next() {
            lanes.spawn(run_lane(
                shared.clone(),
                cipher,
                LaneWriter::Shared(control_tx.clone()),
                torn.clone(),
                sent_tx.clone(),
            ));
        }
        for (writer, cipher) in lane_writers.into_iter().zip(ciphers) {
            lanes.spawn(run_lane(
                shared.clone(),
                cipher,
                LaneWriter::Own(writer),
                torn.clone(),
                sent_tx.clone(),
            ));
        }
        drop(sent_tx);
        let requested = Arc::new(std::sync::Mutex::new(Requested {
            sets: shared
                .files
                .iter()
                .map(|f| ChunkSet::new(chunk_count(f.size)))
                .collect(),
            bytes: 0,
        }));
        let mut control = tokio::spawn(serve_requests(
            control_rx,
            control_tx.clone(),
            shared.clone(),
            hashes,
            requested.clone(),
        ));

        let mut meter = RateMeter::new(started);
        let mut last_event = Instant::now();
        let mut sent_bytes = 0u64;
        let mut per_file = vec![0u64; shared.files.len()];
        let outcome = loop {
            tokio::select! {
                () = cancel.cancelled() => break Err(TransferError::Cancelled),
                joined = &mut control => {
                    break joined.unwrap_or_else(|e| Err(LocalError::Task(e.to_string()).into()));
                }
                Some(joined) = lanes.join_next() => {
                    match joined {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => break Err(error),
                        Err(e) => break Err(LocalError::Task(e.to_string()).into()),
                    }
                }
                Some(chunk) = sent_rx.recv() => {
                    report.bytes_transferred += chunk.plain;
                    report.wire_bytes += chunk.wire;
                    sent_bytes += chunk.plain;
                    let now = Instant::now();
                    meter.record(chunk.plain, now);
                    if let Some(done) = per_file.get_mut(chunk.file) {
                        *done += chunk.plain;
                    }
                    if now.duration_since(last_event) >= interval {
                        last_event = now;
                        let requested_bytes = requested_bytes(&requested);
                        let done = report.bytes_total.saturating_sub(requested_bytes) + sent_bytes;
                        let rate = meter.rate(sent_bytes, started, now);
                        let file = shared.files.get(chunk.file).map(|f| FileProgress {
                            entry_id: shared.ids.get(chunk.file).copied().unwrap_or_default(),
                            path: paths.get(chunk.file).cloned().unwrap_or_default(),
                            bytes_done: per_file.get(chunk.file).copied().unwrap_or(0),
                            size: f.size,
                        });
                        emit(events.as_ref(), TransferEvent::Progress(Progress {
                            transfer_id,
                            direction: Direction::Send,
                            bytes_done: done.min(report.bytes_total),
                            bytes_total: report.bytes_total,
                            rate,
                            eta: eta(report.bytes_total.saturating_sub(done), rate),
                            file,
                        }));
                    }
                }
            }
        };
        shared.queue.close();
        control.abort();
        let finished = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(joined) = lanes.join_next().await {
                if let Ok(Err(error)) = joined {
                    tracing::debug!(%error, "lane ended with an error after the transfer ended");
                }
            }
        })
        .await
        .is_ok();
        lanes.abort_all();
        while let Ok(chunk) = sent_rx.try_recv() {
            report.bytes_transferred += chunk.plain;
            report.wire_bytes += chunk.wire;
        }
        report.duration = started.elapsed();
        match outcome {
            Ok(complete) => {
                let mut writer = control_tx.lock().await;
                let _ = writer.shutdown().await;
                report.bytes_verified = complete.bytes_verified;
                report.bytes_resumed = report
                    .bytes_total
                    .saturating_sub(requested_bytes(&requested));
                tracing::info!(
                    transfer = %transfer_id,
                    bytes = report.bytes_transferred,
                    secs = report.duration.as_secs_f64(),
                    "sent"
                );
                Ok(report)
            }
            Err(error) => {
                let torn = !finished && torn.is_torn();
                tell_peer(&control_tx, &error, Some(torn)).await;
                Err(error)
            }
        }
    }
}

/// Which chunks the receiver has asked for so far, and their bytes.
#[derive(Debug)]
struct Requested {
    sets: Vec<ChunkSet>,
    bytes: u64,
}

/// Bytes of all chunks the receiver has asked for so far.
fn requested_bytes(requested: &std::sync::Mutex<Requested>) -> u64 {
    requested
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .bytes
}

/// Reads the receiver's requests until it reports `Complete`.
async fn serve_requests(
    mut control_rx: ReadHalf<Box<dyn ByteStream>>,
    control_tx: ControlWriter,
    shared: Arc<SendShared>,
    hashes: Vec<ContentHash>,
    requested: Arc<std::sync::Mutex<Requested>>,
) -> Result<Complete, TransferError> {
    loop {
        let (file, ranges) = match read_message(&mut control_rx).await? {
            Message::Want(Want { entry_id, ranges }) => {
                let file = file_of(&shared, entry_id)?;
                let chunks = chunk_count(shared.files.get(file).map_or(0, |f| f.size));
                if ranges.len() > crate::protocol::MAX_RANGES_PER_WANT
                    || ranges.iter().any(|[s, e]| s >= e || *e > chunks)
                {
                    return Err(PeerError::UnknownEntry(entry_id).into());
                }
                (file, ranges)
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
                    hash: hashes.get(file).copied().unwrap_or(ContentHash([0; 32])),
                    chunk_size: CHUNK_SIZE,
                    offset: first * CHUNK,
                });
                send_message(&mut *control_tx.lock().await, &response).await?;
                (file, vec![[first, chunk_count(size)]])
            }
            Message::Complete(complete) => return Ok(complete),
            Message::Abort(abort) => {
                return Err(PeerError::Aborted {
                    code: abort.code,
                    message: abort.message,
                }
                .into());
            }
            _ => return Err(PeerError::Protocol("unexpected message from the receiver").into()),
        };
        let mut requested = requested
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let size = shared.files.get(file).map_or(0, |f| f.size);
        for [start, end] in ranges {
            let Requested { sets, bytes } = &mut *requested;
            if let Some(set) = sets.get_mut(file) {
                for index in start..end {
                    if set.insert(index) {
                        *bytes += chunk_len(size, index).map_or(0, |l| l as u64);
                    }
                }
            }
            if !shared.queue.push(file, start, end) {
                return Err(PeerError::Protocol("too many outstanding requests").into());
            }
        }
    }
}

fn file_of(shared: &SendShared, entry_id: uuid::Uuid) -> Result<usize, TransferError> {
    shared
        .file_index(entry_id)
        .ok_or_else(|| PeerError::UnknownEntry(entry_id).into())
}

/// Tells the peer why this side stops, if it should know and the stream can still carry it.
async fn tell_peer<W>(control_tx: &Arc<AsyncMutex<W>>, error: &TransferError, torn: Option<bool>)
where
    W: AsyncWrite + Unpin,
{
    if torn == Some(true) {
        return;
    }
    if let Some(message) = abort_for(error) {
        let send = async {
            let mut writer = control_tx.lock().await;
            let _ = send_message(&mut *writer, &message).await;
            let _ = writer.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), send).await;
    }
}
