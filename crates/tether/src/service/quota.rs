//! Bandwidth quotas per paired device and direction: set, clear and read them, and their use.

use std::time::SystemTime;

use tether_identity::NodeId;
use tether_registry::{BandwidthQuota, BandwidthUse, QuotaDirection};

use super::core::NetworkingService;
use super::device::DeviceHandle;
use crate::NetworkError;

/// A paired device's bandwidth quotas and their use in the current period, per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferQuotas {
    /// What this device sends to the device (pushes, and pulls it serves).
    pub send: BandwidthUse,
    /// What this device receives from the device (its pushes, and pulls asked of it).
    pub receive: BandwidthUse,
}

impl TransferQuotas {
    /// The use of `direction`.
    pub fn of(&self, direction: QuotaDirection) -> BandwidthUse {
        match direction {
            QuotaDirection::Send => self.send,
            QuotaDirection::Receive => self.receive,
        }
    }
}

impl NetworkingService {
    /// Sets (`Some`) or clears (`None`) a paired device's bandwidth quota for one direction:
    /// at most so many bytes on the wire of transfers per period. Stored with the device. A new
    /// amount over the same period keeps the period and its use; another period, or a quota
    /// where there was none, starts over, and the next transfer starts a period (it resets
    /// one period later).
    /// A transfer that would pass it is refused before it starts, one that reaches it stops,
    /// both with [`NetworkError::BandwidthQuota`].
    pub fn set_bandwidth_quota(
        &self,
        node_id: NodeId,
        direction: QuotaDirection,
        quota: Option<BandwidthQuota>,
    ) -> Result<(), NetworkError> {
        self.inner
            .registry
            .set_bandwidth_quota(node_id, direction, quota)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))
    }

    /// A paired device's bandwidth quotas and their use now; `None` when it is not paired.
    pub fn bandwidth(&self, node_id: NodeId) -> Option<TransferQuotas> {
        let device = self.inner.registry.device(&node_id)?.paired?;
        let now = SystemTime::now();
        Some(TransferQuotas {
            send: device.bandwidth.send.usage(now),
            receive: device.bandwidth.receive.usage(now),
        })
    }
}

impl DeviceHandle {
    /// Sets or clears the device's bandwidth quota for one direction
    /// ([`NetworkingService::set_bandwidth_quota`]).
    pub fn set_bandwidth_quota(
        &self,
        direction: QuotaDirection,
        quota: Option<BandwidthQuota>,
    ) -> Result<(), NetworkError> {
        self.service
            .set_bandwidth_quota(self.node_id, direction, quota)
    }

    /// The device's bandwidth quotas and their use now; `None` once it is unpaired.
    pub fn bandwidth(&self) -> Option<TransferQuotas> {
        self.service.bandwidth(self.node_id)
    }
}
