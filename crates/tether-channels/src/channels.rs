//! [`Channels`]: the topics this device subscribes to, the links to its paired devices, and
//! the protocol handler Tether routes channel connections to.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tether::{
    Connection, Hlc, NetworkEvent, NetworkProtocol, NetworkingService, NodeId, PairedPeer,
    ProtocolError, TrustLevel,
};
use tokio::sync::broadcast;

use crate::error::ChannelError;
use crate::event::ChannelEvent;
use crate::limits::ChannelLimits;
use crate::peer::{CLOSE_REVOKED, Link};
use crate::store::{Batch, Store, StoreError};
use crate::topic::{ChannelMessage, Delivery, Outcome, TopicLog};
use crate::wire::{Cursor, Frame, MAX_MESSAGE_LEN, valid_topic};

/// The channel protocol's ALPN.
pub const CHANNEL_ALPN: &[u8] = b"tether-channel/1";

/// Live channels among paired devices. Cheap to clone; clones share everything.
///
/// Register it with the service ([`tether::Builder::protocol`] or
/// [`NetworkingService::register_protocol`]), then [`Channels::attach`] it to that service.
#[derive(Debug, Clone)]
pub struct Channels {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) limits: ChannelLimits,
    store: Mutex<Option<Store>>,
    service: Mutex<Option<NetworkingService>>,
    pub(crate) state: Mutex<State>,
    next_link: AtomicU64,
    tasks: Mutex<tokio::task::JoinSet<()>>,
}

#[derive(Debug)]
pub(crate) struct State {
    me: Option<NodeId>,
    clock: Hlc,
    topics: HashMap<String, Subscribed>,
    pub(crate) links: HashMap<NodeId, Vec<Link>>,
}

#[derive(Debug)]
struct Subscribed {
    log: TopicLog,
    events: broadcast::Sender<ChannelEvent>,
}

/// Events kept per subscription for a slow reader before it hears [`ChannelEvent::Lagged`].
const EVENTS_PER_SUBSCRIPTION: usize = 1024;

impl Channels {
    /// Channels whose history and cursors live in `dir` (in [`crate::store::FILE_NAME`]),
    /// with the default limits.
    pub fn open(dir: &Path) -> Result<Self, ChannelError> {
        Self::with_limits(dir, ChannelLimits::default())
    }

    /// Like [`Self::open`], with other limits.
    pub fn with_limits(dir: &Path, limits: ChannelLimits) -> Result<Self, ChannelError> {
        let store = Store::open(dir)?;
        Ok(Self {
            inner: Arc::new(Inner {
                limits,
                store: Mutex::new(Some(store)),
                service: Mutex::new(None),
                state: Mutex::new(State {
                    me: None,
                    clock: Hlc::ZERO,
                    topics: HashMap::new(),
                    links: HashMap::new(),
                }),
                next_link: AtomicU64::new(0),
                tasks: Mutex::new(tokio::task::JoinSet::new()),
            }),
        })
    }

    /// Starts working with `service` (where this was registered): follows its events (an
    /// unpaired or blocked device is dropped from every topic at once) and connects to every
    /// trusted paired device. Call it once, inside a tokio runtime.
    pub fn attach(&self, service: &NetworkingService) {
        let me = service.node_id();
        {
            let mut state = self.inner.state.lock();
            state.me = Some(me);
            state.clock = Hlc::new(u64::from_be_bytes(prefix(me.as_bytes())));
        }
        *self.inner.service.lock() = Some(service.clone());
        let events = service.subscribe();
        let channels = self.clone();
        self.spawn(async move { channels.follow(events).await });
        for device in service.paired_devices() {
            if device.trust == TrustLevel::Trusted {
                self.dial(device.node_id);
            }
        }
    }

