//! Dialling a paired device: one dial per device at a time, its known addresses tried with
//! exponential backoff, and a new address from discovery tried at once.

use std::sync::Arc;
use std::time::Duration;

use iroh::endpoint::Connection;
use rand_core::UnwrapErr;
use tether_identity::{ErrorChain, NodeId};
use tether_iroh::{PeerAddr, TransportError};
use tether_protocol::DiscoveredDevice;
use tether_session::RequestKey;
use tether_wire::NetworkMessage;
use tokio::sync::broadcast;
use tracing::debug;

use super::core::NetworkingService;
use crate::close::{CLOSE_REDIAL, SYNC_ALPN};
use crate::error::short;
use crate::link::Link;
use crate::{ConnectionState, NetworkError};

/// How many connection attempts a send makes before it reports the device offline.
const CONNECT_ATTEMPTS: u32 = 3;
/// The first retry's delay; each retry doubles it, plus up to 50% jitter.
const RETRY_BASE: Duration = Duration::from_millis(150);
/// How often one dial starts over because discovery reported a new address.
const MAX_REDIALS: u32 = 8;

impl NetworkingService {
    /// The live link to a paired device, dialling (with retries) when there is none. A new
    /// link is returned once the session handshake is done: the acceptor's `Response` checked.
    pub(super) async fn link(&self, node_id: NodeId) -> Result<Arc<Link>, NetworkError> {
        self.link_sending(node_id, None)
            .await
            .map(|linked| linked.link)
    }

    /// [`Self::link`], and when it dials, `first` (a request and how long to wait for its
    /// answer) goes out on the new link right behind the session handshake's `Init`, before the
    /// acceptor's `Response` is in: a first message costs no round trip of its own. Its answer
    /// is returned with the link (`None`: the link was already there, and nothing was sent).
    /// The answer is read only after the `Response` checked out; when it does not, the error
    /// is the handshake's, not the request's.
    pub(super) async fn link_sending(
        &self,
        node_id: NodeId,
        first: Option<(RequestKey, NetworkMessage, Duration)>,
    ) -> Result<Linked, NetworkError> {
        if let Some(link) = self.inner.pool.live_link(&node_id) {
            return Ok(Linked::existing(link));
        }
        let turn = self.inner.pool.dial_turn(node_id);
        let turn = turn.lock().await;
        // Someone else's dial (or the peer's) may have finished while we waited.
        if let Some(link) = self.inner.pool.live_link(&node_id) {
            return Ok(Linked::existing(link));
        }
        let secret = self
            .inner
            .registry
            .check_connection(&node_id)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))?;
        let inbox = self.inbox(node_id)?;
        self.report_state(node_id, ConnectionState::Connecting);
        let mut dialled_on = None;
        let dialled = async {
            let connection = self.dial(node_id, SYNC_ALPN).await?;
            dialled_on = Some(connection.clone());
            Link::dial(
                connection,
                self.inner.keys.identity(),
                node_id,
                &secret,
                inbox,
            )
            .await
        }
        .await;
        let early = dialled.as_ref().ok().map(Arc::clone);
        // The dial turn is held until the link is confirmed and pooled, not while a first
        // request waits for its answer.
        let confirmed = async {
            let _turn = turn;
            let link = dialled?;
            link.confirm().await?;
            self.adopt(&link)
        };
        let linked = match (first, early) {
            (Some((key, message, wait)), Some(link)) => {
                let (pooled, answer) =
                    tokio::join!(confirmed, link.request(key, message, wait, wait));
                // The link the request went on (the pool may keep the peer's, when both
                // dialled at once), for what the caller does with the answer.
                pooled.map(|_| Linked {
                    link,
                    first_answer: Some(answer),
                })
            }
            _ => confirmed.await.map(Linked::existing),
        };
        if linked.is_err()
            && let Some(link) = self.called_back(node_id, dialled_on.as_ref()).await
        {
            return Ok(Linked::existing(link));
        }
        if linked.is_err() && self.inner.pool.live_link(&node_id).is_none() {
            self.report_state(node_id, ConnectionState::Closed);
        }
        linked
    }

    /// The link the device dials back when it closed this side's dial with [`CLOSE_REDIAL`]
    /// (it saw this device come from a new address), once it is pooled; `None` when the dial
    /// was closed otherwise, or no link came within the connect timeout.
    async fn called_back(
        &self,
        node_id: NodeId,
        dialled_on: Option<&Connection>,
    ) -> Option<Arc<Link>> {
        let close = tether_iroh::peer_close(dialled_on?)?;
        if close.code != u64::from(CLOSE_REDIAL) {
            return None;
        }
        debug!(peer = %short(&node_id), "the device dials back; waiting for its link");
        let mut events = self.inner.events.subscribe();
        let wait = async {
            loop {
                if let Some(link) = self.inner.pool.live_link(&node_id) {
                    return Some(link);
                }
                match events.recv().await {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        tokio::time::timeout(self.inner.config.connect_timeout, wait)
            .await
            .ok()
            .flatten()
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
        let mut updates = self.inner.discovery.subscribe();
        // Discoveries that resolve by id (DNS) look the device up now and every second while
        // this dial lasts (a record may still hold the address the device just left); answers
        // come as updates, and a new address starts the attempt over.
        let _resolving = self.inner.discovery.resolving(node_id);
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
        let mut addr = self
            .inner
            .discovery
            .addr_of(&node_id)
            .unwrap_or_else(|| PeerAddr::new(node_id));
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

/// The wait before connection attempt `attempt` (1 is the first retry): [`RETRY_BASE`],
/// doubled for each retry after the first, plus up to half of it again as jitter (`random`
/// out of `u32::MAX`). Saturates for any attempt.
fn retry_delay(attempt: u32, random: u32) -> Duration {
    let base = RETRY_BASE.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let jitter = (base / 2).mul_f64(f64::from(random) / f64::from(u32::MAX));
    base.saturating_add(jitter)
}

/// A link from [`NetworkingService::link_sending`], and the answer to the first request if
/// it was sent on the link as it was made.
pub(super) struct Linked {
    pub(super) link: Arc<Link>,
    pub(super) first_answer: Option<Result<NetworkMessage, NetworkError>>,
}

impl Linked {
    /// A link on which nothing was sent yet.
    fn existing(link: Arc<Link>) -> Self {
        Self {
            link,
            first_answer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::{RETRY_BASE, retry_delay};

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
