//! Trust in paired devices: blocking, unblocking and unpairing, and closing what they hold.

use tether_identity::NodeId;
use tether_registry::TrustLevel;

use super::core::NetworkingService;
use crate::gate::{CLOSE_BLOCKED, CLOSE_REVOKED};
use crate::{ConnectionState, NetworkError, NetworkEvent};

impl NetworkingService {
    /// Blocks a paired device: it stays paired, but every connection from or to it is refused
    /// until [`Self::unblock`]; its live connections are closed now.
    pub fn block(&self, node_id: NodeId) -> Result<(), NetworkError> {
        self.set_trust(node_id, TrustLevel::Blocked)?;
        if self.close_all(node_id, CLOSE_BLOCKED, "blocked") {
            // The link left the pool here, so its watch task does not report its end.
            let _ = self.inner.events.send(NetworkEvent::Disconnected {
                node_id,
                reason: "blocked".to_owned(),
            });
            self.report_state(node_id, ConnectionState::Closed);
        }
        Ok(())
    }

    /// Lets a blocked device connect again.
    pub fn unblock(&self, node_id: NodeId) -> Result<(), NetworkError> {
        self.set_trust(node_id, TrustLevel::Trusted)
    }

    /// `DeviceNotPaired` unless the registry holds a pairing with `node_id` (blocked or not).
    pub(super) fn check_paired(&self, node_id: NodeId) -> Result<(), NetworkError> {
        let paired = self
            .inner
            .registry
            .device(&node_id)
            .is_some_and(|device| device.paired.is_some());
        if paired {
            Ok(())
        } else {
            Err(NetworkError::DeviceNotPaired(node_id))
        }
    }

    /// Sets a paired device's trust: not paired is `DeviceNotPaired`, a failed write its error.
    fn set_trust(&self, node_id: NodeId, trust: TrustLevel) -> Result<(), NetworkError> {
        self.check_paired(node_id)?;
        self.inner.registry.set_trust(node_id, trust)?;
        Ok(())
    }

    /// Unpairs a device: forgets its secret, refuses it from now on, and closes its live
    /// connections.
    pub fn unpair(&self, node_id: NodeId) -> Result<(), NetworkError> {
        // Revoke first, then empty the pool: the pool checks the registry under its lock
        // before it takes a connection in, so one set up meanwhile is either refused there or
        // closed here.
        self.inner.registry.revoke(node_id)?;
        let _ = self.close_all(node_id, CLOSE_REVOKED, "unpaired");
        // Its answers kept for repeats go too.
        self.inner.answers.lock().forget_peer(node_id);
        let _ = self.inner.events.send(NetworkEvent::Unpaired { node_id });
        Ok(())
    }

    /// Closes the device's pooled link and every other connection to it; whether a link was
    /// pooled.
    fn close_all(&self, node_id: NodeId, code: u32, reason: &'static str) -> bool {
        let (link, connections) = self.inner.pool.take(&node_id);
        let had_link = link.is_some();
        if let Some(link) = link {
            self.close_link(&link, code, reason);
        }
        for connection in connections {
            connection.close(code.into(), reason.as_bytes());
        }
        had_link
    }
}
