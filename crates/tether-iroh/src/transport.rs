//! `Transport`: the device's iroh endpoint.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use iroh::endpoint::{
    AfterHandshakeOutcome, ConnectError, ConnectingError, Connection, ConnectionError,
    EndpointHooks, Side, TransportErrorCode, presets,
};
use iroh::tls::CaTlsConfig;
use iroh::{Endpoint, RelayMap, RelayMode, RelayUrl, Watcher};
use rustls_pki_types::CertificateDer;
use tether_identity::{NetworkIdentity, NodeId};
use tracing::{debug, info, warn};

use crate::config::GlobalDiscoveryConfig;
use crate::dht::DhtDiscovery;
use crate::global::{GlobalDiscovery, attach};
use crate::id::iroh_id;
use crate::mdns::{MdnsDiscovery, SlotMdns};
use crate::{PeerAddr, RelayConfig, TransportConfig, TransportError};

/// Decides, right after the TLS handshake and before any handler runs, whether an incoming
/// connection may go on.
///
/// The service implements it: the pairing ALPN is open to anyone, every other ALPN only to
/// paired, non-revoked devices. The peer's key has been proven by the handshake.
pub trait ConnectionGate: Send + Sync + fmt::Debug + 'static {
    /// `Ok(())` to admit, or the QUIC close code and reason to send.
    fn admit(&self, peer: &NodeId, alpn: &[u8]) -> Result<(), Refusal>;
}

/// Why a connection was refused, sent to the peer in the QUIC close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The application close code.
    pub code: u32,
    /// A short reason, sent to the peer; never secret.
    pub reason: &'static str,
}

/// Admits everything; for endpoints that only connect out.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl ConnectionGate for AdmitAll {
    fn admit(&self, _peer: &NodeId, _alpn: &[u8]) -> Result<(), Refusal> {
        Ok(())
    }
}

#[derive(Debug)]
struct GateHook(Arc<dyn ConnectionGate>);

impl EndpointHooks for GateHook {
    async fn after_handshake<'a>(&'a self, conn: &'a Connection) -> AfterHandshakeOutcome {
        // Outgoing connections go to a device we chose; the gate is for who knocks.
        if conn.side() == Side::Client {
            return AfterHandshakeOutcome::accept();
        }
        let Ok(peer) = NodeId::from_bytes(conn.remote_id().as_bytes()) else {
            return refuse(Refusal {
                code: 1,
                reason: "invalid peer key",
            });
        };
        match self.0.admit(&peer, conn.alpn()) {
            Ok(()) => AfterHandshakeOutcome::accept(),
            Err(refusal) => {
                debug!(peer = %peer.fmt_short(), code = refusal.code, "connection refused by the gate");
                refuse(refusal)
            }
        }
    }
}

fn refuse(refusal: Refusal) -> AfterHandshakeOutcome {
    AfterHandshakeOutcome::Reject {
        error_code: refusal.code.into(),
        reason: refusal.reason.as_bytes().to_vec(),
    }
}

/// The device's iroh endpoint: bound, keyed with the device identity, gated.
#[derive(Debug, Clone)]
pub struct Transport {
    endpoint: Endpoint,
    node_id: NodeId,
    config: TransportConfig,
    mdns: Option<SlotMdns>,
    /// Global discovery's configuration and resolver, when on.
    global: Option<(GlobalDiscoveryConfig, iroh::dns::DnsResolver)>,
    /// The Mainline DHT publisher and lookup, when on.
    dht: Option<iroh_mainline_address_lookup::DhtAddressLookup>,
    /// The relay [`Transport::select_relays`] chose last.
    pub(crate) chosen_relay: Arc<parking_lot::Mutex<Option<RelayUrl>>>,
    /// Addresses the service's discoveries found (an app's own among them), handed to iroh's
    /// address lookup so that iroh itself can reach those devices by id.
    found: iroh::address_lookup::MemoryLookup,
    /// The last NAT mapping verdict of iroh's net reports.
    pub(crate) mapping_memory: crate::net_report::MappingMemory,
}

