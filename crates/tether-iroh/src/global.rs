//! Global discovery: iroh's pkarr publishing and DNS resolution, so a paired device is found
//! again by its node id alone wherever it moved.
//!
//! The endpoint publishes its own signed address record to a pkarr relay (an
//! `iroh-dns-server`), which serves it as DNS TXT records under
//! `_iroh.<z32 node id>.<origin domain>`. [`GlobalDiscovery`] resolves a paired device's node
//! id through DNS when the service dials it, and reports what it found like any discovery.
//! Besides the endpoint's own addresses, only the pairing rendezvous record is published (see
//! [`GlobalDiscovery`]), and it holds nothing derived from a code's secret words.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use iroh::address_lookup::{AddrFilter, DnsAddressLookup, PkarrPublisher, PkarrRelayClient};
use iroh::dns::DnsResolver;
use iroh::endpoint_info::{EndpointInfo, UserData};
use iroh::{EndpointId, SecretKey};
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::{broadcast, mpsc};
use tracing::debug;

use crate::config::GlobalDiscoveryConfig;
use crate::id::iroh_id;
use crate::{PeerAddr, TransportError};

/// How often a shown code's rendezvous record is checked against the current time window
/// (and published again under the new window's key when the window turned).
const WINDOW_CHECK_EVERY: Duration = Duration::from_secs(30);

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

/// Rendezvous records are keyed by the slot and a window of this many seconds.
const RENDEZVOUS_EPOCH_SECS: u64 = 600;
/// The TTL of a rendezvous record, in seconds.
const RENDEZVOUS_TTL: u32 = 30;
/// The `user_data` prefix that names the initiator in a rendezvous record.
const INITIATOR_PREFIX: &str = "tether-initiator:";

/// Finds paired devices by node id through DNS ([`GlobalDiscoveryConfig`]); see the module
/// docs. Its name is `"dns"`.
///
/// It is also the global rendezvous for pairing by word code (docs/pairing.md, "Pairing
/// across networks"): while a code is shown, [`Discovery::announce`] with a pairing slot
/// publishes a record under a key derived from the public slot and the time window only,
/// holding the initiator's node id and addresses and nothing derived from the secret words;
/// [`Discovery::find_slot`] looks that record up.
#[derive(Debug, Clone)]
pub struct GlobalDiscovery {
    resolver: DnsResolver,
    origin_domain: String,
    pairing_rendezvous: bool,
    /// Announcements for the rendezvous publisher task, which handles them in order (so a
    /// withdrawal never lands before the record it withdraws).
    rendezvous: mpsc::UnboundedSender<DiscoveredDevice>,
    found: broadcast::Sender<DiscoveryEvent>,
}

/// Publishes rendezvous records, one announcement after another.
#[derive(Debug)]
struct RendezvousPublisher {
    origin_domain: String,
    pkarr: PkarrRelayClient,
    publish_ip_addrs: bool,
    /// The slot whose record is published, and the window it was published in, to withdraw
    /// it (under that window's key) or publish it again in the next window.
    published: Option<(String, u64)>,
    /// What was announced last: republished when the window changes.
    wanted: Option<DiscoveredDevice>,
}

/// What the rendezvous publisher must do to go from `published` to `wanted` in window
/// `epoch`: records to withdraw (slot and window they were published in) and to publish.
#[derive(Debug, Default, PartialEq, Eq)]
struct RendezvousPlan {
    withdraw: Option<(String, u64)>,
    publish: Option<(String, u64)>,
}

fn rendezvous_plan(
    published: Option<&(String, u64)>,
    wanted: Option<&str>,
    epoch: u64,
) -> RendezvousPlan {
    let up_to_date = |(slot, at): &(String, u64)| Some(slot.as_str()) == wanted && *at == epoch;
    match published {
        Some(published) if up_to_date(published) => RendezvousPlan::default(),
        _ => RendezvousPlan {
            withdraw: published.cloned(),
            publish: wanted.map(|slot| (slot.to_owned(), epoch)),
        },
    }
}

/// The rendezvous key of `slot` in time window `epoch`: derivable by anyone, from public
/// values only.
fn rendezvous_key(origin_domain: &str, slot: &str, epoch: u64) -> SecretKey {
    let mut material = Vec::with_capacity(origin_domain.len() + slot.len() + 10);
    material.extend_from_slice(origin_domain.as_bytes());
    material.push(0);
    material.extend_from_slice(slot.to_ascii_lowercase().as_bytes());
    material.push(0);
    material.extend_from_slice(&epoch.to_le_bytes());
    SecretKey::from_bytes(&blake3::derive_key(
        "tether v1 pairing rendezvous key",
        &material,
    ))
}

