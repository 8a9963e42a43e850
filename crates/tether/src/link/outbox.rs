//! The sending half of a link's message stream.
//!
//! Whoever has a message to send (a caller's request, the reader answering a `Ping`, a
//! handler's answer) seals and writes it itself, on its own task, under one lock: no hand-off
//! to a writer task, so a request costs no extra wake-up. Under the lock a frame is sealed
//! (taking the next counter) and appended to the bytes not yet written, and those bytes go to
//! the stream in order, so frames reach the wire whole, one after another, in counter order,
//! as the peer's replay window expects.
//!
//! **Cancellation.** A sender dropped while its frame is half written (a request that timed
//! out while the stream was flow-controlled) must not leave half a frame on the wire for the
//! next frame to land in. The stream's `write` is cancel-safe (if it does not complete, nothing
//! was written), and the count of written bytes is kept beside the bytes, under the lock, so
//! the rest of an interrupted frame is never lost: the next sender writes it before its own
//! frame, and a task started when the interrupted sender is dropped writes it if nobody sends.
//!
//! **Backpressure.** Senders wait for the lock in turn (tokio's mutex is fair) and then for
//! the stream's flow control: a peer that does not read slows every sender down, as the
//! bounded queue to the writer task did before.

use std::sync::{Arc, Mutex, PoisonError};

