//! The receiving half of a link's message stream: one task per link reads what the peer
//! sends and feeds it to the session.
//!
//! The task reads what the stream has (up to 64 KiB), hands it to the session (which opens
//! every frame in it, answers `Ping`s and busy requests itself, and reports the rest as
//! events), dispatches the events (answers to the waiting callers, requests to the app's
//! handler on tasks of their own so the link keeps reading, messages to the inbox), and
//! writes the answers in one go before reading again: one ping gets its pong at once, a
//! burst of them gets its pongs in one write.

use std::sync::Weak;
use std::time::Instant;

use iroh::endpoint::RecvStream;
use tether_identity::ErrorChain;
use tether_session::{Event, InputError};
use tracing::debug;

use super::Link;

/// How much one read takes from the stream at most.
const READ_CHUNK: usize = 64 * 1024;

impl Link {
    /// Reads the peer's messages until the stream ends or the link is dropped.
    pub(super) async fn read_loop(mut recv: RecvStream, link: Weak<Self>) {
        loop {
            // A read is cancel-safe and the session keeps a frame split across reads.
            // `read_chunk` hands over the stream's own buffer: no copy, and an idle link holds no
            // read buffer (a 64 KiB one per link was half the memory of an idle connection).
            let chunk = match recv.read_chunk(READ_CHUNK).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    if let Some(link) = link.upgrade()
                        && let Err(error) = link.session().handle_end()
                    {
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
            let (input, events, wake) = {
                let mut session = link.session();
                let input = session.handle_input(Instant::now(), &chunk);
                let events: Vec<Event> = std::iter::from_fn(|| session.poll_event()).collect();
                // A request of the peer's puts the link in use: the busy probe's timer.
                (input, events, link.deadline_moved(&session))
            };
            if wake {
                link.timer.notify_one();
            }
            link.dispatch(events).await;
            match input {
                Ok(()) => {}
                // The session asked to close the connection (dispatched above).
                Err(InputError::Unauthentic) => break,
                Err(error) => {
                    debug!(error = %ErrorChain(&error), "message stream ended");
                    break;
                }
            }
            // The answers to everything this read brought, in one write.
            let _ = link.outbox.write_queue().await;
        }
        if let Some(link) = link.upgrade() {
            link.fail_requests();
        }
    }
}
