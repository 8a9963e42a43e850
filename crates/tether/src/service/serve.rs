//! Serving the connections that passed the gate: pairing joiners, links from paired devices
//! and third-party protocols.

use iroh::endpoint::Connection;
use tether_identity::{ErrorChain, NodeId, error_chain};
use tether_pairing::CodeStatus;
use tether_protocol::PairedPeer;
use tracing::{debug, info};

use super::core::NetworkingService;
use crate::close::PAIRING_ALPN;
use crate::close::{CLOSE_DEAD, CLOSE_PROTOCOL, CLOSE_REDIAL, SYNC_ALPN};
use crate::error::short;
use crate::gate::{
    CLOSE_PAIRING_BUSY, CLOSE_PAIRING_DECLINED, CLOSE_PAIRING_TIMEOUT, pairing_refusal,
};
use crate::link::{Greeting, Link};
use crate::lobby::EXCHANGE_TIMEOUT;
use crate::pairing::{self, PairedDevice};
use crate::{CodeEnded, NetworkError};

impl NetworkingService {
    /// Serves a connection that passed the gate: a pairing, a link (whose hello `greeting`
    /// already went out), or a third-party protocol's connection.
    pub(super) async fn serve(
        &self,
        connection: Connection,
        greeting: Option<Greeting>,
    ) -> Result<(), NetworkError> {
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
        // While this side dials the device back, a connection the device opens would keep
        // iroh on its dead path (see `dial_back`): it waits for the link back instead.
        if self.inner.pool.dialling_back(&peer) {
            connection.close(CLOSE_REDIAL.into(), b"dialling back");
            return Ok(());
        }
        // Every other ALPN passed the gate: the peer is paired.
        let secret = self
            .inner
            .registry
            .check_connection(&peer)
            .map_err(|_| NetworkError::DeviceNotPaired(peer))?;
        if alpn == SYNC_ALPN {
            let Some(greeting) = greeting else {
                connection.close(CLOSE_PROTOCOL.into(), b"session handshake failed");
                return Err(NetworkError::ProtocolViolation {
                    node: peer,
                    reason: "no session hello was sent on this connection".to_owned(),
                });
            };
            if let Some(left_behind) = self.inner.pool.left_behind(&peer, &connection) {
                self.dial_back(peer, &connection, &left_behind);
                return Ok(());
            }
            let link = Link::accept(
                connection,
                greeting,
                self.inner.keys.identity(),
                peer,
                &secret,
                self.inbox(peer)?,
            )
            .await?;
            return self.adopt(&link).map(drop);
        }
        let protocol = self.inner.protocols.get(&alpn);
        let Some(protocol) = protocol else {
            connection.close(crate::close::CLOSE_UNKNOWN_ALPN.into(), b"unknown protocol");
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

    /// A paired device dialled in from a new address while this side still holds connections
    /// to where it was (see [`super::pool::Pool::left_behind`]): closes those (the device is
    /// gone from there) and the new one ([`CLOSE_REDIAL`]: the peer waits for the link back),
    /// so that no connection to the device is left and iroh forgets the dead path, then dials
    /// the device back. Until that dial ends, the device's incoming connections are closed the
    /// same way: one that iroh took in before the old ones were gone would keep the dead path.
    fn dial_back(&self, peer: NodeId, connection: &Connection, left_behind: &[Connection]) {
        connection.close(CLOSE_REDIAL.into(), b"dialling back");
        if !self.inner.pool.start_dial_back(peer) {
            return;
        }
        info!(peer = %short(&peer), "a paired device dialled in from a new address; dialling it back");
        if let Some(old) = self.inner.pool.live_link(&peer) {
            self.close_link(&old, CLOSE_DEAD, "the device restarted or moved");
        }
        for stale in left_behind {
            stale.close(CLOSE_DEAD.into(), b"the device restarted or moved");
        }
        let service = self.for_task();
        self.inner
            .tasks
            .spawn("a dial back to a restarted device", async move {
                let linked = service.link(peer).await;
                service.inner.pool.end_dial_back(&peer);
                if let Err(error) = linked {
                    debug!(peer = %short(&peer), error = %ErrorChain(&error), "dial back failed");
                }
            });
    }

    /// Serves one pairing connection within the lobby's bounds: a seat, the deadlines, and
    /// eviction by a newcomer while it has sent nothing. The connection is closed at the end,
    /// whatever happened.
    async fn serve_pairing(
        &self,
        connection: &Connection,
        peer: NodeId,
    ) -> Result<PairedDevice, NetworkError> {
        let seat = match self.inner.desk.lobby().enter(peer) {
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
        let desk = self
            .inner
            .desk
            .serving(&self.inner.registry, &self.inner.events);
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
}
