//! `StorageRefusal`: what a device's quota refused.

/// Why [`DeviceRegistry::charge_storage`](crate::DeviceRegistry::charge_storage) refused: the device's quota and what it had stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageRefusal {
    /// The device's quota (its own or the default).
    pub quota: u64,
    /// Bytes it had stored.
    pub used: u64,
}
