//! Discovery on the BitTorrent Mainline DHT, so a paired device is found again by its node id
//! alone wherever it moved, with no server of anyone's.
//!
//! The endpoint publishes its own address record, a pkarr packet signed by the device key, as
//! a BEP 44 mutable item stored under that key (n0's `iroh-mainline-address-lookup`, added to
//! the endpoint's address lookups, publishes again on every change). [`DhtDiscovery`] looks a
//! paired device's record up by its node id when the service dials it. The DHT client checks
//! every item a DHT node returns against the key it was asked for (the signature, and that the
//! item's target is that key's): a record that does not verify is dropped there, and one for
//! another key is dropped here. Only the endpoint's addresses and relay are published: the
//! endpoint's user data stays empty (the pairing slot goes to mDNS alone) and this discovery
//! is no pairing rendezvous.

use std::collections::HashSet;
use std::sync::Arc;

use iroh::address_lookup::{AddrFilter, AddressLookup};
use iroh_mainline_address_lookup::DhtAddressLookup;
use n0_future::StreamExt;
use n0_mainline::DhtBuilder;
use parking_lot::Mutex;
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::broadcast;
use tracing::debug;

use crate::config::DhtConfig;
use crate::id::iroh_id;
use crate::{PeerAddr, TransportError};

/// Starts a DHT client as `config` says and adds its publisher and lookup to a freshly bound
/// endpoint.
pub(crate) fn attach(
    endpoint: &iroh::Endpoint,
    config: &DhtConfig,
) -> Result<DhtAddressLookup, TransportError> {
    if let Some(v6) = config.bootstrap.iter().find(|addr| addr.is_ipv6()) {
        return Err(TransportError::Dht(format!(
            "bootstrap node {v6} is IPv6; the DHT client speaks IPv4 only"
        )));
    }
    let mut dht = DhtBuilder::default();
    // `bootstrap` replaces the client's built-in public nodes (`extra_bootstrap` would add to
    // them); an empty list keeps them.
    if !config.bootstrap.is_empty() {
        dht.bootstrap(&config.bootstrap);
    }
    // A random port: the client's own default tries 6881 first.
    dht.port(0);
    let filter = if config.publish_ip_addrs {
        AddrFilter::unfiltered()
    } else {
        AddrFilter::relay_only()
    };
    let lookup = DhtAddressLookup::builder()
        .dht_builder(dht)
        .secret_key(endpoint.secret_key().clone())
        .addr_filter(filter)
        .build()
        .map_err(|error| TransportError::Dht(error.to_string()))?;
    endpoint
        .address_lookup()
        .map_err(|_| TransportError::Closed)?
        .add(lookup.clone());
    Ok(lookup)
}

/// Finds paired devices by node id on the BitTorrent Mainline DHT ([`DhtConfig`]); see the
/// module docs. Its name is `"dht"`.
///
/// Each [`Discovery::resolve`] runs one DHT lookup; one asked for a device whose lookup is
/// still running is dropped, so a dial asking every second never piles lookups up.
#[derive(Debug, Clone)]
pub struct DhtDiscovery {
    lookup: DhtAddressLookup,
    /// The devices whose lookup runs now.
    resolving: Arc<Mutex<HashSet<NodeId>>>,
    found: broadcast::Sender<DiscoveryEvent>,
}

impl DhtDiscovery {
    pub(crate) fn new(lookup: DhtAddressLookup) -> Self {
        Self {
            lookup,
            resolving: Arc::default(),
            found: broadcast::channel(64).0,
        }
    }

    /// Looks `node_id` up on the DHT now and waits for the answer: the most recent record
    /// that verifies against `node_id`'s key, if any DHT node holds one.
    pub async fn lookup(&self, node_id: NodeId) -> Option<DiscoveredDevice> {
        let id = iroh_id(&node_id).ok()?;
        let mut items = self.lookup.resolve(id)?;
        while let Some(item) = items.next().await {
            let item = match item {
                Ok(item) => item,
                Err(error) => {
                    debug!(node = %node_id.fmt_short(), %error, "DHT lookup failed");
                    continue;
                }
            };
            // The DHT client verified the record against the key it asked for; a record
            // naming another endpoint is not this device's, whatever it says.
            if item.endpoint_id() != id {
                debug!(node = %node_id.fmt_short(), "a DHT record for another key, ignored");
                continue;
            }
            let Some(addr) = PeerAddr::from_iroh(&item.to_endpoint_addr()) else {
                continue;
            };
            return Some(DiscoveredDevice {
                node_id,
                addrs: addr.direct,
                relay_url: addr.relay_url,
                pairing_slot: None,
                source: "dht",
            });
        }
        debug!(node = %node_id.fmt_short(), "no record on the DHT");
        None
    }
}

impl Discovery for DhtDiscovery {
    fn name(&self) -> &'static str {
        "dht"
    }

    /// The endpoint publishes its own addresses (on every change); nothing else is announced
    /// on the DHT, a pairing slot least of all.
    fn announce(&self, _device: DiscoveredDevice) {}

    fn resolve(&self, node_id: NodeId) {
        if !self.resolving.lock().insert(node_id) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let found = this.lookup(node_id).await;
            this.resolving.lock().remove(&node_id);
            if let Some(device) = found {
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