    /// Subscribes to `topic`: peers are told, and each sends what this device missed since
    /// its cursors (kept across restarts).
    pub fn subscribe(&self, topic: &str) -> Result<Subscription, ChannelError> {
        if !valid_topic(topic) {
            return Err(ChannelError::BadTopic);
        }
        let mut state = self.inner.state.lock();
        let me = state.me.ok_or(ChannelError::NotAttached)?;
        if state.topics.contains_key(topic) {
            return Err(ChannelError::AlreadySubscribed);
        }
        let most = self.inner.limits.topics_per_device;
        if state.topics.len() >= most {
            return Err(ChannelError::TooManyTopics(most));
        }
        let loaded = self.with_store(|store| store.load(topic))?;
        let (log, evicted) = TopicLog::restore(
            me,
            self.inner.limits.history,
            loaded.cursors,
            loaded.history,
        );
        let batch = Batch {
            evicted,
            ..Batch::default()
        };
        self.with_store(|store| store.write(topic, &batch))?;
        let (events, receiver) = broadcast::channel(EVENTS_PER_SUBSCRIPTION);
        let subscribe = Frame::Subscribe {
            topic: topic.to_owned(),
            cursors: cursors_of(&log),
        };
        let mut slow = Vec::new();
        for links in state.links.values() {
            for link in links {
                if !link.send(subscribe.clone()) {
                    slow.push(link.connection.clone());
                }
                if link.topics.contains(topic) {
                    let _ = events.send(ChannelEvent::Joined { device: link.node });
                }
            }
        }
        state
            .topics
            .insert(topic.to_owned(), Subscribed { log, events });
        drop(state);
        crate::peer::close_slow(&slow);
        Ok(Subscription {
            channels: self.clone(),
            topic: topic.to_owned(),
            events: receiver,
        })
    }

    /// Publishes `body` on `topic`, to every connected subscriber.
    fn publish(&self, topic: &str, body: Vec<u8>) -> Result<ChannelMessage, ChannelError> {
        if body.len() > MAX_MESSAGE_LEN {
            return Err(ChannelError::TooLarge { len: body.len() });
        }
        let mut state = self.inner.state.lock();
        let State {
            me, clock, topics, ..
        } = &mut *state;
        let me = me.ok_or(ChannelError::NotAttached)?;
        let subscribed = topics.get_mut(topic).ok_or(ChannelError::NotAttached)?;
        let hlc = clock.now(wall_clock_ms())?;
        let (message, evicted) = subscribed.log.publish(hlc, body);
        let batch = Batch {
            kept: vec![message.clone()],
            evicted,
            cursors: vec![(me, message.seq)],
        };
        self.with_store(|store| store.write(topic, &batch))?;
        let frame = message_frame(topic, &message);
        let mut slow = Vec::new();
        for links in state.links.values() {
            // The newest link to each device that subscribes to the topic.
            if let Some(link) = links.iter().rev().find(|link| link.topics.contains(topic))
                && !link.send(frame.clone())
            {
                slow.push(link.connection.clone());
            }
        }
        drop(state);
        crate::peer::close_slow(&slow);
        Ok(message)
    }

    /// The devices subscribed to `topic` now, as seen over this device's links.
    pub fn present(&self, topic: &str) -> Vec<NodeId> {
        let state = self.inner.state.lock();
        let mut present: Vec<NodeId> = state
            .links
            .iter()
            .filter(|(_, links)| links.iter().any(|link| link.topics.contains(topic)))
            .map(|(node, _)| *node)
            .collect();
        present.sort();
        present
    }

    fn unsubscribe(&self, topic: &str) {
        let mut state = self.inner.state.lock();
        if state.topics.remove(topic).is_none() {
            return;
        }
        let frame = Frame::Unsubscribe {
            topic: topic.to_owned(),
        };
        for links in state.links.values() {
            for link in links {
                let _ = link.send(frame.clone());
            }
        }
    }

