//! The outbox: sends queued for a paired device ([`NetworkingService::queue_send`]), kept in
//! the store, and the couriers that deliver them.
//!
//! A courier runs per device, one at a time: it sends the device's pending entries in the
//! order they were queued, each with the ordinary send path (`share_with_device`, retrying for
//! the entry's window), until one fails in a way that reaching the device again cures; then it
//! waits. It starts when the device connects or is seen by a discovery, when an entry is
//! queued, and on a timer (`outbox_retry`, doubled after each failed round for the device up
//! to [`MAX_BACKOFF_FACTOR`] times). A device event while its courier is busy makes it go
//! round once more instead of waiting.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tether_identity::{ErrorChain, NodeId, error_chain};
use tether_registry::{DeviceRegistry, RegistryError};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::NetworkingService;
use crate::error::short;
use crate::outbox::{Body, OutboxEntry, OutboxId, canonical};
use crate::retry::dial_curable;
use crate::{NetworkError, NetworkEvent, TransferOptions};

/// The longest wait between two rounds for a device, as a multiple of `outbox_retry`.
const MAX_BACKOFF_FACTOR: u32 = 16;

/// How one entry's try ended.
enum Try {
    /// Delivered, failed for good, or no longer queued: on to the next entry.
    Done,
    /// Failed in a way reaching the device again cures: the device's round ends.
    Later,
}

impl NetworkingService {
    /// Queues a send of `paths` (files and directories) to a paired device and returns at
    /// once with its number; the running service delivers it when the device is reachable
    /// ([`crate::OutboxEntry`]), also after a restart of either side.
    ///
    /// The paths are made absolute and canonical now (each must exist) and read when the send
    /// goes out. Refused for a device that is not paired, and with
    /// [`RegistryError::OutboxFull`] when [`crate::MAX_OUTBOX`] sends wait already. Its end
    /// is [`NetworkEvent::QueuedSendDelivered`] or [`NetworkEvent::QueuedSendFailed`].
    pub async fn queue_send(
        &self,
        node_id: NodeId,
        paths: &[PathBuf],
        options: TransferOptions,
    ) -> Result<OutboxId, NetworkError> {
        self.check_paired(node_id)?;
        let paths = paths.to_vec();
        let id = self
            .blocking(move |registry| {
                let body = Body::new(canonical(&paths)?, &options)?.encode()?;
                Ok(registry.queue_outbox(node_id, &body)?)
            })
            .await?;
        info!(id, peer = %short(&node_id), "queued a send");
        if self.inner.config.deliver_queued {
            self.deliver(node_id, true);
        }
        Ok(OutboxId::new(id))
    }

