//! Sharing by entry id: what this device lets each paired device pull, and serving the pulls.
//!
//! A paired device may ask for an entry by its id ([`crate::DeviceHandle::request_file`]).
//! The app says what it shares through a [`ShareProvider`] ([`crate::NetworkingConfig::
//! share_provider`]), asked per request with the requesting device as the registry knows it,
//! so an app can share different things with different devices. The default, [`ShareNothing`],
//! refuses every request.
//!
//! The request carries an entry id and a resume hint, never a path: this device reads only the
//! path its provider returned for that id and that device. An id the provider does not resolve
//! is refused before anything is opened or read (the requester gets
//! [`crate::NetworkError::NotShared`]). A resolved entry is sent as a push would send it, on the
//! stream the requester opened, verified chunk by chunk and resumable. Each device may have at
//! most [`MAX_PULLS_PER_DEVICE`] pulls served at once; more are refused as busy. What happens is
//! told to the app as [`crate::NetworkEvent::Pull`] events.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tether_identity::{DeviceInfo, ErrorChain, NodeId, error_chain};
use tether_iroh::ConnectionInfo;
use tether_registry::{ByteSize, DeviceRegistry, QuotaDirection, UtcMinute};
use tether_transfer::{
    AbortCode, ByteStream, Direction, IncomingPull, OutgoingTransfer, RunContext, SendOptions,
};
use tokio::sync::broadcast;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::NetworkEvent;
use crate::bandwidth::Meters;
use crate::error::short;
use crate::event::PullEvent;
use crate::history::{Draft, OfferSize, TransferOutcome};
use crate::link::Link;

/// Most pulls one device may have served at once; more are refused as busy.
pub const MAX_PULLS_PER_DEVICE: usize = 4;

/// What one entry id names for one device: a file (or a directory, sent whole as a push would
/// send it) on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedEntry {
    /// The file or directory sent. Its own name is the name the requester receives it under.
    pub path: PathBuf,
}

impl SharedEntry {
    /// The entry at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SharedEntry { path: path.into() }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Decides what each paired device may pull (see the module docs).
///
/// Called on the service's tasks, once per request, before anything is opened; keep it quick
/// (a lookup). Return `None` for an id that is unknown or not shared with `from`: the requester
/// learns only that it is not shared.
pub trait ShareProvider: Send + Sync + fmt::Debug + 'static {
    /// The entry `entry_id` names for the device `from` (as the registry knows it: node id,
    /// device id, name, type), or `None` if it is not shared with it.
    fn resolve(&self, from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry>;
}

/// The default provider: shares nothing, so every pull is refused as not shared.
#[derive(Debug, Clone, Copy, Default)]
pub struct ShareNothing;

impl ShareProvider for ShareNothing {
    fn resolve(&self, _from: &DeviceInfo, _entry_id: Uuid) -> Option<SharedEntry> {
        None
    }
}

/// The service's side of pulls: the provider, and how many pulls each device has running.
#[derive(Debug)]
pub(crate) struct Sharing {
    provider: Arc<dyn ShareProvider>,
    registry: DeviceRegistry,
    /// The bandwidth quotas, which the transfer streams of every device are counted against.
    pub(crate) meters: Arc<Meters>,
    events: broadcast::Sender<NetworkEvent>,
    stall_timeout: Duration,
    serving: Mutex<HashMap<NodeId, usize>>,
}

impl Sharing {
    pub(crate) fn new(
        provider: Arc<dyn ShareProvider>,
        registry: DeviceRegistry,
        meters: Arc<Meters>,
        events: broadcast::Sender<NetworkEvent>,
        stall_timeout: Duration,
    ) -> Self {
        Sharing {
            provider,
            registry,
            meters,
            events,
            stall_timeout,
            serving: Mutex::default(),
        }
    }