impl Transport {
    /// Binds an endpoint for `identity` that accepts `alpns`, with `gate` deciding who may
    /// connect.
    pub async fn bind(
        identity: &NetworkIdentity,
        config: &TransportConfig,
        alpns: Vec<Vec<u8>>,
        gate: Arc<dyn ConnectionGate>,
    ) -> Result<Self, TransportError> {
        let asked_for_dht = config.dht.is_some();
        let config = config.effective();
        if asked_for_dht && config.dht.is_none() {
            warn!("local-only: the DHT stays off (its bootstrap nodes are not all on loopback)");
        }
        config.quic.validate()?;
        let endpoint = match bind_once(identity, &config, config.bind_addr, &alpns, &gate).await {
            Ok(endpoint) => endpoint,
            Err(error) if config.fall_back_to_random_port && config.bind_addr.port() != 0 => {
                let mut random = config.bind_addr;
                random.set_port(0);
                warn!(addr = %config.bind_addr, %error, "port taken; binding a random port");
                bind_once(identity, &config, random, &alpns, &gate).await?
            }
            Err(error) => return Err(error),
        };
        let mdns = if config.mdns {
            let mdns = iroh_mdns_address_lookup::MdnsAddressLookup::builder()
                .service_name("tether")
                .build(endpoint.id())
                .map_err(|error| TransportError::Mdns(error.to_string()))?;
            let mdns = SlotMdns::new(mdns);
            endpoint
                .address_lookup()
                .map_err(|_| TransportError::Closed)?
                .add(mdns.clone());
            Some(mdns)
        } else {
            None
        };
        let global = match &config.global_discovery {
            Some(global) => Some((global.clone(), attach(&endpoint, global)?)),
            None => None,
        };
        let dht = match &config.dht {
            Some(dht) => Some(crate::dht::attach(&endpoint, dht)?),
            None => None,
        };
        let found = iroh::address_lookup::MemoryLookup::with_provenance("tether-discovery");
        endpoint
            .address_lookup()
            .map_err(|_| TransportError::Closed)?
            .add(found.clone());
        let transport = Self {
            mapping_memory: crate::net_report::watch_net_reports(&endpoint),
            found,
            global,
            dht,
            node_id: identity.node_id(),
            endpoint,
            config,
            mdns,
            chosen_relay: Arc::default(),
        };
        info!(
            node = %transport.node_id.fmt_short(),
            addrs = ?transport.bound_addrs(),
            local_only = transport.config.local_only,
            "endpoint bound"
        );
        Ok(transport)
    }

    /// `peer` as iroh dials it: relay only when forced; only loopback addresses (and the
    /// relay) in the local-only configuration.
    fn dialable(&self, peer: &PeerAddr) -> Result<iroh::EndpointAddr, TransportError> {
        let mut addr = if self.config.force_relay {
            peer.relay_only().to_iroh()?
        } else {
            peer.to_iroh()?
        };
        if self.config.local_only {
            let loopback: Vec<_> = addr
                .ip_addrs()
                .filter(|a| a.ip().is_loopback())
                .copied()
                .collect();
            addr = iroh::EndpointAddr::new(addr.id).with_addrs(
                loopback
                    .into_iter()
                    .map(iroh::TransportAddr::Ip)
                    .chain(addr.relay_urls().cloned().map(iroh::TransportAddr::Relay)),
            );
        }
        Ok(addr)
    }

    /// Tells iroh's address lookup where `peer` can be reached (what a discovery found),
    /// replacing what it was told before. The local-only configuration's rule holds here too:
    /// only loopback addresses reach iroh.
    pub fn remember(&self, peer: &PeerAddr) {
        match self.dialable(peer) {
            Ok(addr) => {
                self.found.set_endpoint_info(addr);
            }
            Err(error) => debug!(%error, "a discovered address iroh cannot use"),
        }
    }

    /// Takes back what [`Self::remember`] said about `node_id`.
    pub fn forget(&self, node_id: &NodeId) {
        if let Ok(id) = iroh_id(node_id) {
            self.found.remove_endpoint_info(id);
        }
    }

    /// This device's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The configuration in force (with local-only rules applied).
    pub fn config(&self) -> &TransportConfig {
        &self.config
    }

