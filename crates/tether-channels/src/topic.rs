//! One topic's bookkeeping, without IO: per-sender order, deduplication, gaps, and the bounded
//! history this device keeps of what it saw.
//!
//! Each sender numbers its messages on a topic from 1. A message at or below the sender's
//! cursor (the last one delivered) is a duplicate and dropped; the next one is delivered, and
//! with it whatever waited right behind it; one further ahead waits (at most
//! [`HistoryLimits::max_pending`] per sender) for the gap to be filled from history. A gap that
//! cannot be filled (the sender said it no longer holds it, or too many wait behind it) is
//! reported as a [`Delivery::Gap`] and skipped.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tether::{Hlc, NodeId};

/// What one device may make this one hold for a topic, and the most messages that wait for
/// a gap to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// The most messages the history keeps per topic.
    pub history_messages: usize,
    /// The most body bytes the history keeps per topic.
    pub history_bytes: usize,
    /// The most out-of-order messages kept per sender while a gap is open.
    pub max_pending: usize,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            history_messages: 1000,
            history_bytes: 1024 * 1024,
            max_pending: 256,
        }
    }
}

/// One message of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelMessage {
    /// Who published it.
    pub sender: NodeId,
    /// Its number in the sender's sequence, from 1.
    pub seq: u64,
    /// When it was published.
    pub hlc: Hlc,
    /// What it says.
    pub body: Vec<u8>,
}

/// What receiving gave the app, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// A message, delivered once, after every earlier one from its sender.
    Message(ChannelMessage),
    /// Messages `first..=last` from `sender` will not come: nobody who answered holds them.
    Gap {
        /// Whose messages.
        sender: NodeId,
        /// The first missing sequence number.
        first: u64,
        /// The last missing sequence number.
        last: u64,
    },
}

/// What a change did: deliveries for the app, and the history entries it evicted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Deliveries, in order.
    pub deliveries: Vec<Delivery>,
    /// History entries (sender, seq) dropped to stay within the caps.
    pub evicted: Vec<(NodeId, u64)>,
}

#[derive(Debug, Default)]
struct Sender {
    /// The last sequence number delivered (0: none).
    delivered: u64,
    /// Messages ahead of a gap, by sequence number.
    pending: BTreeMap<u64, ChannelMessage>,
}

/// One topic's state on this device.
#[derive(Debug)]
pub struct TopicLog {
    me: NodeId,
    limits: HistoryLimits,
    senders: HashMap<NodeId, Sender>,
    history: VecDeque<ChannelMessage>,
    history_bytes: usize,
}

impl TopicLog {
    /// A topic this device has seen nothing of.
    pub fn new(me: NodeId, limits: HistoryLimits) -> Self {
        Self {
            me,
            limits,
            senders: HashMap::new(),
            history: VecDeque::new(),
            history_bytes: 0,
        }
    }

    /// A topic as kept on disk: each sender's cursor, and the history (in any order; it is
    /// sorted by HLC). What is over the caps is evicted.
    pub fn restore(
        me: NodeId,
        limits: HistoryLimits,
        cursors: impl IntoIterator<Item = (NodeId, u64)>,
        history: Vec<ChannelMessage>,
    ) -> (Self, Vec<(NodeId, u64)>) {
        let mut log = Self::new(me, limits);
        for (sender, seq) in cursors {
            log.senders.entry(sender).or_default().delivered = seq;
        }
        let mut history = history;
        history.sort_by_key(|entry| entry.hlc);
        for entry in history {
            log.history_bytes = log.history_bytes.saturating_add(entry.body.len());
            log.history.push_back(entry);
        }
        let evicted = log.trim();
        (log, evicted)
    }

    /// Numbers a message of this device's own, keeps it in the history, and returns it (to
    /// send to the subscribers) with the entries evicted for it.
    pub fn publish(&mut self, hlc: Hlc, body: Vec<u8>) -> (ChannelMessage, Vec<(NodeId, u64)>) {
        let own = self.senders.entry(self.me).or_default();
        own.delivered = own.delivered.saturating_add(1);
        let entry = ChannelMessage {
            sender: self.me,
            seq: own.delivered,
            hlc,
            body,
        };
        let evicted = self.keep(entry.clone());
        (entry, evicted)
    }

