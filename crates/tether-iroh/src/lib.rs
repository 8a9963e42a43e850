//! Tether's transport adapter: an iroh 1.x endpoint built from a device's identity.
//!
//! * [`Transport`] binds an endpoint whose endpoint id is the device's [`NodeId`], with the
//!   relay mode and bind address of a [`TransportConfig`], and a [`ConnectionGate`] that
//!   decides right after each incoming TLS handshake — before any protocol handler runs —
//!   whether the peer may go on.
//! * [`PeerAddr`] says where a device is; [`ConnectionInfo`] what a connection's path looks like
//!   (direct or relayed, round trip, congestion window, bytes).
//! * [`MdnsDiscovery`] finds devices on the LAN with iroh's mDNS address lookup;
//!   [`LoopbackDiscovery`] finds devices on this machine through a shared directory, with no
//!   multicast at all (for local-only runs, tests and the demo).
//!
//! [`TransportConfig::local_only`] keeps every packet on this machine. The real-world default
//! ([`TransportConfig::default`]) binds every interface on UDP 11204, uses iroh's public relays
//! and mDNS; the port mapper is never compiled in.
//!
//! [`NodeId`]: tether_identity::NodeId

mod addr;
mod config;
mod error;
mod global;
mod info;
mod loopback;
mod mdns;
mod relay_select;
mod transport;

pub use addr::PeerAddr;
pub use config::{DEFAULT_PORT, RelayConfig, TransportConfig, TrustedRoot};
pub use error::TransportError;
pub use global::{GlobalDiscovery, GlobalDiscoveryConfig, N0_ORIGIN_DOMAIN, N0_PKARR_RELAY};
pub use info::{ConnectionInfo, PathKind};
pub use loopback::LoopbackDiscovery;
pub use mdns::MdnsDiscovery;
pub use relay_select::{LowestLatency, probe_relay};
pub use transport::{AdmitAll, ConnectionGate, Refusal, Transport, peer_node_id};
