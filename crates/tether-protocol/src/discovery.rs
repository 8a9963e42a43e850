//! `Discovery`: where devices and their current addresses come from.

use std::net::SocketAddr;
use std::pin::Pin;

use n0_future::Stream;
use tether_identity::NodeId;

/// A device seen by a discovery service, with the addresses it announced.
///
/// Everything here is a claim: the node id is proven only when a connection to it completes
/// its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredDevice {
    /// The key the device says it has.
    pub node_id: NodeId,
    /// Direct addresses to try.
    pub addrs: Vec<SocketAddr>,
    /// The relay the device is reachable through, if any.
    pub relay_url: Option<iroh::RelayUrl>,
    /// The public rendezvous slot of a pairing code the device is waiting on, if any.
    ///
    /// Only the public word of a code is ever announced; the secret part never leaves the
    /// device.
    pub pairing_slot: Option<String>,
    /// Which service found it, e.g. `"mdns"` or `"loopback"`.
    pub source: &'static str,
}

/// A change seen by a discovery service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryEvent {
    /// A device appeared or announced new information.
    Found(DiscoveredDevice),
    /// A device stopped announcing itself.
    Lost(NodeId),
}

/// The stream of events a [`Discovery`] gives its subscribers.
pub type DiscoveryStream = Pin<Box<dyn Stream<Item = DiscoveryEvent> + Send + 'static>>;

/// A source of devices and addresses, and a place to announce this device.
pub trait Discovery: Send + Sync + std::fmt::Debug + 'static {
    /// A short name for logs and `tether devices`, e.g. `"mdns"`.
    fn name(&self) -> &'static str;

    /// Announces this device: its id, addresses and, while a pairing code waits, its public
    /// slot. A new announcement replaces the previous one.
    fn announce(&self, device: DiscoveredDevice);

    /// Events from now on (a new subscriber also receives what is currently known).
    fn subscribe(&self) -> DiscoveryStream;

    /// Asks for a device's current addresses, to be reported through [`Self::subscribe`]'s
    /// stream. The service calls it before dialling a paired device. Discoveries that resolve
    /// by id (DNS) look it up; those that only listen (mDNS, loopback) need not do anything.
    fn resolve(&self, node_id: NodeId) {
        let _ = node_id;
    }

    /// Asks for the device showing a pairing code with this public slot, to be reported
    /// through [`Self::subscribe`]'s stream with `pairing_slot` set. The service calls it while
    /// a joiner looks for the initiator. Discoveries that only listen need not do anything;
    /// a global rendezvous looks its record up.
    fn find_slot(&self, slot: &str) {
        let _ = slot;
    }
}
