//! The pool: one live link per paired device, dialled on demand and watched until it ends.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use iroh::endpoint::Connection;
use rand_core::UnwrapErr;
use tether_identity::{ErrorChain, NodeId};
use tether_iroh::{ConnectionInfo, PeerAddr, TransportError};
use tether_protocol::{DiscoveredDevice, PairedPeer};
use tether_registry::{ConnectionInfo as RegistryConnection, DisconnectReason};
use tether_session::DuplicateLinks;
use tether_transfer::TransferError;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::NetworkingService;
use super::device::remote_ip;
use crate::error::short;
use crate::gate::CLOSE_REVOKED;
use crate::link::{CLOSE_DEAD, CLOSE_NORMAL, Inbox, Link, SYNC_ALPN};
use crate::{ConnectionState, NetworkError, NetworkEvent};

/// How many connection attempts a send makes before it reports the device offline.
const CONNECT_ATTEMPTS: u32 = 3;
/// The first retry's delay; each retry doubles it, plus up to 50% jitter.
const RETRY_BASE: Duration = Duration::from_millis(150);
/// How often one dial starts over because discovery reported a new address.
const MAX_REDIALS: u32 = 8;
/// How often a dial asks discoveries that resolve by id (DNS) for the device again.
const RESOLVE_EVERY: Duration = Duration::from_secs(1);

