//! `PeerAddr`: how to reach a device.

use std::net::SocketAddr;

use iroh::{EndpointAddr, RelayUrl, TransportAddr};
use serde::{Deserialize, Serialize};
use tether_identity::NodeId;

use crate::TransportError;

/// A device's id and where it can be reached: direct socket addresses and a relay.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerAddr {
    /// The device's key.
    pub node_id: NodeId,
    /// Direct UDP addresses.
    pub direct: Vec<SocketAddr>,
    /// The relay it is reachable through.
    pub relay_url: Option<RelayUrl>,
}

impl PeerAddr {
    /// An address with only an id (to be completed by discovery).
    pub fn new(node_id: NodeId) -> Self {
        Self {
            node_id,
            direct: Vec::new(),
            relay_url: None,
        }
    }

    /// The same address without direct addresses, so a connection must go through the relay:
    /// for troubleshooting relay paths.
    pub fn relay_only(&self) -> Self {
        Self {
            node_id: self.node_id,
            direct: Vec::new(),
            relay_url: self.relay_url.clone(),
        }
    }

    pub(crate) fn to_iroh(&self) -> Result<EndpointAddr, TransportError> {
        let id = crate::id::iroh_id(&self.node_id)?;
        let mut addr = EndpointAddr::new(id);
        for direct in &self.direct {
            addr = addr.with_ip_addr(*direct);
        }
        if let Some(url) = &self.relay_url {
            addr = addr.with_relay_url(url.clone());
        }
        Ok(addr)
    }

    pub(crate) fn from_iroh(addr: &EndpointAddr) -> Option<Self> {
        let node_id = NodeId::from_bytes(addr.id.as_bytes()).ok()?;
        let mut peer = Self::new(node_id);
        for transport in addr.addrs.iter() {
            match transport {
                TransportAddr::Ip(ip) => peer.direct.push(*ip),
                TransportAddr::Relay(url) if peer.relay_url.is_none() => {
                    peer.relay_url = Some(url.clone());
                }
                _ => {}
            }
        }
        Some(peer)
    }
}
