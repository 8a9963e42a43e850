//! Tether's node ids as iroh's endpoint ids.

use iroh::EndpointId;
use tether_identity::NodeId;

use crate::TransportError;

/// The iroh endpoint id of `node_id` (the same Ed25519 public key).
pub(crate) fn iroh_id(node_id: &NodeId) -> Result<EndpointId, TransportError> {
    EndpointId::from_bytes(node_id.as_bytes()).map_err(|_| TransportError::InvalidNodeId)
}