fn epoch_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / RENDEZVOUS_EPOCH_SECS)
}

impl GlobalDiscovery {
    /// Global discovery over `endpoint`, to which [`attach`] added `config`'s services and
    /// which gave `resolver`; `None` when the pkarr URL does not parse.
    pub(crate) fn new(
        endpoint: &iroh::Endpoint,
        config: &GlobalDiscoveryConfig,
        resolver: DnsResolver,
    ) -> Option<Self> {
        let pkarr_url = config.pkarr_relay.parse().ok()?;
        let pkarr =
            PkarrRelayClient::new(pkarr_url, endpoint.tls_config().clone(), resolver.clone());
        let (rendezvous, mut announcements) = mpsc::unbounded_channel::<DiscoveredDevice>();
        let mut publisher = RendezvousPublisher {
            origin_domain: config.origin_domain.clone(),
            pkarr,
            publish_ip_addrs: config.publish_ip_addrs,
            published: None,
            wanted: None,
        };
        if config.pairing_rendezvous {
            // Ends when the last `GlobalDiscovery` is dropped. The record of a code shown
            // across a window boundary is published again under the new window's key.
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(WINDOW_CHECK_EVERY);
                loop {
                    tokio::select! {
                        announcement = announcements.recv() => {
                            let Some(device) = announcement else { break };
                            let wanted = device.pairing_slot.is_some().then_some(device);
                            // Same slot, new addresses: the record must say so.
                            let refresh = wanted != publisher.wanted;
                            publisher.wanted = wanted;
                            publisher.converge(epoch_now(), refresh).await;
                        }
                        _ = tick.tick() => publisher.converge(epoch_now(), false).await,
                    }
                }
            });
        }
        Some(Self {
            resolver,
            origin_domain: config.origin_domain.clone(),
            pairing_rendezvous: config.pairing_rendezvous,
            rendezvous,
            found: broadcast::channel(64).0,
        })
    }

    /// Looks up the rendezvous record of `slot` (this window and the previous one).
    pub async fn lookup_slot(&self, slot: &str) -> Option<DiscoveredDevice> {
        let epoch = epoch_now();
        for epoch in [epoch, epoch.saturating_sub(1)] {
            let key = rendezvous_key(&self.origin_domain, slot, epoch).public();
            self.resolver.clear_cache();
            let Ok(info) = self
                .resolver
                .lookup_endpoint_by_id(&key, &self.origin_domain)
                .await
            else {
                continue;
            };
            let Some(initiator) = info
                .user_data()
                .and_then(|data| {
                    data.to_string()
                        .strip_prefix(INITIATOR_PREFIX)
                        .map(str::to_owned)
                })
                .and_then(|id| id.parse::<EndpointId>().ok())
                .and_then(|id| NodeId::from_bytes(id.as_bytes()).ok())
            else {
                continue;
            };
            let addr =
                EndpointInfo::from_parts(iroh_id(&initiator).ok()?, info.data).into_endpoint_addr();
            let addr = PeerAddr::from_iroh(&addr)?;
            return Some(DiscoveredDevice {
                node_id: initiator,
                addrs: addr.direct,
                relay_url: addr.relay_url,
                pairing_slot: Some(slot.to_owned()),
                source: "dns",
            });
        }
        None
    }

    /// Looks `node_id` up now and waits for the answer.
    pub async fn lookup(&self, node_id: NodeId) -> Option<DiscoveredDevice> {
        let id = iroh_id(&node_id).ok()?;
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

impl RendezvousPublisher {
    /// Publishes the record for the slot announced last in window `epoch`, after withdrawing
    /// (an empty record under the key it was published with) the one published before.
    async fn converge(&mut self, epoch: u64, refresh: bool) {
        let wanted = self.wanted.clone();
        let wanted_slot = wanted.as_ref().and_then(|d| d.pairing_slot.as_deref());
        let mut plan = rendezvous_plan(self.published.as_ref(), wanted_slot, epoch);
        if refresh && plan.publish.is_none() {
            plan.publish = wanted_slot.map(|slot| (slot.to_owned(), epoch));
        }
        if let Some((slot, at)) = &plan.withdraw {
            self.publish(slot, *at, None).await;
        }
        if let (Some((slot, at)), Some(device)) = (&plan.publish, &wanted) {
            self.publish(slot, *at, Some(device)).await;
        }
        if plan != RendezvousPlan::default() {
            self.published = plan.publish;
        }
    }

    /// Publishes the rendezvous record for `slot` in window `epoch`, or an empty one when
    /// `device` is `None` (withdrawal).
    async fn publish(&self, slot: &str, epoch: u64, device: Option<&DiscoveredDevice>) {
        let key = rendezvous_key(&self.origin_domain, slot, epoch);
        let mut info = EndpointInfo::new(key.public());
        if let Some(device) = device {
            let Ok(initiator) = iroh_id(&device.node_id) else {
                return;
            };
            if let Some(url) = device.relay_url.clone() {
                info = info.with_relay_url(url);
            }
            if self.publish_ip_addrs {
                info = info.with_ip_addrs(device.addrs.clone());
            }
            let Ok(user_data) = format!("{INITIATOR_PREFIX}{initiator}").parse::<UserData>() else {
                return;
            };
            info = info.with_user_data(Some(user_data));
        }
        let packet = match info.to_pkarr_signed_packet(&key, RENDEZVOUS_TTL) {
            Ok(packet) => packet,
            Err(error) => {
                debug!(%error, "could not build the rendezvous record");
                return;
            }
        };
        if let Err(error) = self.pkarr.publish(&packet).await {
            debug!(%error, "could not publish the rendezvous record");
        }
    }
}

impl Discovery for GlobalDiscovery {
    fn name(&self) -> &'static str {
        "dns"
    }

    /// The endpoint publishes its own addresses (iroh's pkarr publisher, on every change).
    /// With a pairing slot, the rendezvous record for it is published (see the type's docs);
    /// without, a rendezvous record published before is withdrawn.
    fn announce(&self, device: DiscoveredDevice) {
        if !self.pairing_rendezvous {
            return;
        }
        let _ = self.rendezvous.send(device);
    }

    fn find_slot(&self, slot: &str) {
        if !self.pairing_rendezvous {
            return;
        }
        let this = self.clone();
        let slot = slot.to_owned();
        tokio::spawn(async move {
            if let Some(device) = this.lookup_slot(&slot).await {
                let _ = this.found.send(DiscoveryEvent::Found(device));
            }
        });
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendezvous_key_depends_on_public_values_only() {
        let key =
            |origin: &str, slot: &str, epoch: u64| rendezvous_key(origin, slot, epoch).public();
        assert_eq!(
            key("dns.example", "harbor", 7),
            key("dns.example", "HARBOR", 7)
        );
        assert_ne!(
            key("dns.example", "harbor", 7),
            key("dns.example", "brave", 7)
        );
        assert_ne!(
            key("dns.example", "harbor", 7),
            key("dns.example", "harbor", 8)
        );
        assert_ne!(
            key("dns.example", "harbor", 7),
            key("dns.other", "harbor", 7)
        );
    }

    fn at(slot: &str, epoch: u64) -> Option<(String, u64)> {
        Some((slot.to_owned(), epoch))
    }

    #[test]
    fn a_withdrawal_uses_the_window_the_record_was_published_in() {
        // Published at window 7, withdrawn at window 8: the empty record goes under 7's key.
        let plan = rendezvous_plan(at("harbor", 7).as_ref(), None, 8);
        assert_eq!(plan.withdraw, at("harbor", 7));
        assert_eq!(plan.publish, None);
    }

    #[test]
    fn a_code_shown_across_windows_is_published_again() {
        let plan = rendezvous_plan(at("harbor", 7).as_ref(), Some("harbor"), 7);
        assert_eq!(plan, RendezvousPlan::default());
        let plan = rendezvous_plan(at("harbor", 7).as_ref(), Some("harbor"), 8);
        assert_eq!(plan.publish, at("harbor", 8));
        assert_eq!(plan.withdraw, at("harbor", 7));
        // A new slot replaces the old one.
        let plan = rendezvous_plan(at("harbor", 7).as_ref(), Some("brave"), 7);
        assert_eq!(plan.withdraw, at("harbor", 7));
        assert_eq!(plan.publish, at("brave", 7));
        let plan = rendezvous_plan(None, Some("brave"), 9);
        assert_eq!(plan.withdraw, None);
        assert_eq!(plan.publish, at("brave", 9));
    }
}
