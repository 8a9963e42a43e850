//! The links in the pool: taking a new one in, serving the streams the peer opens on it,
//! watching it until it ends, and saying so.

use std::sync::Arc;
use std::time::SystemTime;

use iroh::endpoint::Connection;
use tether_identity::{ErrorChain, NodeId};
use tether_iroh::ConnectionInfo;
use tether_protocol::PairedPeer;
use tether_registry::{ConnectionInfo as RegistryConnection, DisconnectReason};
use tether_transfer::TransferError;
use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use super::core::NetworkingService;
use super::pool::NotPaired;
use crate::close::{CLOSE_DEAD, CLOSE_NORMAL};
use crate::error::short;
use crate::link::{Inbox, Link};
use crate::{ConnectionState, NetworkError, NetworkEvent};

impl NetworkingService {
    /// Where a link to `node_id` delivers the peer's messages and requests.
    pub(super) fn inbox(&self, node_id: NodeId) -> Result<Inbox, NetworkError> {
        let device = self
            .inner
            .registry
            .device(&node_id)
            .and_then(|d| d.paired)
            .ok_or(NetworkError::DeviceNotPaired(node_id))?;
        Ok(Inbox {
            events: self.inner.incoming.clone(),
            handler: Arc::clone(&self.inner.handler),
            max_text_len: self.inner.config.max_text_len,
            binary_messages: self.inner.config.binary_messages,
            peer: PairedPeer {
                node_id,
                device: device.info,
            },
            answers: Arc::clone(&self.inner.answers),
            limiter: Arc::clone(&self.inner.limiter),
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

    /// Whether `node_id` is paired now (blocked and revoked devices are not).
    fn paired_now(&self, node_id: &NodeId) -> bool {
        self.inner.registry.check_connection(node_id).is_ok()
    }

    /// Puts a new link in the pool, records the connection, and watches for its end. Returns
    /// the link messages to the device should use now.
    ///
    /// A second open link to the same device (both sides dialled at once, or the peer dialled
    /// again after a restart) does not make two pooled connections: the pool keeps one, the
    /// same one on both devices, and the other is closed once requests already on it have had
    /// their time.
    pub(super) fn adopt(&self, link: &Arc<Link>) -> Result<Arc<Link>, NetworkError> {
        let node_id = link.node_id;
        let adopted = self
            .inner
            .pool
            .adopt(link, self.node_id(), || self.paired_now(&node_id))
            .map_err(|NotPaired| NetworkError::DeviceNotPaired(node_id))?;
        self.watch(Arc::clone(link), adopted.retired.is_none());
        self.serve_streams(Arc::clone(link));
        match adopted.retired {
            Some(retired) => {
                debug!(peer = %short(&node_id), "two connections to one device; retiring one");
                let grace = self.inner.config.request_timeout;
                self.inner
                    .tasks
                    .spawn("a retired link's close", async move {
                        tokio::time::sleep(grace).await;
                        retired.close(CLOSE_NORMAL, "a newer connection replaced this one");
                    });
            }
            None => self.report_connected(link),
        }
        // Only now: `Connected` goes out before anything the peer sends on the link.
        link.start_reading();
        Ok(adopted.pooled)
    }

    /// Records a live connection with a paired device, for `unpair` to close; refuses (and
    /// closes) it when the device is no longer paired.
    pub(super) fn track(
        &self,
        node_id: NodeId,
        connection: &Connection,
    ) -> Result<(), NetworkError> {
        self.inner
            .pool
            .track(node_id, connection, || self.paired_now(&node_id))
            .map_err(|NotPaired| NetworkError::DeviceNotPaired(node_id))
    }

    /// Announces that a device is connected (it was not a moment ago). The registry hears of
    /// it from [`Self::watch`].
    fn report_connected(&self, link: &Link) {
        let node_id = link.node_id;
        let info = ConnectionInfo::of(&link.connection);
        let _ = self.inner.events.send(NetworkEvent::Connected {
            node_id,
            path: info.path,
        });
        self.report_state(node_id, ConnectionState::Connected);
        info!(peer = %short(&node_id), path = %info.path, rtt = ?info.rtt, "connected");
        // A device that was away hears of a rename it missed.
        self.tell_name(node_id);
    }

    /// Serves the streams the peer opens on a link after its handshake: transfers, lanes and
    /// pull requests.
    fn serve_streams(&self, link: Arc<Link>) {
        let service = self.for_task();
        self.inner
            .tasks
            .spawn("a link's stream acceptor", async move {
                while let Ok((send, recv)) = link.connection.accept_bi().await {
                    let link = Arc::clone(&link);
                    let stream = service.for_task();
                    service.inner.tasks.spawn("an incoming stream", async move {
                        stream.serve_stream(&link, send, recv).await;
                    });
                }
            });
    }

    /// Serves one stream the peer opened on `link`, and reports a transfer received.
    async fn serve_stream(
        &self,
        link: &Arc<Link>,
        send: iroh::endpoint::SendStream,
        recv: iroh::endpoint::RecvStream,
    ) {
        let receiver = self.inner.receiver.as_ref();
        // A transfer (or lane) keeps the link in use until it ends.
        let in_use = link.use_it();
        let sharing = &self.inner.sharing;
        let served = crate::transfer::serve_stream(
            link,
            receiver,
            sharing,
            send,
            recv,
            &self.inner.events,
            &self.inner.registry,
        )
        .await;
        drop(in_use);
        let peer = short(&link.node_id);
        match served {
            Ok(Some(report)) => {
                info!(%peer, bytes = report.bytes_total, "received a transfer");
                let _ = self.inner.events.send(NetworkEvent::TransferReceived {
                    from: link.node_id,
                    report,
                });
            }
            Ok(None) => {}
            Err(NetworkError::Transfer(TransferError::Declined(reason))) => {
                info!(%peer, %reason, "declined an incoming transfer");
            }
            Err(error) => {
                warn!(%peer, error = %ErrorChain(&error), "incoming transfer failed");
            }
        }
    }

    /// Records a newly pooled link (`connected`) in the registry, then waits for the link's
    /// end; when it was the pooled one, the device is disconnected.
    ///
    /// The registry saves the link's address as the device's last known one, a disk write
    /// with fsync when the address changed (a peer on a new port): done here, on a blocking
    /// thread, so neither the link's first messages nor the runtime's workers wait for it,
    /// and before `disconnected`, in the same task, so the registry sees the two in order.
    fn watch(&self, link: Arc<Link>, connected: bool) {
        let service = self.for_task();
        self.inner.tasks.spawn("a link's watch", async move {
            if connected {
                service.record_connected(&link).await;
            }
            let error = link.connection.closed().await;
            let idle = link.closed_idle();
            if service.inner.pool.remove_if_current(&link, idle) {
                service.report_end(&link, &link.end_reason(&error), idle);
            }
        });
    }

    /// Records a new connection in the registry, one write at a time, on a blocking thread.
    async fn record_connected(&self, link: &Link) {
        let node_id = link.node_id;
        let registry = self.inner.registry.clone();
        let info = registry_connection(&link.connection);
        // Never closed, so the permit always comes.
        let _one_at_a_time = self.inner.registry_writes.acquire().await;
        let recorded = tokio::task::spawn_blocking(move || registry.connected(node_id, info)).await;
        match recorded {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(error = %ErrorChain(&error), "registry: connected"),
            // Logged as it is mapped.
            Err(error) => {
                let _ = NetworkError::task_failed("recording a connection", error);
            }
        }
    }

    /// Reports the end of the device's pooled link (already out of the pool): to the
    /// registry, the log and the app.
    fn report_end(&self, link: &Link, reason: &str, idle: bool) {
        let node_id = link.node_id;
        let registry_reason = if idle {
            DisconnectReason::Closed
        } else if link.local_close_code() == Some(CLOSE_DEAD) {
            DisconnectReason::TimedOut
        } else {
            DisconnectReason::Error(reason.to_owned())
        };
        let _ = self.inner.registry.disconnected(node_id, registry_reason);
        if idle {
            // Not a failure: the next send dials; discovery leaves it be.
            let by_peer = link.local_close_code().is_none();
            info!(peer = %short(&node_id), by_peer, "closed an idle connection");
            let _ = self
                .inner
                .events
                .send(NetworkEvent::IdleClosed { node_id, by_peer });
        } else {
            info!(peer = %short(&node_id), %reason, "disconnected");
        }
        let _ = self.inner.events.send(NetworkEvent::Disconnected {
            node_id,
            reason: reason.to_owned(),
        });
        self.report_state(node_id, ConnectionState::Closed);
    }
}

/// What the registry records of a new connection: its direct address, or its relay.
fn registry_connection(connection: &Connection) -> RegistryConnection {
    match tether_iroh::direct_addrs(connection).first() {
        Some(addr) => RegistryConnection::direct(*addr, SystemTime::now()),
        None => RegistryConnection::relayed(
            ConnectionInfo::of(connection).remote.unwrap_or_default(),
            SystemTime::now(),
        ),
    }
}

/// Closes a pooled link from this side, saying so on `events` (a task that must not keep
/// the service alive calls this rather than the method).
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
