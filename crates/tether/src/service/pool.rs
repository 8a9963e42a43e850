//! The pool: the one link per paired device that messages go over, the dials in progress,
//! every live connection per device, and the devices whose link closed for being idle.
//!
//! All of it sits behind one lock, and every method keeps the pool's rules while it holds it:
//! a link is pooled only for a device still paired (checked under the lock, so a revocation
//! followed by [`Pool::take`] leaves nothing behind), a pooled link's connection is tracked,
//! and an idle-closed mark goes with the next pooled link.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use iroh::endpoint::Connection;
use parking_lot::Mutex;
use tether_identity::NodeId;
use tether_session::DuplicateLinks;

use crate::ConnectionState;
use crate::close::CLOSE_REVOKED;
use crate::close::SYNC_ALPN;
use crate::link::Link;

/// One dial per device at a time: concurrent senders wait for it and share its link.
pub(super) type DialTurn = Arc<tokio::sync::Mutex<()>>;

#[derive(Debug, Default)]
struct PoolState {
    /// The one link per device that messages go over.
    links: HashMap<NodeId, Arc<Link>>,
    /// One dial per device at a time.
    dialing: HashMap<NodeId, DialTurn>,
    /// Every live connection per device (links and third-party protocols), for `unpair`.
    connections: HashMap<NodeId, Vec<Connection>>,
    /// Devices whose last link was closed for being idle: discovery does not redial them
    /// (the next send does).
    idle_closed: HashSet<NodeId>,
    /// Devices this side is dialling back after they came from a new address: their
    /// incoming connections are closed until the dial back ends.
    dialling_back: HashSet<NodeId>,
}

impl PoolState {
    /// Records a live connection, dropping the closed ones of the same device.
    fn track(&mut self, node_id: NodeId, connection: &Connection) {
        let list = self.connections.entry(node_id).or_default();
        list.retain(|c| c.close_reason().is_none());
        list.push(connection.clone());
    }

    /// Whether someone holds the device's dial turn.
    fn dialing_now(&self, node_id: &NodeId) -> bool {
        self.dialing
            .get(node_id)
            .is_some_and(|turn| turn.try_lock().is_err())
    }

    fn protocol_connection_open(&self, node_id: &NodeId) -> bool {
        self.connections.get(node_id).is_some_and(|list| {
            list.iter()
                .any(|c| c.close_reason().is_none() && c.alpn() != SYNC_ALPN)
        })
    }
}

/// The device is no longer paired: the connection was closed, not pooled.
#[derive(Debug)]
pub(super) struct NotPaired;

/// What pooling a new link did.
#[derive(Debug)]
pub(super) struct Adopted {
    /// The link messages to the device use now.
    pub(super) pooled: Arc<Link>,
    /// The other of two open links to the device, to close once requests on it had their time.
    pub(super) retired: Option<Arc<Link>>,
}

/// The connection pool (see the module's documentation).
#[derive(Debug, Default)]
pub(super) struct Pool {
    state: Mutex<PoolState>,
}

impl Pool {
    /// The pooled link to `node_id`, if it is open.
    pub(super) fn live_link(&self, node_id: &NodeId) -> Option<Arc<Link>> {
        let state = self.state.lock();
        state
            .links
            .get(node_id)
            .filter(|link| link.is_open())
            .cloned()
    }

    /// Every pooled link that is open.
    pub(super) fn open_links(&self) -> Vec<Arc<Link>> {
        let state = self.state.lock();
        let open = state.links.values().filter(|link| link.is_open());
        open.cloned().collect()
    }

    /// The turn to dial `node_id`: hold its lock while dialling.
    pub(super) fn dial_turn(&self, node_id: NodeId) -> DialTurn {
        Arc::clone(self.state.lock().dialing.entry(node_id).or_default())
    }

    /// Pools `link` if `paired` still says so, tracks its connection and clears the device's
    /// idle mark. A second open link to the same device does not make two pooled connections:
    /// [`keep_older`] picks one, the same one on both devices, and the other is returned to be
    /// retired. A device no longer paired has `link` closed.
    pub(super) fn adopt(
        &self,
        link: &Arc<Link>,
        me: NodeId,
        paired: impl FnOnce() -> bool,
    ) -> Result<Adopted, NotPaired> {
        let node_id = link.node_id;
        let mut state = self.state.lock();
        if !paired() {
            drop(state);
            link.close(CLOSE_REVOKED, "not paired");
            return Err(NotPaired);
        }
        let open_old = state
            .links
            .get(&node_id)
            .filter(|old| old.is_open())
            .cloned();
        let adopted = match open_old {
            Some(old) if keep_older(&old, link, me) => Adopted {
                pooled: old,
                retired: Some(Arc::clone(link)),
            },
            old => {
                state.links.insert(node_id, Arc::clone(link));
                Adopted {
                    pooled: Arc::clone(link),
                    retired: old,
                }
            }
        };
        state.track(node_id, &link.connection);
        state.idle_closed.remove(&node_id);
        Ok(adopted)
    }

