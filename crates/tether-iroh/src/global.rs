//! Global discovery: iroh's pkarr publishing and DNS resolution, so a paired device is found
//! again by its node id alone wherever it moved.
//!
//! The endpoint publishes its own signed address record to a pkarr relay (an
//! `iroh-dns-server`), which serves it as DNS TXT records under
//! `_iroh.<z32 node id>.<origin domain>`. [`GlobalDiscovery`] resolves a paired device's node
//! id through DNS when the service dials it, and reports what it found like any discovery.
//! Nothing but the endpoint's own addresses is published: never a pairing slot.

use std::net::SocketAddr;

use iroh::address_lookup::{AddrFilter, DnsAddressLookup, PkarrPublisher};
use iroh::dns::DnsResolver;
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::broadcast;
use tracing::debug;

use crate::{PeerAddr, Transport, TransportError};

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
        }
    }

    /// Whether every server this talks to is on this machine.
    pub(crate) fn is_local(&self) -> bool {
        crate::config::is_loopback_url(&self.pkarr_relay)
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

/// Adds the pkarr publisher and the DNS lookup to a freshly bound endpoint.
pub(crate) fn attach(
    endpoint: &iroh::Endpoint,
    config: &GlobalDiscoveryConfig,
) -> Result<DnsResolver, TransportError> {
    let invalid = || TransportError::InvalidUrl {
        url: config.pkarr_relay.clone(),
    };
    let pkarr_url = config.pkarr_relay.parse().map_err(|_| invalid())?;
    let resolver = config.resolver();
    let filter = if config.publish_ip_addrs {
        AddrFilter::unfiltered()
    } else {
        AddrFilter::relay_only()
    };
    let publisher = PkarrPublisher::builder(pkarr_url)
        .dns_resolver(resolver.clone())
        .addr_filter(filter)
        .build(endpoint.secret_key().clone(), endpoint.tls_config().clone());
    let lookup = DnsAddressLookup::builder(config.origin_domain.clone())
        .dns_resolver(resolver.clone())
        .build();
    let services = endpoint
        .address_lookup()
        .map_err(|_| TransportError::Closed)?;
    services.add(publisher);
    services.add(lookup);
    Ok(resolver)
}

/// Finds paired devices by node id through DNS ([`GlobalDiscoveryConfig`]); see the module
/// docs. Its name is `"dns"`.
#[derive(Debug, Clone)]
pub struct GlobalDiscovery {
    resolver: DnsResolver,
    origin_domain: String,
    found: broadcast::Sender<DiscoveryEvent>,
}

impl GlobalDiscovery {
    /// Global discovery for `transport`, when its configuration has it on.
    pub fn of(transport: &Transport) -> Option<Self> {
        let (config, resolver) = transport.global()?;
        Some(Self {
            resolver,
            origin_domain: config.origin_domain.clone(),
            found: broadcast::channel(64).0,
        })
    }

    /// Looks `node_id` up now and waits for the answer.
    pub async fn lookup(&self, node_id: NodeId) -> Option<DiscoveredDevice> {
        let id = crate::transport::iroh_id(&node_id).ok()?;
        // Asked because a dial is starting: a cached answer (records live 30 s) may be the
        // address the device just left. The resolver serves global discovery only.
        self.resolver.clear_cache();
        let info = match self
            .resolver
            .lookup_endpoint_by_id(&id, &self.origin_domain)
            .await
        {
            Ok(info) => info,
            Err(error) => {
                debug!(node = %node_id.fmt_short(), %error, "DNS lookup failed");
                return None;
            }
        };
        let addr = PeerAddr::from_iroh(&info.into_endpoint_addr())?;
        Some(DiscoveredDevice {
            node_id,
            addrs: addr.direct,
            relay_url: addr.relay_url,
            pairing_slot: None,
            source: "dns",
        })
    }
}

impl Discovery for GlobalDiscovery {
    fn name(&self) -> &'static str {
        "dns"
    }

    /// The endpoint publishes its own addresses (iroh's pkarr publisher, on every change);
    /// the pairing slot is never published globally.
    fn announce(&self, _device: DiscoveredDevice) {}

    fn resolve(&self, node_id: NodeId) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Some(device) = this.lookup(node_id).await {
                let _ = this.found.send(DiscoveryEvent::Found(device));
            }
        });
    }

    fn subscribe(&self) -> DiscoveryStream {
        Box::pin(n0_future::stream::unfold(
            self.found.subscribe(),
            |mut receiver| async move {
                loop {
                    match receiver.recv().await {
                        Ok(event) => return Some((event, receiver)),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }
}
