//! The duplicate-link rule: every case of its doc comment, and both devices keep the same link.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{NetworkIdentity, NodeId};
use tether_session::{DuplicateLinks, SIMULTANEOUS_OPEN};

/// Two node ids, the lower first.
fn ids(seed: u64) -> (NodeId, NodeId) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let a = NetworkIdentity::generate(&mut rng).node_id();
    let b = NetworkIdentity::generate(&mut rng).node_id();
    if a < b { (a, b) } else { (b, a) }
}

fn facts(
    me: NodeId,
    peer: NodeId,
    old_here: bool,
    new_here: bool,
    age: Duration,
) -> DuplicateLinks {
    DuplicateLinks {
        me,
        peer,
        old_dialled_here: old_here,
        new_dialled_here: new_here,
        old_age: age,
    }
}

#[test]
fn both_dialled_by_the_same_side_keeps_the_newer() {
    let (low, high) = ids(1);
    for (me, peer) in [(low, high), (high, low)] {
        for here in [true, false] {
            for age in [Duration::ZERO, SIMULTANEOUS_OPEN, SIMULTANEOUS_OPEN * 10] {
                assert!(!facts(me, peer, here, here, age).keep_older());
            }
        }
    }
}

#[test]
fn one_dialled_by_each_side_at_once_keeps_the_one_the_lower_id_dialled() {
    let (low, high) = ids(2);
    for age in [Duration::ZERO, Duration::from_secs(1), SIMULTANEOUS_OPEN] {
        // On the lower id's device: the older link was dialled here (by the lower id).
        assert!(facts(low, high, true, false, age).keep_older());
        // The older was dialled by the higher id: the newer (dialled by the lower) stays.
        assert!(!facts(low, high, false, true, age).keep_older());
        // On the higher id's device, the same two links.
        assert!(facts(high, low, false, true, age).keep_older());
        assert!(!facts(high, low, true, false, age).keep_older());
    }
}

#[test]
fn one_dialled_by_each_side_later_keeps_the_newer() {
    let (low, high) = ids(3);
    let later = SIMULTANEOUS_OPEN + Duration::from_millis(1);
    for (me, peer) in [(low, high), (high, low)] {
        for old_here in [true, false] {
            assert!(!facts(me, peer, old_here, !old_here, later).keep_older());
        }
    }
}

/// A link as both devices see it: who dialled it, and when each device established it.
#[derive(Debug, Clone, Copy)]
struct Link {
    /// Dialled by the device with the lower id.
    by_low: bool,
    /// When the lower id's device and the higher id's established it (milliseconds).
    at: [u64; 2],
}

/// Which link (0 or 1) device `side` (0 = lower id, 1 = higher) keeps.
fn kept(links: [Link; 2], side: usize, now: u64, me: NodeId, peer: NodeId) -> usize {
    let (old, new) = if links[0].at[side] <= links[1].at[side] {
        (0, 1)
    } else {
        (1, 0)
    };
    let dialled_here = |link: Link| link.by_low == (side == 0);
    let facts = DuplicateLinks {
        me,
        peer,
        old_dialled_here: dialled_here(links[old]),
        new_dialled_here: dialled_here(links[new]),
        old_age: Duration::from_millis(now - links[old].at[side]),
    };
    if facts.keep_older() { old } else { new }
}

proptest! {
    /// Both devices keep the same link. The rule relies on two facts about real links, which
    /// the generator keeps: a device dials again only once its own earlier link was
    /// established (so both devices see two links dialled by one side in the same order), and
    /// two links dialled by each side are either both within [`SIMULTANEOUS_OPEN`] on both
    /// devices or the later one was dialled after the other was established on both.
    #[test]
    fn both_devices_keep_the_same_link(
        seed in 0..8u64,
        first_by_low in any::<bool>(),
        second_by_low in any::<bool>(),
        gap in 0..20_000u64,
        latency in [0..500u64, 0..500u64, 0..500u64, 0..500u64],
    ) {
        let (low, high) = ids(seed);
        let simultaneous = SIMULTANEOUS_OPEN.as_millis() as u64;
        // The first link is established on each device after its own latency; the second is
        // dialled `gap` later.
        let first = Link { by_low: first_by_low, at: [latency[0], latency[1]] };
        let second = Link { by_low: second_by_low, at: [gap + latency[2], gap + latency[3]] };
        let same_side = first_by_low == second_by_low;
        // One dialler dials again only after its first link was up on its own side.
        if same_side {
            let dialler = usize::from(!first_by_low);
            prop_assume!(second.at[dialler] > first.at[dialler]);
            prop_assume!(second.at[1 - dialler] > first.at[1 - dialler]);
        } else {
            // The two devices agree on whether the links were opened at once.
            let within = |side: usize| {
                first.at[side].abs_diff(second.at[side]) <= simultaneous
            };
            prop_assume!(within(0) == within(1));
            if !within(0) {
                prop_assume!(second.at[0] > first.at[0] && second.at[1] > first.at[1]);
            }
        }
        let links = [first, second];
        // Each device decides when it sees the second link (its age of the older counts then).
        let low_now = links[0].at[0].max(links[1].at[0]);
        let high_now = links[0].at[1].max(links[1].at[1]);
        prop_assert_eq!(kept(links, 0, low_now, low, high), kept(links, 1, high_now, high, low));
    }
}
