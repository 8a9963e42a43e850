//! How the endpoint binds, which relays it uses and what it may reach.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use iroh::dns::DnsResolver;

use crate::{QuicTuning, TransportError};

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
    /// The user's own `iroh-relay` servers, by URL (`https://relay.example.org`). A server
    /// whose certificate is not signed by a public CA needs its root in
    /// [`TransportConfig::relay_roots`].
    Custom(Vec<String>),
    /// No relays: direct paths only.
    Disabled,
}

/// The transport's configuration.
///
/// [`TransportConfig::default`] is what users get: bind every interface on UDP
/// [`DEFAULT_PORT`], iroh's public relays, mDNS on the LAN. [`TransportConfig::local_only`]
/// stays on this machine: it binds 127.0.0.1 only, uses no relay, no port mapper, no internet
/// discovery and no mDNS. Tests, demos and benchmarks use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Where to bind. Port 0 picks a random port.
    pub bind_addr: SocketAddr,
    /// When the port is taken, bind a random port on the same address instead of failing.
    pub fall_back_to_random_port: bool,
    /// Relay servers.
    pub relay: RelayConfig,
    /// Root certificates trusted for relay (and pkarr) servers' TLS, on top of the public web
    /// PKI roots: the CA of the user's own relay, or a test relay's self-signed certificate.
    /// Certificates are always verified; there is no way to turn that off here.
    pub relay_roots: Vec<TrustedRoot>,
    /// Troubleshooting: no direct UDP socket at all, so every connection goes through the
    /// relay (the seed's "force relay path" switch). Clearing the direct addresses of the
    /// dialled peer alone is not enough: iroh hole-punches to a direct path within
    /// milliseconds when one exists. Needs a relay (`relay` not `Disabled`).
    pub force_relay: bool,
    /// Announce and look up devices with mDNS on the local network.
    pub mdns: bool,
    /// Publish this device's addresses and find paired devices by node id through pkarr and
    /// DNS ([`GlobalDiscoveryConfig`]). The real-world default is n0's public servers
    /// ([`GlobalDiscoveryConfig::n0`]); local-only runs have it off unless every server listed
    /// is on this machine.
    pub global_discovery: Option<GlobalDiscoveryConfig>,
    /// Publish this device's addresses and find paired devices by node id on the BitTorrent
    /// Mainline DHT ([`DhtConfig`]). Off by default; local-only runs have it off unless every
    /// bootstrap node listed is on this machine.
    pub dht: Option<DhtConfig>,
    /// Keep every packet on loopback (see the type's docs).
    pub local_only: bool,
    /// QUIC flow-control windows and congestion controller ([`QuicTuning::default`] in both
    /// the real-world and the local-only configuration).
    pub quic: QuicTuning,
    /// Ask the home router for a port mapping (UPnP, PCP or NAT-PMP; iroh's port mapper),
    /// so peers behind any NAT can reach this device directly. On in the real-world
    /// defaults; off in [`TransportConfig::local_only`], and always off when `local_only`.
    pub port_mapping: bool,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            bind_addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, DEFAULT_PORT)),
            fall_back_to_random_port: true,
            relay: RelayConfig::Default,
            relay_roots: Vec::new(),
            force_relay: false,
            mdns: true,
            global_discovery: Some(GlobalDiscoveryConfig::n0()),
            dht: None,
            local_only: false,
            quic: QuicTuning::default(),
            port_mapping: true,
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
            relay_roots: Vec::new(),
            force_relay: false,
            mdns: false,
            global_discovery: None,
            dht: None,
            local_only: true,
            quic: QuicTuning::default(),
            port_mapping: false,
        }
    }

    /// Uses the given relay servers (see [`RelayConfig::Custom`]).
    pub fn with_relays(mut self, urls: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.relay = RelayConfig::Custom(urls.into_iter().map(Into::into).collect());
        self
    }

    /// Trusts `roots` for relay servers' TLS as well (see [`TransportConfig::relay_roots`]).
    pub fn with_relay_roots(mut self, roots: impl IntoIterator<Item = TrustedRoot>) -> Self {
        self.relay_roots.extend(roots);
        self
    }

    /// The configuration with local-only rules enforced: a non-loopback bind address becomes
    /// 127.0.0.1, public relays are turned off and so are listed relays that are not on this
    /// machine (a relay a test started on 127.0.0.1 is kept).
    pub(crate) fn effective(&self) -> Self {
        let mut config = self.clone();
        if config.local_only {
            if !config.bind_addr.ip().is_loopback() {
                config.bind_addr.set_ip(Ipv4Addr::LOCALHOST.into());
            }
            config.relay = match config.relay {
                RelayConfig::Custom(urls) => {
                    let local: Vec<String> = urls
                        .into_iter()
                        .filter(|url| is_loopback_url(url))
                        .collect();
                    if local.is_empty() {
                        RelayConfig::Disabled
                    } else {
                        RelayConfig::Custom(local)
                    }
                }
                RelayConfig::Default | RelayConfig::Disabled => RelayConfig::Disabled,
            };
            config.mdns = false;
            config.port_mapping = false;
            if !config
                .global_discovery
                .as_ref()
                .is_some_and(GlobalDiscoveryConfig::is_local)
            {
                config.global_discovery = None;
            }
            if !config.dht.as_ref().is_some_and(DhtConfig::is_local) {
                config.dht = None;
            }
        }
        config
    }
}

