//! An in-memory pair: a sender and a receiver in this process, over `tokio::io::duplex` streams
//! (the control stream and each lane), with a relay between the two ends of every stream. Each
//! relay reads whole tether-wire frames and, by a [`Script`], passes, drops, duplicates,
//! reorders, corrupts or cuts them at frame N of one way of one stream.
//!
//! No sockets, no child processes, no sleeps: a run ends when both sides have returned. Time is
//! real (the engine's lanes work on long-lived blocking threads, which stop tokio's paused clock
//! from advancing), so a test that waits for a stall sets a short bound in its [`Setup`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tether_transfer::{
    CancellationToken, Hello, OutgoingTransfer, Receiver, RunContext, TransferError,
    TransferReport, read_hello,
};
use tether_wire::{Frame, FrameKind, read_frame, write_frame};
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use uuid::Uuid;

use super::{ROOT_ENTRY, Setup, node_id, transfer_keys};

/// Bytes buffered in each duplex stream.
const BUFFER: usize = 256 << 10;

/// The longest a run may take before the test fails (a guard, not a wait: runs end far sooner).
const RUN_GUARD: Duration = Duration::from_secs(20);

/// Which way a frame travels on its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// From the sender to the receiver.
    ToReceiver,
    /// From the receiver to the sender.
    ToSender,
}

/// What the relay does to one frame.
#[derive(Clone)]
pub enum Fault {
    /// The frame is not passed.
    Drop,
    /// The frame is passed twice.
    Duplicate,
    /// The frame is held back and passed right after the next one.
    Swap,
    /// The frame's last payload byte is flipped.
    Corrupt,
    /// The stream ends, both ways, instead of passing this frame.
    Cut,
    /// `f` is called, then the frame is passed.
    Then(Arc<dyn Fn() + Send + Sync>),
    /// `f` is called, and the frame is not passed.
    DropThen(Arc<dyn Fn() + Send + Sync>),
}

impl std::fmt::Debug for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Fault::Drop => "Drop",
            Fault::Duplicate => "Duplicate",
            Fault::Swap => "Swap",
            Fault::Corrupt => "Corrupt",
            Fault::Cut => "Cut",
            Fault::Then(_) => "Then",
            Fault::DropThen(_) => "DropThen",
        };
        f.write_str(name)
    }
}

/// Faults by stream (0 = control, `i` = lane `i`), way and frame index (from 0, counted per way
/// of each stream as the relay reads them).
#[derive(Debug, Clone, Default)]
pub struct Script {
    rules: Vec<(usize, Way, usize, Fault)>,
}

impl Script {
    /// Adds `fault` at frame `frame` going `way` on stream `stream`.
    pub fn at(mut self, stream: usize, way: Way, frame: usize, fault: Fault) -> Self {
        self.rules.push((stream, way, frame, fault));
        self
    }

    fn for_way(&self, stream: usize, way: Way) -> Vec<(usize, Fault)> {
        self.rules
            .iter()
            .filter(|(s, w, _, _)| *s == stream && *w == way)
            .map(|(_, _, frame, fault)| (*frame, fault.clone()))
            .collect()
    }
}

/// A frame a relay passed on.
#[derive(Debug, Clone)]
pub struct Passed {
    pub stream: usize,
    pub way: Way,
    pub kind: FrameKind,
    /// The control message's `type`, for control frames.
    pub message: Option<String>,
}

/// One run's results.
#[derive(Debug)]
pub struct Outcome {
    pub sent: Result<TransferReport, TransferError>,
    pub received: Result<TransferReport, TransferError>,
    /// Every frame passed, in the order the relays passed them (per stream and way).
    pub passed: Vec<Passed>,
}

impl Outcome {
    /// The control messages passed going `way`, by type.
    pub fn messages(&self, way: Way) -> Vec<String> {
        self.passed
            .iter()
            .filter(|p| p.way == way)
            .filter_map(|p| p.message.clone())
            .collect()
    }

    /// How many data frames reached the receiver.
    pub fn data_frames(&self) -> usize {
        self.passed
            .iter()
            .filter(|p| p.way == Way::ToReceiver && p.kind != FrameKind::Control)
            .count()
    }
}

/// One transfer of a source into a destination between two in-memory ends.
#[derive(Debug, Clone)]
pub struct Pair {
    pub setup: Setup,
    pub script: Script,
    pub transfer_id: Uuid,
    /// Cancels the sender's run.
    pub sender_cancel: CancellationToken,
    /// Cancels the receiver's run.
    pub receiver_cancel: CancellationToken,
}

impl Pair {
    /// A pair with `setup`, no faults, and a fixed transfer id.
    pub fn new(setup: Setup) -> Self {
        Pair {
            setup,
            script: Script::default(),
            transfer_id: Uuid::from_u128(0x7a11),
            sender_cancel: CancellationToken::new(),
            receiver_cancel: CancellationToken::new(),
        }
    }

    /// The same pair with `script`.
    pub fn script(mut self, script: Script) -> Self {
        self.script = script;
        self
    }

