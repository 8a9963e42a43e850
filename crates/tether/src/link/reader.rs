//! The receiving half of a link's message stream: one task per link reads, opens and
//! dispatches every frame the peer sends.
//!
//! Answers to this side's requests go straight to the waiting caller (a oneshot); a `Ping` is
//! answered from this task, through the [`Outbox`](super::outbox::Outbox) with no further
//! hand-off; requests for the app run on tasks of their own, so the link keeps reading. The
//! task reads what the stream has (up to 64 KiB), dispatches every frame in it, queuing the
//! answers, and writes them out in one go before reading again: one ping gets its pong at
//! once, a burst of them gets its pongs in one write.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use iroh::endpoint::RecvStream;
use tether_crypto::SessionKeys;
use tether_identity::{ErrorChain, error_chain};
use tether_wire::{
    ControlMessage, ErrorCode, ErrorReply, FrameDecoder, FrameKind, NetworkMessage, Pong, RequestId,
};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{Inbox, Incoming, Link, MAX_ANSWERING};
use crate::close::CLOSE_PROTOCOL;
use crate::error::short;
use crate::request;

/// How much one read takes from the stream at most.
const READ_CHUNK: usize = 64 * 1024;

pub(super) async fn read_loop(
    mut recv: RecvStream,
    keys: Arc<Mutex<SessionKeys>>,
    link: std::sync::Weak<Link>,
    inbox: Inbox,
) {
    let answering = Arc::new(Semaphore::new(MAX_ANSWERING));
    let mut decoder = FrameDecoder::new();
    'reading: loop {
        // A read is cancel-safe and the decoder keeps a frame split across reads. `read_chunk`
        // hands over the stream's own buffer: no copy, and an idle link holds no read buffer
        // (a 64 KiB one per link was half the memory of an idle connection).
        let chunk = match recv.read_chunk(READ_CHUNK).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                if let Err(error) = decoder.finish() {
                    debug!(error = %ErrorChain(&error), "message stream ended inside a frame");
                }
                break;
            }
            Err(error) => {
                debug!(error = %ErrorChain(&error), "message stream ended");
                break;
            }
        };
        let Some(link) = link.upgrade() else { break };
        *link
            .last_heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let mut input = &chunk[..];
        loop {
            let frame = match decoder.decode(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => {
                    debug!(error = %ErrorChain(&error), "message stream ended");
                    break 'reading;
                }
            };
            let opened = {
                let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
                frame.open(&mut keys)
            };
            let plain = match opened {
                Ok(plain) if plain.kind() == FrameKind::Control => plain,
                Ok(_) | Err(_) => {
                    warn!(peer = %short(&link.node_id), "a frame did not open; closing the connection");
                    link.close(CLOSE_PROTOCOL, "frame did not authenticate");
                    break 'reading;
                }
            };
            match ControlMessage::decode(plain.payload()) {
                Ok(message) => dispatch(&link, message, &inbox, &answering).await,
                Err(error) => {
                    // The frame authenticated, so the stream is in step: answer and go on.
                    let reply = ErrorReply {
                        code: error.code(),
                        message: error_chain(&error),
                    };
                    let _ = link
                        .outbox
                        .queue(&ControlMessage::new(NetworkMessage::Error(reply)))
                        .await;
                }
            }
        }
        // The answers to everything this read brought, in one write.
        let _ = link.outbox.write_queue().await;
    }
    if let Some(link) = link.upgrade() {
        // Fail every request still waiting.
        link.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn dispatch(link: &Link, message: ControlMessage, inbox: &Inbox, answering: &Arc<Semaphore>) {
    let ControlMessage { id, message } = message;
    if let Some(id) = id.filter(|id| link.is_own(*id)) {
        let waiter = link
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id.0);
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(message);
            }
            None => debug!(peer = %short(&link.node_id), "an answer nobody waits for"),
        }
        return;
    }
    let kind = message.kind();
    if let NetworkMessage::Ping(ping) = &message {
        // Keep-alive: answered here, and not application traffic.
        if let Some(id) = id {
            let pong = NetworkMessage::Pong(Pong {
                timestamp_ms: ping.timestamp_ms,
            });
            let _ = link.outbox.queue(&ControlMessage::with_id(id, pong)).await;
        }
        return;
    }
    link.activity.touch();
    let reply = if request::needs_app(kind) {
        let Some(id) = id else {
            debug!(peer = %short(&link.node_id), request = kind.as_str(), "a request without an id; nobody to answer");
            return;
        };
        let Ok(permit) = Arc::clone(answering).try_acquire_owned() else {
            return send_reply(link, id, busy()).await;
        };
        // The app may take its time: answer on a task of its own, so the link keeps reading.
        let in_use = link.use_it();
        let outbox = Arc::clone(&link.outbox);
        let handler = inbox.handler.clone();
        let peer = inbox.peer.clone();
        tokio::spawn(async move {
            let reply = request::answer(&handler, peer, message).await;
            let _ = outbox.send(&ControlMessage::with_id(id, reply)).await;
            drop((permit, in_use));
        });
        return;
    } else if request::expected_answer(kind).is_none() {
        // An answer kind that answers none of our requests.
        debug!(peer = %short(&link.node_id), kind = kind.as_str(), "an unsolicited answer");
        NetworkMessage::Error(ErrorReply {
            code: ErrorCode::Unsupported,
            message: format!("{} answers a request; it is not one", kind.as_str()),
        })
    } else if kind == tether_wire::MessageKind::FileRequest {
        NetworkMessage::Error(ErrorReply {
            code: ErrorCode::Unsupported,
            message: "file requests belong to a transfer stream".to_owned(),
        })
    } else {
        let delivered = inbox
            .events
            .send(Incoming {
                from: link.node_id,
                message,
            })
            .await;
        if delivered.is_ok() {
            NetworkMessage::Ack
        } else {
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Busy,
                message: "the device is shutting down".to_owned(),
            })
        }
    };
    if let Some(id) = id {
        send_reply(link, id, reply).await;
    }
}

fn busy() -> NetworkMessage {
    NetworkMessage::Error(ErrorReply {
        code: ErrorCode::Busy,
        message: "too many requests at once".to_owned(),
    })
}

/// Queues an answer; the reader writes it out with the rest once the read is dispatched.
async fn send_reply(link: &Link, id: RequestId, reply: NetworkMessage) {
    let _ = link.outbox.queue(&ControlMessage::with_id(id, reply)).await;
}
