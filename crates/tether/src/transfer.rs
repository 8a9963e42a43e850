//! File transfer between paired devices, on the pooled connection.
//!
//! A transfer runs on new bidirectional streams of the device's live `tether/sync/2`
//! connection (one control stream plus optional lanes), speaking tether-transfer's protocol.
//! Running on the pooled connection means the per-transfer keys derive from that connection's
//! session (`SessionKeys::transfer_secret` with the transfer id, then the agreed cipher), on
//! both sides, unambiguously.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_iroh::ConnectionInfo;
use tether_protocol::{RecvStream, SendStream};
use tether_registry::QuotaDirection;
use tether_transfer::{
    ByteStream, CancellationToken, Direction, Hello, IncomingOffer, OutgoingTransfer, Receiver,
    RunContext, SendOptions, SendTally, TransferCipher, TransferError, TransferEvent,
    TransferReport,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::bandwidth::{Metered, Meters};
use crate::error::short;
use crate::history::{Draft, OfferSize, transfer_path};
use crate::link::Link;
use crate::{NetworkError, NetworkEvent};

/// How a transfer is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOptions {
    /// Compress chunks with zstd (skipped per chunk when it does not pay).
    pub compress: bool,
    /// Seal chunks with per-transfer keys on top of QUIC's TLS.
    pub encrypt: bool,
    /// The ciphers offered for that layer, most preferred first; the receiver picks one.
    /// Default: AES-256-GCM first when this CPU has AES instructions, else ChaCha20-Poly1305.
    pub ciphers: Vec<TransferCipher>,
    /// Bytes per second, for this transfer.
    pub rate_limit: Option<u64>,
    /// Extra streams beside the control stream (0 to 7). `None` (the default) picks them from
    /// the link's round trip when the transfer starts ([`lanes_for_round_trip`]).
    pub lanes: Option<u8>,
    /// How long the transfer may move no bytes at all before it ends with
    /// [`TransferError::Stalled`] (resumable: send again). Default: 60 s.
    pub stall_timeout: Duration,
    /// How long a push may wait for the device when a run fails in a way that reaching it
    /// again cures (the link lost, the device silent, restarting or unreachable, a stall):
    /// meanwhile the handle says [`TransferEvent::Retrying`], redials with a short backoff
    /// (at most 2 s between tries) and runs the transfer again, resuming (only what the
    /// receiver lacks is sent). The budget is per outage: it starts anew once bytes move.
    /// Other failures (a refusal, a full disk, a verification failure, a cancel) end the
    /// handle at once.
    ///
    /// Default: zero, one run: a failure ends the handle as soon as it happens, and the app
    /// decides what to do (ask the user, queue the send). The CLI's `tether send` waits 10
    /// minutes (`--retry-for`).
    pub retry_for: Duration,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            compress: false,
            encrypt: true,
            ciphers: TransferCipher::preference(TransferCipher::aes_hardware()),
            rate_limit: None,
            lanes: None,
            stall_timeout: Duration::from_secs(60),
            retry_for: Duration::ZERO,
        }
    }
}

impl TransferOptions {
    /// Turns compression on or off.
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Turns the extra encryption layer on or off.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// Sets the ciphers offered for the extra layer, most preferred first.
    pub fn ciphers(mut self, ciphers: impl Into<Vec<TransferCipher>>) -> Self {
        self.ciphers = ciphers.into();
        self
    }

    /// Limits this transfer's rate.
    pub fn rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate_limit = bytes_per_second;
        self
    }

    /// Sets the stall bound.
    pub fn stall_timeout(mut self, bound: Duration) -> Self {
        self.stall_timeout = bound;
        self
    }

    /// Sets how long a push waits for the device to be reached again after a failure a redial
    /// cures ([`Self::retry_for`](TransferOptions#structfield.retry_for)); zero for one run.
    pub fn retry_for(mut self, budget: Duration) -> Self {
        self.retry_for = budget;
        self
    }

    /// Sets the number of extra streams (instead of picking them from the round trip).
    pub fn lanes(mut self, lanes: u8) -> Self {
        self.lanes = Some(lanes);
        self
    }
}

/// Events a transfer's handle holds for a slow reader (more are dropped).
pub(crate) const EVENTS: usize = 256;

