//! `DeviceHandle`, and small helpers the service shares.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use iroh::endpoint::Connection;
use tether_identity::NodeId;
use tether_iroh::{ConnectionInfo, PathKind};
use tether_wire::{NetworkMessage, Ping};

use super::NetworkingService;
use crate::error::short;
use crate::{ConnectionState, NetworkError};

/// A paired device, for sending it messages.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    pub(super) service: NetworkingService,
    pub(super) node_id: NodeId,
}

impl DeviceHandle {
    /// The device's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Sends a message and waits for the answer (`Ack`, `Pong`, an `Error` reply, ...).
    pub async fn send_message(
        &self,
        message: NetworkMessage,
    ) -> Result<NetworkMessage, NetworkError> {
        self.service.send_message(self.node_id, message).await
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
                node: short(&self.node_id),
                reason: format!("answered a ping with {other:?}"),
            }),
        }
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

/// The peer's direct address on this connection, if the selected path is direct.
pub(crate) fn remote_ip(connection: &Connection) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for path in connection.paths().iter() {
        if let iroh::TransportAddr::Ip(addr) = path.remote_addr() {
            if path.is_selected() {
                addrs.insert(0, *addr);
            } else {
                addrs.push(*addr);
            }
        }
    }
    addrs
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn create_private_dir(dir: &std::path::Path) -> Result<(), NetworkError> {
    std::fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
        path: dir.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| NetworkError::Io {
                path: dir.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}
