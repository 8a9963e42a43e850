//! The service's background tasks: accepting connections, discovery, keep-alive.

use n0_future::FutureExt;

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use iroh::endpoint::Connection;
use n0_future::StreamExt;
use tether_identity::{ErrorChain, NodeId, error_chain};
use tether_iroh::{ConnectionInfo, PathKind, PeerAddr};
use tether_pairing::CodeStatus;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, PairedPeer};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::{NetworkingService, pool};
use crate::error::short;
use crate::gate::{
    CLOSE_PAIRING_BUSY, CLOSE_PAIRING_DECLINED, CLOSE_PAIRING_TIMEOUT, pairing_refusal,
};
use crate::link::{CLOSE_DEAD, CLOSE_IDLE, Incoming, Link, Probe, SYNC_ALPN};
use crate::lobby::EXCHANGE_TIMEOUT;
use crate::pairing::{self, PAIRING_ALPN, PairedDevice};
use crate::{CodeEnded, NetworkError, NetworkEvent};

impl NetworkingService {
    /// Runs `task` (named `what` in the log) as one of the service's tasks, which shutdown
    /// stops. A panic in it is logged with its message and ends that task only.
    pub(super) fn spawn(
        &self,
        what: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let tasks = Arc::clone(&self.inner.tasks);
        // Held while spawning, so the task cannot remove its entry before it is there.
        let mut held = tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let handle = tokio::spawn({
            let tasks = Arc::clone(&tasks);
            async move {
                logging_panics(what, task).await;
                let id = tokio::task::id();
                tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            }
        });
        held.insert(handle.id(), handle);
    }

