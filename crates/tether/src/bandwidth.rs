//! Bandwidth quotas in the facade: each transfer stream counts what it carries against the
//! paired device's quota, kept in the registry, and a transfer that would pass a quota is
//! refused before it starts.
//!
//! Bytes this device writes on a transfer stream count as sent to the device, bytes it reads
//! as received from it (the streams carry chunks after compression and sealing, plus the
//! transfer's own control messages; messages on the sync stream are not counted). A stream
//! charges the registry ahead, a slice ([`SLICE`]) at a time, persisted before the bytes it
//! covers move; what a device's streams charged and did not use is given back when its last
//! stream ends. A crash (SIGKILL) therefore over-counts by at most one slice per device and
//! direction, and never under-counts. When nothing is left, the stream fails with
//! [`QuotaExceeded`] inside a [`TransferError::Link`](tether_transfer::TransferError::Link):
//! the receiver keeps what it verified, so sending again after the reset resumes.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use parking_lot::Mutex;
use tether_identity::NodeId;
use tether_registry::{
    BandwidthGrant, BandwidthQuota, BandwidthRefusal, ByteSize, DeviceRegistry, QuotaDirection,
    UtcMinute,
};
use tether_transfer::{BudgetRefusal, ReceiveBudget};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How much a transfer stream charges ahead of the bytes it moves: at most this much is
/// counted and not moved when the process is killed.
pub(crate) const SLICE: u64 = 4 << 20;

/// A transfer that would pass (or has reached) a paired device's bandwidth quota.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub struct QuotaExceeded {
    /// The device.
    pub node_id: NodeId,
    /// Its name here.
    pub device: String,
    /// Which way.
    pub direction: QuotaDirection,
    /// The quota.
    pub quota: BandwidthQuota,
    /// Bytes used in the current period.
    pub used: u64,
    /// When the period ends and the use starts over.
    pub resets_at: SystemTime,
    /// The transfer's size when it was refused before it started; `None` when it stopped
    /// part-way because the quota was reached (sending again after the reset resumes).
    pub needed: Option<u64>,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let way = match self.direction {
            QuotaDirection::Send => "sending to",
            QuotaDirection::Receive => "receiving from",
        };
        let verb = if self.needed.is_some() {
            "would pass"
        } else {
            "reached"
        };
        write!(
            f,
            "{way} {} {verb} its quota of {} ({} used; resets {})",
            self.device,
            self.quota,
            ByteSize(self.used),
            UtcMinute(self.resets_at)
        )
    }
}

/// Each paired device's slices charged ahead, per direction, shared by its transfer streams.
#[derive(Debug)]
pub(crate) struct Meters {
    registry: DeviceRegistry,
    slots: Mutex<HashMap<(NodeId, QuotaDirection), Slot>>,
}

/// What a device's streams of one direction hold charged and not yet moved.
#[derive(Debug, Default)]
struct Slot {
    ahead: u64,
    grant: Option<BandwidthGrant>,
    streams: usize,
}

impl Meters {
    pub(crate) fn new(registry: DeviceRegistry) -> Arc<Self> {
        Arc::new(Meters {
            registry,
            slots: Mutex::default(),
        })
    }

    /// Wraps one half of a transfer stream with `node`: what it reads counts as received,
    /// what it writes as sent.
    pub(crate) fn meter<S>(self: &Arc<Self>, node: NodeId, inner: S) -> Metered<S> {
        let mut slots = self.slots.lock();
        for direction in [QuotaDirection::Send, QuotaDirection::Receive] {
            slots.entry((node, direction)).or_default().streams += 1;
        }
        Metered {
            inner,
            meters: Arc::clone(self),
            node,
        }
    }

    /// Whether `bytes` more fit in `direction`'s quota with `node` now. What running streams
    /// charged ahead and have not moved yet does not count as used.
    pub(crate) fn admit(
        &self,
        node: NodeId,
        direction: QuotaDirection,
        bytes: u64,
    ) -> Result<(), QuotaExceeded> {
        let Some(device) = self.registry.device(&node).and_then(|d| d.paired) else {
            return Ok(());
        };
        let ahead = self
            .slots
            .lock()
            .get(&(node, direction))
            .map_or(0, |slot| slot.ahead);
        let mut moved = *device.bandwidth.account(direction);
        moved.used = moved.used.saturating_sub(ahead);
        moved
            .admit(bytes, SystemTime::now())
            .map_err(|refusal| self.exceeded(node, direction, refusal, Some(bytes)))
    }

