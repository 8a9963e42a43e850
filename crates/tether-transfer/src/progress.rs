//! Progress events, the final report, and the arithmetic behind rate and ETA.
//!
//! Events go to a bounded channel the caller supplies, with `try_send`: a slow consumer loses
//! progress updates but never slows the transfer; the [`TransferReport`] a run returns is the
//! authoritative account.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tether_crypto::TransferCipher;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Which side of a transfer this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Direction {
    /// This device sends.
    Send,
    /// This device receives.
    Receive,
}

/// How the bytes travelled, as the service knows it (the engine only sees a byte stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PathKind {
    /// Not filled in.
    #[default]
    Unknown,
    /// A direct (possibly hole-punched) path.
    Direct,
    /// Through a relay.
    Relayed,
}

/// Where a transfer stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Progress {
    /// The transfer.
    pub transfer_id: Uuid,
    /// This side's role.
    pub direction: Direction,
    /// File bytes done: sent (sender) or verified and written (receiver), resumed bytes included.
    pub bytes_done: u64,
    /// All file bytes of the transfer.
    pub bytes_total: u64,
    /// Recent rate of this run in bytes per second (resumed bytes excluded).
    pub rate: f64,
    /// Time left at the recent rate; `None` while unknown: before there is a rate, when the
    /// transfer stalls, or when it would be more than a year.
    pub eta: Option<Duration>,
    /// The file the latest chunk belonged to.
    pub file: Option<FileProgress>,
}

impl Progress {
    /// How much is done, from 0.0 to 100.0 (100.0 for a transfer of no bytes).
    pub fn percentage(&self) -> f64 {
        if self.bytes_total == 0 {
            return 100.0;
        }
        (self.bytes_done.min(self.bytes_total) as f64 / self.bytes_total as f64) * 100.0
    }
}

/// Progress within one file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileProgress {
    /// The file's entry.
    pub entry_id: Uuid,
    /// Its path relative to the transfer root.
    pub path: String,
    /// Bytes done.
    pub bytes_done: u64,
    /// Its size.
    pub size: u64,
}

/// What a transfer that moves nothing is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Waiting {
    /// Sender: the receiver's next requests, or its `Complete`.
    Requests,
    /// Sender: the receiver to read what was already written (the stream is full).
    ReceiverReading,
    /// Receiver: chunks it asked the sender for.
    Data,
    /// Receiver: completed files being synced and put in place on its own disk.
    Disk,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Waiting::Requests => "the receiver's next requests or its confirmation",
            Waiting::ReceiverReading => "the receiver to read what was sent",
            Waiting::Data => "data asked of the sender",
            Waiting::Disk => "completed files to be synced to disk",
        })
    }
}

/// Something that happened in a transfer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// The data phase began: consent given, resume state known.
    Started {
        /// The transfer.
        transfer_id: Uuid,
        /// This side's role.
        direction: Direction,
        /// Files in the transfer.
        files: u64,
        /// All file bytes.
        bytes_total: u64,
        /// Bytes already in place or kept from an earlier attempt.
        bytes_resumed: u64,
    },
    /// Periodic progress.
    Progress(Progress),
    /// A file is verified and in place (receiver only; the sender learns it from the report).
    FileDone {
        /// The transfer.
        transfer_id: Uuid,
        /// The file's entry.
        entry_id: Uuid,
        /// The path relative to the transfer root.
        path: String,
        /// Where it now lives.
        target: Option<PathBuf>,
    },
    /// Nothing has moved for a while; said once per idle spell, after a few seconds. The run
    /// ends with [`TransferError::Stalled`](crate::TransferError::Stalled) if it lasts past the
    /// stall bound.
    Waiting {
        /// The transfer.
        transfer_id: Uuid,
        /// This side's role.
        direction: Direction,
        /// What this side waits for.
        waiting_for: Waiting,
        /// How long nothing has moved.
        idle: Duration,
    },
    /// Sender: a run ended with a failure that reaching the device again can cure (the link
    /// lost, the peer silent or restarting); the transfer is run again, resuming, after
    /// `retry_in`. Said by a caller that retries (the `tether` crate's service), never by a run.
    Retrying {
        /// The device the transfer goes to.
        peer: tether_identity::NodeId,
        /// 1 for the first retry after the transfer last moved, counting up while it waits.
        attempt: u32,
        /// Why the last run or dial failed, for people.
        reason: String,
        /// When the next try starts.
        retry_in: Duration,
    },
}