/// The link speed a transfer's streams should be able to fill, in bytes per second (1 Gbit/s).
const LANE_TARGET_RATE: u64 = 125_000_000;

/// Most extra streams picked by [`lanes_for_round_trip`].
const MAX_AUTO_LANES: u8 = 3;

/// How many extra streams a transfer uses when the app did not choose: QUIC lets one stream
/// carry at most the receiver's stream window per round trip (2 MiB by default,
/// [`tether_iroh::QuicTuning`]), so a link with a long round trip needs several streams to
/// fill it: enough for 1 Gbit/s, at most 3 extra. Below about 17 ms (a LAN, loopback) one
/// stream suffices and an extra one is not faster; no round trip known yet is treated alike.
pub fn lanes_for_round_trip(rtt: Option<Duration>) -> u8 {
    let Some(rtt) = rtt else {
        return 0;
    };
    let window = u128::from(
        tether_iroh::QuicTuning::default()
            .stream_receive_window
            .max(1),
    );
    let in_flight = u128::from(LANE_TARGET_RATE) * rtt.as_micros() / 1_000_000;
    let streams = in_flight.div_ceil(window);
    u8::try_from(streams.saturating_sub(1))
        .unwrap_or(u8::MAX)
        .min(MAX_AUTO_LANES)
}

/// A running transfer (a push, or a pull this device asked for): its progress events, a way to cancel it, and its outcome.
#[derive(Debug)]
pub struct TransferHandle {
    /// Progress (bytes done, rate, ETA, per file) and per-file completion.
    pub events: mpsc::Receiver<TransferEvent>,
    cancel: CancellationToken,
    task: JoinHandle<Result<TransferReport, NetworkError>>,
    pub(crate) path: tether_iroh::PathKind,
    /// What the offer holds, when this side made it (a push).
    pub(crate) size: OfferSize,
}

impl TransferHandle {
    pub(crate) fn new(
        events: mpsc::Receiver<TransferEvent>,
        cancel: CancellationToken,
        task: JoinHandle<Result<TransferReport, NetworkError>>,
        path: tether_iroh::PathKind,
    ) -> Self {
        TransferHandle {
            events,
            cancel,
            task,
            path,
            size: OfferSize::default(),
        }
    }

    /// Records the transfer in the history when it ends (before [`Self::finish`] returns),
    /// also when the app dropped the handle.
    pub(crate) fn recorded(mut self, draft: Draft) -> Self {
        let draft = draft.path(self.path).size(self.size);
        let task = self.task;
        self.task = tokio::spawn(async move {
            match task.await {
                Ok(result) => {
                    draft.record_end(result.as_ref()).await;
                    result
                }
                Err(error) => {
                    let failed = TransferError::Local(tether_transfer::LocalError::Panicked {
                        what: "the transfer task",
                        message: error.to_string(),
                    });
                    draft.record(Err(&failed)).await;
                    match error.try_into_panic() {
                        Ok(payload) => std::panic::resume_unwind(payload),
                        Err(_) => Err(TransferError::Cancelled.into()),
                    }
                }
            }
        });
        self
    }

    /// Takes the progress events out of the handle (for a task of their own), leaving an
    /// ended channel in their place; [`Self::cancel`] and [`Self::finish`] still work.
    pub fn take_events(&mut self) -> mpsc::Receiver<TransferEvent> {
        std::mem::replace(&mut self.events, mpsc::channel(1).1)
    }