    /// Takes a message from a peer (live or from history): delivers it and what waited
    /// behind it, keeps it for later, or drops it as a duplicate.
    pub fn receive(&mut self, entry: ChannelMessage) -> Outcome {
        let mut outcome = Outcome::default();
        let limit = self.limits.max_pending;
        let state = self.senders.entry(entry.sender).or_default();
        if entry.seq <= state.delivered || state.pending.contains_key(&entry.seq) {
            return outcome;
        }
        let sender = entry.sender;
        state.pending.insert(entry.seq, entry);
        if state.pending.len() > limit {
            // Too many wait behind the gap: give up on it.
            let first_waiting = state.pending.keys().next().copied().unwrap_or(0);
            return self.skip_to(sender, first_waiting);
        }
        self.drain(sender, &mut outcome);
        outcome
    }

    /// The sender no longer holds its messages before `seq`: report what is missing below it
    /// as a gap and deliver what waited behind.
    pub fn skip_to(&mut self, sender: NodeId, seq: u64) -> Outcome {
        let mut outcome = Outcome::default();
        let state = self.senders.entry(sender).or_default();
        let last_missing = seq.saturating_sub(1);
        if last_missing > state.delivered {
            // Only what really is missing: a message held here below `seq` is not.
            let first = state.delivered.saturating_add(1);
            let held: Vec<u64> = state.pending.range(..seq).map(|(s, _)| *s).collect();
            let mut from = first;
            let mut ranges = Vec::new();
            for s in held {
                if s > from {
                    ranges.push((from, s.saturating_sub(1)));
                }
                from = s.saturating_add(1);
            }
            if from <= last_missing {
                ranges.push((from, last_missing));
            }
            // Deliver in sequence: gaps and held messages interleaved.
            for (gap_first, gap_last) in ranges {
                self.deliver_held_below(sender, gap_first, &mut outcome);
                outcome.deliveries.push(Delivery::Gap {
                    sender,
                    first: gap_first,
                    last: gap_last,
                });
                if let Some(state) = self.senders.get_mut(&sender) {
                    state.delivered = gap_last;
                }
            }
        }
        self.drain(sender, &mut outcome);
        outcome
    }

    /// The history's messages a device with `cursors` has not seen, oldest first. A sender
    /// without a cursor has not been seen at all.
    pub fn missed_by(&self, cursors: &HashMap<NodeId, u64>) -> Vec<ChannelMessage> {
        self.history
            .iter()
            .filter(|entry| entry.seq > cursors.get(&entry.sender).copied().unwrap_or(0))
            .cloned()
            .collect()
    }

    /// The oldest of this device's own messages still held, when some before it are not:
    /// a device whose cursor is below it cannot get them.
    pub fn own_floor(&self) -> Option<u64> {
        let oldest = self
            .history
            .iter()
            .find(|entry| entry.sender == self.me)
            .map(|entry| entry.seq);
        let published = self.cursor(&self.me);
        match oldest {
            Some(seq) if seq > 1 => Some(seq),
            None if published > 0 => Some(published.saturating_add(1)),
            _ => None,
        }
    }

    /// The last sequence number delivered from `sender` (0: none).
    pub fn cursor(&self, sender: &NodeId) -> u64 {
        self.senders.get(sender).map_or(0, |state| state.delivered)
    }

    /// Every sender's cursor.
    pub fn cursors(&self) -> Vec<(NodeId, u64)> {
        self.senders
            .iter()
            .filter(|(_, state)| state.delivered > 0)
            .map(|(sender, state)| (*sender, state.delivered))
            .collect()
    }

