//! How the endpoint binds, which relays it uses and what it may reach.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The UDP port Tether tries first (the seed design's port); a random one is used when it is
/// taken.
pub const DEFAULT_PORT: u16 = 11204;

/// Which relay servers the endpoint uses when no direct path works.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RelayConfig {
    /// iroh's public relays (n0's servers). The real-world default.
    #[default]
    Default,
    /// The user's own `iroh-relay` servers.
    Custom(Vec<String>),
    /// No relays: direct paths only.
    Disabled,
}

/// The transport's configuration.
///
/// [`TransportConfig::default`] is what users get: bind every interface on UDP
/// [`DEFAULT_PORT`], iroh's public relays, mDNS on the LAN. [`TransportConfig::local_only`]
/// stays on this machine: it binds 127.0.0.1 only, uses no relay, no port mapper (never compiled
/// in), no internet discovery and no mDNS. Tests, demos and benchmarks use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Where to bind. Port 0 picks a random port.
    pub bind_addr: SocketAddr,
    /// When the port is taken, bind a random port on the same address instead of failing.
    pub fall_back_to_random_port: bool,
    /// Relay servers.
    pub relay: RelayConfig,
    /// Announce and look up devices with mDNS on the local network.
    pub mdns: bool,
    /// Keep every packet on loopback (see the type's docs).
    pub local_only: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            fall_back_to_random_port: true,
            relay: RelayConfig::Default,
            mdns: true,
            local_only: false,
        }
    }
}

impl TransportConfig {
    /// Loopback only, on a random port: nothing leaves this machine.
    pub fn local_only() -> Self {
        Self {
            bind_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)),
            fall_back_to_random_port: true,
            relay: RelayConfig::Disabled,
            mdns: false,
            local_only: true,
        }
    }

    /// The configuration with local-only rules enforced: a non-loopback bind address becomes
    /// 127.0.0.1 and public relays are turned off (relays the caller listed explicitly, such as
    /// one a test started on 127.0.0.1, are kept).
    pub(crate) fn effective(&self) -> Self {
        let mut config = self.clone();
        if config.local_only {
            if !config.bind_addr.ip().is_loopback() {
                config.bind_addr.set_ip(Ipv4Addr::LOCALHOST.into());
            }
            if config.relay == RelayConfig::Default {
                config.relay = RelayConfig::Disabled;
            }
            config.mdns = false;
        }
        config
    }
}
