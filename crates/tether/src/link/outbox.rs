//! The sending half of a link's message stream: writes what the session transmits.
//!
//! Whoever has a message to send (a caller's request, a handler's answer) has the session
//! seal it, and then, if nobody is writing, writes what the session transmits itself, on its
//! own task: no hand-off to a writer task, so a lone request costs no extra wake-up. The
//! reader writes the answers the session made to what one read brought (pongs, say) the same
//! way, in one write. When several send at once, the one writing takes everything sealed
//! meanwhile in one go (flat combining): the others return at once instead of waiting their
//! turn for the stream. The session seals under its lock and hands out its bytes in counter
//! order, which is their order on the wire, as the peer's replay window expects; frames are
//! sealed whole, so they reach the wire whole.
//!
//! **Cancellation.** A writer dropped while a frame is half written (a request that timed out
//! while the stream was flow-controlled) must not leave half a frame on the wire for the next
//! frame to land in. The stream's `write` is cancel-safe (if it does not complete, nothing was
//! written), and the count of written bytes is kept beside the bytes, under the stream's lock,
//! so the rest is never lost: the next writer writes it before anything else, and a task
//! started when the interrupted writer is dropped writes it if nobody sends again. A frame
//! once sealed is always written (unless the stream fails).
//!
//! **Backpressure.** While more than [`QUEUE_LIMIT`] sealed bytes wait in the session,
//! senders wait for the writer to take them; the writer waits for the stream's flow control.
//! A peer that does not read slows every sender down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use tether_session::Session;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// How many sealed bytes waiting make senders wait for the writer.
const QUEUE_LIMIT: usize = 1 << 20;

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
    /// The session, which seals and keeps the sealed bytes no writer has taken yet.
    session: Arc<Mutex<Session>>,
    /// The stream failed: nothing more is sent. Set under the session's lock.
    failed: AtomicBool,
    /// The stream; whoever holds it writes what the session transmits.
    stream: tokio::sync::Mutex<Unsent<W>>,
    /// Woken when a writer takes the session's bytes, or the stream fails.
    taken: Notify,
}

/// The stream and the bytes a writer took from the session.
#[derive(Debug)]
struct Unsent<W> {
    stream: W,
    /// Sealed frames, whole, of which the first `written` bytes are on the stream.
    bytes: Vec<u8>,
    written: usize,
}

impl<W: AsyncWrite + Unpin + Send + 'static> Outbox<W> {
    pub(crate) fn new(stream: W, session: Arc<Mutex<Session>>) -> Arc<Self> {
        Arc::new(Self {
            session,
            failed: AtomicBool::new(false),
            stream: tokio::sync::Mutex::new(Unsent {
                stream,
                bytes: Vec::new(),
                written: 0,
            }),
            taken: Notify::new(),
        })
    }

    /// Has the session seal a message (`seal` runs once, under the session's lock, once there
    /// is room), then writes out what the session transmits unless another task is writing
    /// (which then writes this frame too). Returns once the frame is sealed and either
    /// written or in the hands of the task writing.
    ///
    /// Cancel-safe in the sense above: dropping the future never leaves a partial frame
    /// behind for good, and never reorders frames.
    pub(crate) async fn send<T>(
        self: &Arc<Self>,
        seal: impl FnOnce(&mut Session) -> Result<T, SendError>,
    ) -> Result<T, SendError> {
        let mut seal = Some(seal);
        let sent = loop {
            let taken = self.taken.notified();
            {
                let mut session = self.session.lock();
                if self.failed.load(Ordering::Acquire) {
                    return Err(SendError::Closed);
                }
                if session.queued() < QUEUE_LIMIT
                    && let Some(seal) = seal.take()
                {
                    break seal(&mut session)?;
                }
            }
            // Full: wait for the writer to take the bytes, then try again.
            taken.await;
        };
        self.write_queue().await?;
        Ok(sent)
    }

    /// Writes out what the session transmits until it has nothing more, unless another task
    /// is writing.
    pub(crate) async fn write_queue(self: &Arc<Self>) -> Result<(), SendError> {
        loop {
            let Ok(mut unsent) = self.stream.try_lock() else {
                // The task writing takes what was sealed before it lets go of the stream, or
                // looks again after (below).
                return Ok(());
            };
            let mut finishing = FinishOnDrop { outbox: Some(self) };
            let written = self.drain(&mut unsent).await;
            finishing.outbox = None;
            written?;
            drop(unsent);
            // Anything sealed after the last take, by a sender that found the stream held?
            if self.session.lock().queued() == 0 {
                return Ok(());
            }
        }
    }

    /// Writes what is left of an interrupted write, then what the session transmits, until
    /// both are empty.
    async fn drain(&self, unsent: &mut Unsent<W>) -> Result<(), SendError> {
        loop {
            if unsent.written == unsent.bytes.len() {
                unsent.bytes.clear();
                unsent.written = 0;
                let Some(bytes) = self.session.lock().poll_transmit() else {
                    return Ok(());
                };
                unsent.bytes = bytes;
                self.taken.notify_waiters();
            }
            if unsent.write_some().await.is_err() {
                {
                    let mut session = self.session.lock();
                    self.failed.store(true, Ordering::Release);
                    session.discard_transmit();
                }
                unsent.bytes = Vec::new();
                unsent.written = 0;
                self.taken.notify_waiters();
                return Err(SendError::Closed);
            }
        }
    }
}

