//! The [`Receiver`] and its shared state: running transfers' lane slots, the targets they
//! write, and the offers being answered per device, each released by a guard.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use tether_identity::NodeId;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{PeerError, TransferError, UsageError};
use crate::link::ByteStream;
use crate::options::ReceiverConfig;
use crate::protocol::LaneHello;
use crate::receive::data::AttachedLane;
use crate::receive::incoming::IncomingLane;

/// Receives transfers into one destination; clone it freely (clones share state).
#[derive(Clone, Debug)]
pub struct Receiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ReceiverConfig,
    /// Running transfers that take extra lanes.
    lanes: Mutex<HashMap<Uuid, LaneSlot>>,
    /// Targets some running transfer is writing, by [`TargetKey`].
    busy: Mutex<HashSet<TargetKey>>,
    /// Offers being answered (manifest read, checks, consent), by device.
    offers: Mutex<HashMap<NodeId, usize>>,
}

/// A target path as 16 bytes of its BLAKE3 hash: a running transfer's claim costs this much
/// per file, however long the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TargetKey([u8; 16]);

impl TargetKey {
    pub(crate) fn of(target: &Path) -> Self {
        let hash = blake3::hash(target.as_os_str().as_encoded_bytes());
        let mut key = [0; 16];
        key.copy_from_slice(hash.as_bytes().get(..16).unwrap_or(&[0; 16]));
        TargetKey(key)
    }
}

#[derive(Debug)]
struct LaneSlot {
    peer: NodeId,
    lanes: u8,
    seen: HashSet<u8>,
    tx: mpsc::Sender<AttachedLane>,
}

impl Receiver {
    /// A receiver with `config`.
    pub fn new(config: ReceiverConfig) -> Self {
        Receiver {
            inner: Arc::new(Inner {
                config,
                lanes: Mutex::new(HashMap::new()),
                busy: Mutex::new(HashSet::new()),
                offers: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReceiverConfig {
        &self.inner.config
    }

    /// Hands an extra stream to the running transfer it names.
    pub fn attach<S: ByteStream>(
        &self,
        lane: IncomingLane<S>,
        peer: NodeId,
    ) -> Result<(), TransferError> {
        let LaneHello { transfer_id, index } = lane.hello;
        let mut lanes = self.inner.lanes.lock();
        let refused = || TransferError::from(UsageError::NoSuchTransfer(transfer_id));
        let slot = lanes.get_mut(&transfer_id).ok_or_else(refused)?;
        if slot.peer != peer || index == 0 || index >= slot.lanes || !slot.seen.insert(index) {
            return Err(refused());
        }
        slot.tx
            .try_send(AttachedLane {
                index,
                stream: Box::new(lane.stream),
            })
            .map_err(|_| refused())
    }

    /// Registers a running transfer's lane slot; the guard removes it. Refused while another
    /// transfer with the same id runs.
    pub(super) fn open_lanes(
        &self,
        transfer_id: Uuid,
        peer: NodeId,
        lanes: u8,
    ) -> Result<(LaneGuard, mpsc::Receiver<AttachedLane>), TransferError> {
        let (tx, rx) = mpsc::channel(usize::from(lanes.max(1)));
        let slot = LaneSlot {
            peer,
            lanes,
            seen: HashSet::new(),
            tx,
        };
        let mut slots = self.inner.lanes.lock();
        if slots.contains_key(&transfer_id) {
            return Err(PeerError::Protocol("a transfer with this id is already running").into());
        }
        slots.insert(transfer_id, slot);
        Ok((
            LaneGuard {
                inner: self.inner.clone(),
                transfer_id,
            },
            rx,
        ))
    }

    /// Claims `targets` for one transfer; if another running transfer writes one of them,
    /// returns its index.
    pub(super) fn claim_targets(&self, targets: Vec<TargetKey>) -> Result<BusyGuard, usize> {
        let mut busy = self.inner.busy.lock();
        if let Some(taken) = targets.iter().position(|t| busy.contains(t)) {
            return Err(taken);
        }
        busy.extend(targets.iter().copied());
        Ok(BusyGuard {
            inner: self.inner.clone(),
            targets,
        })
    }

    /// Counts an offer from `peer` until the guard is dropped; refused when the device has
    /// [`ReceiverConfig::max_offers_per_peer`] offers being answered already.
    pub(super) fn claim_offer(&self, peer: NodeId) -> Result<OfferGuard, TransferError> {
        let max = self.inner.config.max_offers_per_peer.max(1);
        let mut offers = self.inner.offers.lock();
        let count = offers.entry(peer).or_insert(0);
        if *count >= max {
            return Err(PeerError::TooManyOffers { max }.into());
        }
        *count += 1;
        Ok(OfferGuard {
            inner: self.inner.clone(),
            peer,
        })
    }
}

/// Ends the count of one offer from a device once it is answered.
pub(super) struct OfferGuard {
    inner: Arc<Inner>,
    peer: NodeId,
}

impl Drop for OfferGuard {
    fn drop(&mut self) {
        let mut offers = self.inner.offers.lock();
        if let Some(count) = offers.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                offers.remove(&self.peer);
            }
        }
    }
}

/// Removes a transfer's lane slot when the transfer ends.
pub(super) struct LaneGuard {
    inner: Arc<Inner>,
    transfer_id: Uuid,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.inner.lanes.lock().remove(&self.transfer_id);
    }
}

/// Releases a transfer's targets when the transfer ends.
pub(super) struct BusyGuard {
    inner: Arc<Inner>,
    targets: Vec<TargetKey>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut busy = self.inner.busy.lock();
        for target in &self.targets {
            busy.remove(target);
        }
    }
}
