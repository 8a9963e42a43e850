//! The receiving side: a [`Receiver`] that takes incoming streams, asks for consent, and receives
//! into its destination.
//!
//! Every stream of the transfer protocol starts with one message. [`read_hello`] reads it: an
//! `Offer` starts a transfer ([`Receiver::receive`] runs it to the end), a `Lane` joins a
//! running transfer as an extra data stream ([`Receiver::attach`]). A lane is accepted only for
//! a transfer that is running, from the same peer, with an index the offer announced.

mod data;
pub(crate) mod dest;
pub(crate) mod disk;
mod offer;
mod plan;
mod requester;
mod room;
mod session;
mod setup;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use tether_identity::NodeId;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{ByteStream, eof, read_frame_from};
use crate::options::{ReceiverConfig, RunContext};
use crate::progress::TransferReport;
use crate::protocol::{LaneHello, MAX_PULL_REQUEST_LEN, Message, Offer};
use data::AttachedLane;

/// The first message of a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Hello<S> {
    /// A new transfer is offered.
    Offer(IncomingOffer<S>),
    /// An extra stream for a running transfer.
    Lane(IncomingLane<S>),
    /// A device asks this one to send it an entry (see [`crate::IncomingPull`]).
    Pull(crate::IncomingPull<S>),
}

/// An offer read from a stream, not yet answered.
#[derive(Debug)]
pub struct IncomingOffer<S> {
    pub(crate) stream: S,
    pub(crate) offer: Offer,
}

impl<S> IncomingOffer<S> {
    /// The transfer's id; derive the per-transfer keys from it when [`encrypted`](Self::encrypted).
    pub fn transfer_id(&self) -> Uuid {
        self.offer.transfer_id
    }

    /// Whether data frames will be sealed (the receiver then needs per-transfer keys).
    pub fn encrypted(&self) -> bool {
        self.offer.encrypted
    }

    /// Entries announced.
    pub fn entries(&self) -> u64 {
        self.offer.entries
    }

    /// File bytes announced.
    pub fn total_bytes(&self) -> u64 {
        self.offer.total_bytes
    }

    /// Streams the sender will use, the control stream included.
    pub fn lanes(&self) -> u8 {
        self.offer.lanes
    }
}

/// An extra stream announcing which transfer it belongs to.
#[derive(Debug)]
pub struct IncomingLane<S> {
    stream: S,
    hello: LaneHello,
}

impl<S> IncomingLane<S> {
    /// The transfer it belongs to.
    pub fn transfer_id(&self) -> Uuid {
        self.hello.transfer_id
    }

    /// Its index among the transfer's streams (1 or more).
    pub fn index(&self) -> u8 {
        self.hello.index
    }
}

/// Reads the first message of a stream of the transfer protocol.
pub async fn read_hello<S: ByteStream>(mut stream: S) -> Result<Hello<S>, TransferError> {
    let frame = read_frame_from(&mut stream).await?.ok_or_else(eof)?;
    match Message::from_frame(&frame)? {
        Message::Offer(offer) => Ok(Hello::Offer(IncomingOffer { stream, offer })),
        Message::Lane(hello) => Ok(Hello::Lane(IncomingLane { stream, hello })),
        Message::Pull(request) if frame.payload().len() <= MAX_PULL_REQUEST_LEN => {
            Ok(Hello::Pull(crate::IncomingPull::new(stream, request)))
        }
        Message::Pull(_) => Err(PeerError::Protocol("a pull request over its size cap").into()),
        _ => Err(PeerError::Protocol("a stream must start with Offer, Lane or Pull").into()),
    }
}

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

impl std::fmt::Debug for AttachedLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedLane")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
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

    /// Runs an offered transfer from `peer` to the end: checks, consent, resume, data, finalising.
    ///
    /// `peer` must be the connection's authenticated identity; lanes are only accepted from it.
    /// For an encrypted offer, `ctx.keys` must hold the per-transfer keys derived with
    /// [`IncomingOffer::transfer_id`].
    pub async fn receive<S: ByteStream>(
        &self,
        offer: IncomingOffer<S>,
        peer: NodeId,
        ctx: RunContext,
    ) -> Result<TransferReport, TransferError> {
        session::run(self, offer.stream, offer.offer, peer, ctx).await
    }

    /// Hands an extra stream to the running transfer it names.
    pub fn attach<S: ByteStream>(
        &self,
        lane: IncomingLane<S>,
        peer: NodeId,
    ) -> Result<(), TransferError> {
        let LaneHello { transfer_id, index } = lane.hello;
        let mut lanes = self
            .inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    fn open_lanes(
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
        let mut slots = self
            .inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    fn claim_targets(&self, targets: Vec<TargetKey>) -> Result<BusyGuard, usize> {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
    fn claim_offer(&self, peer: NodeId) -> Result<OfferGuard, TransferError> {
        let max = self.inner.config.max_offers_per_peer.max(1);
        let mut offers = self
            .inner
            .offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
struct OfferGuard {
    inner: Arc<Inner>,
    peer: NodeId,
}

impl Drop for OfferGuard {
    fn drop(&mut self) {
        let mut offers = self
            .inner
            .offers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = offers.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                offers.remove(&self.peer);
            }
        }
    }
}

/// Removes a transfer's lane slot when the transfer ends.
struct LaneGuard {
    inner: Arc<Inner>,
    transfer_id: Uuid,
}

impl Drop for LaneGuard {
    fn drop(&mut self) {
        self.inner
            .lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.transfer_id);
    }
}

/// Releases a transfer's targets when the transfer ends.
struct BusyGuard {
    inner: Arc<Inner>,
    targets: Vec<TargetKey>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut busy = self
            .inner
            .busy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for target in &self.targets {
            busy.remove(target);
        }
    }
}

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LocalError::task_failed("a blocking task", e).into())
}
