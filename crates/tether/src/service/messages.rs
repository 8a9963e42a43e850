//! The message API: requests to paired devices and their answers, and the app's request
//! handler.

use std::sync::Arc;

use tether_identity::NodeId;
use tether_wire::NetworkMessage;
use tracing::debug;

use super::core::NetworkingService;
use crate::NetworkError;
use crate::error::short;
use crate::request::{self, RequestHandler};

impl NetworkingService {
    /// Sends `message` to a paired device and waits for its answer: `Pong` for a `Ping`,
    /// `Ack` for a `LibraryAnnounce`, what the device's [`RequestHandler`] returns for a
    /// `SyncRequest` (`SyncResponse`) or `LibraryRequest` (`LibraryAnnounce`). An `Error`
    /// reply is [`NetworkError::Rejected`]; no answer within `request_timeout` is
    /// [`NetworkError::TimedOut`]. Answers (`Ack`, `Pong`, `SyncResponse`, ...) cannot be sent
    /// as requests ([`NetworkError::Usage`]).
    ///
    /// When the pooled connection was just closed for being idle (by either side, racing this
    /// send), the message is sent once more on a new connection.
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
        let wait = self.inner.config.request_timeout;
        // A new link carries the message right behind its session handshake.
        let linked = self
            .link_sending(node_id, Some((message.clone(), wait)))
            .await?;
        let link = linked.link;
        let answer = match linked.first_answer {
            Some(answer) => answer,
            None => link.request(message.clone(), wait).await,
        };
        match answer {
            Err(NetworkError::ConnectionFailed { .. }) if link.closed_idle() => {
                debug!(peer = %short(&node_id), "the connection was closed as idle; sending again");
                self.link(node_id).await?.request(message, wait).await
            }
            Err(error @ NetworkError::TimedOut { .. }) => {
                // A slow answer, or a path that died (the device moved, its relay went away):
                // ping the link now rather than at the next keep-alive. The peer answers pings
                // at once, whatever its handler is doing; no answer closes the link, and the
                // next send dials the device's current address.
                if let Some(probe) = link.start_probe(wait) {
                    self.spawn_probe(Arc::clone(&link), probe);
                }
                Err(error)
            }
            result => result,
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