impl<W: AsyncWrite + Unpin> Unsent<W> {
    /// One write of the bytes not yet written; the progress is recorded before the next, so
    /// being dropped between writes loses nothing.
    async fn write_some(&mut self) -> Result<(), ()> {
        let rest = self.bytes.get(self.written..).unwrap_or_default();
        match self.stream.write(rest).await {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => {
                self.written += n;
                Ok(())
            }
        }
    }
}

/// Dropped with `outbox` still set when a writer was cancelled mid-write: writes the rest on
/// a task of its own, so it reaches the wire even if nobody sends again.
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
            let mut unsent = outbox.stream.lock().await;
            if outbox.drain(&mut unsent).await.is_ok() {
                drop(unsent);
                // As in `write_queue`: a sender may have queued while this task held the stream.
                let _ = outbox.write_queue().await;
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
    use std::time::Instant;

    use tether_crypto::{Role, SessionSecrets};
    use tether_wire::{
        ControlMessage, Frame, Hlc, NetworkMessage, Ping, RequestId, SyncEntry, SyncResponse,
        read_frame,
    };
    use tokio::io::DuplexStream;
    use tokio::task::JoinHandle;

    use super::*;

    fn session(keys: tether_crypto::SessionKeys) -> Arc<Mutex<Session>> {
        let config = tether_session::Config::default();
        let session = Session::new(keys, tether_session::Side::Dialler, config, Instant::now());
        Arc::new(Mutex::new(session))
    }

    /// Sends `message` (with its id) through the session and the outbox.
    async fn send_message(
        outbox: &Arc<Outbox<DuplexStream>>,
        message: &ControlMessage,
    ) -> Result<(), SendError> {
        let ControlMessage { id, message, .. } = message.clone();
        outbox
            .send(move |session| {
                session
                    .answer(Instant::now(), id.unwrap(), message)
                    .map_err(|error| SendError::Message(error.to_string()))
            })
            .await
    }

    /// An outbox writing into a pipe of `capacity` bytes, and a task reading and opening
    /// (in order) every frame that comes out of the pipe.
    fn pipe(capacity: usize) -> (Arc<Outbox<DuplexStream>>, JoinHandle<Vec<ControlMessage>>) {
        let [ours, theirs] = SessionSecrets::danger_pair_from_seed(7).unwrap();
        let (writer, mut reader) = tokio::io::duplex(capacity);
        let outbox = Outbox::new(writer, session(ours.into_session_keys(Role::Initiator)));
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
        let mut send = pin!(send_message(outbox, message));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(send.as_mut().poll(&mut cx).is_pending());
        assert!(
            outbox.stream.try_lock().is_err(),
            "the sender holds the stream mid-frame"
        );
    }

    #[tokio::test]
    async fn a_sender_dropped_mid_frame_leaves_the_stream_in_step() {
        let (outbox, reading) = pipe(512);
        send_partly(&outbox, &big(1));
        // The pipe holds part of a frame; the next frame must not land in the middle of it.
        send_message(&outbox, &ping(3)).await.unwrap();
        send_message(&outbox, &big(5)).await.unwrap();
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
                        send_message(&outbox, &message),
                    )
                    .await;
                } else {
                    send_message(&outbox, &message).await.unwrap();
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
    async fn senders_wait_while_the_queue_is_full() {
        let [ours, theirs] = SessionSecrets::danger_pair_from_seed(7).unwrap();
        let (writer, mut reader) = tokio::io::duplex(4096);
        let outbox = Outbox::new(writer, session(ours.into_session_keys(Role::Initiator)));
        // Nobody reads: the first sender writes until the pipe is full and waits there (its
        // task holds the stream); the others queue until the queue is over its limit.
        let frame_len = Frame::control(&big(0)).unwrap().encoded_len();
        let fill = QUEUE_LIMIT / frame_len + 2;
        let mut senders = tokio::task::JoinSet::new();
        for id in 0..fill as u64 {
            let outbox = Arc::clone(&outbox);
            senders.spawn(async move { send_message(&outbox, &big(id)).await });
            tokio::task::yield_now().await;
        }
        let late = {
            let outbox = Arc::clone(&outbox);
            tokio::spawn(async move { send_message(&outbox, &ping(1_000_000)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !late.is_finished(),
            "a sender waits while the queue is full"
        );
        assert!(outbox.session.lock().queued() >= QUEUE_LIMIT);

        // Reading makes room: every sender finishes and every frame arrives, in order.
        let mut keys = theirs.into_session_keys(Role::Responder);
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(frame) = read_frame(&mut reader).await.unwrap() {
                let plain = frame.open(&mut keys).expect("every frame opens, in order");
                got.push(
                    ControlMessage::decode(plain.payload())
                        .unwrap()
                        .id
                        .unwrap()
                        .0,
                );
            }
            got
        });
        while let Some(sent) = senders.join_next().await {
            sent.unwrap().unwrap();
        }
        late.await.unwrap().unwrap();
        drop(outbox);
        let got = reading.await.unwrap();
        assert_eq!(got.len(), fill + 1);
        assert!(got.contains(&1_000_000));
    }

    #[tokio::test]
    async fn a_closed_stream_fails_every_later_send() {
        let [ours, _] = SessionSecrets::danger_pair_from_seed(7).unwrap();
        let (writer, reader) = tokio::io::duplex(64);
        drop(reader);
        let outbox = Outbox::new(writer, session(ours.into_session_keys(Role::Initiator)));
        assert!(matches!(
            send_message(&outbox, &ping(1)).await,
            Err(SendError::Closed)
        ));
        assert!(matches!(
            send_message(&outbox, &ping(3)).await,
            Err(SendError::Closed)
        ));
    }
}