/// The account of a finished run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TransferReport {
    /// The transfer.
    pub transfer_id: Uuid,
    /// This side's role.
    pub direction: Direction,
    /// Files in the transfer.
    pub files: u64,
    /// All file bytes of the transfer.
    pub bytes_total: u64,
    /// File bytes that crossed the link in this run (before compression).
    pub bytes_transferred: u64,
    /// Bytes of data frames on the link in this run (after compression, with frame headers).
    pub wire_bytes: u64,
    /// Bytes not sent because the receiver already had them (kept partial chunks, files in place).
    pub bytes_resumed: u64,
    /// Bytes whose BLAKE3 hash was checked in this run: received chunks, kept chunks, files
    /// found in place. On the sender, what the receiver reported.
    pub bytes_verified: u64,
    /// Kept chunks that failed verification and were fetched again.
    pub chunks_refetched: u64,
    /// Wall time of the run.
    pub duration: Duration,
    /// How the bytes travelled; the engine leaves [`PathKind::Unknown`] for the service to fill.
    pub path: PathKind,
    /// The AEAD that sealed the chunks (on top of the transport's TLS); `None` when the
    /// transfer was not encrypted. Serialized by name (`"aes-256-gcm"`).
    #[serde(default, with = "cipher_name")]
    pub cipher: Option<TransferCipher>,
    /// How many times the transfer was run again after a failure on its own (a retrying
    /// sender's handle); 0 for one run.
    #[serde(default)]
    pub resumes: u32,
    /// File bytes the sender sent more than once over all its runs: what an interrupted run
    /// sent that the receiver had not kept when the next run started ([`SendTally`]).
    #[serde(default)]
    pub bytes_resent: u64,
}

/// What the runs of one outgoing transfer sent, added up over the runs: a caller that resumes
/// a transfer by running it again gives every run the same tally
/// ([`RunContext::tally`](crate::RunContext::tally)), and learns what was sent twice.
#[derive(Debug, Default)]
pub struct SendTally {
    /// File bytes sent by every run so far.
    sent: AtomicU64,
    /// File bytes the receiver lacked when it first said so (its `Plan`, or what it asked for
    /// in a run that completed without one).
    needed: OnceLock<u64>,
}

impl SendTally {
    /// A tally of no runs.
    pub fn new() -> Self {
        SendTally::default()
    }

    /// File bytes sent by every run so far (before compression).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// File bytes sent beyond what the receiver lacked at first: sent twice because a run
    /// ended before the receiver kept them.
    pub fn bytes_resent(&self) -> u64 {
        let sent = self.bytes_sent();
        self.needed
            .get()
            .map_or(0, |needed| sent.saturating_sub(*needed))
    }

    /// Adds what one run sent; `needed` is what the receiver lacked in that run, when it said.
    pub(crate) fn add_run(&self, sent: u64, needed: Option<u64>) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        if let Some(needed) = needed {
            let _ = self.needed.set(needed);
        }
    }
}

/// (De)serializes an optional cipher by its name.
mod cipher_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use tether_crypto::TransferCipher;

    pub(super) fn serialize<S: Serializer>(
        cipher: &Option<TransferCipher>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match cipher {
            Some(cipher) => serializer.serialize_some(cipher.name()),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<TransferCipher>, D::Error> {
        let Some(name) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        TransferCipher::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown cipher {name:?}")))
    }
}

impl TransferReport {
    pub(crate) fn new(transfer_id: Uuid, direction: Direction) -> Self {
        TransferReport {
            transfer_id,
            direction,
            files: 0,
            bytes_total: 0,
            bytes_transferred: 0,
            wire_bytes: 0,
            bytes_resumed: 0,
            bytes_verified: 0,
            chunks_refetched: 0,
            duration: Duration::ZERO,
            path: PathKind::Unknown,
            cipher: None,
            resumes: 0,
            bytes_resent: 0,
        }
    }

    /// Mean rate of this run in bytes per second (transferred bytes over the duration).
    pub fn rate(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.bytes_transferred as f64 / secs
        } else {
            0.0
        }
    }
}

