//! What [`read_hello`](crate::read_hello) read: an offer not yet answered, or an extra lane.

use uuid::Uuid;

use crate::protocol::{LaneHello, Offer};

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
    pub(crate) stream: S,
    pub(crate) hello: LaneHello,
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