impl NetworkingService {
    /// The live link to a paired device, dialling (with retries) when there is none.
    pub(super) async fn link(&self, node_id: NodeId) -> Result<Arc<Link>, NetworkError> {
        if let Some(link) = self.live_link(&node_id) {
            return Ok(link);
        }
        let turn = Arc::clone(
            self.inner
                .dialing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(node_id)
                .or_default(),
        );
        let _turn = turn.lock().await;
        // Someone else's dial (or the peer's) may have finished while we waited.
        if let Some(link) = self.live_link(&node_id) {
            return Ok(link);
        }
        let secret = self
            .inner
            .registry
            .check_connection(&node_id)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))?;
        let inbox = self.inbox(node_id)?;
        self.report_state(node_id, ConnectionState::Connecting);
        let linked = async {
            let connection = self.dial(node_id, SYNC_ALPN).await?;
            let link = Link::dial(
                connection,
                self.inner.keys.identity(),
                node_id,
                &secret,
                inbox,
            )
            .await?;
            self.adopt(&link)
        }
        .await;
        if linked.is_err() && self.live_link(&node_id).is_none() {
            self.report_state(node_id, ConnectionState::Closed);
        }
        linked
    }

    /// Where a link to `node_id` delivers the peer's messages and requests.
    pub(super) fn inbox(&self, node_id: NodeId) -> Result<Inbox, NetworkError> {
        let device = self
            .inner
            .registry
            .device(&node_id)
            .and_then(|d| d.paired)
            .ok_or_else(|| NetworkError::DeviceNotPaired(node_id))?;
        Ok(Inbox {
            events: self.inner.incoming.clone(),
            handler: Arc::clone(&self.inner.handler),
            peer: PairedPeer {
                node_id,
                device: device.info,
            },
        })
    }

    pub(super) fn report_state(&self, node_id: NodeId, state: ConnectionState) {
        let _ = self
            .inner
            .events
            .send(NetworkEvent::ConnectionStateChanged { node_id, state });
    }

    /// Closes a pooled link from this side, saying so.
    pub(super) fn close_link(&self, link: &Link, code: u32, reason: &'static str) {
        close_link(&self.inner.events, link, code, reason);
    }

    /// Whether a third-party protocol's connection to the device is open (it keeps the
    /// device's link in use).
    pub(super) fn protocol_connection_open(&self, node_id: NodeId) -> bool {
        self.inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node_id)
            .is_some_and(|list| {
                list.iter()
                    .any(|c| c.close_reason().is_none() && c.alpn() != SYNC_ALPN)
            })
    }

    pub(super) fn live_link(&self, node_id: &NodeId) -> Option<Arc<Link>> {
        let links = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        links.get(node_id).filter(|link| link.is_open()).cloned()
    }

    /// Dials a paired device on `alpn`, trying its known addresses with exponential backoff.
    ///
    /// Each attempt waits at most `connect_timeout`. When discovery reports an address for the
    /// device that the attempt is not trying (it moved, or restarted on a new port), the
    /// attempt is dropped and a new one tries the new address at once.
    pub(super) async fn dial(
        &self,
        node_id: NodeId,
        alpn: &[u8],
    ) -> Result<Connection, NetworkError> {
        let mut updates = self.inner.discovered_tx.subscribe();
        // Discoveries that resolve by id (DNS) look the device up now and every second while
        // this dial lasts (a record may still hold the address the device just left); answers
        // come as updates, and a new address starts the attempt over.
        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let _resolving = n0_future::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESOLVE_EVERY);
            loop {
                tick.tick().await;
                for discovery in &discoveries {
                    discovery.resolve(node_id);
                }
            }
        }));
        let connect_timeout = self.inner.config.connect_timeout;
        let mut last_error = None;
        let mut attempt = 0;
        let mut redials = 0;
        while attempt < CONNECT_ATTEMPTS {
            if attempt > 0 {
                let random = rand_core::Rng::next_u32(&mut UnwrapErr(getrandom::SysRng));
                tokio::time::sleep(retry_delay(attempt, random)).await;
            }
            let addr = self.known_addr(node_id);
            if addr.direct.is_empty() && addr.relay_url.is_none() {
                last_error = Some(NetworkError::DeviceOffline(node_id));
                attempt += 1;
                continue;
            }
            let connect =
                tokio::time::timeout(connect_timeout, self.inner.transport.connect(&addr, alpn));
            tokio::select! {
                result = connect => match result {
                    Ok(Ok(connection)) => return Ok(connection),
                    Ok(Err(TransportError::AlpnNotServed { alpn, .. })) => {
                        return Err(NetworkError::UnknownProtocol { alpn });
                    }
                    Ok(Err(error)) => {
                        debug!(peer = %short(&node_id), attempt, error = %ErrorChain(&error), "connect failed");
                        last_error = Some(error.into());
                    }
                    Err(_) => {
                        debug!(peer = %short(&node_id), attempt, "connect timed out");
                        last_error = Some(NetworkError::TimedOut {
                            what: "connect",
                            after: connect_timeout,
                        });
                    }
                },
                () = moved(&mut updates, &addr), if redials < MAX_REDIALS => {
                    debug!(peer = %short(&node_id), "a new address; dialling it");
                    redials += 1;
                    continue;
                }
            }
            attempt += 1;
        }
        Err(last_error.unwrap_or_else(|| NetworkError::DeviceOffline(node_id)))
    }

    pub(super) fn known_addr(&self, node_id: NodeId) -> PeerAddr {
        let mut addr = PeerAddr::new(node_id);
        if let Some(found) = self
            .inner
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node_id)
        {
            addr.direct.extend(found.addrs.iter().copied());
            addr.relay_url.clone_from(&found.relay_url);
        }
        if let Some(device) = self.inner.registry.device(&node_id).and_then(|d| d.paired) {
            for stored in device.addresses {
                if !addr.direct.contains(&stored) {
                    addr.direct.push(stored);
                }
            }
            if addr.relay_url.is_none() {
                addr.relay_url = device.relay_url.and_then(|url| url.parse().ok());
            }
        }
        addr
    }

    /// Puts a new link in the pool, records the connection, and watches for its end. Returns
    /// the link messages to the device should use now.
    ///
    /// A second open link to the same device (both sides dialled at once, or the peer dialled
    /// again after a restart) does not make two pooled connections: [`keep_older`] picks one,
    /// the same one on both devices, and the other is closed once requests already on it
    /// have had their time.
    pub(super) fn adopt(&self, link: &Arc<Link>) -> Result<Arc<Link>, NetworkError> {
        let node_id = link.node_id;
        let (pooled, retired) = {
            let mut links = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked under the pool's lock (see `unpair`).
            if self.inner.registry.check_connection(&node_id).is_err() {
                drop(links);
                link.close(CLOSE_REVOKED, "not paired");
                return Err(NetworkError::DeviceNotPaired(node_id));
            }
            match links.get(&node_id).filter(|old| old.is_open()).cloned() {
                Some(old) if keep_older(&old, link, self.node_id()) => {
                    (old, Some(Arc::clone(link)))
                }
                old => {
                    links.insert(node_id, Arc::clone(link));
                    (Arc::clone(link), old)
                }
            }
        };
        self.track(node_id, &link.connection)?;
        self.inner
            .idle_closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
        self.watch(Arc::clone(link), retired.is_none());
        self.serve_streams(Arc::clone(link));
        match retired {
            Some(retired) => {
                debug!(peer = %short(&node_id), "two connections to one device; retiring one");
                let grace = self.inner.config.request_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    retired.close(CLOSE_NORMAL, "a newer connection replaced this one");
                });
            }
            None => self.report_connected(link),
        }
        // Only now: `Connected` goes out before anything the peer sends on the link.
        link.start_reading();
        Ok(pooled)
    }

    /// Announces that a device is connected (it was not a moment ago). The registry hears of
    /// it from [`Self::watch`].
    pub(super) fn report_connected(&self, link: &Link) {
        let node_id = link.node_id;
        let info = ConnectionInfo::of(&link.connection);
        let _ = self.inner.events.send(NetworkEvent::Connected {
            node_id,
            path: info.path,
        });
        self.report_state(node_id, ConnectionState::Connected);
        info!(peer = %short(&node_id), path = %info.path, rtt = ?info.rtt, "connected");
    }

    /// Serves the streams the peer opens on a link after its handshake: transfers, lanes and
    /// pull requests.
    pub(super) fn serve_streams(&self, link: Arc<Link>) {
        let service = self.clone();
        self.spawn("a link's stream acceptor", async move {
            while let Ok((send, recv)) = link.connection.accept_bi().await {
                let task_service = service.clone();
                let link = Arc::clone(&link);
                service.spawn("an incoming stream", async move {
                    let service = task_service;
                    let receiver = service.inner.receiver.as_ref();
                    // A transfer (or lane) keeps the link in use until it ends.
                    let in_use = link.use_it();
                    let served = crate::transfer::serve_stream(
                        &link,
                        receiver,
                        &service.inner.sharing,
                        send,
                        recv,
                        &service.inner.events,
                    )
                    .await;
                    drop(in_use);
                    match served {
                        Ok(Some(report)) => {
                            info!(peer = %short(&link.node_id), bytes = report.bytes_total, "received a transfer");
                            let _ = service.inner.events.send(NetworkEvent::TransferReceived {
                                from: link.node_id,
                                report,
                            });
                        }
                        Ok(None) => {}
                        Err(NetworkError::Transfer(TransferError::Declined(reason))) => {
                            info!(peer = %short(&link.node_id), %reason, "declined an incoming transfer");
                        }
                        Err(error) => {
                            warn!(
                                peer = %short(&link.node_id),
                                error = %ErrorChain(&error),
                                "incoming transfer failed"
                            );
                        }
                    }
                });
            }
        });
    }

    /// Records a newly pooled link (`connected`) in the registry, then waits for the link's
    /// end; when it was the pooled one, the device is disconnected.
    ///
    /// The registry saves the link's address as the device's last known one, a disk write
    /// with fsync when the address changed (a peer on a new port): done here, on a blocking
    /// thread, so neither the link's first messages nor the runtime's workers wait for it,
    /// and before `disconnected`, in the same task, so the registry sees the two in order.
    pub(super) fn watch(&self, link: Arc<Link>, connected: bool) {
        let service = self.clone();
        let node_id = link.node_id;
        self.spawn("a link's watch", async move {
            if connected {
                let registry = service.inner.registry.clone();
                let info = registry_connection(&link.connection);
                // Never closed, so the permit always comes.
                let _one_at_a_time = service.inner.registry_writes.acquire().await;
                let recorded =
                    tokio::task::spawn_blocking(move || registry.connected(node_id, info)).await;
                match recorded {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => debug!(error = %ErrorChain(&error), "registry: connected"),
                    // Logged as it is mapped.
                    Err(error) => {
                        let _ = NetworkError::task_failed("recording a connection", error);
                    }
                }
            }
            let error = link.connection.closed().await;
            let removed = {
                let mut links = service
                    .inner
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match links.get(&node_id) {
                    Some(current) if Arc::ptr_eq(current, &link) => {
                        links.remove(&node_id).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                let reason = link.end_reason(&error);
                let idle = link.closed_idle();
                let registry_reason = if idle {
                    DisconnectReason::Closed
                } else if link.local_close_code() == Some(CLOSE_DEAD) {
                    DisconnectReason::TimedOut
                } else {
                    DisconnectReason::Error(reason.clone())
                };
                let _ = service
                    .inner
                    .registry
                    .disconnected(node_id, registry_reason);
                if idle {
                    // Not a failure: the next send dials; discovery leaves it be.
                    service
                        .inner
                        .idle_closed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(node_id);
                    let by_peer = link.local_close_code().is_none();
                    info!(peer = %short(&node_id), by_peer, "closed an idle connection");
                    let _ = service
                        .inner
                        .events
                        .send(NetworkEvent::IdleClosed { node_id, by_peer });
                } else {
                    info!(peer = %short(&node_id), %reason, "disconnected");
                }
                let _ = service
                    .inner
                    .events
                    .send(NetworkEvent::Disconnected { node_id, reason });
                service.report_state(node_id, ConnectionState::Closed);
            }
        });
    }

    /// Records a live connection with a paired device, for `unpair` to close; refuses (and
    /// closes) it when the device is no longer paired.
    pub(super) fn track(
        &self,
        node_id: NodeId,
        connection: &Connection,
    ) -> Result<(), NetworkError> {
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock `unpair` takes after revoking.
        if self.inner.registry.check_connection(&node_id).is_err() {
            connection.close(CLOSE_REVOKED.into(), b"not paired");
            return Err(NetworkError::DeviceNotPaired(node_id));
        }
        let list = connections.entry(node_id).or_default();
        list.retain(|c| c.close_reason().is_none());
        list.push(connection.clone());
        Ok(())
    }
}

/// What the registry records of a new connection: its direct address, or its relay.
fn registry_connection(connection: &Connection) -> RegistryConnection {
    match remote_ip(connection).first() {
        Some(addr) => RegistryConnection::direct(*addr, SystemTime::now()),
        None => RegistryConnection::relayed(
            ConnectionInfo::of(connection).remote.unwrap_or_default(),
            SystemTime::now(),
        ),
    }
}

/// Closes a pooled link from this side, saying so on `events` (a task that must not keep
/// the service alive after its shutdown calls this rather than the method).
pub(super) fn close_link(
    events: &broadcast::Sender<NetworkEvent>,
    link: &Link,
    code: u32,
    reason: &'static str,
) {
    if link.is_open() {
        let _ = events.send(NetworkEvent::ConnectionStateChanged {
            node_id: link.node_id,
            state: ConnectionState::Closing,
        });
    }
    link.close(code, reason);
}

/// Returns when discovery reports an address for `addr.node_id` that `addr` lacks.
async fn moved(updates: &mut broadcast::Receiver<DiscoveredDevice>, addr: &PeerAddr) {
    loop {
        match updates.recv().await {
            Ok(found) if found.node_id == addr.node_id => {
                if found.addrs.iter().any(|a| !addr.direct.contains(a)) {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
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

/// The wait before connection attempt `attempt` (1 is the first retry): [`RETRY_BASE`],
/// doubled for each retry after the first, plus up to half of it again as jitter (`random`
/// out of `u32::MAX`). Saturates for any attempt.
fn retry_delay(attempt: u32, random: u32) -> Duration {
    let base = RETRY_BASE.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let jitter = (base / 2).mul_f64(f64::from(random) / f64::from(u32::MAX));
    base.saturating_add(jitter)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn retries_double_with_up_to_half_again_of_jitter() {
        assert_eq!(retry_delay(1, 0), RETRY_BASE);
        assert_eq!(retry_delay(1, u32::MAX), RETRY_BASE * 3 / 2);
        assert_eq!(retry_delay(2, 0), RETRY_BASE * 2);
        assert_eq!(retry_delay(2, u32::MAX), RETRY_BASE * 3);
    }

    proptest! {
        #[test]
        fn any_attempt_gets_a_delay_that_grows_with_it(
            attempt in prop_oneof![0..64u32, Just(u32::MAX - 1), Just(u32::MAX)],
            random in prop_oneof![Just(0), Just(u32::MAX), any::<u32>()],
        ) {
            let delay = retry_delay(attempt, random);
            prop_assert!(delay >= RETRY_BASE);
            prop_assert!(retry_delay(attempt.saturating_add(1), random) >= delay);
            prop_assert!(retry_delay(attempt, random.saturating_add(1)) >= delay);
            if (1..20).contains(&attempt) {
                let doubled = retry_delay(attempt + 1, random).abs_diff(delay * 2);
                prop_assert!(doubled <= Duration::from_nanos(2), "{doubled:?}");
            }
        }
    }
}