    /// Drops `node` from every topic at once: its links are closed and it leaves.
    pub(crate) fn drop_device(&self, node: NodeId) {
        let mut state = self.inner.state.lock();
        let Some(links) = state.links.remove(&node) else {
            return;
        };
        for link in &links {
            link.connection.close(CLOSE_REVOKED.into(), b"not paired");
        }
        for (topic, subscribed) in &mut state.topics {
            subscribed.log.forget_pending(&node);
            if links.iter().any(|link| link.topics.contains(topic)) {
                let _ = subscribed.events.send(ChannelEvent::Left { device: node });
            }
        }
        tracing::debug!(node = %node.fmt_short(), "dropped from every channel");
    }

    /// Whether `node` is a paired device this device trusts now.
    pub(crate) fn trusted(&self, node: NodeId) -> bool {
        let service = self.inner.service.lock().clone();
        service.is_some_and(|service| {
            service
                .paired_devices()
                .iter()
                .any(|device| device.node_id == node && device.trust == TrustLevel::Trusted)
        })
    }

    /// Follows the service's events until it stops.
    async fn follow(&self, mut events: broadcast::Receiver<NetworkEvent>) {
        loop {
            let node = match events.recv().await {
                Ok(NetworkEvent::Unpaired { node_id }) => {
                    self.drop_device(node_id);
                    continue;
                }
                Ok(NetworkEvent::Paired { device, .. }) => {
                    self.dial(device.public_key);
                    continue;
                }
                Ok(NetworkEvent::Connected { node_id, .. }) => {
                    self.dial(node_id);
                    continue;
                }
                Ok(NetworkEvent::Disconnected { node_id, .. }) => Some(node_id),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => None,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // Blocked devices have their connections closed, with no event of their own:
            // check those that might be.
            let nodes: Vec<NodeId> = match node {
                Some(node) => vec![node],
                None => self.inner.state.lock().links.keys().copied().collect(),
            };
            for node in nodes {
                if !self.trusted(node) {
                    self.drop_device(node);
                }
            }
        }
    }

    /// Connects to `node` in the background, unless a link to it is up.
    pub(crate) fn dial(&self, node: NodeId) {
        if self.inner.state.lock().links.contains_key(&node) {
            return;
        }
        let Some(service) = self.inner.service.lock().clone() else {
            return;
        };
        let channels = self.clone();
        self.spawn(async move {
            match service.connect_protocol(node, CHANNEL_ALPN).await {
                Ok(connection) => channels.run_dialled(node, connection).await,
                Err(error) => {
                    tracing::debug!(node = %node.fmt_short(), error = %tether::ErrorChain(&error), "channel dial failed");
                }
            }
        });
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.inner.tasks.lock();
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }

    pub(crate) fn next_link_id(&self) -> u64 {
        self.inner.next_link.fetch_add(1, Ordering::Relaxed)
    }

    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, ChannelError> {
        let store = self.inner.store.lock();
        let store = store.as_ref().ok_or(ChannelError::NotAttached)?;
        Ok(f(store)?)
    }

    /// The frames that tell a new link which topics this device subscribes to.
    pub(crate) fn subscriptions(&self) -> Vec<Frame> {
        let state = self.inner.state.lock();
        state
            .topics
            .iter()
            .map(|(topic, subscribed)| Frame::Subscribe {
                topic: topic.clone(),
                cursors: cursors_of(&subscribed.log),
            })
            .collect()
    }

    /// A peer subscribed to `topic` on link `id`: it joins, and gets what it missed.
    /// `Err` when the peer is over its topic cap.
    pub(crate) fn peer_subscribed(
        &self,
        node: NodeId,
        id: u64,
        topic: &str,
        cursors: &[Cursor],
    ) -> Result<Vec<Frame>, ProtocolError> {
        let most = self.inner.limits.topics_per_device;
        let mut state = self.inner.state.lock();
        let me = state.me;
        let State { topics, links, .. } = &mut *state;
        let Some(links) = links.get_mut(&node) else {
            return Ok(Vec::new());
        };
        let was_present = links.iter().any(|link| link.topics.contains(topic));
        let Some(link) = links.iter_mut().find(|link| link.id == id) else {
            return Ok(Vec::new());
        };
        if !link.topics.contains(topic) && link.topics.len() >= most {
            return Err(ProtocolError::Violation(format!(
                "over {most} topics on one link"
            )));
        }
        link.topics.insert(topic.to_owned());
        let Some(subscribed) = topics.get(topic) else {
            return Ok(Vec::new());
        };
        if !was_present {
            let _ = subscribed
                .events
                .send(ChannelEvent::Joined { device: node });
        }
        let cursors: HashMap<NodeId, u64> = cursors
            .iter()
            .filter_map(|c| NodeId::from_bytes(&c.sender).ok().map(|n| (n, c.seq)))
            .collect();
        let mut frames: Vec<Frame> = subscribed
            .log
            .missed_by(&cursors)
            .iter()
            .map(|message| message_frame(topic, message))
            .collect();
        let seen_of_mine = me.and_then(|me| cursors.get(&me)).copied().unwrap_or(0);
        if let Some(floor) = subscribed.log.own_floor()
            && floor > seen_of_mine.saturating_add(1)
        {
            frames.insert(
                0,
                Frame::Floor {
                    topic: topic.to_owned(),
                    seq: floor,
                },
            );
        }
        Ok(frames)
    }

    /// A peer left `topic` on link `id`.
    pub(crate) fn peer_unsubscribed(&self, node: NodeId, id: u64, topic: &str) {
        let mut state = self.inner.state.lock();
        let State { topics, links, .. } = &mut *state;
        let Some(links) = links.get_mut(&node) else {
            return;
        };
        if let Some(link) = links.iter_mut().find(|link| link.id == id) {
            link.topics.remove(topic);
        }
        let still = links.iter().any(|link| link.topics.contains(topic));
        if !still && let Some(subscribed) = topics.get(topic) {
            let _ = subscribed.events.send(ChannelEvent::Left { device: node });
        }
    }

    /// Link `id` to `node` ended: the device leaves the topics no other link of it holds.
    pub(crate) fn link_ended(&self, node: NodeId, id: u64) {
        let mut state = self.inner.state.lock();
        let State { topics, links, .. } = &mut *state;
        let Some(list) = links.get_mut(&node) else {
            return;
        };
        let Some(at) = list.iter().position(|link| link.id == id) else {
            return;
        };
        let ended = list.remove(at);
        for topic in &ended.topics {
            let still = list.iter().any(|link| link.topics.contains(topic));
            if !still && let Some(subscribed) = topics.get(topic) {
                let _ = subscribed.events.send(ChannelEvent::Left { device: node });
            }
        }
        if list.is_empty() {
            links.remove(&node);
        }
    }

    /// A message on `topic` from link peer `from` (its own, or one it relays from history).
    pub(crate) fn peer_message(&self, from: NodeId, topic: &str, message: ChannelMessage) {
        if message.sender != from && !self.trusted(message.sender) {
            // Relayed from a device this one does not (or no longer) trust.
            return;
        }
        let mut state = self.inner.state.lock();
        if state.me == Some(message.sender) {
            return;
        }
        let State { clock, topics, .. } = &mut *state;
        let Some(subscribed) = topics.get_mut(topic) else {
            return;
        };
        if let Err(error) = clock.update(&message.hlc, wall_clock_ms()) {
            tracing::debug!(error = %error, "channel message stamped too far ahead; dropped");
            return;
        }
        let outcome = subscribed.log.receive(message);
        self.apply(topic, subscribed, outcome);
    }

    /// Link peer `from` no longer holds its own messages on `topic` before `seq`.
    pub(crate) fn peer_floor(&self, from: NodeId, topic: &str, seq: u64) {
        let mut state = self.inner.state.lock();
        let Some(subscribed) = state.topics.get_mut(topic) else {
            return;
        };
        let outcome = subscribed.log.skip_to(from, seq);
        self.apply(topic, subscribed, outcome);
    }

    /// Writes what `outcome` changed and tells the subscription.
    fn apply(&self, topic: &str, subscribed: &Subscribed, outcome: Outcome) {
        let mut batch = Batch {
            evicted: outcome.evicted,
            ..Batch::default()
        };
        let mut cursors = HashMap::new();
        for delivery in &outcome.deliveries {
            match delivery {
                Delivery::Message(message) => {
                    batch.kept.push(message.clone());
                    cursors.insert(message.sender, message.seq);
                }
                Delivery::Gap { sender, last, .. } => {
                    cursors.insert(*sender, *last);
                }
            }
        }
        batch.cursors = cursors.into_iter().collect();
        if let Err(error) = self.with_store(|store| store.write(topic, &batch)) {
            tracing::warn!(error = %tether::ErrorChain(&error), "channel history not saved");
        }
        for delivery in outcome.deliveries {
            let event = match delivery {
                Delivery::Message(message) => ChannelEvent::Message(message),
                Delivery::Gap {
                    sender,
                    first,
                    last,
                } => ChannelEvent::Gap {
                    sender,
                    first,
                    last,
                },
            };
            let _ = subscribed.events.send(event);
        }
    }
}

#[tether::async_trait]
impl NetworkProtocol for Channels {
    fn alpn(&self) -> &'static [u8] {
        CHANNEL_ALPN
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        // Tether let the connection through its gate: `peer` is paired and trusted.
        self.run_accepted(peer.node_id, connection).await
    }

