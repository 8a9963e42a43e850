//! The cache on a virtual clock: first answers, repeats, sharing, expiry and the bounds.

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::NetworkIdentity;
use tether_wire::{ErrorCode, ErrorReply, Pong};

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tether_identity::NodeId;
use tether_wire::NetworkMessage;

use super::{AnswerCache, AnswerCacheConfig, Begin};
use crate::key::RequestKey;

const SECOND: Duration = Duration::from_secs(1);

fn peers() -> (NodeId, NodeId) {
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    (
        NetworkIdentity::generate(&mut rng).node_id(),
        NetworkIdentity::generate(&mut rng).node_id(),
    )
}

fn pong(n: u64) -> NetworkMessage {
    NetworkMessage::Pong(Pong { timestamp_ms: n })
}

/// An answer whose encoded size is about `len` bytes.
fn big(len: usize) -> NetworkMessage {
    NetworkMessage::Error(ErrorReply {
        code: ErrorCode::Internal,
        message: "x".repeat(len),
    })
}

fn key(n: u64) -> RequestKey {
    RequestKey::from_random(n << 1)
}

fn config() -> AnswerCacheConfig {
    AnswerCacheConfig {
        max_entries: 4,
        max_bytes: 4096,
        ttl: 60 * SECOND,
        max_sharers: 2,
    }
}

#[test]
fn a_repeat_gets_the_first_answer_until_it_expires() {
    let (peer, _) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    assert_eq!(cache.begin(now, peer, key(1)), Begin::First);
    assert!(cache.finish(now, peer, key(1), &pong(7)).is_empty());
    let later = now + 59 * SECOND;
    assert_eq!(cache.begin(later, peer, key(1)), Begin::Cached(pong(7)));
    assert_eq!(cache.repeats(), 1);
    // A minute on, the answer is gone: the same key is a new request.
    let expired = now + 60 * SECOND;
    assert_eq!(cache.begin(expired, peer, key(1)), Begin::First);
    assert_eq!(cache.bytes(), 0);
}

#[test]
fn keys_are_per_peer() {
    let (one, other) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    assert_eq!(cache.begin(now, one, key(1)), Begin::First);
    cache.finish(now, one, key(1), &pong(1));
    assert_eq!(cache.begin(now, other, key(1)), Begin::First);
    assert_eq!(cache.begin(now, one, key(2)), Begin::First);
}

#[test]
fn repeats_during_the_first_answer_share_it() {
    let (peer, _) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    assert_eq!(cache.begin(now, peer, key(1)), Begin::First);
    assert_eq!(cache.begin(now, peer, key(1)), Begin::InProgress);
    assert_eq!(cache.share(peer, key(1), 10), Ok(()));
    assert_eq!(cache.share(peer, key(1), 11), Ok(()));
    // Two repeats wait already: a third is refused.
    assert_eq!(cache.share(peer, key(1), 12), Err(12));
    // Nothing to share for a request nobody answers.
    assert_eq!(cache.share(peer, key(2), 13), Err(13));
    assert_eq!(cache.finish(now, peer, key(1), &pong(3)), vec![10, 11]);
    assert_eq!(cache.share(peer, key(1), 14), Err(14));
    assert_eq!(cache.begin(now, peer, key(1)), Begin::Cached(pong(3)));
    assert_eq!(cache.repeats(), 3);
}

#[test]
fn an_abandoned_request_runs_again_and_its_repeats_get_nothing() {
    let (peer, _) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    assert_eq!(cache.begin(now, peer, key(1)), Begin::First);
    assert_eq!(cache.share(peer, key(1), 10), Ok(()));
    assert_eq!(cache.abandon(peer, key(1)), vec![10]);
    assert!(cache.is_empty());
    assert_eq!(cache.begin(now, peer, key(1)), Begin::First);
    // Abandoning an answered request changes nothing.
    cache.finish(now, peer, key(1), &pong(1));
    assert!(cache.abandon(peer, key(1)).is_empty());
    assert_eq!(cache.begin(now, peer, key(1)), Begin::Cached(pong(1)));
}

#[test]
fn the_entry_bound_drops_the_oldest_answer_and_never_a_pending_one() {
    let (peer, _) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    for n in 0..4 {
        assert_eq!(cache.begin(now, peer, key(n)), Begin::First);
        cache.finish(
            now + SECOND * u32::try_from(n).unwrap(),
            peer,
            key(n),
            &pong(n),
        );
    }
    // A fifth request pushes out the oldest answer.
    assert_eq!(cache.begin(now, peer, key(4)), Begin::First);
    assert_eq!(cache.len(), 4);
    assert_eq!(cache.begin(now, peer, key(1)), Begin::Cached(pong(1)));
    // Four requests being answered at once: no answer to push out, no room for a fifth.
    let mut full: AnswerCache<u32> = AnswerCache::new(config());
    for n in 0..4 {
        assert_eq!(full.begin(now, peer, key(n)), Begin::First);
    }
    assert_eq!(full.begin(now, peer, key(4)), Begin::Untracked);
    assert!(full.finish(now, peer, key(4), &pong(4)).is_empty());
    assert_eq!(full.len(), 4);
}