use tether_crypto::SessionKeys;
use tether_wire::{ControlMessage, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SendError {
    /// The stream failed or was closed; nothing more can be sent on it.
    #[error("the message stream is closed")]
    Closed,
    /// The message could not be encoded or sealed (too large, say); the stream is fine.
    #[error("cannot send the message: {0}")]
    Message(String),
}

/// The sending half of a link's message stream (a QUIC send stream; any byte stream in tests).
#[derive(Debug)]
pub(crate) struct Outbox<W> {
    /// The session's keys, shared with the reader (which opens with the other half).
    keys: Arc<Mutex<SessionKeys>>,
    state: tokio::sync::Mutex<Unsent<W>>,
}

/// The stream and what is still to be written to it.
#[derive(Debug)]
struct Unsent<W> {
    stream: W,
    /// Sealed frames, whole, of which the first `written` bytes are on the stream.
    bytes: Vec<u8>,
    written: usize,
    /// A write failed: the stream is unusable.
    failed: bool,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Outbox<W> {
    pub(crate) fn new(stream: W, keys: Arc<Mutex<SessionKeys>>) -> Arc<Self> {
        Arc::new(Self {
            keys,
            state: tokio::sync::Mutex::new(Unsent {
                stream,
                bytes: Vec::new(),
                written: 0,
                failed: false,
            }),
        })
    }

    /// Seals `message` and writes it to the stream. Returns when the stream has taken the
    /// whole frame (it may still be in QUIC's send buffer).
    ///
    /// Cancel-safe in the sense above: dropping the future never leaves a partial frame
    /// behind for good, and never reorders frames.
    pub(crate) async fn send(self: &Arc<Self>, message: &ControlMessage) -> Result<(), SendError> {
        let frame = Frame::control(message).map_err(|e| SendError::Message(e.to_string()))?;
        let mut unsent = self.state.lock().await;
        if unsent.failed {
            return Err(SendError::Closed);
        }
        // Sealed under the stream's lock, so counters follow the order on the wire.
        let sealed = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            frame.seal(&mut keys)
        }
        .map_err(|e| SendError::Message(e.to_string()))?;
        sealed.encode_into(&mut unsent.bytes);
        let mut finishing = FinishOnDrop { outbox: Some(self) };
        let written = unsent.write_out().await;
        finishing.outbox = None;
        written
    }
}

impl<W: AsyncWrite + Unpin> Unsent<W> {
    /// Writes every byte not yet written; each step records its progress before the next, so
    /// being dropped between steps loses nothing.
    async fn write_out(&mut self) -> Result<(), SendError> {
        while self.written < self.bytes.len() {
            let rest = self.bytes.get(self.written..).unwrap_or_default();
            match self.stream.write(rest).await {
                Ok(0) | Err(_) => {
                    self.failed = true;
                    self.bytes.clear();
                    self.written = 0;
                    return Err(SendError::Closed);
                }
                Ok(n) => self.written += n,
            }
        }
        self.bytes.clear();
        self.written = 0;
        Ok(())
    }
}

/// Dropped with `outbox` still set when a sender was cancelled mid-frame: writes the rest of
/// the frame on a task of its own, so it reaches the wire even if nobody sends again.
struct FinishOnDrop<'a, W: AsyncWrite + Unpin + Send + 'static> {
    outbox: Option<&'a Arc<Outbox<W>>>,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Drop for FinishOnDrop<'_, W> {
    fn drop(&mut self) {
        let Some(outbox) = self.outbox.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime (it is shutting down): the stream goes with it.
            return;
        };
        let outbox = Arc::clone(outbox);
        runtime.spawn(async move {
            let mut unsent = outbox.state.lock().await;
            if !unsent.failed {
                let _ = unsent.write_out().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Waker};

    use tether_crypto::{Role, SessionSecrets};
    use tether_wire::{Hlc, NetworkMessage, Ping, RequestId, SyncEntry, SyncResponse, read_frame};
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    use super::*;

    /// An outbox writing into a pipe of `capacity` bytes, and a task reading and opening
    /// (in order) every frame that comes out of the pipe.
    fn pipe(capacity: usize) -> (Arc<Outbox<DuplexStream>>, JoinHandle<Vec<ControlMessage>>) {
        let [ours, theirs] = SessionSecrets::danger_pair_from_seed(7).unwrap();
        let (writer, mut reader) = tokio::io::duplex(capacity);
        let outbox = Outbox::new(
            writer,
            Arc::new(Mutex::new(ours.into_session_keys(Role::Initiator))),
        );
        let mut keys = theirs.into_session_keys(Role::Responder);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(frame) = read_frame(&mut reader).await.unwrap() {
                let plain = frame.open(&mut keys).expect("every frame opens, in order");
                got.push(ControlMessage::decode(plain.payload()).unwrap());
            }
            got
        });
        (outbox, reading)
    }

    /// A message far larger than the pipes below.
    fn big(id: u64) -> ControlMessage {
        let entry = SyncEntry {
            entry_id: uuid::Uuid::nil(),
            path: "x".repeat(200),
            size: id,
            hash: None,
            hlc: Hlc::ZERO,
            deleted: false,
        };
        ControlMessage::with_id(
            RequestId(id),
            NetworkMessage::SyncResponse(SyncResponse {
                library_id: uuid::Uuid::nil(),
                entries: vec![entry; 50],
                has_more: false,
            }),
        )
    }

    fn ping(id: u64) -> ControlMessage {
        ControlMessage::with_id(
            RequestId(id),
            NetworkMessage::Ping(Ping { timestamp_ms: id }),
        )
    }

    /// Polls a send of `message` once (the reader task cannot run meanwhile: the test runtime
    /// has one thread), so it writes what fits and waits; then drops it.
    fn send_partly(outbox: &Arc<Outbox<DuplexStream>>, message: &ControlMessage) {
        let mut send = pin!(outbox.send(message));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert!(
            outbox.state.try_lock().is_err(),
            "the sender holds the stream mid-frame"
        );
    }

    #[tokio::test]
    async fn a_sender_dropped_mid_frame_leaves_the_stream_in_step() {
        let (outbox, reading) = pipe(512);
        send_partly(&outbox, &big(1));
        // The pipe holds part of a frame; the next frame must not land in the middle of it.
        outbox.send(&ping(3)).await.unwrap();
        outbox.send(&big(5)).await.unwrap();
        drop(outbox);
        assert_eq!(reading.await.unwrap(), vec![big(1), ping(3), big(5)]);
    }

    #[tokio::test]
    async fn an_interrupted_frame_is_finished_even_if_nobody_sends_again() {
        let (outbox, reading) = pipe(512);
        send_partly(&outbox, &big(1));
        // Only the task started by the drop is left to write the rest.
        drop(outbox);
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), reading)
            .await
            .expect("the rest of the frame was written and the stream closed");
        assert_eq!(got.unwrap(), vec![big(1)]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_write_whole_frames_in_counter_order() {
        let (outbox, reading) = pipe(256);
        let mut senders = Vec::new();
        for id in 0..60u64 {
            let outbox = Arc::clone(&outbox);
            senders.push(tokio::spawn(async move {
                let message = if id % 5 == 0 { big(id) } else { ping(id) };
                // Some senders give up part-way, as timed-out requests do.
                if id % 7 == 0 {
                    let _ = tokio::time::timeout(
                        std::time::Duration::from_micros(1),
                        outbox.send(&message),
                    )
                    .await;
                } else {
                    outbox.send(&message).await.unwrap();
                }
            }));
        }
        for sender in senders {
            sender.await.unwrap();
        }
        drop(outbox);
        // Every frame opened in order (the reader checks); the ones not given up all arrived.
        let got: Vec<u64> = reading
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.id.unwrap().0)
            .collect();
        for id in (0..60u64).filter(|id| id % 7 != 0) {
            assert!(got.contains(&id), "{id} missing from {got:?}");
        }
    }

    #[tokio::test]
    async fn a_closed_stream_fails_every_later_send() {
        let [ours, _] = SessionSecrets::danger_pair_from_seed(7).unwrap();
        let (writer, reader) = tokio::io::duplex(64);
        drop(reader);
        let outbox = Outbox::new(
            writer,
            Arc::new(Mutex::new(ours.into_session_keys(Role::Initiator))),
        );
        assert!(matches!(
            outbox.send(&ping(1)).await,
            Err(SendError::Closed)
        ));
        assert!(matches!(
            outbox.send(&ping(3)).await,
            Err(SendError::Closed)
        ));
    }
}