    /// Takes up to `want` bytes of `direction` for a stream with `node`, charging a slice
    /// ahead when what is held is short: how many it may move now.
    fn take(&self, node: NodeId, direction: QuotaDirection, want: u64) -> io::Result<u64> {
        let mut slots = self.slots.lock();
        let slot = slots.entry((node, direction)).or_default();
        if slot.ahead < want {
            let asked = SLICE.max(want - slot.ahead);
            let now = SystemTime::now();
            match self.registry.charge_bandwidth(node, direction, asked, now) {
                Ok(Ok(grant)) => {
                    slot.ahead = slot.ahead.saturating_add(grant.bytes);
                    slot.grant = Some(grant);
                }
                Ok(Err(refusal)) if slot.ahead == 0 => {
                    let exceeded = self.exceeded(node, direction, refusal, None);
                    return Err(io::Error::other(exceeded));
                }
                Ok(Err(_)) => {}
                Err(error) => return Err(io::Error::other(error)),
            }
        }
        let granted = want.min(slot.ahead);
        slot.ahead -= granted;
        Ok(granted)
    }

    /// Gives back `bytes` taken and not moved.
    fn give_back(&self, node: NodeId, direction: QuotaDirection, bytes: u64) {
        if let Some(slot) = self.slots.lock().get_mut(&(node, direction)) {
            slot.ahead = slot.ahead.saturating_add(bytes);
        }
    }

    /// One of `node`'s streams ended; the last one gives back what was charged and not moved.
    fn release(&self, node: NodeId) {
        let mut slots = self.slots.lock();
        for direction in [QuotaDirection::Send, QuotaDirection::Receive] {
            let Some(slot) = slots.get_mut(&(node, direction)) else {
                continue;
            };
            slot.streams = slot.streams.saturating_sub(1);
            if slot.streams > 0 {
                continue;
            }
            if let Some(grant) = slot.grant.filter(|_| slot.ahead > 0) {
                let refunded = self
                    .registry
                    .refund_bandwidth(node, direction, slot.ahead, &grant);
                if let Err(error) = refunded {
                    tracing::warn!(%error, "could not give back a bandwidth slice");
                }
            }
            slots.remove(&(node, direction));
        }
    }

    fn exceeded(
        &self,
        node: NodeId,
        direction: QuotaDirection,
        refusal: BandwidthRefusal,
        needed: Option<u64>,
    ) -> QuotaExceeded {
        let device = self
            .registry
            .device(&node)
            .and_then(|d| d.paired)
            .map_or_else(
                || node.fmt_short(),
                |paired| paired.info.device_name.to_string(),
            );
        QuotaExceeded {
            node_id: node,
            device,
            direction,
            quota: refusal.quota,
            used: refusal.used,
            resets_at: refusal.resets_at,
            needed,
        }
    }
}

/// The receiver's check of an offer against the sending device's receive quota.
impl ReceiveBudget for Meters {
    fn admit(&self, peer: &NodeId, bytes: u64) -> Result<(), BudgetRefusal> {
        Meters::admit(self, *peer, QuotaDirection::Receive, bytes).map_err(|exceeded| {
            BudgetRefusal::new(exceeded.quota.bytes, exceeded.used, exceeded.resets_at)
        })
    }
}

/// The quota a transfer's failure reached part-way, if that is why it failed.
pub(crate) fn reached(error: &tether_transfer::TransferError) -> Option<QuotaExceeded> {
    match error {
        tether_transfer::TransferError::Link(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<QuotaExceeded>())
            .cloned(),
        _ => None,
    }
}

/// One half of a transfer stream, counted against its device's quotas.
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    meters: Arc<Meters>,
    node: NodeId,
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.meters.release(self.node);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let want = buf.remaining() as u64;
        if want == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let direction = QuotaDirection::Receive;
        let allowed = this.meters.take(this.node, direction, want)?;
        let polled = if allowed == want {
            let before = buf.filled().len();
            let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
            polled.map_ok(|()| (buf.filled().len() - before) as u64)
        } else {
            // Only at the quota's end: read no more than is left.
            let mut part = vec![0u8; usize::try_from(allowed).unwrap_or(0)];
            let mut limited = ReadBuf::new(&mut part);
            let polled = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
            let read = limited.filled().len();
            buf.put_slice(limited.filled());
            polled.map_ok(|()| read as u64)
        };
        let read = match polled {
            Poll::Ready(Ok(read)) => read,
            other => {
                this.meters.give_back(this.node, direction, allowed);
                return other.map_ok(|_| ());
            }
        };
        this.meters
            .give_back(this.node, direction, allowed.saturating_sub(read));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        let direction = QuotaDirection::Send;
        let allowed = this.meters.take(this.node, direction, buf.len() as u64)?;
        let part = buf
            .get(..usize::try_from(allowed).unwrap_or(0))
            .unwrap_or_default();
        let polled = Pin::new(&mut this.inner).poll_write(cx, part);
        let written = match &polled {
            Poll::Ready(Ok(written)) => *written as u64,
            _ => 0,
        };
        this.meters
            .give_back(this.node, direction, allowed.saturating_sub(written));
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
