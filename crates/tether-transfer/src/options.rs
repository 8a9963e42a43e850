//! What the caller chooses: per-transfer options for senders, configuration for receivers, and
//! the per-run context (keys, events, cancellation, shared limits).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_crypto::{TransferCipher, TransferSecret};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::consent::{Consent, DeclineAll};
use crate::manifest::Limits;
use crate::progress::{SendTally, TransferEvent};
use crate::stall::DEFAULT_STALL_TIMEOUT;
use crate::storage::{NoBudget, NoQuota, ReceiveBudget, Reserve, StorageQuota};
use crate::throttle::RateLimiter;

/// Most streams one transfer may use.
pub const MAX_LANES: u8 = 16;

/// Default [`ReceiverConfig::manifest_timeout`].
const MANIFEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Default [`ReceiverConfig::max_offers_per_peer`].
const MAX_OFFERS_PER_PEER: usize = 2;

/// Default spacing of progress events.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// A timer period the caller chose, made one tokio's `interval` takes: at least 1 ms (zero
/// panics) and at most a day (`Duration::MAX` overflows after the first tick).
pub(crate) fn timer_period(period: Duration) -> Duration {
    period.clamp(Duration::from_millis(1), Duration::from_secs(24 * 60 * 60))
}

/// How a sender sends (the seed's `TransferOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SendOptions {
    /// Compress chunks with zstd where it pays.
    pub compress: bool,
    /// Seal chunks with per-transfer keys on top of the transport's TLS (needs
    /// [`RunContext::keys`]).
    pub encrypt: bool,
    /// When encrypting: the ciphers this side accepts, most preferred first; the receiver
    /// picks one. Default: AES-256-GCM first when this CPU has AES instructions
    /// ([`TransferCipher::preference`]), else ChaCha20-Poly1305 first.
    pub ciphers: Vec<TransferCipher>,
    /// This transfer's bandwidth limit in bytes per second.
    pub rate_limit: Option<u64>,
    /// Spacing of progress events.
    pub progress_interval: Duration,
    /// How long the data phase may move no bytes at all before it ends with
    /// [`TransferError::Stalled`](crate::TransferError::Stalled) (resumable). Default 60 s.
    pub stall_timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        SendOptions {
            compress: false,
            encrypt: true,
            ciphers: TransferCipher::preference(TransferCipher::aes_hardware()),
            rate_limit: None,
            progress_interval: PROGRESS_INTERVAL,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

impl SendOptions {
    /// Sets [`compress`](Self::compress).
    pub fn compress(mut self, on: bool) -> Self {
        self.compress = on;
        self
    }

    /// Sets [`encrypt`](Self::encrypt).
    pub fn encrypt(mut self, on: bool) -> Self {
        self.encrypt = on;
        self
    }

    /// Sets [`ciphers`](Self::ciphers).
    pub fn ciphers(mut self, ciphers: impl Into<Vec<TransferCipher>>) -> Self {
        self.ciphers = ciphers.into();
        self
    }

    /// Sets [`rate_limit`](Self::rate_limit).
    pub fn rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate_limit = bytes_per_second;
        self
    }

    /// Sets [`progress_interval`](Self::progress_interval).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }

    /// Sets [`stall_timeout`](Self::stall_timeout).
    pub fn stall_timeout(mut self, bound: Duration) -> Self {
        self.stall_timeout = bound;
        self
    }
}

/// Everything one run of a transfer needs besides its streams; the same shape on both sides.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct RunContext {
    /// The transfer's secret (`SessionKeys::transfer_secret` with the transfer id), required
    /// when the transfer is encrypted; the keys are derived from it under the agreed cipher.
    pub keys: Option<TransferSecret>,
    /// Where progress events go (dropped when full).
    pub events: Option<mpsc::Sender<TransferEvent>>,
    /// Fires to stop the transfer; partial files are kept for a later resume.
    pub cancel: CancellationToken,
    /// Limits shared with other transfers (a global limit), on top of the transfer's own.
    pub shared_limits: Vec<RateLimiter>,
    /// Sender: where the run adds what it sent when it ends, however it ends (for a caller
    /// that runs the transfer again to resume it, and sums the runs).
    pub tally: Option<Arc<SendTally>>,
}

