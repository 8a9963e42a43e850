//! The service's background loops: accepting connections, handing messages to the app,
//! listening to discoveries, keep-alive and idle close, the home relay, expiry, and the
//! outbox's deliveries (`outbox.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use n0_future::StreamExt;
use tether_identity::{ErrorChain, NodeId};
use tether_iroh::{ConnectionInfo, PathKind, PeerAddr};
use tether_pairing::CodeStatus;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent};
use tether_wire::{NetworkMessage, Text};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::core::NetworkingService;
use super::links::close_link;
use crate::close::{CLOSE_DEAD, CLOSE_IDLE};
use crate::error::short;
use crate::link::{Incoming, Link, Probe, admit};
use crate::{CodeEnded, NetworkEvent};

/// How long each link has to answer a ping once an address of this device is gone: a round
/// trip on a live path, with room for a slow relay.
const MOVED_PROBE_WAIT: Duration = Duration::from_secs(1);

/// How often shown codes and sightings are checked for expiry.
const EXPIRY_TICK: Duration = Duration::from_secs(1);

impl NetworkingService {
    /// Starts the background loops, and the stop that follows their cancellation.
    pub(super) fn start_tasks(&self, mut incoming_rx: mpsc::Receiver<Incoming>) {
        self.stop_when_told();
        let tasks = &self.inner.tasks;
        let service = self.for_task();
        tasks.spawn(
            "the accept loop",
            async move { service.accept_loop().await },
        );

        let events = self.inner.events.clone();
        let names = self.for_task();
        tasks.spawn("the message loop", async move {
            while let Some(Incoming { from, message }) = incoming_rx.recv().await {
                match message {
                    NetworkMessage::NameUpdate(update) => {
                        names.take_name_update(from, update).await;
                    }
                    NetworkMessage::Text(Text { text }) => {
                        let _ = events.send(NetworkEvent::TextReceived { from, text });
                    }
                    message => {
                        let _ = events.send(NetworkEvent::MessageReceived { from, message });
                    }
                }
            }
        });

        for discovery in self.inner.discovery.discoveries() {
            let service = self.for_task();
            tasks.spawn("a discovery loop", async move {
                service.discovery_loop(discovery).await;
            });
        }

        let service = self.for_task();
        tasks.spawn("the keep-alive loop", async move {
            service.keepalive_loop().await;
        });

        let service = self.for_task();
        tasks.spawn("the address watch", async move {
            service.address_loop().await;
        });

        let service = self.for_task();
        tasks.spawn("the home relay loop", async move {
            service.home_relay_loop().await;
        });

        if let Some(selector) = self.inner.config.relay_selector.clone() {
            let transport = self.inner.transport.clone();
            let every = self.inner.config.relay_probe_interval;
            tasks.spawn("the relay selection", async move {
                transport.select_relays(selector, every).await;
            });
        }

        let service = self.for_task();
        tasks.spawn("the expiry of codes and sightings", async move {
            service.expiry_loop().await;
        });

        if self.inner.config.deliver_queued {
            let service = self.for_task();
            tasks.spawn("the outbox", async move {
                service.outbox_loop().await;
            });
        }
    }

    async fn accept_loop(&self) {
        let endpoint = self.inner.transport.endpoint().clone();
        while let Some(incoming) = endpoint.accept().await {
            let service = self.for_task();
            self.inner
                .tasks
                .spawn("an incoming connection", async move {
                    let binary = service.inner.config.binary_messages;
                    let (connection, greeting) = match admit(incoming, binary).await {
                        Ok(admitted) => admitted,
                        Err(error) => {
                            debug!(error = %ErrorChain(&error), "incoming connection failed");
                            return;
                        }
                    };
                    if let Err(error) = service.serve(connection, greeting).await {
                        debug!(error = %ErrorChain(&error), "connection ended with an error");
                    }
                });
        }
    }