/// Whether a URL's host is this machine: `localhost` or a loopback IP literal.
pub(crate) fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A root certificate (DER) trusted for relay servers' TLS.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedRoot(Vec<u8>);

impl TrustedRoot {
    /// A certificate in DER form (such as a test relay's self-signed certificate).
    pub fn from_der(der: impl Into<Vec<u8>>) -> Self {
        Self(der.into())
    }

    /// Every certificate in a PEM file (the CA certificate of one's own relay).
    pub fn load_pem(path: &Path) -> Result<Vec<Self>, TransportError> {
        let error = |reason: String| TransportError::Certificates {
            path: path.to_owned(),
            reason,
        };
        let roots = CertificateDer::pem_file_iter(path)
            .map_err(|e| error(e.to_string()))?
            .map(|cert| cert.map(|cert| Self(cert.to_vec())))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(e.to_string()))?;
        if roots.is_empty() {
            return Err(error("no CERTIFICATE section in the file".to_owned()));
        }
        Ok(roots)
    }

    /// The certificate, DER encoded.
    pub fn der(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TrustedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TrustedRoot({} bytes)", self.0.len())
    }
}

/// n0's public pkarr relay: the real-world default (never contacted from tests).
pub const N0_PKARR_RELAY: &str = "https://dns.iroh.link/pkarr";
/// n0's DNS origin domain for endpoint records: the real-world default.
pub const N0_ORIGIN_DOMAIN: &str = "dns.iroh.link";

/// Where records are published and looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalDiscoveryConfig {
    /// The pkarr relay records are published to (`PUT <url>/<z32 key>`).
    pub pkarr_relay: String,
    /// The domain records are served under.
    pub origin_domain: String,
    /// The DNS server to ask; `None` uses the system's resolvers.
    pub nameserver: Option<SocketAddr>,
    /// Publish direct IP addresses as well as the relay. Off by default (as in iroh): a
    /// public record then reveals no IP address, and the relay gets a connection started.
    pub publish_ip_addrs: bool,
    /// Use the server as the rendezvous for pairing by word code across networks (see
    /// [`GlobalDiscovery`](crate::GlobalDiscovery)). Off for n0's shared server: its 11-bit public slot space is
    /// shared by everyone pairing there at once (docs/pairing.md); on for one's own server.
    pub pairing_rendezvous: bool,
}

impl GlobalDiscoveryConfig {
    /// n0's public pkarr relay and DNS ([`N0_PKARR_RELAY`], [`N0_ORIGIN_DOMAIN`]), resolved
    /// through the system's resolvers; the relay URL only is published.
    pub fn n0() -> Self {
        Self {
            pkarr_relay: N0_PKARR_RELAY.to_owned(),
            origin_domain: N0_ORIGIN_DOMAIN.to_owned(),
            nameserver: None,
            publish_ip_addrs: false,
            pairing_rendezvous: false,
        }
    }

    /// One's own `iroh-dns-server`: its pkarr URL, origin domain and DNS address.
    pub fn custom(
        pkarr_relay: impl Into<String>,
        origin_domain: impl Into<String>,
        nameserver: SocketAddr,
    ) -> Self {
        Self {
            pkarr_relay: pkarr_relay.into(),
            origin_domain: origin_domain.into(),
            nameserver: Some(nameserver),
            publish_ip_addrs: false,
            pairing_rendezvous: true,
        }
    }

    /// Whether every server this talks to is on this machine.
    pub(crate) fn is_local(&self) -> bool {
        is_loopback_url(&self.pkarr_relay)
            && self.nameserver.is_some_and(|ns| ns.ip().is_loopback())
    }

    /// The resolver this configuration asks.
    pub(crate) fn resolver(&self) -> DnsResolver {
        match self.nameserver {
            Some(nameserver) => DnsResolver::with_nameserver(nameserver),
            None => DnsResolver::new(),
        }
    }
}

/// Discovery on the BitTorrent Mainline DHT: the endpoint's address record, a pkarr packet
/// signed by the device key, is stored on the DHT under that key, and a paired device's record
/// is looked up there by its node id (see [`DhtDiscovery`](crate::DhtDiscovery)).
///
/// The DHT client's UDP socket takes a random port on every IPv4 interface (the client has no
/// bind-address setting), in local-only runs too; it sends only to its bootstrap nodes and the
/// nodes they lead it to, and answers no request until it has run 15 minutes reachable from
/// outside (the client's adaptive mode).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DhtConfig {
    /// The DHT nodes to join the DHT through (IPv4; the DHT client speaks IPv4 only). Empty:
    /// the DHT client's built-in public bootstrap nodes (`router.bittorrent.com:6881`,
    /// `dht.transmissionbt.com:6881`, `dht.libtorrent.org:25401`, `relay.pkarr.org:6881`), the
    /// real-world default. A list given replaces those nodes; it is not added to them.
    pub bootstrap: Vec<SocketAddr>,
    /// Publish direct IP addresses as well as the relay. Off by default: a record on the
    /// public DHT then reveals no IP address.
    pub publish_ip_addrs: bool,
}

