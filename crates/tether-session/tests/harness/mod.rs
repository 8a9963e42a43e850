//! Two sessions on a virtual clock, joined by a simulated stream.
//!
//! The keys come from a real tether-crypto session handshake run in memory. The wire carries
//! what each session transmits as segments of a reliable, ordered byte stream (QUIC's): a
//! segment arrives after the wire's latency plus up to `jitter`, so segments overtake each
//! other on the way and the receiving end puts them back in order, as a stream does; a lost
//! segment is sent again after `retransmit`. A cut wire delivers nothing more; a stopped party
//! neither reads nor writes (its process hangs). Nothing sleeps: time jumps to the next
//! delivery or timer.

#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_crypto::handshake::{HelloMessage, InitMessage, Initiator, Responder, ResponseMessage};
use tether_crypto::{PairingSecret, SessionKeys};
use tether_identity::{NetworkIdentity, NodeId};
use tether_session::{Config, Event, Session, Side};
use tether_wire::{NetworkMessage, RequestId};

/// One end of the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The side that dialled.
    Dialler,
    /// The side that accepted.
    Acceptor,
}

impl End {
    fn index(self) -> usize {
        match self {
            Self::Dialler => 0,
            Self::Acceptor => 1,
        }
    }

    pub fn other(self) -> Self {
        match self {
            Self::Dialler => Self::Acceptor,
            Self::Acceptor => Self::Dialler,
        }
    }
}

/// How the wire behaves.
#[derive(Debug, Clone, Copy)]
pub struct WireConfig {
    pub latency: Duration,
    /// Up to this much extra delay per segment, at random: later segments overtake.
    pub jitter: Duration,
    /// The chance (out of 1.0) that a segment is lost and sent again.
    pub loss: f64,
    /// How long a lost segment takes to be sent again.
    pub retransmit: Duration,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            jitter: Duration::ZERO,
            loss: 0.0,
            retransmit: Duration::from_millis(200),
        }
    }
}

/// One direction of the stream.
#[derive(Debug, Default)]
struct Direction {
    /// Next sequence number to send.
    sent: u64,
    /// Next sequence number the receiver needs.
    delivered: u64,
    /// Segments on the way: (arrival, sequence) -> bytes.
    in_flight: BTreeMap<(Instant, u64), Vec<u8>>,
    /// Segments that arrived ahead of a missing one.
    held: BTreeMap<u64, Vec<u8>>,
    /// Rewrites each segment as it is sent (to corrupt one, say).
    tamper: Option<fn(&mut Vec<u8>)>,
}

/// One party: its session, and what it saw.
#[derive(Debug)]
pub struct Party {
    pub session: Session,
    pub events: Vec<Event>,
    /// Neither reads nor writes.
    pub stopped: bool,
}

/// Two sessions and the wire between them.
#[derive(Debug)]
pub struct Pair {
    pub now: Instant,
    pub wire: WireConfig,
    pub parties: [Party; 2],
    /// The node ids of the dialler and the acceptor.
    pub ids: [NodeId; 2],
    directions: [Direction; 2],
    pub cut: bool,
    rng: ChaCha20Rng,
}

