//! Tether's transport adapter: an iroh 1.x endpoint built from a device's identity.
//!
//! * [`Transport`] binds an endpoint whose endpoint id is the device's [`NodeId`], with the
//!   relay mode and bind address of a [`TransportConfig`], and a [`ConnectionGate`] that
//!   decides right after each incoming TLS handshake — before any protocol handler runs —
//!   whether the peer may go on.
//! * [`PeerAddr`] says where a device is; [`ConnectionInfo`] what a connection's path looks like
//!   (direct or relayed and through which relay, round trip, congestion window, bytes);
//!   [`direct_addrs`] and [`relay_url`] where the peer was reached on it (what a pairing keeps),
//!   and [`peer_close`] the close code and reason the peer ended it with.
//! * Relays are `iroh-relay` servers: iroh's public ones ([`RelayConfig::Default`]) or the
//!   user's own ([`RelayConfig::Custom`]), whose certificate may be signed by the user's own CA
//!   ([`TrustedRoot::load_pem`] into [`TransportConfig::relay_roots`]; certificates are always
//!   verified). Among listed relays, [`Transport::select_relays`] keeps the endpoint on the one
//!   a [`RelaySelector`] chooses — [`LowestLatency`] measures each with real relay connections
//!   and pings — and switches when it goes away. [`TransportConfig::force_relay`] binds no
//!   direct socket, so every connection goes through the relay (for troubleshooting).
//! * Discovery: [`MdnsDiscovery`] finds devices on the LAN with iroh's mDNS address lookup;
//!   [`LoopbackDiscovery`] finds devices on this machine through a shared directory, with no
//!   multicast at all (for local-only runs, tests and the demo); [`GlobalDiscovery`] publishes
//!   the endpoint's addresses through pkarr and finds paired devices by node id through DNS
//!   (an `iroh-dns-server`; n0's by default, see [`GlobalDiscoveryConfig`]); [`DhtDiscovery`]
//!   does the same on the BitTorrent Mainline DHT, with no server at all ([`DhtConfig`]).
//! * [`QuicTuning`] (in [`TransportConfig::quic`]) sets QUIC's flow-control windows and
//!   congestion controller: the defaults fill a 1 Gbit/s link with a 50 ms round trip, and
//!   bound what a peer can make a connection hold.
//!
//! [`TransportConfig::local_only`] keeps every packet on this machine: loopback bind, no public
//! relays, DNS or DHT (servers and DHT nodes listed explicitly on loopback, such as a test's,
//! are kept), no mDNS.
//! The real-world default ([`TransportConfig::default`]) binds every interface on UDP 11204,
//! uses iroh's public relays, mDNS and n0's pkarr/DNS; the port mapper is never compiled in.
//!
//! [`NodeId`]: tether_identity::NodeId
//! [`RelaySelector`]: tether_protocol::RelaySelector

mod addr;
mod config;
mod dht;
mod error;
mod global;
mod id;
mod info;
mod loopback;
mod mdns;
mod multicast;
mod nat;
mod net_report;
mod relay_select;
mod transport;
mod tuning;

pub use addr::PeerAddr;
pub use config::{
    DEFAULT_PORT, DhtConfig, GlobalDiscoveryConfig, N0_ORIGIN_DOMAIN, N0_PKARR_RELAY, RelayConfig,
    TransportConfig, TrustedRoot,
};
pub use dht::DhtDiscovery;
pub use error::{LoopbackDirError, LoopbackDirProblem, TransportError};
pub use global::GlobalDiscovery;
pub use info::{ConnectionInfo, PathKind, PeerClose, direct_addrs, peer_close, relay_url};
pub use loopback::LoopbackDiscovery;
pub use mdns::MdnsDiscovery;
pub use multicast::{
    InterfaceMulticast, Interfaces, MDNS_GROUP, MulticastOutcome, check_multicast, mdns_can_work,
};
pub use nat::{GatewayProtocols, NatStatus, NatType, PortMapping};
pub use relay_select::{LowestLatency, probe_relay};
pub use transport::{AdmitAll, ConnectionGate, Refusal, Transport, peer_node_id};
pub use tuning::{CongestionControl, QuicTuning};
