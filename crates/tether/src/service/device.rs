//! [`DeviceHandle`]: one paired device and everything to do with it.

use std::time::Duration;

use tether_identity::{DeviceId, DeviceName, NodeId};
use tether_iroh::{ConnectionInfo, PathKind};
use tether_registry::PairedDevice as StoredDevice;
use tether_wire::{NetworkMessage, Ping};

use super::clock::now_ms;
use super::core::NetworkingService;
use crate::{ConnectionState, NetworkError, TransferHandle, TransferOptions};

/// One paired device and everything to do with it: messages, transfers both ways, its
/// connection, and renaming, blocking and unpairing it. From
/// [`NetworkingService::device`] (by node id) or [`NetworkingService::device_by_id`].
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    pub(super) service: NetworkingService,
    pub(super) node_id: NodeId,
}

impl NetworkingService {
    /// A paired device's handle (blocked ones included, to unblock them): messages, transfers
    /// both ways, its connection, and renaming, blocking and unpairing it.
    pub fn device(&self, node_id: NodeId) -> Result<DeviceHandle, NetworkError> {
        self.check_paired(node_id)?;
        Ok(DeviceHandle {
            service: self.clone(),
            node_id,
        })
    }

    /// A paired device's handle, found by the device id it paired with (the app's id for it,
    /// see [`Builder::device_id`](crate::Builder::device_id)).
    pub fn device_by_id(&self, device_id: DeviceId) -> Result<DeviceHandle, NetworkError> {
        let node_id = self
            .inner
            .registry
            .device_by_id(&device_id)
            .filter(|device| device.paired.is_some())
            .map(|device| device.node_id)
            .ok_or_else(|| NetworkError::UnknownDevice(device_id.to_string()))?;
        self.device(node_id)
    }
}

impl DeviceHandle {
    /// The device's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// What this device keeps about it (name, device id, trust, quota, addresses); `None`
    /// once it is unpaired.
    pub fn info(&self) -> Option<StoredDevice> {
        self.service
            .inner
            .registry
            .device(&self.node_id)
            .and_then(|device| device.paired)
    }

    /// Its transfers with this device, newest first, at most `limit` (see
    /// [`NetworkingService::transfer_history`]).
    pub fn transfer_history(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::TransferRecord>, NetworkError> {
        self.service.transfer_history(Some(self.node_id), limit)
    }

    /// The id the device paired with.
    pub fn device_id(&self) -> Option<DeviceId> {
        self.info().map(|stored| stored.info.device_id)
    }

    /// Sends files and directories to it (see [`NetworkingService::share_with_device`]).
    pub async fn send_files(
        &self,
        paths: &[std::path::PathBuf],
        options: TransferOptions,
    ) -> Result<TransferHandle, NetworkError> {
        self.service
            .share_with_device(self.node_id, paths, options)
            .await
    }

    /// Renames it, here (see [`NetworkingService::rename_device`]).
    pub fn rename(&self, name: DeviceName) -> Result<(), NetworkError> {
        self.service.rename_device(self.node_id, name)
    }

    /// Receives its files without asking, or stops (see
    /// [`NetworkingService::set_auto_accept`]).
    pub fn set_auto_accept(&self, on: bool) -> Result<(), NetworkError> {
        self.service.set_auto_accept(self.node_id, on)
    }

    /// Blocks it (see [`NetworkingService::block`]).
    pub fn block(&self) -> Result<(), NetworkError> {
        self.service.block(self.node_id)
    }

    /// Unblocks it.
    pub fn unblock(&self) -> Result<(), NetworkError> {
        self.service.unblock(self.node_id)
    }

    /// Unpairs it (see [`NetworkingService::unpair`]); the handle is of no use after.
    pub fn unpair(&self) -> Result<(), NetworkError> {
        self.service.unpair(self.node_id)
    }

    /// Sends a message and waits for the answer (`Ack`, `Pong`, an `Error` reply, ...).
    pub async fn send_message(
        &self,
        message: NetworkMessage,
    ) -> Result<NetworkMessage, NetworkError> {
        self.service.send_message(self.node_id, message).await
    }

    /// Sends a short text (see [`NetworkingService::send_text`]).
    pub async fn send_text(&self, text: impl Into<String>) -> Result<(), NetworkError> {
        self.service.send_text(self.node_id, text).await
    }

    /// Measures a round trip of an encrypted `Ping`.
    pub async fn ping(&self) -> Result<Duration, NetworkError> {
        let started = std::time::Instant::now();
        match self
            .send_message(NetworkMessage::Ping(Ping {
                timestamp_ms: now_ms(),
            }))
            .await?
        {
            NetworkMessage::Pong(_) => Ok(started.elapsed()),
            other => Err(NetworkError::ProtocolViolation {
                node: self.node_id,
                reason: format!("answered a ping with {other:?}"),
            }),
        }
    }

    /// Opens a connection to the device on a third-party protocol's ALPN (see
    /// [`NetworkingService::connect_protocol`]).
    pub async fn connect_protocol(
        &self,
        alpn: &[u8],
    ) -> Result<tether_protocol::Connection, NetworkError> {
        self.service.connect_protocol(self.node_id, alpn).await
    }

    /// The state of the connection to the device: connecting, connected (in use), idle,
    /// closing or closed.
    pub fn connection_state(&self) -> ConnectionState {
        self.service.connection_state(self.node_id)
    }

    /// The connection's path and round trip, if connected.
    pub fn connection_info(&self) -> Option<ConnectionInfo> {
        self.service.connection_info(self.node_id)
    }

    /// Whether the device's connection uses a direct path.
    pub fn is_direct(&self) -> bool {
        self.connection_info()
            .is_some_and(|info| info.path == PathKind::Direct)
    }
}
