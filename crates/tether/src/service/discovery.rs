//! The discovery hub: the discoveries that run, the devices they saw lately, the broadcast
//! of each sighting, and the lookups a dial or a join asks them for while it waits.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use n0_future::task::AbortOnDropHandle;
use tether_identity::NodeId;
use tether_iroh::PeerAddr;
use tether_protocol::{DiscoveredDevice, Discovery};
use tokio::sync::broadcast;

use crate::NetworkError;
use crate::sightings::{Seen, Sightings};

/// How many sightings a dial or a join waiting for an address may fall behind on before it
/// skips some (it reads the sightings table again after each, so none is lost for it).
const SIGHTING_BUFFER: usize = 64;
/// How often a dial asks discoveries that resolve by id (DNS) for the device again.
pub(super) const RESOLVE_EVERY: Duration = Duration::from_secs(1);
/// How often a join asks a global rendezvous for the slot of the code it was given.
const FIND_SLOT_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
struct HubState {
    /// Emptied by `shutdown`, which ends the announcements.
    discoveries: Vec<Arc<dyn Discovery>>,
    sightings: Sightings,
}

/// Every discovery the service runs and what they reported.
#[derive(Debug)]
pub(super) struct DiscoveryHub {
    state: Mutex<HubState>,
    found: broadcast::Sender<DiscoveredDevice>,
}

impl DiscoveryHub {
    pub(super) fn new(discoveries: Vec<Arc<dyn Discovery>>) -> Self {
        Self {
            state: Mutex::new(HubState {
                discoveries,
                sightings: Sightings::default(),
            }),
            found: broadcast::channel(SIGHTING_BUFFER).0,
        }
    }

    /// The discoveries running now.
    pub(super) fn discoveries(&self) -> Vec<Arc<dyn Discovery>> {
        self.state.lock().discoveries.clone()
    }

    /// Drops the discoveries (their loops end with the service's tasks), which ends their
    /// announcements.
    pub(super) fn stop(&self) {
        self.state.lock().discoveries.clear();
    }

    /// Announces `addr` (with the pairing slot shown, if any) on every discovery.
    pub(super) fn announce(&self, addr: &PeerAddr, pairing_slot: Option<&str>) {
        for discovery in self.discoveries() {
            discovery.announce(DiscoveredDevice {
                node_id: addr.node_id,
                addrs: addr.direct.clone(),
                relay_url: addr.relay_url.clone(),
                pairing_slot: pairing_slot.map(str::to_owned),
                source: discovery.name(),
            });
        }
    }

    /// Remembers a sighting seen `now`; what it changed. Call [`Self::publish`] once the
    /// sighting is handled.
    pub(super) fn saw(&self, device: DiscoveredDevice, now: Instant) -> Seen {
        self.state.lock().sightings.insert(device, now)
    }

    /// Tells the dials and joins waiting for addresses of a sighting.
    pub(super) fn publish(&self, device: DiscoveredDevice) {
        let _ = self.found.send(device);
    }

    /// Forgets a device a discovery lost; whether it was remembered.
    pub(super) fn lost(&self, node_id: &NodeId) -> bool {
        self.state.lock().sightings.remove(node_id).is_some()
    }

    /// Forgets the devices not seen for too long; returns them.
    pub(super) fn expire(&self, now: Instant) -> Vec<NodeId> {
        self.state.lock().sightings.expire(now)
    }

    /// What discovery says of where `node_id` is, if it saw it.
    pub(super) fn addr_of(&self, node_id: &NodeId) -> Option<PeerAddr> {
        self.state
            .lock()
            .sightings
            .get(node_id)
            .map(|found| PeerAddr {
                node_id: *node_id,
                direct: found.addrs.clone(),
                relay_url: found.relay_url.clone(),
            })
    }

    /// Each device seen, with the discovery that saw it.
    pub(super) fn sources(&self) -> Vec<(NodeId, &'static str)> {
        self.state
            .lock()
            .sightings
            .values()
            .map(|device| (device.node_id, device.source))
            .collect()
    }

    /// Sightings from now on.
    pub(super) fn subscribe(&self) -> broadcast::Receiver<DiscoveredDevice> {
        self.found.subscribe()
    }

    /// Asks the discoveries that resolve by id (DNS) for `node_id` now and every
    /// [`RESOLVE_EVERY`] until the handle is dropped; answers come as sightings.
    pub(super) fn resolving(&self, node_id: NodeId) -> AbortOnDropHandle<()> {
        let discoveries = self.discoveries();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESOLVE_EVERY);
            loop {
                tick.tick().await;
                for discovery in &discoveries {
                    discovery.resolve(node_id);
                }
            }
        }))
    }

    /// The one device announcing the pairing slot `slot`, waiting for it at most `timeout`.
    ///
    /// A global rendezvous is asked now and every [`FIND_SLOT_EVERY`] while the search lasts;
    /// what it finds arrives as sightings, like what LAN discoveries hear.
    pub(super) async fn find_slot(
        &self,
        slot: &str,
        timeout: Duration,
    ) -> Result<PeerAddr, NetworkError> {
        let mut updates = self.subscribe();
        // Any timeout, `Duration::MAX` included: tokio's sleep caps it at decades.
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let _asking = self.asking_for_slot(slot);
        loop {
            if let Some(found) = self.claim_of(slot)? {
                return Ok(found);
            }
            tokio::select! {
                biased;
                _ = updates.recv() => {}
                () = &mut deadline => {
                    return Err(NetworkError::NoPairingPeer {
                        slot: slot.to_owned(),
                    });
                }
            }
        }
    }

    /// Asks every discovery for `slot` now and every [`FIND_SLOT_EVERY`] until the handle is
    /// dropped.
    fn asking_for_slot(&self, slot: &str) -> AbortOnDropHandle<()> {
        let discoveries = self.discoveries();
        let slot = slot.to_owned();
        AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(FIND_SLOT_EVERY);
            loop {
                tick.tick().await;
                for discovery in &discoveries {
                    discovery.find_slot(&slot);
                }
            }
        }))
    }

    /// The address of the one device seen announcing `slot`: `None` when none is, an error
    /// when several are.
    fn claim_of(&self, slot: &str) -> Result<Option<PeerAddr>, NetworkError> {
        let claims: Vec<DiscoveredDevice> = self
            .state
            .lock()
            .sightings
            .values()
            .filter(|d| d.pairing_slot.as_deref() == Some(slot))
            .cloned()
            .collect();
        match claims.as_slice() {
            [one] => Ok(Some(PeerAddr {
                node_id: one.node_id,
                direct: one.addrs.clone(),
                relay_url: one.relay_url.clone(),
            })),
            [] => Ok(None),
            many => Err(NetworkError::AmbiguousPairingPeer {
                slot: slot.to_owned(),
                count: many.len(),
            }),
        }
    }
}
