//! `MdnsDiscovery`: devices on the LAN through iroh's mDNS address lookup.

use std::sync::Arc;

use iroh::EndpointId;
use iroh::address_lookup::{AddressLookup, EndpointData, Item, UserData};
use iroh_mdns_address_lookup::{DiscoveryEvent as MdnsEvent, MdnsAddressLookup};
use n0_future::StreamExt;
use n0_future::boxed::BoxStream;
use parking_lot::Mutex;
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::mpsc;
use tracing::debug;

use crate::PeerAddr;

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
    mdns: SlotMdns,
}

impl MdnsDiscovery {
    /// The discovery over a transport's mDNS service (see `MdnsDiscovery::of`).
    pub(crate) fn new(mdns: SlotMdns) -> Self {
        Self { mdns }
    }
}

/// iroh's mDNS address lookup, with the pairing slot added to what it alone announces.
///
/// The endpoint hands every address lookup the same data; its user data would reach every
/// publisher, a global one (pkarr) too. The slot is for the LAN only, so the endpoint's user
/// data stays empty and this wrapper adds the slot on the way into mDNS.
#[derive(Debug, Clone)]
pub(crate) struct SlotMdns {
    mdns: MdnsAddressLookup,
    state: Arc<Mutex<SlotState>>,
}

#[derive(Debug, Default)]
struct SlotState {
    slot: Option<UserData>,
    /// What the endpoint published last, to publish again when the slot changes.
    last: Option<EndpointData>,
}

impl SlotMdns {
    pub(crate) fn new(mdns: MdnsAddressLookup) -> Self {
        Self {
            mdns,
            state: Arc::default(),
        }
    }

    /// Announces `slot` (or none) with the endpoint's current data.
    fn set_slot(&self, slot: Option<UserData>) {
        let mut state = self.state.lock();
        state.slot = slot;
        if let Some(last) = &state.last {
            let mut data = last.clone();
            data.set_user_data(state.slot.clone());
            self.mdns.publish(&data);
        }
    }

    pub(crate) fn lookup(&self) -> &MdnsAddressLookup {
        &self.mdns
    }
}

impl AddressLookup for SlotMdns {
    fn publish(&self, data: &EndpointData) {
        let mut state = self.state.lock();
        state.last = Some(data.clone());
        let mut data = data.clone();
        data.set_user_data(state.slot.clone());
        self.mdns.publish(&data);
    }

    fn resolve(
        &self,
        endpoint_id: EndpointId,
    ) -> Option<BoxStream<Result<Item, iroh::address_lookup::Error>>> {
        self.mdns.resolve(endpoint_id)
    }
}

impl Discovery for MdnsDiscovery {
    fn name(&self) -> &'static str {
        "mdns"
    }

    fn announce(&self, device: DiscoveredDevice) {
        // iroh publishes the addresses itself; we add the pairing slot for mDNS alone.
        let user_data = device
            .pairing_slot
            .and_then(|slot| format!("{SLOT_PREFIX}{slot}").parse::<UserData>().ok());
        self.mdns.set_slot(user_data);
    }

    fn subscribe(&self) -> DiscoveryStream {
        let (sender, receiver) = mpsc::channel(64);
        let mdns = self.mdns.lookup().clone();
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