    pub(super) fn spawn_event_loop(&self, mut incoming_rx: mpsc::Receiver<Incoming>) {
        let service = self.clone();
        self.spawn("the accept loop", async move {
            service.accept_loop().await;
        });

        let events = self.inner.events.clone();
        self.spawn("the message loop", async move {
            while let Some(Incoming { from, message }) = incoming_rx.recv().await {
                let _ = events.send(NetworkEvent::MessageReceived { from, message });
            }
        });

        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for discovery in discoveries {
            let service = self.clone();
            self.spawn("a discovery loop", async move {
                service.discovery_loop(discovery).await;
            });
        }

        let service = self.clone();
        self.spawn("the keep-alive loop", async move {
            service.keepalive_loop().await;
        });

        let service = self.clone();
        self.spawn("the home relay loop", async move {
            service.home_relay_loop().await;
        });

        if let Some(selector) = self.inner.config.relay_selector.clone() {
            let transport = self.inner.transport.clone();
            let every = self.inner.config.relay_probe_interval;
            self.spawn("the relay selection", async move {
                transport.select_relays(selector, every).await;
            });
        }

        let service = self.clone();
        self.spawn("the expiry of codes and sightings", async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                // Devices discovery stopped announcing are forgotten.
                let expired = service
                    .inner
                    .discovered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .expire(Instant::now());
                for node_id in expired {
                    service.forget_sighting(node_id);
                }
                // Only expiry: a code that paired or was burned is withdrawn by the
                // connection that did it, which knows the outcome.
                service.withdraw_code(
                    |status| status == CodeStatus::Expired,
                    || Err(CodeEnded::Expired),
                );
            }
        });
    }

    pub(super) async fn accept_loop(&self) {
        let endpoint = self.inner.transport.endpoint().clone();
        while let Some(incoming) = endpoint.accept().await {
            let service = self.clone();
            self.spawn("an incoming connection", async move {
                // The gate has already run, right after the TLS handshake.
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(error) => {
                        debug!(error = %ErrorChain(&error), "incoming connection failed");
                        return;
                    }
                };
                if let Err(error) = service.serve(connection).await {
                    debug!(error = %ErrorChain(&error), "connection ended with an error");
                }
            });
        }
    }

    pub(super) async fn serve(&self, connection: Connection) -> Result<(), NetworkError> {
        let peer = tether_iroh::peer_node_id(&connection)?;
        let alpn = connection.alpn().to_vec();
        if alpn == PAIRING_ALPN {
            let result = self.serve_pairing(&connection, peer).await;
            // The invite hears of it only when this ended the code (paired, burned, spent);
            // a connection that made no guess leaves it open, as does one mid-handshake.
            self.withdraw_code(
                |status| !matches!(status, CodeStatus::Open | CodeStatus::Claimed),
                || match &result {
                    Ok(device) => Ok(device.clone()),
                    Err(error) => Err(CodeEnded::Failed {
                        reason: error_chain(&error),
                    }),
                },
            );
            self.report_pairing(&result);
            return result.map(drop);
        }
        // Every other ALPN passed the gate: the peer is paired.
        let secret = self
            .inner
            .registry
            .check_connection(&peer)
            .map_err(|_| NetworkError::DeviceNotPaired(peer))?;
        if alpn == SYNC_ALPN {
            let link = Link::accept(
                connection,
                self.inner.keys.identity(),
                peer,
                &secret,
                self.inbox(peer)?,
            )
            .await?;
            return self.adopt(&link).map(drop);
        }
        let protocol = self
            .inner
            .protocols
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&alpn)
            .cloned();
        let Some(protocol) = protocol else {
            connection.close(crate::gate::CLOSE_UNKNOWN_ALPN.into(), b"unknown protocol");
            return Err(NetworkError::UnknownProtocol {
                alpn: String::from_utf8_lossy(&alpn).into_owned(),
            });
        };
        let device = self
            .inner
            .registry
            .device(&peer)
            .and_then(|d| d.paired)
            .ok_or_else(|| NetworkError::DeviceNotPaired(peer))?;
        self.track(peer, &connection)?;
        protocol
            .accept(
                connection,
                PairedPeer {
                    node_id: peer,
                    device: device.info,
                },
            )
            .await
            .map_err(|error| NetworkError::ProtocolViolation {
                node: peer,
                reason: error_chain(&error),
            })
    }

    /// Serves one pairing connection within the lobby's bounds: a seat, the deadlines, and
    /// eviction by a newcomer while it has sent nothing. The connection is closed at the end,
    /// whatever happened.
    async fn serve_pairing(
        &self,
        connection: &Connection,
        peer: NodeId,
    ) -> Result<PairedDevice, NetworkError> {
        let seat = match self.inner.lobby.enter(peer) {
            Ok(seat) => seat,
            Err(full) => {
                let refusal = pairing_refusal(full);
                connection.close(refusal.code.into(), refusal.reason.as_bytes());
                return Err(NetworkError::Refused {
                    node: peer,
                    code: refusal.code,
                    reason: refusal.reason.to_owned(),
                });
            }
        };
        let desk = pairing::Desk {
            initiator: &self.inner.initiator,
            code_number: &self.inner.code_number,
            confirm: &self.inner.confirm,
            registry: &self.inner.registry,
            events: &self.inner.events,
        };
        let exchange = pairing::serve_joiner(connection, peer, &desk, &seat);
        let result = tokio::select! {
            result = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange) => {
                result.unwrap_or(Err(NetworkError::TimedOut {
                    what: "pairing exchange",
                    after: EXCHANGE_TIMEOUT,
                }))
            }
            () = seat.evicted() => Err(NetworkError::Refused {
                node: peer,
                code: CLOSE_PAIRING_BUSY,
                reason: "gave its place to a newer pairing connection".to_owned(),
            }),
        };
        match &result {
            Ok(_) => connection.close(0u32.into(), b"paired"),
            Err(NetworkError::TimedOut { .. }) => {
                connection.close(CLOSE_PAIRING_TIMEOUT.into(), b"pairing took too long");
            }
            Err(NetworkError::Refused { code, reason, .. }) if *code == CLOSE_PAIRING_DECLINED => {
                connection.close((*code).into(), reason.as_bytes());
            }
            Err(NetworkError::Refused { code, .. }) => {
                connection.close((*code).into(), b"pairing is busy");
            }
            Err(_) => connection.close(0u32.into(), b"pairing failed"),
        }
        result
    }

    /// Announces this device again whenever its home relay changes, so peers (and devices that
    /// can only use the relay) learn where to reach it. Never ends when no relay is configured.
    pub(super) async fn home_relay_loop(&self) {
        let mut last = None;
        loop {
            let now = self.inner.transport.home_relay_changed(last.as_ref()).await;
            debug!(relay = ?now, "home relay changed; announcing again");
            self.announce(self.shown_slot().as_deref());
            last = now;
        }
    }

    /// Forgets what discovery said of a device (lost, expired, or pushed out by newer
    /// sightings): in the registry and in iroh's address lookup.
    fn forget_sighting(&self, node_id: NodeId) {
        self.inner.registry.forget_discovered(node_id);
        self.inner.transport.forget(&node_id);
        let _ = self.inner.events.send(NetworkEvent::DeviceLost { node_id });
    }

    pub(super) async fn discovery_loop(&self, discovery: Arc<dyn Discovery>) {
        let mut events = discovery.subscribe();
        while let Some(event) = events.next().await {
            match event {
                DiscoveryEvent::Found(device) => {
                    let node_id = device.node_id;
                    let seen = self
                        .inner
                        .discovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(device.clone(), Instant::now());
                    for forgotten in seen.forgotten {
                        self.forget_sighting(forgotten);
                    }
                    let is_new = seen.is_new;
                    self.inner.transport.remember(&PeerAddr {
                        node_id,
                        direct: device.addrs.clone(),
                        relay_url: device.relay_url.clone(),
                    });
                    if let Some(addr) = device.addrs.first() {
                        let _ = self.inner.registry.discovered(node_id, *addr);
                    }
                    if is_new {
                        let _ = self.inner.events.send(NetworkEvent::DeviceDiscovered {
                            node_id,
                            source: device.source,
                        });
                    }
                    self.check_link_if_relay_moved(&device);
                    let _ = self.inner.discovered_tx.send(device);
                    // A paired device came back (or moved): reconnect, unless its last link
                    // was closed for being idle (the next send dials it).
                    let idle_closed = self
                        .inner
                        .idle_closed
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&node_id);
                    if !idle_closed
                        && self.inner.registry.check_connection(&node_id).is_ok()
                        && self.live_link(&node_id).is_none()
                    {
                        let service = self.clone();
                        self.spawn("a reconnect", async move {
                            if let Err(error) = service.link(node_id).await {
                                debug!(peer = %short(&node_id), error = %ErrorChain(&error), "reconnect failed");
                            }
                        });
                    }
                }
                DiscoveryEvent::Lost(node_id) => {
                    let known = self
                        .inner
                        .discovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&node_id)
                        .is_some();
                    if known {
                        self.forget_sighting(node_id);
                    }
                }
                _ => {}
            }
        }
    }

    /// Pings every pooled link the peer has been silent on for `keepalive_interval`, and
    /// closes it when the ping gets no answer within `request_timeout`. The check runs four
    /// times per interval (and at least once an hour), so a dead peer is noticed within `1.25 ×
    /// keepalive_interval + request_timeout` of its last word.
    ///
    /// Closes links that carried no application traffic for `idle_timeout` (checked four
    /// times per timeout too, so one closes within 1.25 × `idle_timeout` of its last use).
    /// Pings are not application traffic.
    pub(super) async fn keepalive_loop(&self) {
        let interval = self.inner.config.keepalive_interval;
        let idle_timeout = self.inner.config.idle_timeout;
        let period = idle_timeout.map_or(interval, |idle| idle.min(interval));
        let mut tick = tokio::time::interval(
            (period / 4).clamp(Duration::from_millis(25), Duration::from_secs(60 * 60)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let open: Vec<Arc<Link>> = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|link| link.is_open())
                .cloned()
                .collect();
            for link in open {
                if let Some(timeout) = idle_timeout
                    && link.idle_for().is_some_and(|idle| idle >= timeout)
                    && !self.protocol_connection_open(link.node_id)
                {
                    debug!(peer = %short(&link.node_id), ?timeout, "idle; closing");
                    self.close_link(&link, CLOSE_IDLE, "idle");
                    continue;
                }
                if link.silent_for() < interval {
                    continue;
                }
                if let Some(probe) = link.start_probe(self.inner.config.request_timeout) {
                    self.spawn_probe(link, probe);
                }
            }
        }
    }

    /// Waits for `link`'s keep-alive probe (which the caller started) and closes the link when
    /// the ping got no answer within its timeout.
    pub(super) fn spawn_probe(&self, link: Arc<Link>, probe: Probe) {
        // Not the service: a probe in flight must not keep it alive after shutdown.
        let events = self.inner.events.clone();
        tokio::spawn(logging_panics("a keep-alive probe", async move {
            if probe.dead().await {
                warn!(peer = %short(&link.node_id), "no answer to keep-alive; closing");
                pool::close_link(&events, &link, CLOSE_DEAD, "no answer to a keep-alive ping");
            }
        }));
    }

    /// A device announced a relay other than the one our link to it runs through: that relay
    /// may be gone, so ping the link now rather than at the next keep-alive; a dead link is
    /// then closed within `request_timeout` and the next send dials the new relay.
    fn check_link_if_relay_moved(&self, device: &DiscoveredDevice) {
        let Some(announced) = device.relay_url.as_ref() else {
            return;
        };
        let Some(link) = self.live_link(&device.node_id) else {
            return;
        };
        let info = ConnectionInfo::of(&link.connection);
        if info.path == PathKind::Relayed
            && info.relay_url.as_ref().is_some_and(|url| url != announced)
        {
            let Some(probe) = link.start_probe(self.inner.config.request_timeout) else {
                return;
            };
            debug!(peer = %short(&device.node_id), relay = %announced, "moved to another relay; checking the link");
            self.spawn_probe(link, probe);
        }
    }
}

/// `task`, with a panic in it logged (named `what`, with its message) rather than lost with
/// the task's `JoinHandle`, which nobody reads.
pub(super) async fn logging_panics(what: &'static str, task: impl Future<Output = ()>) {
    if let Err(payload) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        crate::error::logged_panic(what, payload.as_ref());
    }
}
