//! The message API: requests to paired devices and their answers, and the app's request
//! handler.
//!
//! A request outlives its link: each is named across links by a random [`RequestKey`], and
//! when the link dies before the answer comes (the connection closed by either side, or by
//! this side for a silent peer) it is sent again, under the same key, on a new link from the
//! pool's normal dial, on [`Retries`]' schedule (100 ms doubling to 2 s, full jitter) within
//! the request's budget, `request_timeout` counted from its first send. The peer answers a
//! repeat once, from its answer cache (see `link::repeats`).

use std::sync::Arc;
use std::time::Instant;

use rand_core::UnwrapErr;
use tether_identity::{ErrorChain, NodeId};
use tether_session::{Backoff, RequestKey, Retries};
use tether_wire::NetworkMessage;
use tracing::debug;

use super::core::NetworkingService;
use crate::NetworkError;
use crate::error::short;
use crate::link::Link;
use crate::request::{self, RequestHandler};

impl NetworkingService {
    /// Sends `message` to a paired device and waits for its answer: `Pong` for a `Ping`,
    /// `Ack` for a `LibraryAnnounce`, what the device's [`RequestHandler`] returns for a
    /// `SyncRequest` (`SyncResponse`) or `LibraryRequest` (`LibraryAnnounce`). An `Error`
    /// reply is [`NetworkError::Rejected`], final; no answer within `request_timeout` is
    /// [`NetworkError::TimedOut`]. Answers (`Ack`, `Pong`, `SyncResponse`, ...) cannot be sent
    /// as requests ([`NetworkError::Usage`]).
    ///
    /// When the connection dies after the request went out and before its answer came, the
    /// request is sent again on a new connection (dialled as any send dials), with exponential
    /// backoff and jitter, until `request_timeout` after its first send; the device answers a
    /// repeat once, without asking its handler again. A device that stays down fails the
    /// request with the connection's error once that time is up. A request that times out on
    /// a live connection is not sent again: the device is slow, not gone. The first dial is
    /// the dial's own (a device unreachable before anything was sent is reported as such).
    pub async fn send_message(
        &self,
        node_id: NodeId,
        message: NetworkMessage,
    ) -> Result<NetworkMessage, NetworkError> {
        let kind = message.kind();
        if request::expected_answer(kind).is_none() {
            return Err(NetworkError::Usage(format!(
                "{} answers a request; it cannot be sent as one",
                kind.as_str()
            )));
        }
        let budget = self.inner.config.request_timeout;
        let key =
            RequestKey::from_random(rand_core::Rng::next_u64(&mut UnwrapErr(getrandom::SysRng)));
        let mut retries = Retries::new(Backoff::default(), Instant::now(), budget);
        // A new link carries the message right behind its session handshake.
        let linked = self
            .link_sending(node_id, Some((key, message.clone(), budget)))
            .await?;
        let mut link = linked.link;
        let mut first = linked.first_answer;
        loop {
            let answer = match first.take() {
                Some(answer) => answer,
                None => {
                    let left = retries.left(Instant::now());
                    link.request(key, message.clone(), left, budget).await
                }
            };
            match answer {
                Err(error @ NetworkError::ConnectionFailed { .. }) => {
                    debug!(peer = %short(&node_id), error = %ErrorChain(&error), "the link died before the answer; sending again");
                    link = self.relink(node_id, &mut retries, &link, error).await?;
                }
                Err(error @ NetworkError::TimedOut { .. }) => {
                    // A slow answer, or a path that died (the device moved, its relay went
                    // away): ping the link now rather than at the next keep-alive. The peer
                    // answers pings at once, whatever its handler is doing; no answer closes
                    // the link, and the next send dials the device's current address.
                    if let Some(probe) = link.start_probe(budget) {
                        self.spawn_probe(Arc::clone(&link), probe);
                    }
                    return Err(error);
                }
                result => return result,
            }
        }
    }

    /// A new link for a request whose link `dead` died with `error`: after the schedule's
    /// wait (none when the link was closed for being idle), the pool's link or a new dial,
    /// again until one comes or the budget is over; then `error`, the link's. A dial refused
    /// for good (not paired, refused) ends it at once with its own error.
    async fn relink(
        &self,
        node_id: NodeId,
        retries: &mut Retries,
        dead: &Link,
        error: NetworkError,
    ) -> Result<Arc<Link>, NetworkError> {
        let deadline = tokio::time::Instant::from_std(retries.deadline());
        let mut wait = !dead.closed_idle();
        loop {
            if wait {
                let mut rng = UnwrapErr(getrandom::SysRng);
                let Some(at) = retries.after_failure(Instant::now(), &mut rng) else {
                    return Err(error);
                };
                tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            }
            wait = true;
            if retries.left(Instant::now()).is_zero() {
                return Err(error);
            }
            match tokio::time::timeout_at(deadline, self.link(node_id)).await {
                Err(_) => return Err(error),
                Ok(Ok(link)) => return Ok(link),
                Ok(Err(
                    dial @ (NetworkError::ConnectionFailed { .. }
                    | NetworkError::DeviceOffline(_)
                    | NetworkError::TimedOut { .. }
                    | NetworkError::Transport(_)),
                )) => {
                    debug!(peer = %short(&node_id), error = %ErrorChain(&dial), "no new link yet");
                }
                Ok(Err(refused)) => return Err(refused),
            }
        }
    }

    /// Registers the application's answers to `SyncRequest` and `LibraryRequest` from paired
    /// devices, replacing any handler registered before. Without one, such requests are
    /// answered with an `Error` reply ([`crate::ErrorCode::Unsupported`]).
    pub fn set_request_handler<H: RequestHandler>(&self, handler: H) {
        *self.inner.handler.write() = Some(Arc::new(handler));
    }

    /// Removes the request handler: requests are answered `Unsupported` again.
    pub fn clear_request_handler(&self) {
        *self.inner.handler.write() = None;
    }
}