impl DhtConfig {
    /// The public Mainline DHT, joined through the DHT client's built-in bootstrap nodes; the
    /// relay URL only is published.
    pub fn public() -> Self {
        Self::default()
    }

    /// A DHT joined through `bootstrap` only (such as a test's nodes on 127.0.0.1).
    pub fn with_bootstrap(bootstrap: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            bootstrap: bootstrap.into_iter().collect(),
            publish_ip_addrs: false,
        }
    }

    /// Whether every node this joins the DHT through is on this machine (an empty list means
    /// the public bootstrap nodes, which are not).
    pub(crate) fn is_local(&self) -> bool {
        !self.bootstrap.is_empty() && self.bootstrap.iter().all(|addr| addr.ip().is_loopback())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls() {
        for url in [
            "https://127.0.0.1:4433",
            "https://127.8.0.1",
            "https://localhost:1234/",
            "http://[::1]:80/relay",
            "https://user@LOCALHOST",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "https://relay.example.org",
            "https://10.0.0.1:443",
            "https://[2001:db8::1]",
            "localhost",
            "https://localhost.example.org",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn local_only_keeps_only_local_relays() {
        let config = TransportConfig::local_only()
            .with_relays(["https://127.0.0.1:1234", "https://relay.example.org"]);
        assert_eq!(
            config.effective().relay,
            RelayConfig::Custom(vec!["https://127.0.0.1:1234".to_owned()])
        );
        let config = TransportConfig::local_only().with_relays(["https://relay.example.org"]);
        assert_eq!(config.effective().relay, RelayConfig::Disabled);
        let mut config = TransportConfig::local_only();
        config.relay = RelayConfig::Default;
        assert_eq!(config.effective().relay, RelayConfig::Disabled);
    }

    #[test]
    fn local_only_keeps_only_local_global_discovery() {
        let mut config = TransportConfig::local_only();
        config.global_discovery = Some(GlobalDiscoveryConfig::n0());
        assert_eq!(config.effective().global_discovery, None);
        let local = GlobalDiscoveryConfig::custom(
            "http://127.0.0.1:8080/pkarr",
            "dns.tether.test",
            "127.0.0.1:5300".parse().unwrap(),
        );
        config.global_discovery = Some(local.clone());
        assert_eq!(config.effective().global_discovery, Some(local.clone()));
        let mut remote_dns = local;
        remote_dns.nameserver = Some("192.0.2.1:53".parse().unwrap());
        config.global_discovery = Some(remote_dns);
        assert_eq!(config.effective().global_discovery, None);
        assert_eq!(
            TransportConfig::default().global_discovery,
            Some(GlobalDiscoveryConfig::n0())
        );
        assert!(!GlobalDiscoveryConfig::n0().pairing_rendezvous);
    }

    #[test]
    fn local_only_keeps_the_dht_only_with_loopback_bootstrap_nodes() {
        let mut config = TransportConfig::local_only();
        assert_eq!(TransportConfig::default().dht, None);
        config.dht = Some(DhtConfig::public());
        assert_eq!(config.effective().dht, None);
        let local = DhtConfig::with_bootstrap(["127.0.0.1:6881".parse().unwrap()]);
        config.dht = Some(local.clone());
        assert_eq!(config.effective().dht, Some(local));
        config.dht = Some(DhtConfig::with_bootstrap([
            "127.0.0.1:6881".parse().unwrap(),
            "192.0.2.1:6881".parse().unwrap(),
        ]));
        assert_eq!(config.effective().dht, None);
        // Outside local-only, the public DHT stays as asked.
        let config = TransportConfig {
            dht: Some(DhtConfig::public()),
            ..TransportConfig::default()
        };
        assert_eq!(config.effective().dht, Some(DhtConfig::public()));
    }

    #[test]
    fn pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TrustedRoot::load_pem(&dir.path().join("missing.pem")).unwrap_err();
        assert!(matches!(missing, TransportError::Certificates { .. }));
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here\n").unwrap();
        let error = TrustedRoot::load_pem(&empty).unwrap_err();
        assert!(error.to_string().contains("no CERTIFICATE"), "{error}");
        let (certs, _) = iroh_relay::server::testing::self_signed_tls_certs_and_config();
        let der = certs[0].to_vec();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            data_encoding::BASE64.encode(&der)
        );
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, pem).unwrap();
        assert_eq!(
            TrustedRoot::load_pem(&file).unwrap(),
            vec![TrustedRoot::from_der(der)]
        );
    }
}