    async fn shutdown(&self) {
        let links: Vec<Link> = {
            let mut state = self.inner.state.lock();
            state.topics.clear();
            state.links.drain().flat_map(|(_, links)| links).collect()
        };
        for link in links {
            link.connection
                .close(crate::peer::CLOSE_DONE.into(), b"shutting down");
        }
        self.inner.tasks.lock().abort_all();
        *self.inner.service.lock() = None;
        *self.inner.store.lock() = None;
    }
}

/// One topic this device subscribes to: its events, and publishing on it. Dropping it
/// unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    channels: Channels,
    topic: String,
    events: broadcast::Receiver<ChannelEvent>,
}

impl Subscription {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The next event; `None` once the channels shut down.
    pub async fn next(&mut self) -> Option<ChannelEvent> {
        match self.events.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                Some(ChannelEvent::Lagged { missed })
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }

    /// Publishes `body` to every connected subscriber of the topic; returns the message as
    /// sent (its sequence number and HLC).
    pub fn publish(&self, body: impl Into<Vec<u8>>) -> Result<ChannelMessage, ChannelError> {
        self.channels.publish(&self.topic, body.into())
    }

    /// The devices subscribed to the topic now.
    pub fn present(&self) -> Vec<NodeId> {
        self.channels.present(&self.topic)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.channels.unsubscribe(&self.topic);
    }
}

fn cursors_of(log: &TopicLog) -> Vec<Cursor> {
    let mut cursors: Vec<Cursor> = log
        .cursors()
        .into_iter()
        .map(|(sender, seq)| Cursor {
            sender: *sender.as_bytes(),
            seq,
        })
        .collect();
    cursors.truncate(crate::wire::MAX_CURSORS);
    cursors
}

fn message_frame(topic: &str, message: &ChannelMessage) -> Frame {
    Frame::Message {
        topic: topic.to_owned(),
        sender: *message.sender.as_bytes(),
        seq: message.seq,
        hlc: message.hlc,
        body: message.body.clone(),
    }
}

fn prefix(bytes: &[u8; 32]) -> [u8; 8] {
    let mut out = [0u8; 8];
    for (to, from) in out.iter_mut().zip(bytes) {
        *to = *from;
    }
    out
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
