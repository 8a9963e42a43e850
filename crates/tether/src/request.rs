//! Application answers to requests: the [`RequestHandler`] an app registers, and running it.
//! Which answer each request kind expects is `tether_session`'s table.
//!
//! A `SyncRequest` or `LibraryRequest` asks for data only the application has, so the service
//! hands it to the app's handler and sends back what the handler returns. Without a handler
//! the requester gets an `Error` reply with [`ErrorCode::Unsupported`]; it never gets an `Ack`
//! that would pretend the request was served.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use parking_lot::RwLock;
use tether_protocol::PairedPeer;
use tether_wire::{ErrorCode, ErrorReply, NetworkMessage};

/// Answers the requests paired devices send that need the application's data.
///
/// Registered with [`crate::NetworkingService::set_request_handler`]. The service calls
/// [`RequestHandler::answer`] on a task of its own for every `SyncRequest` (to be answered
/// with a `SyncResponse`) and every `LibraryRequest` (to be answered with a `LibraryAnnounce`)
/// that arrives, with the peer already authenticated and found among the paired devices, the
/// way a [`crate::NetworkProtocol`] gets its [`PairedPeer`]. Announcements (`LibraryAnnounce`
/// sent on their own) are not requests: they arrive as [`crate::NetworkEvent::MessageReceived`]
/// and are acknowledged by the service.
///
/// Return `Err` to send the requester an `Error` reply (say [`ErrorCode::NotFound`] for an
/// unknown library). An `Ok` answer of the wrong kind (a `Ping` for a `SyncRequest`) is a bug
/// in the handler: the service logs a warning and sends [`ErrorCode::Internal`] instead. The
/// requester waits at most its `request_timeout`; an answer after that is dropped.
///
/// ```
/// use tether::{
///     ErrorCode, ErrorReply, NetworkMessage, PairedPeer, RequestHandler, SyncResponse,
/// };
///
/// #[derive(Debug)]
/// struct Library;
///
/// impl RequestHandler for Library {
///     async fn answer(
///         &self,
///         _peer: PairedPeer,
///         request: NetworkMessage,
///     ) -> Result<NetworkMessage, ErrorReply> {
///         match request {
///             NetworkMessage::SyncRequest(request) => {
///                 Ok(NetworkMessage::SyncResponse(SyncResponse {
///                     library_id: request.library_id,
///                     entries: Vec::new(),
///                     has_more: false,
///                 }))
///             }
///             _ => Err(ErrorReply {
///                 code: ErrorCode::NotFound,
///                 message: "no such library".to_owned(),
///             }),
///         }
///     }
/// }
/// ```
pub trait RequestHandler: Send + Sync + std::fmt::Debug + 'static {
    /// Answers one request from an authenticated, paired peer.
    fn answer(
        &self,
        peer: PairedPeer,
        request: NetworkMessage,
    ) -> impl Future<Output = Result<NetworkMessage, ErrorReply>> + Send;
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`RequestHandler`] made object safe, so the service can keep one behind an `Arc`.
pub(crate) trait DynRequestHandler: Send + Sync + std::fmt::Debug + 'static {
    fn answer(
        &self,
        peer: PairedPeer,
        request: NetworkMessage,
    ) -> BoxFuture<'_, Result<NetworkMessage, ErrorReply>>;
}

impl<H: RequestHandler> DynRequestHandler for H {
    fn answer(
        &self,
        peer: PairedPeer,
        request: NetworkMessage,
    ) -> BoxFuture<'_, Result<NetworkMessage, ErrorReply>> {
        Box::pin(RequestHandler::answer(self, peer, request))
    }
}

/// The handler the app registered, if any; shared by the service and its links.
pub(crate) type HandlerSlot = Arc<RwLock<Option<Arc<dyn DynRequestHandler>>>>;

pub(crate) use tether_session::{answers, expected_answer};

/// Runs the handler (if any) for `request` and checks its answer's kind.
pub(crate) async fn answer(
    slot: &HandlerSlot,
    peer: PairedPeer,
    request: NetworkMessage,
) -> NetworkMessage {
    let kind = request.kind();
    let handler = slot.read().clone();
    let Some(handler) = handler else {
        return NetworkMessage::Error(ErrorReply {
            code: ErrorCode::Unsupported,
            message: format!("this device does not answer {}", kind.as_str()),
        });
    };
    let node = peer.node_id;
    match handler.answer(peer, request).await {
        Ok(reply) if answers(kind, reply.kind()) => reply,
        Ok(reply) => {
            tracing::warn!(
                peer = %node.fmt_short(),
                request = kind.as_str(),
                answer = reply.kind().as_str(),
                "the request handler answered with the wrong kind of message; sending an error"
            );
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Internal,
                message: format!("the device could not answer {}", kind.as_str()),
            })
        }
        Err(reply) => NetworkMessage::Error(reply),
    }
}