impl RunContext {
    /// An empty context: no keys, no events, a fresh token, no shared limits.
    pub fn new() -> Self {
        RunContext::default()
    }

    /// Sets [`keys`](Self::keys).
    pub fn keys(mut self, keys: TransferSecret) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Sets [`events`](Self::events).
    pub fn events(mut self, events: mpsc::Sender<TransferEvent>) -> Self {
        self.events = Some(events);
        self
    }

    /// Sets [`cancel`](Self::cancel).
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Adds a shared limit.
    pub fn shared_limit(mut self, limiter: RateLimiter) -> Self {
        self.shared_limits.push(limiter);
        self
    }

    /// Sets [`tally`](Self::tally).
    pub fn tally(mut self, tally: Arc<SendTally>) -> Self {
        self.tally = Some(tally);
        self
    }
}

/// How a receiver receives; one configuration serves every incoming transfer.
#[derive(Clone)]
#[non_exhaustive]
pub struct ReceiverConfig {
    /// Everything is written inside this directory, nowhere else.
    pub destination: PathBuf,
    /// Who decides whether to accept an offer. Default: [`DeclineAll`].
    pub consent: Arc<dyn Consent>,
    /// Bounds on offers.
    pub limits: Limits,
    /// Replace existing files with other contents (atomically). Off by default: such a transfer
    /// fails before any data moves.
    pub overwrite: bool,
    /// Refuse offers that do not fit the free space and free inodes at the destination,
    /// less the reserves, before accepting; and check the space reserve again whenever a file
    /// is allocated while receiving. On by default.
    pub check_free_space: bool,
    /// Free space an offer may not eat into: an offer whose files (each rounded up to whole
    /// blocks) and new directories (a block each) would leave less free is declined
    /// ([`AbortCode::NoSpace`](crate::AbortCode)), and a file whose allocation would (another
    /// program filled the disk meanwhile) stops the transfer, resumable. Default: the smaller
    /// of 5 % of the file system and 1 GiB ([`Reserve::DEFAULT_SPACE`]).
    pub space_reserve: Reserve,
    /// Free inodes an offer may not eat into: its files, their resume records and its new
    /// directories must fit in the free inodes less this. Default: 5 % of the file system's
    /// inodes ([`Reserve::DEFAULT_INODES`]). File systems without a fixed inode count
    /// (btrfs, for one, reports none) are not checked.
    pub inode_reserve: Reserve,
    /// How much each device may store here (see [`StorageQuota`]). Default: [`NoQuota`].
    pub quota: Arc<dyn StorageQuota>,
    /// How much each device may still send here in the current period of its bandwidth
    /// quota (see [`ReceiveBudget`]). Default: [`NoBudget`].
    pub receive_budget: Arc<dyn ReceiveBudget>,
    /// How often the resume records of files in progress are saved.
    pub checkpoint_interval: Duration,
    /// Each transfer's bandwidth limit in bytes per second.
    pub rate_limit: Option<u64>,
    /// Spacing of progress events.
    pub progress_interval: Duration,
    /// The ciphers this side accepts for encrypted transfers. It takes the sender's most
    /// preferred one among them, except that without AES instructions it takes
    /// ChaCha20-Poly1305 when offered. Default: both.
    pub ciphers: Vec<TransferCipher>,
    /// How long the data phase may move no bytes at all before it ends with
    /// [`TransferError::Stalled`](crate::TransferError::Stalled) (resumable). Default 60 s.
    pub stall_timeout: Duration,
    /// Decline plain offers ([`AbortCode::EncryptionRequired`](crate::AbortCode)): take only
    /// transfers whose chunks are sealed with per-transfer keys. Off by default.
    pub require_encryption: bool,
    /// How long the whole manifest may take to arrive, from the offer on; a slower one is
    /// refused. Default 120 s.
    pub manifest_timeout: Duration,
    /// Most offers from one device answered at once (their manifests being read, or waiting
    /// for consent); one more is declined at once
    /// ([`AbortCode::Busy`](crate::AbortCode)). Default 2.
    pub max_offers_per_peer: usize,
}