    /// What [`Self::cancel`] cancels, to keep after [`Self::finish`] took the handle.
    pub(crate) fn canceller(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops the transfer; what the receiver has verified stays for a later resume.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the end: the report once the receiver (for a pull, this device) has verified
    /// everything. A push that retried says how often it resumed and what it sent twice
    /// ([`TransferReport::resumes`], [`TransferReport::bytes_resent`]); its error, once its
    /// wait ran out, is that of its last run.
    pub async fn finish(self) -> Result<TransferReport, NetworkError> {
        match self.task.await {
            Ok(Ok(mut report)) => {
                if report.path == tether_transfer::PathKind::Unknown {
                    report.path = transfer_path(self.path);
                }
                Ok(report)
            }
            Ok(Err(error)) => Err(error),
            Err(error) => Err(NetworkError::task_failed("the transfer task", error)),
        }
    }
}

/// Starts sending `paths` (files or directories) over `link`: one run, stopped by `cancel`,
/// adding what it sent to `tally` when given.
pub(crate) async fn send(
    link: &Link,
    meters: &Arc<Meters>,
    paths: &[PathBuf],
    options: &TransferOptions,
    cancel: CancellationToken,
    tally: Option<Arc<SendTally>>,
) -> Result<TransferHandle, NetworkError> {
    // Entry ids derive from the paths, so a resumed send names the same entries.
    let shared: HashMap<Uuid, PathBuf> = paths
        .iter()
        .map(|path| (tether_transfer::entry_id(path), path.clone()))
        .collect();
    let ids: Vec<Uuid> = shared.keys().copied().collect();
    let send_options = SendOptions::default()
        .compress(options.compress)
        .encrypt(options.encrypt)
        .ciphers(options.ciphers.clone())
        .rate_limit(options.rate_limit)
        .stall_timeout(options.stall_timeout);
    let outgoing = OutgoingTransfer::prepare(&shared, &ids, send_options)
        .await
        .map_err(NetworkError::from)?;
    meters.admit(link.node_id, QuotaDirection::Send, outgoing.total_bytes())?;
    let (events_tx, events) = mpsc::channel(EVENTS);
    let mut context = RunContext::new().events(events_tx).cancel(cancel.clone());
    if let Some(tally) = tally {
        context = context.tally(tally);
    }
    if options.encrypt {
        context = context.keys(link.transfer_keys(outgoing.transfer_id())?);
    }
    let control = open_stream(link, meters).await?;
    let lane_count = options
        .lanes
        .unwrap_or_else(|| lanes_for_round_trip(ConnectionInfo::of(&link.connection).rtt));
    debug!(lanes = lane_count, "extra streams");
    let mut lanes = Vec::with_capacity(usize::from(lane_count));
    for _ in 0..lane_count {
        lanes.push(open_stream(link, meters).await?);
    }
    info!(peer = %short(&link.node_id), files = outgoing.manifest().len(), bytes = outgoing.total_bytes(), "sending");
    let size = OfferSize::of(&outgoing);
    // The transfer keeps the link in use (not idle) until it ends.
    let in_use = link.use_it();
    let task = tokio::spawn(async move {
        let result = outgoing.send(control, lanes, context).await;
        result.map_err(|error| NetworkError::from(in_use.explain(error)))
    });
    Ok(TransferHandle {
        events,
        cancel,
        task,
        path: tether_iroh::PathKind::Unknown,
        size,
    })
}

/// A transfer stream: both halves counted against the device's bandwidth quotas.
pub(crate) type TransferStream = tokio::io::Join<Metered<RecvStream>, Metered<SendStream>>;

pub(crate) async fn open_stream(
    link: &Link,
    meters: &Arc<Meters>,
) -> Result<TransferStream, NetworkError> {
    let (send, recv) =
        link.connection
            .open_bi()
            .await
            .map_err(|error| NetworkError::ConnectionFailed {
                node: link.node_id,
                reason: error.to_string(),
            })?;
    Ok(tokio::io::join(
        meters.meter(link.node_id, recv),
        meters.meter(link.node_id, send),
    ))
}

/// Serves a stream the peer opened on the pooled connection: a transfer offer, a lane, or a
/// pull request (answered by `sharing`, whatever `receiver` is). What happens to an offer is
/// told on `events`: [`NetworkEvent::TransferOffered`], then the receiver's own
/// [`NetworkEvent::IncomingTransfer`] events, and [`NetworkEvent::TransferFailed`] if it fails
/// (the caller reports a completed one). An offer's end is recorded in `registry`'s history
/// before this returns.
pub(crate) async fn serve_stream(
    link: &Link,
    receiver: Option<&Receiver>,
    sharing: &crate::share::Sharing,
    send: SendStream,
    recv: RecvStream,
    events: &broadcast::Sender<NetworkEvent>,
    registry: &tether_registry::DeviceRegistry,
) -> Result<Option<TransferReport>, NetworkError> {
    let meters = &sharing.meters;
    let stream = tokio::io::join(
        meters.meter(link.node_id, recv),
        meters.meter(link.node_id, send),
    );
    let hello = tether_transfer::read_hello(stream)
        .await
        .map_err(NetworkError::from)?;
    let receiver = match (hello, receiver) {
        (Hello::Pull(pull), _) => {
            sharing.serve(link, pull).await;
            return Ok(None);
        }
        (hello, Some(receiver)) => (hello, receiver),
        (_, None) => {
            debug!(peer = %short(&link.node_id), "a transfer was offered but receiving is off");
            return Ok(None);
        }
    };
    match receiver {
        (Hello::Offer(offer), receiver) => {
            receive_offer(link, offer, receiver, events, registry).await
        }
        (Hello::Lane(lane), receiver) => {
            receiver
                .attach(lane, link.node_id)
                .map_err(NetworkError::from)?;
            Ok(None)
        }
        _ => {
            warn!(peer = %short(&link.node_id), "an unknown stream greeting");
            Ok(None)
        }
    }
}

/// Receives a transfer the peer offered: announced on `events`, keys derived from the link,
/// the receiver's progress handed on, and its end recorded in `registry`'s history.
async fn receive_offer<S: ByteStream>(
    link: &Link,
    offer: IncomingOffer<S>,
    receiver: &Receiver,
    events: &broadcast::Sender<NetworkEvent>,
    registry: &tether_registry::DeviceRegistry,
) -> Result<Option<TransferReport>, NetworkError> {
    let from = link.node_id;
    let transfer_id = offer.transfer_id();
    // Keys first: an offer this side cannot take is not announced.
    let keys = if offer.encrypted() {
        Some(link.transfer_keys(transfer_id)?)
    } else {
        None
    };
    let draft = Draft::start(registry, from, Direction::Receive, false)
        .path(ConnectionInfo::of(&link.connection).path)
        .size(OfferSize::offered(&offer));
    let _ = events.send(NetworkEvent::TransferOffered {
        from,
        transfer_id,
        entries: offer.entries(),
        bytes: offer.total_bytes(),
    });
    // The receiver's progress, handed on as service events by a task of its own, so a
    // burst (every file already in place on a resumed folder) is drained as it comes.
    let (progress_tx, mut progress) = mpsc::channel(crate::event::EVENT_BUFFER);
    let forward = {
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(event) = progress.recv().await {
                let _ = events.send(NetworkEvent::IncomingTransfer { from, event });
            }
        })
    };
    let mut context = RunContext::new().events(progress_tx);
    if let Some(keys) = keys {
        context = context.keys(keys);
    }
    let received = receiver
        .receive(offer, from, context)
        .await
        .map_err(|error| link.explain(error));
    // Every progress event is out before the end is reported, and the record is kept.
    let _ = forward.await;
    draft.record(received.as_ref()).await;
    match received {
        Ok(report) => Ok(Some(report)),
        Err(error) => {
            if !matches!(error, TransferError::Declined(_)) {
                let _ = events.send(NetworkEvent::TransferFailed {
                    from,
                    transfer_id,
                    reason: tether_identity::error_chain(&error),
                    resumable: error.is_resumable(),
                });
            }
            Err(NetworkError::from(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::lanes_for_round_trip;

    #[test]
    fn a_long_round_trip_gets_enough_streams_for_a_gigabit_and_a_lan_gets_one() {
        let ms = |ms| Some(Duration::from_millis(ms));
        assert_eq!(lanes_for_round_trip(None), 0);
        assert_eq!(lanes_for_round_trip(ms(0)), 0);
        assert_eq!(lanes_for_round_trip(ms(1)), 0);
        assert_eq!(lanes_for_round_trip(ms(16)), 0);
        // 2 MiB per stream and round trip: 1 Gbit/s over 25 ms needs 3.1 MB in flight.
        assert_eq!(lanes_for_round_trip(ms(25)), 1);
        assert_eq!(lanes_for_round_trip(ms(50)), 2);
        assert_eq!(lanes_for_round_trip(ms(100)), 3);
        assert_eq!(lanes_for_round_trip(Some(Duration::MAX)), 3);
    }
}