    /// The history, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &ChannelMessage> {
        self.history.iter()
    }

    /// Forgets what waits from `sender` (a device no longer paired).
    pub fn forget_pending(&mut self, sender: &NodeId) {
        if let Some(state) = self.senders.get_mut(sender) {
            state.pending.clear();
        }
    }

    /// Delivers the held messages of `sender` below `below`, in order.
    fn deliver_held_below(&mut self, sender: NodeId, below: u64, outcome: &mut Outcome) {
        loop {
            let Some(state) = self.senders.get_mut(&sender) else {
                return;
            };
            let Some(entry) = state.pending.first_entry() else {
                return;
            };
            if *entry.key() >= below {
                return;
            }
            let entry = entry.remove();
            state.delivered = entry.seq;
            self.deliver(entry, outcome);
        }
    }

    /// Delivers what waits right behind `sender`'s cursor.
    fn drain(&mut self, sender: NodeId, outcome: &mut Outcome) {
        loop {
            let Some(state) = self.senders.get_mut(&sender) else {
                return;
            };
            let next = state.delivered.saturating_add(1);
            let Some(entry) = state.pending.remove(&next) else {
                return;
            };
            state.delivered = next;
            self.deliver(entry, outcome);
        }
    }

    fn deliver(&mut self, entry: ChannelMessage, outcome: &mut Outcome) {
        let evicted = self.keep(entry.clone());
        outcome.evicted.extend(evicted);
        outcome.deliveries.push(Delivery::Message(entry));
    }

    /// Keeps `entry` in the history and evicts the oldest beyond the caps.
    fn keep(&mut self, entry: ChannelMessage) -> Vec<(NodeId, u64)> {
        self.history_bytes = self.history_bytes.saturating_add(entry.body.len());
        self.history.push_back(entry);
        self.trim()
    }

    fn trim(&mut self) -> Vec<(NodeId, u64)> {
        let mut evicted = Vec::new();
        while self.history.len() > self.limits.history_messages
            || self.history_bytes > self.limits.history_bytes
        {
            let Some(old) = self.history.pop_front() else {
                break;
            };
            self.history_bytes = self.history_bytes.saturating_sub(old.body.len());
            evicted.push((old.sender, old.seq));
        }
        evicted
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn node(byte: u8) -> NodeId {
        // Any 32 bytes that are a valid Ed25519 point: derive from a signing key's id.
        tether::detail::NetworkIdentity::from_secret_bytes(&[byte; 32]).node_id()
    }

    fn entry(sender: NodeId, seq: u64) -> ChannelMessage {
        ChannelMessage {
            sender,
            seq,
            hlc: Hlc {
                physical_ms: seq,
                logical: 0,
                node: 1,
            },
            body: format!("m{seq}").into_bytes(),
        }
    }

    fn delivered(outcome: &Outcome) -> Vec<u64> {
        outcome
            .deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Message(entry) => Some(entry.seq),
                Delivery::Gap { .. } => None,
            })
            .collect()
    }

    #[test]
    fn messages_are_delivered_once_and_in_order_per_sender() {
        let (me, alice) = (node(1), node(2));
        let mut log = TopicLog::new(me, HistoryLimits::default());
        assert_eq!(delivered(&log.receive(entry(alice, 1))), [1]);
        // A duplicate, live or from history, is dropped.
        assert!(log.receive(entry(alice, 1)).deliveries.is_empty());
        // Ahead of a gap: waits.
        assert!(log.receive(entry(alice, 3)).deliveries.is_empty());
        assert!(log.receive(entry(alice, 4)).deliveries.is_empty());
        assert!(log.receive(entry(alice, 3)).deliveries.is_empty());
        // The gap fills: everything behind it comes, in order.
        assert_eq!(delivered(&log.receive(entry(alice, 2))), [2, 3, 4]);
        assert_eq!(log.cursor(&alice), 4);
        assert_eq!(log.history().count(), 4);
    }

    #[test]
    fn senders_are_independent() {
        let (me, alice, bob) = (node(1), node(2), node(3));
        let mut log = TopicLog::new(me, HistoryLimits::default());
        assert!(log.receive(entry(alice, 2)).deliveries.is_empty());
        assert_eq!(delivered(&log.receive(entry(bob, 1))), [1]);
        assert_eq!(log.cursor(&alice), 0);
        assert_eq!(log.cursor(&bob), 1);
    }

    #[test]
    fn a_gap_the_sender_no_longer_holds_is_reported_then_skipped() {
        let (me, alice) = (node(1), node(2));
        let mut log = TopicLog::new(me, HistoryLimits::default());
        log.receive(entry(alice, 1));
        log.receive(entry(alice, 3));
        log.receive(entry(alice, 6));
        // Alice holds her messages from 5 on: 2 and 4 are lost, 3 is here.
        let outcome = log.skip_to(alice, 5);
        assert_eq!(
            outcome.deliveries,
            vec![
                Delivery::Gap {
                    sender: alice,
                    first: 2,
                    last: 2
                },
                Delivery::Message(entry(alice, 3)),
                Delivery::Gap {
                    sender: alice,
                    first: 4,
                    last: 4
                },
            ]
        );
        assert_eq!(log.cursor(&alice), 4);
        // 5 comes from history; 6 was waiting for it.
        assert_eq!(delivered(&log.receive(entry(alice, 5))), [5, 6]);
        // A floor below the cursor changes nothing.
        assert!(log.skip_to(alice, 2).deliveries.is_empty());
    }

    #[test]
    fn too_many_waiting_behind_a_gap_skip_it() {
        let (me, alice) = (node(1), node(2));
        let limits = HistoryLimits {
            max_pending: 3,
            ..HistoryLimits::default()
        };
        let mut log = TopicLog::new(me, limits);
        for seq in 5..=7 {
            assert!(log.receive(entry(alice, seq)).deliveries.is_empty());
        }
        let outcome = log.receive(entry(alice, 8));
        assert_eq!(
            outcome.deliveries.first(),
            Some(&Delivery::Gap {
                sender: alice,
                first: 1,
                last: 4
            })
        );
        assert_eq!(delivered(&outcome), [5, 6, 7, 8]);
    }

    #[test]
    fn the_history_is_bounded_by_count_and_bytes() {
        let (me, alice) = (node(1), node(2));
        let limits = HistoryLimits {
            history_messages: 3,
            history_bytes: 1000,
            max_pending: 8,
        };
        let mut log = TopicLog::new(me, limits);
        let mut evicted = Vec::new();
        for seq in 1..=5 {
            evicted.extend(log.receive(entry(alice, seq)).evicted);
        }
        assert_eq!(evicted, [(alice, 1), (alice, 2)]);
        assert_eq!(log.history().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        let big = ChannelMessage {
            body: vec![0; 999],
            ..entry(alice, 6)
        };
        let outcome = log.receive(big);
        assert_eq!(outcome.evicted, [(alice, 3), (alice, 4), (alice, 5)]);
        assert_eq!(log.history().count(), 1);
    }

    #[test]
    fn a_device_back_from_offline_gets_what_it_missed_and_no_more() {
        let (me, alice, bob) = (node(1), node(2), node(3));
        let mut log = TopicLog::new(me, HistoryLimits::default());
        for seq in 1..=4 {
            log.receive(entry(alice, seq));
        }
        log.receive(entry(bob, 1));
        let (own, _) = log.publish(Hlc::ZERO, b"mine".to_vec());
        assert_eq!(own.seq, 1);
        // Bob saw Alice's first two and his own; he asks for the rest.
        let cursors = HashMap::from([(alice, 2), (bob, 1)]);
        let missed: Vec<(NodeId, u64)> = log
            .missed_by(&cursors)
            .iter()
            .map(|e| (e.sender, e.seq))
            .collect();
        assert_eq!(missed, [(alice, 3), (alice, 4), (me, 1)]);
        // What Bob receives twice (from two peers) he delivers once.
        let mut bobs = TopicLog::restore(bob, HistoryLimits::default(), cursors, Vec::new()).0;
        let first: Vec<u64> = log
            .missed_by(&HashMap::from([(alice, 2)]))
            .into_iter()
            .flat_map(|e| delivered(&bobs.receive(e)))
            .collect();
        assert_eq!(first, [3, 4, 1]);
        for again in log.missed_by(&HashMap::new()) {
            assert!(bobs.receive(again).deliveries.is_empty());
        }
    }

    #[test]
    fn own_numbering_survives_a_restore_and_the_floor_says_what_is_gone() {
        let me = node(1);
        let limits = HistoryLimits {
            history_messages: 2,
            ..HistoryLimits::default()
        };
        let mut log = TopicLog::new(me, limits);
        assert_eq!(log.own_floor(), None);
        let kept: Vec<ChannelMessage> = (0..3)
            .map(|_| log.publish(Hlc::ZERO, b"x".to_vec()).0)
            .collect();
        assert_eq!(log.own_floor(), Some(2));
        let (mut again, evicted) = TopicLog::restore(me, limits, log.cursors(), kept);
        assert_eq!(evicted, [(me, 1)]);
        assert_eq!(again.publish(Hlc::ZERO, Vec::new()).0.seq, 4);
    }
}
