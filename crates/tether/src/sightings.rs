//! Devices discovery has seen lately: bounded in number and in age, since anyone on the LAN
//! (or anyone who can write a DNS record) can announce as many endpoint ids as they like.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tether_identity::NodeId;
use tether_protocol::DiscoveredDevice;

/// Most devices remembered; a newcomer beyond it pushes out the one seen longest ago.
pub(crate) const MAX_SIGHTINGS: usize = 1024;
/// A device not announced again for this long is forgotten.
pub(crate) const SIGHTING_TTL: Duration = Duration::from_secs(10 * 60);

/// What a new sighting changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The device was not remembered before.
    pub(crate) is_new: bool,
    /// Devices forgotten to make room, or for being too old.
    pub(crate) forgotten: Vec<NodeId>,
}

#[derive(Debug, Default)]
pub(crate) struct Sightings {
    by_node: HashMap<NodeId, (DiscoveredDevice, Instant)>,
}

impl Sightings {
    /// Remembers `device`, seen at `now`.
    pub(crate) fn insert(&mut self, device: DiscoveredDevice, now: Instant) -> Seen {
        let node_id = device.node_id;
        let mut seen = Seen::default();
        if !self.by_node.contains_key(&node_id) {
            seen.is_new = true;
            if self.by_node.len() >= MAX_SIGHTINGS {
                seen.forgotten = self.expire(now);
            }
            if self.by_node.len() >= MAX_SIGHTINGS {
                let oldest = self
                    .by_node
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(node, _)| *node);
                if let Some(oldest) = oldest {
                    self.by_node.remove(&oldest);
                    seen.forgotten.push(oldest);
                }
            }
        }
        self.by_node.insert(node_id, (device, now));
        seen
    }

    /// Forgets the devices not seen for [`SIGHTING_TTL`]; returns them.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<NodeId> {
        let mut expired = Vec::new();
        self.by_node.retain(|node, (_, at)| {
            let keep = now.saturating_duration_since(*at) < SIGHTING_TTL;
            if !keep {
                expired.push(*node);
            }
            keep
        });
        expired
    }

    pub(crate) fn remove(&mut self, node_id: &NodeId) -> Option<DiscoveredDevice> {
        self.by_node.remove(node_id).map(|(device, _)| device)
    }

    pub(crate) fn get(&self, node_id: &NodeId) -> Option<&DiscoveredDevice> {
        self.by_node.get(node_id).map(|(device, _)| device)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &DiscoveredDevice> {
        self.by_node.values().map(|(device, _)| device)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_node.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::{MAX_SIGHTINGS, SIGHTING_TTL, Sightings};
    use std::time::{Duration, Instant};
    use tether_identity::{NetworkIdentity, NodeId};
    use tether_protocol::DiscoveredDevice;

    fn device(n: u32) -> DiscoveredDevice {
        let mut secret = [0u8; 32];
        secret[..4].copy_from_slice(&n.to_le_bytes());
        DiscoveredDevice {
            node_id: NetworkIdentity::from_secret_bytes(&secret).node_id(),
            addrs: vec!["127.0.0.1:1".parse().unwrap()],
            relay_url: None,
            pairing_slot: None,
            source: "test",
        }
    }

    #[test]
    fn a_spoofing_flood_keeps_at_most_the_cap_and_pushes_out_the_oldest() {
        let mut sightings = Sightings::default();
        let start = Instant::now();
        let first: NodeId = device(0).node_id;
        for n in 0..(3 * MAX_SIGHTINGS as u32) {
            let at = start + Duration::from_millis(u64::from(n));
            sightings.insert(device(n), at);
            assert!(sightings.len() <= MAX_SIGHTINGS);
        }
        assert_eq!(sightings.len(), MAX_SIGHTINGS);
        assert!(sightings.get(&first).is_none(), "the oldest was kept");
        let newest = device(3 * MAX_SIGHTINGS as u32 - 1).node_id;
        assert!(sightings.get(&newest).is_some());
    }

    #[test]
    fn devices_not_seen_again_expire_and_seen_again_stay() {
        let mut sightings = Sightings::default();
        let start = Instant::now();
        assert!(sightings.insert(device(1), start).is_new);
        sightings.insert(device(2), start);
        let later = start + SIGHTING_TTL - Duration::from_secs(1);
        assert!(!sightings.insert(device(2), later).is_new);
        let expired = sightings.expire(start + SIGHTING_TTL);
        assert_eq!(expired, vec![device(1).node_id]);
        assert_eq!(sightings.len(), 1);
        assert!(sightings.remove(&device(2).node_id).is_some());
        assert_eq!(sightings.len(), 0);
    }
}
