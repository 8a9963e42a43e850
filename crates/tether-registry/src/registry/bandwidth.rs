//! Bandwidth quotas kept with each paired device in `secrets.redb`: set them, and count use
//! against them persistently (see [`crate::BandwidthAccount`] for the period arithmetic).

use std::time::SystemTime;

use tether_identity::NodeId;

use super::DeviceRegistry;
use crate::record::StoredDevice;
use crate::{BandwidthGrant, BandwidthQuota, BandwidthRefusal, QuotaDirection, RegistryError};

impl DeviceRegistry {
    /// Sets (or clears, with `None`) the bandwidth quota of one direction for a paired device;
    /// see [`crate::BandwidthAccount::set_quota`] for when its use and period carry over.
    pub fn set_bandwidth_quota(
        &self,
        node_id: NodeId,
        direction: QuotaDirection,
        quota: Option<BandwidthQuota>,
    ) -> Result<(), RegistryError> {
        self.update_stored(node_id, |device| {
            device.bandwidth.account_mut(direction).set_quota(quota);
        })
    }

    /// Counts up to `want` bytes of `direction` against the device's quota at `now`,
    /// persistently before returning: what was granted (all while it fits, the rest of the
    /// quota when less is left), or `Ok(Err(refusal))` when nothing is left. Without a quota
    /// all is granted and nothing written. Check and count are one step under the store's lock.
    pub fn charge_bandwidth(
        &self,
        node_id: NodeId,
        direction: QuotaDirection,
        want: u64,
        now: SystemTime,
    ) -> Result<Result<BandwidthGrant, BandwidthRefusal>, RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        let account = updated.device.bandwidth.account_mut(direction);
        let before = *account;
        let granted = account.charge(want, now);
        if *account != before {
            self.opened(&store)?.put(&updated)?;
            self.cache(node_id, updated);
        }
        Ok(granted)
    }

    /// Gives back `bytes` of a grant that were not used (counted in the grant's period only).
    pub fn refund_bandwidth(
        &self,
        node_id: NodeId,
        direction: QuotaDirection,
        bytes: u64,
        grant: &BandwidthGrant,
    ) -> Result<(), RegistryError> {
        if bytes == 0 || grant.period_start_ms.is_none() {
            return Ok(());
        }
        self.update_stored(node_id, |device| {
            device
                .bandwidth
                .account_mut(direction)
                .refund(bytes, grant.period_start_ms);
        })
    }

    fn cache(&self, node_id: NodeId, updated: StoredDevice) {
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.stored = Some(updated);
        }
    }
}
