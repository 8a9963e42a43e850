//! The receive side's storage rules in the facade: each paired device's quota, counted in the
//! registry (so it survives restarts), and the collection of what interrupted transfers left.

use std::path::Path;

use tether_identity::NodeId;
use tether_registry::DeviceRegistry;
use tether_transfer::{Collected, Leftovers, LocalError, QuotaRefusal, StorageQuota};

/// A [`StorageQuota`] kept with each paired device in the registry: the device's own quota
/// (`tether trust DEVICE --quota`), else the configured default, else none.
pub(crate) struct RegistryQuota {
    pub(crate) registry: DeviceRegistry,
    pub(crate) default: Option<u64>,
}

impl StorageQuota for RegistryQuota {
    fn charge(&self, peer: &NodeId, bytes: u64) -> Result<(), QuotaRefusal> {
        match self.registry.charge_storage(*peer, bytes, self.default) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(refusal)) => Err(QuotaRefusal::exceeded(refusal.quota, refusal.used)),
            Err(error) => {
                tracing::warn!(%error, "could not count a transfer against the device's quota");
                Err(QuotaRefusal::Unavailable)
            }
        }
    }
}

/// Collects the leftovers under `receive_dir` with `rules`: those idle too long, and those of
/// devices the registry no longer holds as paired.
pub(crate) fn collect_leftovers(
    registry: &DeviceRegistry,
    receive_dir: &Path,
    rules: &Leftovers,
) -> Result<Collected, LocalError> {
    let paired = |node: &NodeId| {
        !registry.is_revoked(node)
            && registry
                .device(node)
                .is_some_and(|device| device.paired.is_some())
    };
    rules.collect(receive_dir, &paired)
}