    /// Sends `source` into a receiver writing to `dest`; returns when both sides have ended.
    pub async fn run(&self, source: &Path, dest: &Path) -> Outcome {
        let passed = Arc::new(Mutex::new(Vec::new()));
        let lanes = self.setup.lanes.max(1);
        let mut sender_ends = Vec::with_capacity(lanes);
        let mut receiver_ends = Vec::with_capacity(lanes);
        let mut relays = Vec::new();
        for stream in 0..lanes {
            let (sender_end, relay_a) = tokio::io::duplex(BUFFER);
            let (relay_b, receiver_end) = tokio::io::duplex(BUFFER);
            sender_ends.push(sender_end);
            receiver_ends.push(receiver_end);
            let (a_read, a_write) = tokio::io::split(relay_a);
            let (b_read, b_write) = tokio::io::split(relay_b);
            let cut = CancellationToken::new();
            for (way, from, to) in [
                (Way::ToReceiver, a_read, b_write),
                (Way::ToSender, b_read, a_write),
            ] {
                relays.push(tokio::spawn(relay(
                    from,
                    to,
                    Tap {
                        stream,
                        way,
                        faults: self.script.for_way(stream, way),
                        cut: cut.clone(),
                        passed: passed.clone(),
                    },
                )));
            }
        }
        let sending = self.send(source, sender_ends);
        let receiving = self.receive(dest, receiver_ends);
        let (sent, received) =
            tokio::time::timeout(RUN_GUARD, async { tokio::join!(sending, receiving) })
                .await
                .expect("a side of the pair hung");
        for relay in relays {
            relay.abort();
        }
        let passed = passed.lock().unwrap().clone();
        Outcome {
            sent,
            received,
            passed,
        }
    }

    async fn send(
        &self,
        source: &Path,
        mut streams: Vec<DuplexStream>,
    ) -> Result<TransferReport, TransferError> {
        let resolver: HashMap<Uuid, PathBuf> = [(ROOT_ENTRY, source.to_path_buf())].into();
        let mut options = self.setup.send_options();
        if let Some(ms) = self.setup.progress_ms {
            options = options.progress_interval(Duration::from_millis(ms));
        }
        let outgoing = OutgoingTransfer::prepare(&resolver, &[ROOT_ENTRY], options)
            .await?
            .with_transfer_id(self.transfer_id);
        let control = streams.remove(0);
        let mut ctx = RunContext::new().cancel(self.sender_cancel.clone());
        if let Some(seed) = self.setup.key_seed {
            ctx = ctx.keys(transfer_keys(seed, true, self.transfer_id));
        }
        outgoing.send(control, streams, ctx).await
    }

    async fn receive(
        &self,
        dest: &Path,
        mut streams: Vec<DuplexStream>,
    ) -> Result<TransferReport, TransferError> {
        let peer = node_id(1);
        let receiver = Receiver::new(self.setup.receiver_config(dest));
        let control = streams.remove(0);
        // Each lane on its own task, as the service does: its hello comes after the accept.
        for lane in streams {
            let receiver = receiver.clone();
            tokio::spawn(async move {
                if let Ok(Hello::Lane(lane)) = read_hello(lane).await {
                    drop(receiver.attach(lane, peer));
                }
            });
        }
        let offer = match read_hello(control).await? {
            Hello::Offer(offer) => offer,
            _ => panic!("the control stream did not start with an offer"),
        };
        let mut ctx = RunContext::new().cancel(self.receiver_cancel.clone());
        if let Some(seed) = self.setup.key_seed {
            ctx = ctx.keys(transfer_keys(seed, false, offer.transfer_id()));
        }
        receiver.receive(offer, peer, ctx).await
    }
}

/// What one relay does and where it notes what it passed.
struct Tap {
    stream: usize,
    way: Way,
    faults: Vec<(usize, Fault)>,
    /// Cancelled when either way of the stream is cut.
    cut: CancellationToken,
    passed: Arc<Mutex<Vec<Passed>>>,
}

impl Tap {
    fn note(&self, frame: &Frame) {
        let message = (frame.kind() == FrameKind::Control)
            .then(|| serde_json::from_slice::<serde_json::Value>(frame.payload()).ok())
            .flatten()
            .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
        self.passed.lock().unwrap().push(Passed {
            stream: self.stream,
            way: self.way,
            kind: frame.kind(),
            message,
        });
    }
}

/// Passes frames from `from` to `to` by the tap's script, until either end or a cut.
async fn relay(mut from: ReadHalf<DuplexStream>, mut to: WriteHalf<DuplexStream>, tap: Tap) {
    let mut held: Option<Frame> = None;
    let mut index = 0usize;
    loop {
        let read = tokio::select! {
            () = tap.cut.cancelled() => return,
            read = read_frame(&mut from) => read,
        };
        let Ok(Some(frame)) = read else {
            // The writer ended (or broke): end this way too, as a transport would.
            let _ = to.shutdown().await;
            return;
        };
        let fault = tap
            .faults
            .iter()
            .find(|(at, _)| *at == index)
            .map(|(_, fault)| fault.clone());
        index += 1;
        let mut out = Vec::with_capacity(3);
        match fault {
            None => out.push(frame),
            Some(Fault::Drop) => {}
            Some(Fault::Duplicate) => {
                out.push(frame.clone());
                out.push(frame);
            }
            Some(Fault::Swap) => {
                held = Some(frame);
                continue;
            }
            Some(Fault::Corrupt) => out.push(corrupt(&frame)),
            Some(Fault::Cut) => {
                tap.cut.cancel();
                return;
            }
            Some(Fault::Then(call)) => {
                call();
                out.push(frame);
            }
            Some(Fault::DropThen(call)) => call(),
        }
        out.extend(held.take());
        for frame in out {
            tap.note(&frame);
            if write_frame(&mut to, &frame).await.is_err() || to.flush().await.is_err() {
                tap.cut.cancel();
                return;
            }
        }
    }
}

/// `frame` with its last payload byte flipped.
pub fn corrupt(frame: &Frame) -> Frame {
    let mut payload = frame.payload().to_vec();
    if let Some(last) = payload.last_mut() {
        *last ^= 0x01;
    }
    Frame::new(frame.kind(), payload).unwrap()
}