impl std::fmt::Debug for ReceiverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverConfig")
            .field("destination", &self.destination)
            .field("limits", &self.limits)
            .field("overwrite", &self.overwrite)
            .field("check_free_space", &self.check_free_space)
            .field("space_reserve", &self.space_reserve)
            .field("inode_reserve", &self.inode_reserve)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("rate_limit", &self.rate_limit)
            .field("ciphers", &self.ciphers)
            .field("stall_timeout", &self.stall_timeout)
            .field("require_encryption", &self.require_encryption)
            .field("manifest_timeout", &self.manifest_timeout)
            .field("max_offers_per_peer", &self.max_offers_per_peer)
            .finish_non_exhaustive()
    }
}

impl ReceiverConfig {
    /// Receives into `destination`, declining everything until a [`consent`](Self::consent)
    /// policy is set.
    pub fn new(destination: impl Into<PathBuf>) -> Self {
        ReceiverConfig {
            destination: destination.into(),
            consent: Arc::new(DeclineAll),
            limits: Limits::default(),
            overwrite: false,
            check_free_space: true,
            space_reserve: Reserve::DEFAULT_SPACE,
            inode_reserve: Reserve::DEFAULT_INODES,
            quota: Arc::new(NoQuota),
            receive_budget: Arc::new(NoBudget),
            checkpoint_interval: Duration::from_millis(500),
            rate_limit: None,
            progress_interval: PROGRESS_INTERVAL,
            ciphers: TransferCipher::ALL.to_vec(),
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            require_encryption: false,
            manifest_timeout: MANIFEST_TIMEOUT,
            max_offers_per_peer: MAX_OFFERS_PER_PEER,
        }
    }

    /// Sets [`require_encryption`](Self::require_encryption).
    pub fn require_encryption(mut self, on: bool) -> Self {
        self.require_encryption = on;
        self
    }

    /// Sets [`manifest_timeout`](Self::manifest_timeout).
    pub fn manifest_timeout(mut self, deadline: Duration) -> Self {
        self.manifest_timeout = deadline;
        self
    }

    /// Sets [`max_offers_per_peer`](Self::max_offers_per_peer) (at least 1).
    pub fn max_offers_per_peer(mut self, max: usize) -> Self {
        self.max_offers_per_peer = max.max(1);
        self
    }

    /// Sets [`stall_timeout`](Self::stall_timeout).
    pub fn stall_timeout(mut self, bound: Duration) -> Self {
        self.stall_timeout = bound;
        self
    }

    /// Sets [`ciphers`](Self::ciphers).
    pub fn ciphers(mut self, ciphers: impl Into<Vec<TransferCipher>>) -> Self {
        self.ciphers = ciphers.into();
        self
    }

    /// Sets [`consent`](Self::consent).
    pub fn consent(mut self, consent: impl Consent + 'static) -> Self {
        self.consent = Arc::new(consent);
        self
    }

    /// Sets [`limits`](Self::limits).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets [`overwrite`](Self::overwrite).
    pub fn overwrite(mut self, on: bool) -> Self {
        self.overwrite = on;
        self
    }

    /// Sets [`check_free_space`](Self::check_free_space).
    pub fn check_free_space(mut self, on: bool) -> Self {
        self.check_free_space = on;
        self
    }

    /// Sets [`space_reserve`](Self::space_reserve).
    pub fn space_reserve(mut self, reserve: Reserve) -> Self {
        self.space_reserve = reserve;
        self
    }

    /// Sets [`inode_reserve`](Self::inode_reserve).
    pub fn inode_reserve(mut self, reserve: Reserve) -> Self {
        self.inode_reserve = reserve;
        self
    }

    /// Sets [`quota`](Self::quota).
    pub fn quota(mut self, quota: Arc<dyn StorageQuota>) -> Self {
        self.quota = quota;
        self
    }

    /// Sets [`receive_budget`](Self::receive_budget).
    pub fn receive_budget(mut self, budget: Arc<dyn ReceiveBudget>) -> Self {
        self.receive_budget = budget;
        self
    }

    /// Sets [`checkpoint_interval`](Self::checkpoint_interval).
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`rate_limit`](Self::rate_limit).
    pub fn rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate_limit = bytes_per_second;
        self
    }

    /// Sets [`progress_interval`](Self::progress_interval).
    pub fn progress_interval(mut self, interval: Duration) -> Self {
        self.progress_interval = interval;
        self
    }
}
