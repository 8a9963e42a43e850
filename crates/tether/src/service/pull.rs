//! Pulling a file from a paired device by entry id: the requester's side.
//!
//! The requester opens a stream on the device's pooled `tether/sync/2` connection and sends a
//! pull request (entry id, resume hint); the sharer answers with a refusal or with the offer of
//! a push, which this side receives with the transfer engine's receiver into the destination
//! the caller chose, under a consent that takes only the entry asked for. Per-transfer keys
//! and the cipher choice are a push's; so are the checks of free space, inodes and the
//! device's storage quota, and resuming: asking again with the same destination keeps every
//! chunk the partial file holds that still verifies.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tether_identity::NodeId;
use tether_iroh::ConnectionInfo;
use tether_transfer::{
    CancellationToken, Direction, PulledEntry, Receiver, ReceiverConfig, RunContext, TransferError,
    Waiting,
};
use tokio::sync::mpsc;
use tracing::{info, warn};
use uuid::Uuid;

use super::core::NetworkingService;
use super::device::DeviceHandle;
use crate::error::short;
use crate::history::Draft;
use crate::storage::RegistryQuota;
use crate::{NetworkError, TransferHandle};

/// How long a pull waits for the sharer's answer, which comes once the sharer has hashed the
/// entry: 10 minutes (about 60 GB at a hard disk's 100 MB/s).
pub const PULL_ANSWER_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// How many progress events of one pull may wait for its handle's reader before the pull
/// waits too.
const PULL_EVENT_BUFFER: usize = 256;

/// How a pull is received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PullOptions {
    /// How many bytes of the entry this device believes it already holds: a hint sent to the
    /// sharer (shown in its [`crate::PullEvent::Started`]). What is actually kept is decided
    /// here by verifying the partial file in the destination, so a wrong hint costs nothing.
    pub resume_from: u64,
    /// Bytes per second this device reads at, for this pull.
    pub rate_limit: Option<u64>,
    /// How long the pull may move no bytes before it ends, resumable
    /// ([`TransferError::Stalled`]). Default: the service's
    /// [`crate::NetworkingConfig::transfer_stall_timeout`].
    pub stall_timeout: Option<Duration>,
}

impl PullOptions {
    /// Sets the resume hint.
    pub fn resume_from(mut self, bytes: u64) -> Self {
        self.resume_from = bytes;
        self
    }

    /// Limits this pull's rate.
    pub fn rate_limit(mut self, bytes_per_second: Option<u64>) -> Self {
        self.rate_limit = bytes_per_second;
        self
    }

    /// Sets the stall bound.
    pub fn stall_timeout(mut self, bound: Duration) -> Self {
        self.stall_timeout = Some(bound);
        self
    }
}

impl NetworkingService {
    /// Asks the paired device `node_id` for its entry `entry_id`, to be placed in the
    /// directory `destination` (created if missing) under the name the sharer gives it.
    ///
    /// The handle streams progress and ends with the verified report, or with
    /// [`NetworkError::NotShared`] when the device does not share that entry with this one.
    /// Asking again with the same destination after an interruption (a lost link, a restart of
    /// either side, this process killed) resumes: only what the destination does not hold
    /// verified is sent. Its end is recorded in the transfer history on both devices.
    pub async fn request_file(
        &self,
        node_id: NodeId,
        entry_id: Uuid,
        destination: &Path,
        options: PullOptions,
    ) -> Result<TransferHandle, NetworkError> {
        let draft = Draft::start(&self.inner.registry, node_id, Direction::Receive, true);
        // The app's directory: created if missing, its permissions never changed.
        std::fs::create_dir_all(destination).map_err(|source| NetworkError::Io {
            path: destination.to_owned(),
            source,
        })?;
        let config = &self.inner.config;
        let receiver_config = ReceiverConfig::new(destination)
            .consent(PulledEntry::new(entry_id))
            .stall_timeout(
                options
                    .stall_timeout
                    .unwrap_or(config.transfer_stall_timeout),
            )
            .require_encryption(config.require_encryption)
            .space_reserve(config.space_reserve)
            .inode_reserve(config.inode_reserve)
            .quota(Arc::new(RegistryQuota {
                registry: self.inner.registry.clone(),
                default: config.default_storage_quota,
            }))
            .receive_budget(Arc::clone(&self.inner.meters) as _)
            .rate_limit(options.rate_limit);
        let receiver = Receiver::new(receiver_config);

        let link = self.link(node_id).await?;
        let stream = crate::transfer::open_stream(&link, &self.inner.meters).await?;
        let path = ConnectionInfo::of(&link.connection).path;
        let (events_tx, events) = mpsc::channel(PULL_EVENT_BUFFER);
        let cancel = CancellationToken::new();
        let token = cancel.clone();
        info!(peer = %short(&node_id), %entry_id, resume_from = options.resume_from, "requesting an entry");
        // The pull keeps the link in use (not idle) until it ends.
        let in_use = link.use_it();
        // The sharer hashes the whole entry before it answers (minutes for a large file on a
        // slow disk), so the wait for the answer has a bound of its own; `cancel` ends it
        // sooner, and a dead link ends with the connection.
        let answer_bound = PULL_ANSWER_TIMEOUT.max(
            options
                .stall_timeout
                .unwrap_or(config.transfer_stall_timeout),
        );
        let task = tokio::spawn(async move {
            let asked = tether_transfer::request_pull(stream, entry_id, options.resume_from);
            let asked = tokio::time::timeout(answer_bound, asked);
            let offer = tokio::select! {
                offer = asked => offer.unwrap_or(Err(TransferError::Stalled {
                    waiting_for: Waiting::Data,
                    idle: answer_bound,
                })),
                () = token.cancelled() => Err(TransferError::Cancelled),
            };
            let result = match offer {
                Ok(offer) => {
                    let mut context = RunContext::new().events(events_tx).cancel(token);
                    if offer.encrypted() {
                        // Without them the receiver declines the offer (keys required).
                        match link.transfer_keys(offer.transfer_id()) {
                            Ok(keys) => context = context.keys(keys),
                            Err(error) => {
                                warn!(error = %crate::ErrorChain(&error), "no keys for a pulled transfer");
                            }
                        }
                    }
                    receiver.receive(offer, link.node_id, context).await
                }
                Err(error) => Err(error),
            };
            result.map_err(|error| NetworkError::from(in_use.explain(error)))
        });
        Ok(TransferHandle::new(events, cancel, task, path).recorded(draft))
    }
}

impl DeviceHandle {
    /// Asks the device for its entry `entry_id`, placed in the directory `destination`; see
    /// [`NetworkingService::request_file`].
    pub async fn request_file(
        &self,
        entry_id: Uuid,
        destination: &Path,
        options: PullOptions,
    ) -> Result<TransferHandle, NetworkError> {
        self.service
            .request_file(self.node_id, entry_id, destination, options)
            .await
    }
}
