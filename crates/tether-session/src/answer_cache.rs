//! Recent answers to the peers' requests, so that a repeat is answered once.
//!
//! A request named across links ([`RequestKey`], `"once"` on the wire) may arrive twice: its
//! sender lost the link before the answer came and sent it again on a new one. The receiver
//! keeps what it answered, keyed by the peer's node id and the request's key, and answers the
//! repeat with the same answer without running the application's handler again. A repeat that
//! arrives while the first is still being answered shares its answer ([`Begin::InProgress`],
//! [`AnswerCache::share`]).
//!
//! What a paired peer can make us hold is bounded: at most `max_entries` requests (being
//! answered or answered), at most `max_bytes` of answers (the oldest answer goes first), each
//! answer for `ttl` only, and at most `max_sharers` repeats waiting on one request. A request
//! that finds no room is answered without the cache ([`Begin::Untracked`]): a repeat of it runs
//! again, as without the cache. Time comes from the caller; nothing here reads a clock.

use std::collections::hash_map::Entry as Slot;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tether_identity::NodeId;
use tether_wire::{ControlMessage, NetworkMessage};

use crate::key::RequestKey;

/// What one cached answer costs besides its encoded size: its key, its place in the expiry
/// queue, the map's slot.
pub const ENTRY_OVERHEAD: usize = 128;

/// The cache's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnswerCacheConfig {
    /// The most requests remembered, being answered or answered.
    pub max_entries: usize,
    /// The most bytes of answers kept (each counted as its encoded size plus
    /// [`ENTRY_OVERHEAD`]).
    pub max_bytes: usize,
    /// How long an answer is kept: longer than any sender's whole retry budget.
    pub ttl: Duration,
    /// The most repeats that may wait for one request's answer.
    pub max_sharers: usize,
}

impl Default for AnswerCacheConfig {
    /// 1024 requests, 8 MiB, 60 s, 8 repeats waiting on one request.
    fn default() -> Self {
        Self {
            max_entries: 1024,
            max_bytes: 8 * 1024 * 1024,
            ttl: Duration::from_secs(60),
            max_sharers: 8,
        }
    }
}

/// What to do with a request named across links (see [`AnswerCache::begin`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Begin {
    /// The first time: answer it, then report the answer ([`AnswerCache::finish`]) or that
    /// there is none ([`AnswerCache::abandon`]).
    First,
    /// The same request is being answered now: wait for its answer ([`AnswerCache::share`]).
    InProgress,
    /// Already answered: send this answer again.
    Cached(NetworkMessage),
    /// No room to remember it: answer it as if it were not named.
    Untracked,
}

#[derive(Debug)]
enum Entry<W> {
    /// Being answered; these repeats wait for the answer.
    Pending(Vec<W>),
    Answered {
        reply: NetworkMessage,
        cost: usize,
    },
}

/// Recent answers, by peer and request key (see the module's documentation). `W` is whatever a
/// repeat waiting for an answer is to its driver (a channel's sending half, say).
#[derive(Debug)]
pub struct AnswerCache<W> {
    config: AnswerCacheConfig,
    entries: HashMap<(NodeId, RequestKey), Entry<W>>,
    /// The answered entries, oldest first, with when they expire.
    expiry: VecDeque<(Instant, NodeId, RequestKey)>,
    /// What the answered entries cost.
    bytes: usize,
    /// Repeats answered from the cache or by sharing.
    repeats: u64,
}

