//! `NetworkEvent`: what the service tells the application.

use tether_identity::{DeviceInfo, NodeId};
use tether_iroh::PathKind;
use tether_wire::NetworkMessage;

/// Something that happened, for an app's UI or log. Subscribe with
/// [`crate::NetworkingService::subscribe`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// A device was seen by a discovery service.
    DeviceDiscovered {
        /// Its claimed key.
        node_id: NodeId,
        /// Which discovery saw it.
        source: &'static str,
    },
    /// A device paired with this one.
    Paired {
        /// Who.
        device: DeviceInfo,
        /// The six-digit code both screens show.
        verification_code: String,
    },
    /// A pairing attempt failed.
    PairingFailed {
        /// Why, for people.
        reason: String,
    },
    /// A paired device connected (either side dialled).
    Connected {
        /// Who.
        node_id: NodeId,
        /// Direct or relayed.
        path: PathKind,
    },
    /// A paired device's connection ended.
    Disconnected {
        /// Who.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// A paired device sent a message that is not an answer to one of ours.
    MessageReceived {
        /// Who.
        from: NodeId,
        /// What.
        message: NetworkMessage,
    },
    /// A transfer from a paired device finished; every file is verified and in place.
    TransferReceived {
        /// Who sent it.
        from: NodeId,
        /// The receiver's account of it.
        report: tether_transfer::TransferReport,
    },
    /// A device was unpaired.
    Unpaired {
        /// Who.
        node_id: NodeId,
    },
}