    /// Answers one pull request from the device at the other end of `link`.
    pub(crate) async fn serve<S: ByteStream>(&self, link: &Link, pull: IncomingPull<S>) {
        let from = link.node_id;
        let entry_id = pull.entry_id();
        let draft = Draft::start(&self.registry, from, Direction::Send, true)
            .path(ConnectionInfo::of(&link.connection).path);
        // The gate let only paired devices in; one unpaired since is refused here.
        let paired = self.registry.device(&from).and_then(|device| device.paired);
        let shared = paired.and_then(|paired| self.provider.resolve(&paired.info, entry_id));
        let Some(shared) = shared else {
            info!(peer = %short(&from), %entry_id, "refused a pull: not shared with the device");
            if let Err(error) = pull.refuse().await {
                debug!(peer = %short(&from), error = %ErrorChain(&error), "the refusal did not reach the device");
            }
            let reason = "not shared with the device".to_owned();
            let outcome = TransferOutcome::Refused { reason };
            self.end(draft, PullEvent::Refused { from, entry_id }, outcome)
                .await;
            return;
        };
        let Some(_slot) = self.claim(from) else {
            info!(peer = %short(&from), %entry_id, "refused a pull: too many at once");
            let _ = pull
                .decline(AbortCode::Busy, "too many pulls at once; ask again later")
                .await;
            let reason = "too many pulls at once".to_owned();
            let outcome = refused(&reason);
            let event = failed(from, entry_id, reason);
            self.end(draft, event, outcome).await;
            return;
        };
        let resolver = HashMap::from([(entry_id, shared.path)]);
        let options = SendOptions::default().stall_timeout(self.stall_timeout);
        let outgoing = match OutgoingTransfer::prepare(&resolver, &[entry_id], options).await {
            Ok(outgoing) => outgoing,
            Err(error) => {
                // The path is local: the requester learns the kind of failure only.
                warn!(peer = %short(&from), %entry_id, error = %ErrorChain(&error), "a shared entry could not be read");
                let _ = pull
                    .decline(AbortCode::Internal, "the shared entry could not be read")
                    .await;
                let outcome = TransferOutcome::of(Err(&error));
                let reason = error_chain(&error);
                let event = failed(from, entry_id, reason);
                self.end(draft, event, outcome).await;
                return;
            }
        };
        if let Some((told, reason)) = self.over_quota(from, outgoing.total_bytes()) {
            info!(peer = %short(&from), %entry_id, "refused a pull: over the send quota");
            let _ = pull.decline(AbortCode::BandwidthQuota, &told).await;
            let outcome = refused(&reason);
            self.end(draft, failed(from, entry_id, reason), outcome)
                .await;
            return;
        }
        let transfer_id = outgoing.transfer_id();
        let context = match link.transfer_keys(transfer_id) {
            Ok(keys) => RunContext::new().keys(keys),
            Err(error) => {
                let _ = pull.decline(AbortCode::Internal, "no transfer keys").await;
                let reason = error_chain(&error);
                let outcome = TransferOutcome::Failed {
                    reason: reason.clone(),
                    resumable: false,
                };
                let event = failed(from, entry_id, reason);
                self.end(draft, event, outcome).await;
                return;
            }
        };
        let draft = draft.size(OfferSize::of(&outgoing));
        self.send(link, pull, outgoing, context, draft).await;
    }

    /// What to tell a device whose pull of `bytes` would pass this device's send quota for
    /// it, and the reason to record; `None` when it fits.
    fn over_quota(&self, from: NodeId, bytes: u64) -> Option<(String, String)> {
        let exceeded = self.meters.admit(from, QuotaDirection::Send, bytes).err()?;
        let told = format!(
            "over the sharer's send quota for this device: {} of {} used; resets {}",
            ByteSize(exceeded.used),
            exceeded.quota,
            UtcMinute(exceeded.resets_at)
        );
        Some((told, exceeded.to_string()))
    }

    /// Records how a pull ended in the history, then tells the app.
    async fn end(&self, draft: Draft, event: PullEvent, outcome: TransferOutcome) {
        draft.record_outcome(None, outcome).await;
        self.emit(event);
    }

    /// Sends the entry a pull asked for, prepared as `outgoing`, and reports how it went.
    async fn send<S: ByteStream>(
        &self,
        link: &Link,
        pull: IncomingPull<S>,
        outgoing: OutgoingTransfer,
        context: RunContext,
        draft: Draft,
    ) {
        let from = link.node_id;
        let entry_id = pull.entry_id();
        let resume_from = pull.resume_from();
        let transfer_id = outgoing.transfer_id();
        info!(peer = %short(&from), %entry_id, bytes = outgoing.total_bytes(), resume_from, "serving a pull");
        self.emit(PullEvent::Started {
            from,
            entry_id,
            transfer_id,
            bytes_total: outgoing.total_bytes(),
            resume_from,
        });
        let served = pull
            .serve(outgoing, context)
            .await
            .map_err(|error| link.explain(error));
        draft.record(served.as_ref()).await;
        match served {
            Ok(report) => {
                info!(peer = %short(&from), %entry_id, bytes = report.bytes_transferred, "served a pull");
                self.emit(PullEvent::Completed {
                    from,
                    entry_id,
                    report,
                });
            }
            Err(error) => {
                info!(peer = %short(&from), %entry_id, error = %ErrorChain(&error), "a pull ended early");
                self.emit(PullEvent::Failed {
                    from,
                    entry_id,
                    reason: error_chain(&error),
                });
            }
        }
    }

    fn emit(&self, event: PullEvent) {
        let _ = self.events.send(NetworkEvent::Pull(event));
    }

    /// Counts a pull of `from` until the slot is dropped; `None` at the per-device bound.
    fn claim(&self, from: NodeId) -> Option<PullSlot<'_>> {
        let mut serving = self.serving.lock();
        let count = serving.entry(from).or_insert(0);
        if *count >= MAX_PULLS_PER_DEVICE {
            return None;
        }
        *count += 1;
        Some(PullSlot {
            sharing: self,
            from,
        })
    }
}

/// One pull being served; dropping it frees its place.
struct PullSlot<'a> {
    sharing: &'a Sharing,
    from: NodeId,
}

impl Drop for PullSlot<'_> {
    fn drop(&mut self) {
        let mut serving = self.sharing.serving.lock();
        if let Some(count) = serving.get_mut(&self.from) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                serving.remove(&self.from);
            }
        }
    }
}

/// A pull that failed, as the app hears it.
fn failed(from: NodeId, entry_id: Uuid, reason: String) -> PullEvent {
    PullEvent::Failed {
        from,
        entry_id,
        reason,
    }
}

/// A pull refused for `reason`, as the history records it.
fn refused(reason: &str) -> TransferOutcome {
    TransferOutcome::Refused {
        reason: reason.to_owned(),
    }
}