impl<W> AnswerCache<W> {
    /// An empty cache with these bounds.
    pub fn new(config: AnswerCacheConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            expiry: VecDeque::new(),
            bytes: 0,
            repeats: 0,
        }
    }

    /// A request named `key` from `peer` arrived at `now`: what to do with it. A repeat of an
    /// answered request gets its answer; the first time, the request counts as being answered
    /// until [`Self::finish`] or [`Self::abandon`].
    pub fn begin(&mut self, now: Instant, peer: NodeId, key: RequestKey) -> Begin {
        self.expire(now);
        match self.entries.get(&(peer, key)) {
            Some(Entry::Answered { reply, .. }) => {
                self.repeats = self.repeats.saturating_add(1);
                return Begin::Cached(reply.clone());
            }
            Some(Entry::Pending(_)) => return Begin::InProgress,
            None => {}
        }
        while self.entries.len() >= self.config.max_entries {
            if !self.evict_oldest() {
                return Begin::Untracked;
            }
        }
        self.entries.insert((peer, key), Entry::Pending(Vec::new()));
        Begin::First
    }

    /// Waits for the answer to a request being answered ([`Begin::InProgress`]): `sharer` is
    /// handed back by [`Self::finish`] or [`Self::abandon`]. Refused (`sharer` returned) when
    /// the request is not being answered or enough repeats wait for it already.
    pub fn share(&mut self, peer: NodeId, key: RequestKey, sharer: W) -> Result<(), W> {
        match self.entries.get_mut(&(peer, key)) {
            Some(Entry::Pending(sharers)) if sharers.len() < self.config.max_sharers => {
                sharers.push(sharer);
                self.repeats = self.repeats.saturating_add(1);
                Ok(())
            }
            _ => Err(sharer),
        }
    }

    /// The request was answered with `reply` at `now`: kept for repeats for the cache's `ttl`
    /// (older answers make room), unless it alone is over the byte bound. Returns the repeats
    /// that wait for it.
    pub fn finish(
        &mut self,
        now: Instant,
        peer: NodeId,
        key: RequestKey,
        reply: &NetworkMessage,
    ) -> Vec<W> {
        let Slot::Occupied(mut slot) = self.entries.entry((peer, key)) else {
            return Vec::new();
        };
        let Entry::Pending(sharers) = slot.get_mut() else {
            return Vec::new();
        };
        let sharers = std::mem::take(sharers);
        let cost = cost(reply);
        if cost > self.config.max_bytes {
            slot.remove();
            return sharers;
        }
        slot.insert(Entry::Answered {
            reply: reply.clone(),
            cost,
        });
        self.bytes = self.bytes.saturating_add(cost);
        let expires = now.checked_add(self.config.ttl).unwrap_or(now);
        self.expiry.push_back((expires, peer, key));
        while self.bytes > self.config.max_bytes && self.evict_oldest() {}
        sharers
    }

    /// The request got no answer (its handler failed): forgotten, so a repeat runs again.
    /// Returns the repeats that waited for it; they get no answer either.
    pub fn abandon(&mut self, peer: NodeId, key: RequestKey) -> Vec<W> {
        match self.entries.get(&(peer, key)) {
            Some(Entry::Pending(_)) => match self.entries.remove(&(peer, key)) {
                Some(Entry::Pending(sharers)) => sharers,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// Drops the answers whose time is up at `now`.
    pub fn expire(&mut self, now: Instant) {
        while self
            .expiry
            .front()
            .is_some_and(|(expires, _, _)| *expires <= now)
        {
            self.evict_oldest();
        }
    }

    /// Forgets everything about `peer` (it was unpaired).
    pub fn forget_peer(&mut self, peer: NodeId) {
        self.expiry.retain(|(_, node, _)| *node != peer);
        self.entries.retain(|(node, _), _| *node != peer);
        self.bytes = self
            .entries
            .values()
            .map(|entry| match entry {
                Entry::Answered { cost, .. } => *cost,
                Entry::Pending(_) => 0,
            })
            .sum();
    }

    /// How many requests are remembered (being answered or answered).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// What the answers kept cost, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many repeats were answered from the cache or waited for a first answer.
    pub fn repeats(&self) -> u64 {
        self.repeats
    }

    /// Drops the oldest answer; whether there was one.
    fn evict_oldest(&mut self) -> bool {
        let Some((_, peer, key)) = self.expiry.pop_front() else {
            return false;
        };
        if let Some(Entry::Answered { cost, .. }) = self.entries.remove(&(peer, key)) {
            self.bytes = self.bytes.saturating_sub(cost);
        }
        true
    }
}

/// What keeping `reply` costs: its encoded size plus [`ENTRY_OVERHEAD`] (an answer that does
/// not encode is never sent, and costs the most).
fn cost(reply: &NetworkMessage) -> usize {
    ControlMessage::new(reply.clone())
        .encoded_len()
        .map_or(usize::MAX, |len| len.saturating_add(ENTRY_OVERHEAD))
}

#[cfg(test)]
mod tests;
