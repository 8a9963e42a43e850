//! A paired device's own renames, and which of ours it acknowledged (see [`crate::NameSync`]).

use tether_identity::{DeviceName, NodeId};

use super::DeviceRegistry;
use crate::{RegistryError, RegistryEvent};

impl DeviceRegistry {
    /// Takes in a rename the device made of itself, stamped `changed_ms` (its update's
    /// signature already checked against `node_id`). Returns the name now shown for it when
    /// that changed: `None` for a stamp no newer than the last one taken (a replay or an
    /// update that arrived late), or when the person renamed the device here.
    pub fn apply_own_rename(
        &self,
        node_id: NodeId,
        name: DeviceName,
        changed_ms: u64,
    ) -> Result<Option<DeviceName>, RegistryError> {
        let shown = self.update(node_id, |device| {
            if changed_ms <= device.names.changed_ms {
                return false;
            }
            device.names.changed_ms = changed_ms;
            if device.names.named_here {
                return false;
            }
            device.info.device_name = name.clone();
            true
        })?;
        if !shown {
            return Ok(None);
        }
        self.emit(RegistryEvent::Renamed {
            node_id,
            name: name.clone(),
        });
        Ok(Some(name))
    }

    /// Records that the device acknowledged our rename stamped `changed_ms`.
    pub fn told_name(&self, node_id: NodeId, changed_ms: u64) -> Result<(), RegistryError> {
        self.update(node_id, |device| {
            device.names.told_ms = device.names.told_ms.max(changed_ms);
        })
    }
}