/// Rate and ETA from samples, with time passed in.
#[derive(Debug, Clone)]
pub(crate) struct RateMeter {
    window_start: Instant,
    window_bytes: u64,
    rate: f64,
    have_rate: bool,
}

/// Length of one rate sample window.
const WINDOW: Duration = Duration::from_millis(500);

impl RateMeter {
    pub(crate) fn new(now: Instant) -> Self {
        RateMeter {
            window_start: now,
            window_bytes: 0,
            rate: 0.0,
            have_rate: false,
        }
    }

    /// Counts `bytes` done at `now`.
    pub(crate) fn record(&mut self, bytes: u64, now: Instant) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= WINDOW {
            let sample = self.window_bytes as f64 / elapsed.as_secs_f64();
            // Exponential smoothing over a few windows.
            self.rate = if self.have_rate {
                0.6 * self.rate + 0.4 * sample
            } else {
                sample
            };
            self.have_rate = true;
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// The smoothed rate, or the mean since `start` before the first window closed.
    pub(crate) fn rate(&self, bytes_so_far: u64, start: Instant, now: Instant) -> f64 {
        if self.have_rate {
            return self.rate;
        }
        let secs = now.saturating_duration_since(start).as_secs_f64();
        if secs > 0.0 {
            bytes_so_far as f64 / secs
        } else {
            0.0
        }
    }
}

/// The longest ETA given (a year); a longer one, such as a stalled transfer's at its decayed
/// rate, is unknown.
pub(crate) const MAX_ETA: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Time to move `remaining` bytes at `rate`; `None` (unknown) when the rate is not a positive
/// normal number (zero, subnormal, infinite, NaN, negative) or the time exceeds [`MAX_ETA`].
pub(crate) fn eta(remaining: u64, rate: f64) -> Option<Duration> {
    if !(rate.is_normal() && rate > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(remaining as f64 / rate)
        .ok()
        .filter(|eta| *eta <= MAX_ETA)
}

/// Sends an event if the channel has room; progress is lossy by design.
pub(crate) fn emit(events: Option<&mpsc::Sender<TransferEvent>>, event: TransferEvent) {
    if let Some(events) = events {
        let _ = events.try_send(event);
    }
}

#[cfg(test)]
mod percentage_tests {
    use super::*;

    fn at(done: u64, total: u64) -> Progress {
        Progress {
            transfer_id: Uuid::nil(),
            direction: Direction::Receive,
            bytes_done: done,
            bytes_total: total,
            rate: 0.0,
            eta: None,
            file: None,
        }
    }

    #[test]
    fn percentage_is_bounded_and_exact_at_the_ends() {
        assert_eq!(at(0, 0).percentage(), 100.0);
        assert_eq!(at(0, 10).percentage(), 0.0);
        assert_eq!(at(5, 10).percentage(), 50.0);
        assert_eq!(at(10, 10).percentage(), 100.0);
        assert_eq!(at(u64::MAX, 10).percentage(), 100.0);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Rates from the edges of `f64` as well as anywhere in it.
    fn any_rate() -> impl Strategy<Value = f64> {
        prop_oneof![
            prop::sample::select(vec![
                0.0,
                -0.0,
                f64::MIN_POSITIVE / 2.0,
                5e-324,
                f64::MIN_POSITIVE,
                1e-300,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                -1.0,
                f64::MAX,
                u64::MAX as f64,
            ]),
            prop::num::f64::ANY,
        ]
    }

    /// Byte counts from the edges of `u64` as well as anywhere in it.
    fn any_bytes() -> impl Strategy<Value = u64> {
        prop_oneof![
            prop::sample::select(vec![0, 1, u64::MAX - 1, u64::MAX]),
            any::<u64>(),
        ]
    }

    #[test]
    fn rate_and_eta() {
        let start = Instant::now();
        let mut meter = RateMeter::new(start);
        meter.record(100, start + Duration::from_millis(100));
        assert_eq!(
            meter.rate(100, start, start + Duration::from_millis(100)),
            1000.0
        );
        meter.record(400, start + Duration::from_millis(500));
        let rate = meter.rate(500, start, start + Duration::from_millis(500));
        assert_eq!(rate, 1000.0);
        meter.record(1000, start + Duration::from_millis(1000));
        let rate = meter.rate(1500, start, start + Duration::from_millis(1000));
        assert!((rate - 1400.0).abs() < 1e-9, "{rate}");
        assert_eq!(eta(1400, rate), Some(Duration::from_secs(1)));
        assert_eq!(eta(1, 0.0), None);
    }

    #[test]
    fn a_stalled_transfer_has_no_eta() {
        let start = Instant::now();
        let mut meter = RateMeter::new(start);
        let mut now = start + WINDOW;
        meter.record(10_000_000, now);
        // No byte for an hour: the smoothed rate decays towards zero.
        for _ in 0..7200 {
            now += WINDOW;
            meter.record(0, now);
            let rate = meter.rate(10_000_000, start, now);
            assert!(rate.is_finite() && rate >= 0.0, "{rate}");
            if let Some(eta) = eta(20_000_000, rate) {
                assert!(eta <= MAX_ETA, "{eta:?}");
            }
        }
        assert_eq!(eta(20_000_000, meter.rate(10_000_000, start, now)), None);
    }

    #[test]
    fn rates_that_are_not_a_measurement_give_no_eta() {
        for rate in [
            0.0,
            -0.0,
            f64::MIN_POSITIVE / 2.0,
            5e-324,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -1000.0,
        ] {
            assert_eq!(eta(1000, rate), None, "{rate}");
        }
        assert_eq!(eta(u64::MAX, 1.0), None);
        assert_eq!(eta(0, 1.0), Some(Duration::ZERO));
        assert_eq!(eta(u64::MAX, f64::MAX), Some(Duration::ZERO));
    }

    proptest! {
        #[test]
        fn eta_is_unknown_or_at_most_a_year(remaining in any_bytes(), rate in any_rate()) {
            match eta(remaining, rate) {
                Some(eta) => {
                    prop_assert!(rate.is_normal() && rate > 0.0, "{rate}");
                    prop_assert!(eta <= MAX_ETA);
                    let exact = remaining as f64 / rate;
                    prop_assert!((eta.as_secs_f64() - exact).abs() <= 1e-6 * exact.max(1.0));
                }
                None => prop_assert!(
                    !(rate.is_normal() && rate > 0.0)
                        || remaining as f64 / rate > MAX_ETA.as_secs_f64()
                ),
            }
        }

        #[test]
        fn the_meter_gives_a_finite_rate_whatever_it_is_fed(
            steps in prop::collection::vec((any_bytes(), 0..u64::MAX / 4), 1..40),
            total in any_bytes(),
        ) {
            let start = Instant::now();
            let mut meter = RateMeter::new(start);
            let mut now = start;
            let mut done = 0u64;
            for (bytes, step_ns) in steps {
                // Instants as far ahead as this platform's clock goes.
                now = now.checked_add(Duration::from_nanos(step_ns)).unwrap_or(now);
                done = done.saturating_add(bytes);
                meter.record(bytes, now);
                let rate = meter.rate(done, start, now);
                prop_assert!(rate.is_finite() && rate >= 0.0, "{rate}");
                if let Some(eta) = eta(total.saturating_sub(done), rate) {
                    prop_assert!(eta <= MAX_ETA);
                }
            }
        }
    }
}