    /// Records a third-party protocol's live connection with a device, if `paired` still
    /// says so; else closes it.
    pub(super) fn track(
        &self,
        node_id: NodeId,
        connection: &Connection,
        paired: impl FnOnce() -> bool,
    ) -> Result<(), NotPaired> {
        let mut state = self.state.lock();
        if !paired() {
            connection.close(CLOSE_REVOKED.into(), b"not paired");
            return Err(NotPaired);
        }
        state.track(node_id, connection);
        Ok(())
    }

    /// The device's live connections, when one of them leads to where the device was: it uses
    /// direct addresses, none of which `new` (a connection the device just dialled in on)
    /// comes from. The device restarted or moved, and such connections lead to a dead socket.
    /// `None` when every live connection shares an address with `new` (both sides dialled at
    /// once, say, or the device's other new connections), or goes through a relay, or when
    /// `new` does.
    ///
    /// iroh sends a new connection's first packets to one path per device, chosen among its
    /// open connections' paths, and keeps the old, dead one while any connection lasts (its
    /// round-trip time, measured before the restart, still looks good); so until they are all
    /// closed, the new ones too, no dial reaches the device's new address.
    pub(super) fn left_behind(
        &self,
        node_id: &NodeId,
        new: &Connection,
    ) -> Option<Vec<Connection>> {
        let arrived_from: HashSet<_> = tether_iroh::direct_addrs(new).into_iter().collect();
        if arrived_from.is_empty() {
            return None;
        }
        let state = self.state.lock();
        let open: Vec<Connection> = state
            .connections
            .get(node_id)?
            .iter()
            .filter(|c| c.close_reason().is_none() && c.stable_id() != new.stable_id())
            .cloned()
            .collect();
        let stale = open.iter().any(|c| {
            let addrs = tether_iroh::direct_addrs(c);
            !addrs.is_empty() && !addrs.iter().any(|addr| arrived_from.contains(addr))
        });
        stale.then_some(open)
    }

    /// Takes `link` out of the pool if it is the device's pooled one; whether it was. When
    /// `idle` (it was closed for being idle), the device is marked so.
    pub(super) fn remove_if_current(&self, link: &Arc<Link>, idle: bool) -> bool {
        let mut state = self.state.lock();
        let current = state
            .links
            .get(&link.node_id)
            .is_some_and(|current| Arc::ptr_eq(current, link));
        if current {
            state.links.remove(&link.node_id);
            if idle {
                state.idle_closed.insert(link.node_id);
            }
        }
        current
    }

    /// Marks the device as being dialled back; false when it already was.
    pub(super) fn start_dial_back(&self, node_id: NodeId) -> bool {
        self.state.lock().dialling_back.insert(node_id)
    }

    /// The dial back to the device ended.
    pub(super) fn end_dial_back(&self, node_id: &NodeId) {
        self.state.lock().dialling_back.remove(node_id);
    }

    /// Whether the device is being dialled back.
    pub(super) fn dialling_back(&self, node_id: &NodeId) -> bool {
        self.state.lock().dialling_back.contains(node_id)
    }

    /// Whether the device's last link was closed for being idle.
    pub(super) fn closed_idle(&self, node_id: &NodeId) -> bool {
        self.state.lock().idle_closed.contains(node_id)
    }

    /// Takes everything the pool holds for a device: its pooled link and its connections.
    pub(super) fn take(&self, node_id: &NodeId) -> (Option<Arc<Link>>, Vec<Connection>) {
        let mut state = self.state.lock();
        let link = state.links.remove(node_id);
        let connections = state.connections.remove(node_id).unwrap_or_default();
        (link, connections)
    }

    /// Takes every pooled link out.
    pub(super) fn drain_links(&self) -> Vec<(NodeId, Arc<Link>)> {
        self.state.lock().links.drain().collect()
    }

    /// Whether a third-party protocol's connection to the device is open (it keeps the
    /// device's link in use).
    pub(super) fn protocol_connection_open(&self, node_id: &NodeId) -> bool {
        self.state.lock().protocol_connection_open(node_id)
    }

    /// The state of the connection to a device (see [`ConnectionState`]).
    pub(super) fn state_of(&self, node_id: &NodeId) -> ConnectionState {
        let state = self.state.lock();
        if let Some(link) = state.links.get(node_id) {
            return if !link.is_open() {
                ConnectionState::Closing
            } else if link.idle_for().is_none() || state.protocol_connection_open(node_id) {
                ConnectionState::Connected
            } else {
                ConnectionState::Idle
            };
        }
        if state.dialing_now(node_id) {
            ConnectionState::Connecting
        } else {
            ConnectionState::Closed
        }
    }
}

/// Whether to keep `old` rather than `new`, two open links to the same device: the rule of
/// [`DuplicateLinks::keep_older`], which both devices apply to the same answer.
fn keep_older(old: &Link, new: &Link, me: NodeId) -> bool {
    DuplicateLinks {
        me,
        peer: old.node_id,
        old_dialled_here: old.dialled_here(),
        new_dialled_here: new.dialled_here(),
        old_age: old.age(),
    }
    .keep_older()
}
