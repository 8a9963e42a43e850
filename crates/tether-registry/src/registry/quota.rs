//! Storage quotas: how many bytes each paired device may store here, and the count of what
//! it has stored, kept with the device in `secrets.redb`.

use tether_identity::NodeId;

use super::DeviceRegistry;
use super::refusal::StorageRefusal;
use crate::{PairedDevice, RegistryError};

impl DeviceRegistry {
    /// Sets the most bytes a paired device may store here (`None`: the app's default).
    pub fn set_quota(&self, node_id: NodeId, quota: Option<u64>) -> Result<(), RegistryError> {
        self.update_stored(node_id, |device| device.quota = quota)
    }

    /// Starts a paired device's stored-bytes count over at zero (the person cleared space).
    pub fn reset_stored_bytes(&self, node_id: NodeId) -> Result<(), RegistryError> {
        self.update_stored(node_id, |device| device.stored_bytes = 0)
    }

    /// Counts `bytes` against a paired device's quota (its own, else `default`), persistently:
    /// `Ok(Err(used))` when they do not fit in what is left (nothing counted), `Ok(Ok(()))`
    /// when they do or the device has no quota. Check and count are one step under the
    /// store's lock, so offers at once never both take the last room.
    pub fn charge_storage(
        &self,
        node_id: NodeId,
        bytes: u64,
        default: Option<u64>,
    ) -> Result<Result<(), StorageRefusal>, RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        let used = updated.device.stored_bytes;
        let total = used.saturating_add(bytes);
        if let Some(quota) = updated.device.quota.or(default).filter(|q| total > *q) {
            return Ok(Err(StorageRefusal { quota, used }));
        }
        updated.device.stored_bytes = total;
        self.opened(&store)?.put(&updated)?;
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.stored = Some(updated);
        }
        Ok(Ok(()))
    }

    pub(super) fn update_stored(
        &self,
        node_id: NodeId,
        change: impl FnOnce(&mut PairedDevice),
    ) -> Result<(), RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        change(&mut updated.device);
        self.opened(&store)?.put(&updated)?;
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.stored = Some(updated);
        }
        Ok(())
    }
}
