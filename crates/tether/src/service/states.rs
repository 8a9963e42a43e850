//! The state of each device's connection, as the pool sees it.

use tether_identity::NodeId;
use tether_iroh::ConnectionInfo;
use tether_wire::Encoding;

use super::core::NetworkingService;
use crate::ConnectionState;
use crate::close::CLOSE_NORMAL;

impl NetworkingService {
    /// The state of the connection to a device (see [`ConnectionState`] for what counts as
    /// in use).
    pub fn connection_state(&self, node_id: NodeId) -> ConnectionState {
        self.inner.pool.state_of(&node_id)
    }

    /// Every paired device's connection state.
    pub fn connection_states(&self) -> Vec<(NodeId, ConnectionState)> {
        self.paired_devices()
            .into_iter()
            .map(|device| (device.node_id, self.connection_state(device.node_id)))
            .collect()
    }

    /// The live connection's path and round trip, if connected.
    pub fn connection_info(&self, node_id: NodeId) -> Option<ConnectionInfo> {
        self.inner
            .pool
            .live_link(&node_id)
            .map(|link| ConnectionInfo::of(&link.connection))
    }

    /// The encoding of the control messages on the live connection to a device, if
    /// connected: [`Encoding::Binary`] when both devices speak it (and
    /// [`NetworkingConfig::binary_messages`](crate::NetworkingConfig::binary_messages) is on at
    /// both), [`Encoding::Json`] otherwise. The session handshake chose it, and both
    /// directions use it.
    pub fn message_encoding(&self, node_id: NodeId) -> Option<Encoding> {
        self.inner
            .pool
            .live_link(&node_id)
            .map(|link| link.encoding())
    }

    /// Closes the connection to a device now, if there is one (it stays paired: the next
    /// message or transfer either way dials again). Requests waiting on it fail on this side;
    /// the device's own requests on it are sent again on a new connection and answered once.
    /// Whether a connection was open.
    pub fn disconnect(&self, node_id: NodeId) -> bool {
        match self.inner.pool.live_link(&node_id) {
            Some(link) => {
                self.close_link(&link, CLOSE_NORMAL, "closed by the application");
                true
            }
            None => false,
        }
    }
}
