//! Answering what the peer sends: the session's events go to the callers waiting for
//! answers, the app's request handler, the inbox or the probe; a peer over its message rate is
//! answered `Busy`.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tether_identity::{ErrorChain, error_chain};
use tether_session::{CloseReason, Event, RequestKey, Session};
use tether_wire::{ErrorCode, ErrorReply, NetworkMessage, RequestId};
use tracing::{debug, warn};

use super::outbox::SendError;
use super::repeats::Once;
use super::{Incoming, Link};
use crate::close::{CLOSE_DEAD, CLOSE_IDLE, CLOSE_PROTOCOL};
use crate::error::short;

impl Link {
    /// Hands the session's events to whoever waits for them.
    pub(super) async fn dispatch(&self, events: Vec<Event>) {
        for event in events {
            match event {
                Event::Answered { id, result } => {
                    if let Some(waiter) = self.waiters.lock().remove(&id) {
                        let _ = waiter.send(result);
                    }
                }
                Event::Request { id, key, message } => {
                    if self.over_rate(Some(id), true) {
                        continue;
                    }
                    self.answer_with_app(id, key, message);
                }
                Event::Message { id, key, message } => {
                    if self.over_rate(id, false) {
                        continue;
                    }
                    self.deliver(id, key, message).await;
                }
                Event::ProbeAnswered => {
                    if let Some(probe) = self.probe.lock().take() {
                        let _ = probe.send(false);
                    }
                }
                Event::Close(CloseReason::PeerDead) => match self.probe.lock().take() {
                    Some(probe) => {
                        let _ = probe.send(true);
                    }
                    None => self.close(CLOSE_DEAD, CloseReason::PeerDead.as_str()),
                },
                Event::Close(CloseReason::Protocol) => {
                    warn!(peer = %short(&self.node_id), "a frame did not open; closing the connection");
                    self.close(CLOSE_PROTOCOL, CloseReason::Protocol.as_str());
                }
                Event::Close(CloseReason::Idle) => {
                    self.close(CLOSE_IDLE, CloseReason::Idle.as_str());
                }
            }
        }
    }

    /// Whether the peer is over its message rate: if so, a request (`request`), or a message
    /// with an id, is answered `Busy`; one without is dropped.
    fn over_rate(&self, id: Option<RequestId>, request: bool) -> bool {
        if self.inbox.limiter.admit(&self.node_id) {
            return false;
        }
        debug!(peer = %short(&self.node_id), "over its message rate; refused");
        let Some(id) = id else { return true };
        let busy = NetworkMessage::Error(ErrorReply {
            code: ErrorCode::Busy,
            message: "over this device's message rate; try again later".to_owned(),
        });
        let mut session = self.session();
        if request {
            // Answered: it no longer counts as being answered.
            if let Err(error) = session.answer(Instant::now(), id, busy) {
                debug!(error = %ErrorChain(&error), "cannot refuse a request over the rate");
            }
        } else {
            session.reply(id, busy);
        }
        true
    }

    /// Hands a message to the app's event stream and acknowledges it when the peer asked. One
    /// the peer named across links is delivered once: a repeat is acknowledged as the first
    /// was (see [`repeats`]).
    async fn deliver(
        &self,
        id: Option<RequestId>,
        key: Option<RequestKey>,
        message: NetworkMessage,
    ) {
        let once = match (id, key) {
            (Some(_), Some(key)) => Once::begin(&self.inbox.answers, self.node_id, key),
            _ => Once::Untracked,
        };
        let events = &self.inbox.events;
        let from = self.node_id;
        let reply = once
            .answer(|| async move {
                let delivered = events.send(Incoming { from, message }).await.is_ok();
                Session::acknowledgement(delivered)
            })
            .await;
        if let (Some(id), Some(reply)) = (id, reply) {
            self.session().reply(id, reply);
        }
    }

    /// Runs the app's handler for a request on a task of its own, so the link keeps reading,
    /// and sends its answer. A request the peer named across links is answered once: a
    /// repeat gets the first answer without the handler (see [`repeats`]).
    fn answer_with_app(&self, id: RequestId, key: Option<RequestKey>, message: NetworkMessage) {
        let outbox = Arc::clone(&self.outbox);
        let handler = self.inbox.handler.clone();
        let peer = self.inbox.peer.clone();
        let answering = Answering {
            session: Arc::clone(&self.session),
            id: Some(id),
        };
        let once = key.map_or(Once::Untracked, |key| {
            Once::begin(&self.inbox.answers, peer.node_id, key)
        });
        tokio::spawn(async move {
            let reply = once
                .answer(|| crate::request::answer(&handler, peer, message))
                .await;
            // No answer (the first one's handler failed): `answering` abandons it.
            let Some(reply) = reply else { return };
            answering.done();
            let _ = outbox
                .send(|session| {
                    session
                        .answer(Instant::now(), id, reply)
                        .map_err(|error| SendError::Message(error_chain(&error)))
                })
                .await;
        });
    }
}

/// A request the app's handler is answering; abandoned (no answer, the slot freed) if the
/// handler's task ends without one (it panicked, or the runtime shut down).
struct Answering {
    session: Arc<Mutex<Session>>,
    id: Option<RequestId>,
}

impl Answering {
    /// The handler answered: the answer goes out with the session's `answer`.
    fn done(mut self) {
        self.id = None;
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.session.lock().abandon(Instant::now(), id);
        }
    }
}
