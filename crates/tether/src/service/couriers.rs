//! What the outbox's couriers share (`outbox.rs` runs them): which run, which were poked,
//! when each device is due again, and the entries being sent now.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use parking_lot::Mutex;
use tether_identity::NodeId;
use tokio_util::sync::CancellationToken;

/// Which couriers run, and when each device is due again.
#[derive(Debug, Default)]
pub(super) struct Couriers {
    pub(super) state: Mutex<CourierState>,
}

#[derive(Debug, Default)]
pub(super) struct CourierState {
    /// Devices whose courier runs.
    pub(super) busy: HashSet<NodeId>,
    /// Devices that connected (or had an entry queued) while their courier ran.
    pub(super) poked: HashSet<NodeId>,
    /// When a device whose last round failed is due again, and how many rounds failed.
    pub(super) backoff: HashMap<NodeId, (Instant, u32)>,
    /// The entries being sent now, to stop when cancelled.
    pub(super) in_flight: HashMap<u64, CancellationToken>,
}