impl Pair {
    /// Runs a session handshake between two fresh identities and starts a session on each
    /// side with `config`.
    pub fn new(seed: u64, config: Config, wire: WireConfig) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (alice_keys, bob_keys, ids) = handshake(&mut rng);
        let now = Instant::now();
        let party = |session| Party {
            session,
            events: Vec::new(),
            stopped: false,
        };
        Self {
            now,
            wire,
            parties: [
                party(Session::new(alice_keys, Side::Dialler, config, now)),
                party(Session::new(bob_keys, Side::Acceptor, config, now)),
            ],
            ids,
            directions: [Direction::default(), Direction::default()],
            cut: false,
            rng,
        }
    }

    pub fn party(&mut self, end: End) -> &mut Party {
        &mut self.parties[end.index()]
    }

    pub fn session(&mut self, end: End) -> &mut Session {
        &mut self.parties[end.index()].session
    }

    /// Takes the events `end` saw so far.
    pub fn events(&mut self, end: End) -> Vec<Event> {
        std::mem::take(&mut self.party(end).events)
    }

    /// How many segments `end` has put on the wire so far (each flush of what its session
    /// transmitted is one).
    pub fn segments_sent(&self, end: End) -> u64 {
        self.directions[end.index()].sent
    }

    /// Rewrites every segment `from` sends from now on.
    pub fn tamper(&mut self, from: End, with: fn(&mut Vec<u8>)) {
        self.directions[from.index()].tamper = Some(with);
    }

    /// Sends an application request from `end`.
    pub fn request(&mut self, end: End, message: NetworkMessage, timeout: Duration) -> RequestId {
        let now = self.now;
        let id = self.session(end).request(now, message, timeout).unwrap();
        self.flush();
        id
    }

    /// Moves what the sessions transmit onto the wire, and their events into their lists.
    fn flush(&mut self) {
        for end in [End::Dialler, End::Acceptor] {
            let party = &mut self.parties[end.index()];
            while let Some(event) = party.session.poll_event() {
                party.events.push(event);
            }
            if party.stopped {
                continue;
            }
            let Some(mut bytes) = party.session.poll_transmit() else {
                continue;
            };
            let direction = &mut self.directions[end.index()];
            if let Some(tamper) = direction.tamper {
                tamper(&mut bytes);
            }
            let seq = direction.sent;
            direction.sent += 1;
            let mut arrival = self.now + self.wire.latency;
            if !self.wire.jitter.is_zero() {
                let jitter = self.rng.next_u64() % (self.wire.jitter.as_micros() as u64 + 1);
                arrival += Duration::from_micros(jitter);
            }
            while self.wire.loss > 0.0
                && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.wire.loss
            {
                arrival += self.wire.retransmit;
            }
            direction.in_flight.insert((arrival, seq), bytes);
        }
    }

    /// When the next thing happens: a segment arrives or a session's timer fires.
    fn next_moment(&self) -> Option<Instant> {
        let arrivals = self
            .directions
            .iter()
            .filter(|_| !self.cut)
            .filter_map(|direction| direction.in_flight.keys().next().map(|(at, _)| *at));
        let timers = self
            .parties
            .iter()
            .filter(|party| !party.stopped)
            .filter_map(|party| party.session.poll_timeout());
        arrivals.chain(timers).min()
    }

    /// Runs until nothing happens before `deadline`, and sets the clock to it.
    pub fn run_until(&mut self, deadline: Instant) {
        self.flush();
        while let Some(moment) = self.next_moment().filter(|at| *at <= deadline) {
            self.now = self.now.max(moment);
            self.step();
        }
        self.now = self.now.max(deadline);
    }

    /// Runs for `span` of virtual time.
    pub fn run_for(&mut self, span: Duration) {
        let deadline = self.now + span;
        self.run_until(deadline);
    }

    /// Delivers what has arrived by now and fires the timers that are due.
    fn step(&mut self) {
        let now = self.now;
        for from in [End::Dialler, End::Acceptor] {
            if self.cut {
                break;
            }
            let direction = &mut self.directions[from.index()];
            while let Some(entry) = direction.in_flight.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                let ((_, seq), bytes) = entry.remove_entry();
                direction.held.insert(seq, bytes);
            }
            let to = &mut self.parties[from.other().index()];
            if to.stopped {
                continue;
            }
            // The stream hands bytes over in order only.
            while let Some(bytes) = direction.held.remove(&direction.delivered) {
                direction.delivered += 1;
                let _ = to.session.handle_input(now, &bytes);
            }
        }
        for party in &mut self.parties {
            if !party.stopped && party.session.poll_timeout().is_some_and(|at| at <= now) {
                party.session.handle_timeout(now);
            }
        }
        self.flush();
    }
}

/// Runs a real session handshake in memory between two fresh identities: the dialler's keys,
/// the acceptor's, and their node ids.
pub fn handshake(rng: &mut ChaCha20Rng) -> (SessionKeys, SessionKeys, [NodeId; 2]) {
    let alice = NetworkIdentity::generate(rng);
    let bob = NetworkIdentity::generate(rng);
    let secret = PairingSecret::from_bytes([0x5e; 32]);
    let (responder, hello) = Responder::hello(rng);
    let hello = HelloMessage::from_bytes(&hello.to_bytes()).unwrap();
    let (initiator, init) = Initiator::start(rng, &alice, bob.node_id(), &secret, &hello).unwrap();
    let init = InitMessage::from_bytes(&init.to_bytes()).unwrap();
    let (bob_keys, response) = responder
        .receive(&bob, alice.node_id(), &secret, &init)
        .unwrap();
    let response = ResponseMessage::from_bytes(&response.to_bytes()).unwrap();
    let alice_keys = initiator.receive(&response).unwrap();
    (alice_keys, bob_keys, [alice.node_id(), bob.node_id()])
}