    /// Forgets devices discovery stopped announcing, and ends codes that expired.
    async fn expiry_loop(&self) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        loop {
            tick.tick().await;
            // Devices discovery stopped announcing are forgotten.
            for node_id in self.inner.discovery.expire(Instant::now()) {
                self.forget_sighting(node_id);
            }
            // Only expiry: a code that paired or was burned is withdrawn by the connection
            // that did it, which knows the outcome.
            self.withdraw_code(
                |status| status == CodeStatus::Expired,
                || Err(CodeEnded::Expired),
            );
            self.inner.limiter.forget_quiet();
        }
    }

    /// Announces this device again whenever its home relay changes, so peers (and devices that
    /// can only use the relay) learn where to reach it. Never ends when no relay is configured.
    async fn home_relay_loop(&self) {
        let mut last = None;
        loop {
            let now = self.inner.transport.home_relay_changed(last.as_ref()).await;
            debug!(relay = ?now, "home relay changed; announcing again");
            self.announce();
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

    async fn discovery_loop(&self, discovery: Arc<dyn Discovery>) {
        let mut events = discovery.subscribe();
        while let Some(event) = events.next().await {
            match event {
                DiscoveryEvent::Found(device) => self.found(device),
                DiscoveryEvent::Lost(node_id) if self.inner.discovery.lost(&node_id) => {
                    self.forget_sighting(node_id);
                }
                _ => {}
            }
        }
    }

    /// Takes in what a discovery found: remembers it, tells the waiting dials, and redials
    /// a paired device that came back.
    fn found(&self, device: DiscoveredDevice) {
        let node_id = device.node_id;
        let seen = self.inner.discovery.saw(device.clone(), Instant::now());
        for forgotten in seen.forgotten {
            self.forget_sighting(forgotten);
        }
        self.inner.transport.remember(&PeerAddr {
            node_id,
            direct: device.addrs.clone(),
            relay_url: device.relay_url.clone(),
        });
        if let Some(addr) = device.addrs.first() {
            let _ = self.inner.registry.discovered(node_id, *addr);
        }
        if seen.is_new {
            let _ = self.inner.events.send(NetworkEvent::DeviceDiscovered {
                node_id,
                source: device.source,
            });
        }
        self.check_link_if_relay_moved(&device);
        self.inner.discovery.publish(device);
        // A paired device came back (or moved): reconnect, unless its last link was closed
        // for being idle (the next send dials it).
        if !self.inner.pool.closed_idle(&node_id)
            && self.inner.registry.check_connection(&node_id).is_ok()
            && self.inner.pool.live_link(&node_id).is_none()
        {
            let service = self.for_task();
            self.inner.tasks.spawn("a reconnect", async move {
                if let Err(error) = service.link(node_id).await {
                    debug!(peer = %short(&node_id), error = %ErrorChain(&error), "reconnect failed");
                }
            });
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
    async fn keepalive_loop(&self) {
        let interval = self.inner.config.keepalive_interval;
        let idle_timeout = self.inner.config.idle_timeout;
        let period = idle_timeout.map_or(interval, |idle| idle.min(interval));
        let mut tick = tokio::time::interval(
            (period / 4).clamp(Duration::from_millis(25), Duration::from_secs(60 * 60)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let open: Vec<Arc<Link>> = self.inner.pool.open_links();
            for link in open {
                if let Some(timeout) = idle_timeout
                    && link.idle_for().is_some_and(|idle| idle >= timeout)
                    && !self.inner.pool.protocol_connection_open(&link.node_id)
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

    /// Pings every pooled link at once when one of this device's addresses goes away (it
    /// moved to another network), and closes those that do not answer within
    /// [`MOVED_PROBE_WAIT`]: a path from an address that is gone is dead, but QUIC's and iroh's
    /// timers would take seconds (15 s for an idle direct path) to say so, and every request
    /// on the link would wait for them. A link iroh already moved to a live path answers.
    async fn address_loop(&self) {
        let transport = &self.inner.transport;
        let mut last = transport.direct_ips();
        loop {
            let now = transport.direct_ips_changed(&last).await;
            if !last.is_subset(&now) {
                debug!(
                    ?last,
                    ?now,
                    "an address of this device is gone; checking every link"
                );
                for link in self.inner.pool.open_links() {
                    if let Some(probe) = link.start_probe(MOVED_PROBE_WAIT) {
                        self.spawn_probe(link, probe);
                    }
                }
            }
            last = now;
        }
    }

    /// Waits for `link`'s keep-alive probe (which the caller started) and closes the link when
    /// the ping got no answer within its timeout.
    pub(super) fn spawn_probe(&self, link: Arc<Link>, probe: Probe) {
        // Not the service: a probe holds only what it needs.
        let events = self.inner.events.clone();
        self.inner.tasks.spawn("a keep-alive probe", async move {
            if probe.dead().await {
                warn!(peer = %short(&link.node_id), "no answer to keep-alive; closing");
                close_link(&events, &link, CLOSE_DEAD, "no answer to a keep-alive ping");
            }
        });
    }

    /// A device announced a relay other than the one our link to it runs through: that relay
    /// may be gone, so ping the link now rather than at the next keep-alive; a dead link is
    /// then closed within `request_timeout` and the next send dials the new relay.
    fn check_link_if_relay_moved(&self, device: &DiscoveredDevice) {
        let Some(announced) = device.relay_url.as_ref() else {
            return;
        };
        let Some(link) = self.inner.pool.live_link(&device.node_id) else {
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