    /// Every queued send, oldest first: pending ones and those that failed for good.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>, NetworkError> {
        let records = self.inner.registry.outbox()?;
        Ok(records
            .iter()
            .filter_map(|record| {
                let name = self
                    .inner
                    .registry
                    .device(&record.node_id)
                    .and_then(|device| device.paired)
                    .map(|paired| paired.info.device_name);
                Body::decode(record).map(|body| body.entry(record.id, record.node_id, name))
            })
            .collect())
    }

    /// Takes a queued send out of the outbox, stopping it if it is being sent (what the
    /// receiver verified stays, as with any cancelled send). Returns whether it was queued.
    pub fn cancel_queued(&self, id: OutboxId) -> Result<bool, NetworkError> {
        let removed = self.inner.registry.remove_outbox(id.get())?;
        if let Some(stop) = self.inner.couriers.state.lock().in_flight.remove(&id.get()) {
            stop.cancel();
        }
        if removed {
            info!(id = id.get(), "cancelled a queued send");
        }
        Ok(removed)
    }

    /// Starts couriers: for every device with pending entries now, then whenever a device
    /// connects or is seen, and on the timer for those that are due.
    pub(super) async fn outbox_loop(&self) {
        let mut events = self.inner.events.subscribe();
        let every = self
            .inner
            .config
            .outbox_retry
            .max(Duration::from_millis(10));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.deliver_due().await,
                event = events.recv() => match event {
                    Ok(NetworkEvent::Connected { node_id, .. }
                        | NetworkEvent::DeviceDiscovered { node_id, .. }) => {
                        self.deliver(node_id, true);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.deliver_due().await,
                    Err(RecvError::Closed) => break,
                },
            }
        }
    }

    /// Starts the couriers of every device with pending entries that is due.
    async fn deliver_due(&self) {
        let records = match self.blocking(|registry| Ok(registry.outbox()?)).await {
            Ok(records) => records,
            Err(error) => {
                warn!(error = %ErrorChain(&error), "cannot read the outbox");
                return;
            }
        };
        let devices: HashSet<NodeId> = records
            .iter()
            .filter(|record| Body::decode(record).is_some_and(|body| !body.failed))
            .map(|record| record.node_id)
            .collect();
        for node_id in devices {
            self.deliver(node_id, false);
        }
    }

    /// Starts `node_id`'s courier unless it runs (then, when `now`, it goes round once
    /// more) or, unless `now`, the device is not due yet.
    fn deliver(&self, node_id: NodeId, now: bool) {
        {
            let mut state = self.inner.couriers.state.lock();
            if state.busy.contains(&node_id) {
                if now {
                    state.poked.insert(node_id);
                }
                return;
            }
            let due = state
                .backoff
                .get(&node_id)
                .is_none_or(|(at, _)| *at <= Instant::now());
            if !now && !due {
                return;
            }
            state.busy.insert(node_id);
        }
        let service = self.for_task();
        self.inner.tasks.spawn("an outbox courier", async move {
            service.courier(node_id).await;
        });
    }

    /// Delivers `node_id`'s pending entries, round after round while it is poked.
    async fn courier(&self, node_id: NodeId) {
        loop {
            let delivered = self.round(node_id).await;
            let mut state = self.inner.couriers.state.lock();
            if state.poked.remove(&node_id) {
                continue;
            }
            if delivered {
                state.backoff.remove(&node_id);
            } else {
                let failures = state
                    .backoff
                    .get(&node_id)
                    .map_or(1, |(_, failures)| failures.saturating_add(1));
                let wait = backoff(self.inner.config.outbox_retry, failures);
                debug!(peer = %short(&node_id), ?wait, "queued sends wait for the device");
                state
                    .backoff
                    .insert(node_id, (Instant::now() + wait, failures));
            }
            state.busy.remove(&node_id);
            return;
        }
    }

    /// One round: every pending entry of `node_id`, oldest first. `false` when one has to
    /// wait for the device (the rest wait with it).
    async fn round(&self, node_id: NodeId) -> bool {
        let records = match self.blocking(|registry| Ok(registry.outbox()?)).await {
            Ok(records) => records,
            Err(error) => {
                warn!(error = %ErrorChain(&error), "cannot read the outbox");
                return false;
            }
        };
        for record in records.iter().filter(|record| record.node_id == node_id) {
            let Some(body) = Body::decode(record).filter(|body| !body.failed) else {
                continue;
            };
            if let Try::Later = self.try_entry(record.id, node_id, body).await {
                return false;
            }
        }
        true
    }

    /// Tries to deliver entry `id` once.
    async fn try_entry(&self, id: u64, node_id: NodeId, mut body: Body) -> Try {
        if let Err(reason) = self.inner.registry.check_connection(&node_id) {
            // Unpaired, revoked or blocked: it never goes out.
            let refused = RegistryError::Refused {
                node: node_id,
                reason,
            };
            self.failed(id, node_id, body, error_chain(&refused)).await;
            return Try::Done;
        }
        body.attempts = body.attempts.saturating_add(1);
        if !self.save(id, node_id, &body).await {
            return Try::Done;
        }
        let stop = CancellationToken::new();
        self.inner
            .couriers
            .state
            .lock()
            .in_flight
            .insert(id, stop.clone());
        let result = self.send_entry(node_id, &body, &stop).await;
        self.inner.couriers.state.lock().in_flight.remove(&id);
        match result {
            None => Try::Done,
            Some(Ok(report)) => {
                let _ = self
                    .blocking(move |registry| Ok(registry.remove_outbox(id)?))
                    .await;
                info!(id, peer = %short(&node_id), "delivered a queued send");
                let _ = self.inner.events.send(NetworkEvent::QueuedSendDelivered {
                    id: OutboxId::new(id),
                    node_id,
                    report,
                });
                Try::Done
            }
            Some(Err(error)) if dial_curable(&error) => {
                debug!(id, peer = %short(&node_id), error = %ErrorChain(&error), "a queued send waits");
                body.last_error = Some(error_chain(&error));
                self.save(id, node_id, &body).await;
                Try::Later
            }
            Some(Err(error)) => {
                self.failed(id, node_id, body, error_chain(&error)).await;
                Try::Done
            }
        }
    }

    /// Sends an entry's paths and waits for the receiver's report; `None` when `stop` (a
    /// cancel) came first.
    async fn send_entry(
        &self,
        node_id: NodeId,
        body: &Body,
        stop: &CancellationToken,
    ) -> Option<Result<tether_transfer::TransferReport, NetworkError>> {
        let started = tokio::select! {
            started = self.share_with_device(node_id, &body.paths, body.options()) => started,
            () = stop.cancelled() => return None,
        };
        let mut handle = match started {
            Ok(handle) => handle,
            Err(error) => return Some(Err(error)),
        };
        // Nobody reads its progress.
        drop(handle.take_events());
        let cancel = handle.canceller();
        tokio::select! {
            result = handle.finish() => Some(result),
            () = stop.cancelled() => {
                cancel.cancel();
                None
            }
        }
    }

    /// Marks entry `id` failed for good with `reason`, and says so.
    async fn failed(&self, id: u64, node_id: NodeId, mut body: Body, reason: String) {
        warn!(id, peer = %short(&node_id), %reason, "a queued send failed");
        body.failed = true;
        body.last_error = Some(reason.clone());
        if self.save(id, node_id, &body).await {
            let _ = self.inner.events.send(NetworkEvent::QueuedSendFailed {
                id: OutboxId::new(id),
                node_id,
                reason,
            });
        }
    }

    /// Stores `body` for entry `id`; `false` when it is no longer queued (or cannot be saved).
    async fn save(&self, id: u64, node_id: NodeId, body: &Body) -> bool {
        let encoded = match body.encode() {
            Ok(encoded) => encoded,
            Err(error) => {
                warn!(id, error = %ErrorChain(&error), "a queued send could not be encoded");
                return false;
            }
        };
        let saved = self
            .blocking(move |registry| Ok(registry.update_outbox(id, node_id, &encoded)?))
            .await;
        match saved {
            Ok(found) => found,
            Err(error) => {
                warn!(id, error = %ErrorChain(&error), "a queued send could not be saved");
                false
            }
        }
    }

    /// Runs `work` on the registry in a blocking thread (it waits for a disk write).
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&DeviceRegistry) -> Result<T, NetworkError> + Send + 'static,
    ) -> Result<T, NetworkError> {
        let registry = self.inner.registry.clone();
        tokio::task::spawn_blocking(move || work(&registry))
            .await
            .map_err(|error| NetworkError::task_failed("an outbox task", error))?
    }
}

/// How long a device waits after its `failures`-th failed round in a row: `every`, doubled
/// for each failure after the first, at most [`MAX_BACKOFF_FACTOR`] times `every`.
fn backoff(every: Duration, failures: u32) -> Duration {
    let factor = 2u32
        .saturating_pow(failures.saturating_sub(1))
        .min(MAX_BACKOFF_FACTOR);
    every.saturating_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_per_failed_round_up_to_sixteen_times() {
        let every = Duration::from_secs(30);
        let waits: Vec<u64> = (0..=7).map(|n| backoff(every, n).as_secs()).collect();
        assert_eq!(waits, [30, 30, 60, 120, 240, 480, 480, 480]);
        assert_eq!(backoff(every, u32::MAX), every * MAX_BACKOFF_FACTOR);
        assert_eq!(backoff(Duration::MAX, 3), Duration::MAX);
    }
}