    /// The local socket addresses the endpoint is bound to.
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.endpoint.bound_sockets()
    }

    /// Where other devices can reach this one now.
    ///
    /// Bound to a specific address (such as 127.0.0.1), that address is the one given; bound
    /// to every interface, iroh's list of interface addresses is.
    pub fn addr(&self) -> PeerAddr {
        let mut addr = PeerAddr::from_iroh(&self.endpoint.addr())
            .unwrap_or_else(|| PeerAddr::new(self.node_id));
        for bound in self.bound_addrs() {
            if !bound.ip().is_unspecified() && !addr.direct.contains(&bound) {
                addr.direct.push(bound);
            }
        }
        if self.config.local_only {
            addr.direct.retain(|direct| direct.ip().is_loopback());
        }
        addr
    }

    /// The relay this endpoint is reachable through now (its home relay), if connected to one.
    pub fn home_relay(&self) -> Option<RelayUrl> {
        self.endpoint
            .home_relay_status()
            .get()
            .into_iter()
            .find(|status| status.is_connected())
            .map(|status| status.url().clone())
    }

    /// The relay servers the configuration lists ([`RelayConfig::Custom`], with local-only
    /// rules applied); empty for iroh's default relays (iroh chooses among those itself) and
    /// when relays are disabled.
    pub fn relay_urls(&self) -> Vec<RelayUrl> {
        match &self.config.relay {
            // Checked when the endpoint was bound (`relay_mode`): each parses.
            RelayConfig::Custom(urls) => urls.iter().filter_map(|url| url.parse().ok()).collect(),
            _ => Vec::new(),
        }
    }

    /// Waits until the endpoint is connected to a home relay and returns its URL. Never
    /// returns when no relay is configured or none can be reached: wrap it in a timeout.
    pub async fn home_relay_connected(&self) -> RelayUrl {
        let mut watcher = self.endpoint.home_relay_status();
        loop {
            if let Some(status) = watcher.get().into_iter().find(|s| s.is_connected()) {
                return status.url().clone();
            }
            if watcher.updated().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until the connected home relay differs from `last` and returns it (`None`: no
    /// longer connected to any). Never returns when no relay is configured.
    pub async fn home_relay_changed(&self, last: Option<&RelayUrl>) -> Option<RelayUrl> {
        let mut watcher = self.endpoint.home_relay_status();
        loop {
            let now = watcher
                .get()
                .into_iter()
                .find(|status| status.is_connected())
                .map(|status| status.url().clone());
            if now.as_ref() != last {
                return now;
            }
            if watcher.updated().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The IP addresses of this endpoint's direct addresses now (iroh's view of its interfaces,
    /// and public addresses it learned).
    pub fn direct_ips(&self) -> BTreeSet<IpAddr> {
        ips_of(&self.endpoint.addr())
    }

    /// Waits until this endpoint's direct IP addresses differ from `last` (an interface came
    /// or went: another Wi-Fi, a cable pulled) and returns them. Never returns once the
    /// endpoint is gone.
    pub async fn direct_ips_changed(&self, last: &BTreeSet<IpAddr>) -> BTreeSet<IpAddr> {
        let mut watcher = self.endpoint.watch_addr();
        loop {
            let now = ips_of(&watcher.get());
            if &now != last {
                return now;
            }
            if watcher.updated().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Connects to `peer` on `alpn`. The TLS handshake proves the peer holds `peer.node_id`.
    pub async fn connect(
        &self,
        peer: &PeerAddr,
        alpn: &[u8],
    ) -> Result<Connection, TransportError> {
        let addr = self.dialable(peer)?;
        self.endpoint
            .connect(addr, alpn)
            .await
            .map_err(|error| connect_error(&peer.node_id, alpn, &error))
    }

    /// The underlying iroh endpoint, for accepting connections and for protocols.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The mDNS service, when enabled.
    pub fn mdns(&self) -> Option<&iroh_mdns_address_lookup::MdnsAddressLookup> {
        self.mdns.as_ref().map(SlotMdns::lookup)
    }

    /// Closes every connection and the endpoint.
    pub async fn close(&self) {
        self.endpoint.close().await;
    }
}

impl GlobalDiscovery {
    /// Global discovery for `transport`, when its configuration has it on.
    pub fn of(transport: &Transport) -> Option<Self> {
        let (config, resolver) = transport.global.as_ref()?;
        Self::new(&transport.endpoint, config, resolver.clone())
    }
}

impl DhtDiscovery {
    /// DHT discovery for `transport`, when its configuration has it on.
    pub fn of(transport: &Transport) -> Option<Self> {
        transport.dht.clone().map(Self::new)
    }
}

impl MdnsDiscovery {
    /// The mDNS discovery of a transport bound with `mdns: true`; `None` otherwise.
    pub fn of(transport: &Transport) -> Option<Self> {
        transport.mdns.clone().map(Self::new)
    }
}

async fn bind_once(
    identity: &NetworkIdentity,
    config: &TransportConfig,
    bind_addr: SocketAddr,
    alpns: &[Vec<u8>],
    gate: &Arc<dyn ConnectionGate>,
) -> Result<Endpoint, TransportError> {
    let bind_error = |reason: String| TransportError::Bind {
        addr: bind_addr,
        reason,
    };
    let secret = iroh::SecretKey::from_bytes(&identity.to_secret_bytes());
    let mut builder = Endpoint::builder(presets::Minimal)
        .secret_key(secret)
        .alpns(alpns.to_vec())
        .relay_mode(relay_mode(&config.relay)?)
        .hooks(GateHook(Arc::clone(gate)))
        .transport_config(config.quic.to_iroh()?)
        .portmapper_config(crate::net_report::portmapper_config(config.port_mapping))
        .clear_ip_transports();
    if config.force_relay {
        if config.relay == RelayConfig::Disabled {
            return Err(bind_error(
                "force_relay needs a relay, and relays are disabled".to_owned(),
            ));
        }
        // No IP transport: the relay is the only way in or out.
        debug!("no direct socket: every connection goes through the relay");
    } else {
        builder = builder
            .bind_addr(bind_addr)
            .map_err(|error| bind_error(error.to_string()))?;
    }
    if !config.relay_roots.is_empty() {
        // The public web PKI roots plus the caller's: always verified.
        let roots = config
            .relay_roots
            .iter()
            .map(|root| CertificateDer::from(root.der().to_vec()));
        builder = builder.ca_tls_config(CaTlsConfig::embedded().with_extra_roots(roots));
    }
    builder
        .bind()
        .await
        .map_err(|error| bind_error(format!("{error:#}")))
}

fn relay_mode(relay: &RelayConfig) -> Result<RelayMode, TransportError> {
    Ok(match relay {
        RelayConfig::Default => RelayMode::Default,
        RelayConfig::Disabled => RelayMode::Disabled,
        RelayConfig::Custom(urls) => {
            let urls = urls
                .iter()
                .map(|url| {
                    url.parse::<RelayUrl>()
                        .map_err(|_| TransportError::InvalidRelayUrl { url: url.clone() })
                })
                .collect::<Result<Vec<_>, _>>()?;
            RelayMode::Custom(urls.into_iter().collect::<RelayMap>())
        }
    })
}

/// TLS alert 120, `no_application_protocol`, as a QUIC transport error code.
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// Sorts a failed connect into what the caller can act on: a protocol the peer does not
/// serve (permanent), or anything else (worth another try).
fn connect_error(node: &NodeId, alpn: &[u8], error: &ConnectError) -> TransportError {
    let closed = match error {
        ConnectError::Connection { source, .. }
        | ConnectError::Connecting {
            source: ConnectingError::ConnectionError { source, .. },
            ..
        } => Some(source),
        _ => None,
    };
    if let Some(ConnectionError::ConnectionClosed(close)) = closed
        && close.error_code == TransportErrorCode::crypto(NO_APPLICATION_PROTOCOL)
    {
        return TransportError::AlpnNotServed {
            node: node.fmt_short(),
            alpn: String::from_utf8_lossy(alpn).into_owned(),
        };
    }
    TransportError::Connect {
        node: node.fmt_short(),
        reason: error.to_string(),
    }
}

/// The authenticated node id of a connection's peer.
pub fn peer_node_id(connection: &Connection) -> Result<NodeId, TransportError> {
    NodeId::from_bytes(connection.remote_id().as_bytes()).map_err(|_| TransportError::InvalidNodeId)
}

/// The IP addresses of `addr`'s direct addresses.
fn ips_of(addr: &iroh::EndpointAddr) -> BTreeSet<IpAddr> {
    addr.ip_addrs().map(SocketAddr::ip).collect()
}
