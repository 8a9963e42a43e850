//! `MdnsDiscovery`: devices on the LAN through iroh's mDNS address lookup.

use iroh::Endpoint;
use iroh::address_lookup::UserData;
use iroh_mdns_address_lookup::{DiscoveryEvent as MdnsEvent, MdnsAddressLookup};
use n0_future::StreamExt;
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::mpsc;
use tracing::debug;

use crate::{PeerAddr, Transport};

/// The prefix of the user data a device publishes while a pairing code waits for a joiner.
const SLOT_PREFIX: &str = "tether-pair=";

/// Local-network discovery with multicast DNS (service `_tether._udp.local`).
///
/// A device announces its endpoint id and addresses, and, only while one of its pairing
/// codes is waiting, the code's public slot word. Nothing derived from a code's secret part is
/// ever announced. Multicast reaches everyone on the LAN: never enable it in tests outside a
/// network namespace of their own.
#[derive(Debug, Clone)]
pub struct MdnsDiscovery {
    mdns: MdnsAddressLookup,
    endpoint: Endpoint,
}

impl MdnsDiscovery {
    /// The mDNS discovery of a transport bound with `mdns: true`; `None` otherwise.
    pub fn of(transport: &Transport) -> Option<Self> {
        Some(Self {
            mdns: transport.mdns()?.clone(),
            endpoint: transport.endpoint().clone(),
        })
    }
}

impl Discovery for MdnsDiscovery {
    fn name(&self) -> &'static str {
        "mdns"
    }

    fn announce(&self, device: DiscoveredDevice) {
        // iroh publishes the addresses itself; we add the pairing slot as user data.
        let user_data = device
            .pairing_slot
            .and_then(|slot| format!("{SLOT_PREFIX}{slot}").parse::<UserData>().ok());
        self.endpoint.set_user_data_for_address_lookup(user_data);
    }

    fn subscribe(&self) -> DiscoveryStream {
        let (sender, receiver) = mpsc::channel(64);
        let mdns = self.mdns.clone();
        tokio::spawn(async move {
            let mut events = mdns.subscribe().await;
            while let Some(event) = events.next().await {
                let Some(event) = convert(event) else {
                    continue;
                };
                if sender.send(event).await.is_err() {
                    break;
                }
            }
        });
        Box::pin(n0_future::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|event| (event, receiver)) },
        ))
    }
}

fn convert(event: MdnsEvent) -> Option<DiscoveryEvent> {
    match event {
        MdnsEvent::Discovered { endpoint_info, .. } => {
            let slot = endpoint_info
                .data
                .user_data()
                .and_then(|data| data.as_ref().strip_prefix(SLOT_PREFIX).map(str::to_owned));
            let addr = PeerAddr::from_iroh(&endpoint_info.into_endpoint_addr())?;
            // Whether it shows a code, not its slot: the slot is a word of that code.
            debug!(node = %addr.node_id.fmt_short(), pairing = slot.is_some(), "mdns: found");
            Some(DiscoveryEvent::Found(DiscoveredDevice {
                node_id: addr.node_id,
                addrs: addr.direct,
                relay_url: addr.relay_url,
                pairing_slot: slot,
                source: "mdns",
            }))
        }
        MdnsEvent::Expired { endpoint_id } => NodeId::from_bytes(endpoint_id.as_bytes())
            .ok()
            .map(DiscoveryEvent::Lost),
        _ => None,
    }
}