#[test]
fn the_byte_bound_drops_the_oldest_answers_and_skips_one_too_big() {
    let (peer, _) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    for n in 0..3 {
        assert_eq!(cache.begin(now, peer, key(n)), Begin::First);
        cache.finish(now, peer, key(n), &big(1500));
        assert!(cache.bytes() <= 4096);
    }
    // Three answers of about 1.6 KiB do not fit in 4 KiB: the first went.
    assert_eq!(cache.begin(now, peer, key(0)), Begin::First);
    assert_eq!(cache.begin(now, peer, key(2)), Begin::Cached(big(1500)));
    // An answer over the bound alone is not kept, and pushes nothing out.
    assert_eq!(cache.begin(now, peer, key(9)), Begin::First);
    assert_eq!(cache.share(peer, key(9), 1), Ok(()));
    assert_eq!(cache.finish(now, peer, key(9), &big(5000)), vec![1]);
    assert_eq!(cache.begin(now, peer, key(9)), Begin::First);
    assert_eq!(cache.begin(now, peer, key(2)), Begin::Cached(big(1500)));
}

#[test]
fn forgetting_a_peer_drops_its_answers_only() {
    let (one, other) = peers();
    let mut cache: AnswerCache<u32> = AnswerCache::new(config());
    let now = Instant::now();
    for peer in [one, other] {
        cache.begin(now, peer, key(1));
        cache.finish(now, peer, key(1), &pong(1));
    }
    let both = cache.bytes();
    cache.forget_peer(one);
    assert_eq!(cache.bytes(), both / 2);
    assert_eq!(cache.begin(now, one, key(1)), Begin::First);
    assert_eq!(cache.begin(now, other, key(1)), Begin::Cached(pong(1)));
}

#[derive(Debug, Clone)]
enum Op {
    Begin(u64),
    Finish(u64, usize),
    Abandon(u64),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..8u64).prop_map(Op::Begin),
        (0..8u64, 0..3000usize).prop_map(|(k, len)| Op::Finish(k, len)),
        (0..8u64).prop_map(Op::Abandon),
        (0..40_000u64).prop_map(Op::Wait),
    ]
}

proptest! {
    /// Whatever a peer sends: the bounds hold, a cached answer is the one given for that key
    /// and younger than the ttl, and a request is never first twice while it is remembered.
    #[test]
    fn bounds_hold_and_a_cached_answer_is_the_right_one(ops in prop::collection::vec(op(), 1..200)) {
        let (peer, _) = peers();
        let config = AnswerCacheConfig { max_entries: 5, max_bytes: 6000, ttl: 30 * SECOND, max_sharers: 2 };
        let mut cache: AnswerCache<u32> = AnswerCache::new(config);
        let start = Instant::now();
        let mut now = start;
        let mut answered: HashMap<u64, (NetworkMessage, Instant)> = HashMap::new();
        let mut pending = std::collections::HashSet::new();
        for op in ops {
            match op {
                Op::Begin(k) => match cache.begin(now, peer, key(k)) {
                    Begin::Cached(reply) => {
                        let given = answered.get(&k);
                        prop_assert!(given.is_some(), "cached without an answer");
                        if let Some((given, at)) = given {
                            prop_assert_eq!(&reply, given);
                            prop_assert!(now.duration_since(*at) < config.ttl);
                        }
                    }
                    Begin::First => {
                        answered.remove(&k);
                        pending.insert(k);
                    }
                    Begin::Untracked => { answered.remove(&k); }
                    Begin::InProgress => prop_assert!(pending.contains(&k)),
                },
                Op::Finish(k, len) => {
                    let reply = big(len);
                    cache.finish(now, peer, key(k), &reply);
                    if pending.remove(&k) {
                        answered.insert(k, (reply, now));
                    }
                }
                Op::Abandon(k) => {
                    cache.abandon(peer, key(k));
                    pending.remove(&k);
                }
                Op::Wait(ms) => now += Duration::from_millis(ms),
            }
            prop_assert!(cache.len() <= config.max_entries);
            prop_assert!(cache.bytes() <= config.max_bytes);
        }
    }
}
