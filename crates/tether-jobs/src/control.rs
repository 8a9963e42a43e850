//! The control stream's two halves as tasks, shared by both sides: a reader that forwards each
//! message (or the reason it stopped) through a channel, so the caller can `select!` on it
//! without losing half a message, and a writer that sends queued messages and a heartbeat every
//! [`HEARTBEAT_INTERVAL`].

use std::time::Duration;

use tether::{RecvStream, SendStream};
use tether_transfer::CancellationToken;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::wire::{HEARTBEAT_INTERVAL, Message, ReadError, read_message, write_message};

/// How long one message may take to write before the peer is taken to be gone.
pub(crate) const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Reads messages until the stream fails, ends, or is silent for `silence_limit`; the last
/// item is the error that stopped it.
pub(crate) fn spawn_reader(
    mut recv: RecvStream,
    silence_limit: Duration,
) -> mpsc::Receiver<Result<Message, ReadError>> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let message = read_message(&mut recv, silence_limit).await;
            let failed = message.is_err();
            if tx.send(message).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// The writing half: queue messages with [`send`](Self::send); [`stop`](Self::stop) hands the
/// stream back once what was queued is written.
#[derive(Debug)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Message>,
    stop: CancellationToken,
    task: JoinHandle<Option<SendStream>>,
}

impl Writer {
    /// Starts writing: `first` (if any) before anything else, then heartbeats from one
    /// interval on.
    pub(crate) fn spawn(mut send: SendStream, first: Option<Message>) -> Self {
        let (queue, mut rx) = mpsc::channel::<Message>(32);
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            if let Some(first) = first
                && write_message(&mut send, &first, WRITE_DEADLINE)
                    .await
                    .is_err()
            {
                return None;
            }
            let start = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
            let mut tick = tokio::time::interval_at(start, HEARTBEAT_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let message = tokio::select! {
                    biased;
                    message = rx.recv() => match message {
                        Some(message) => message,
                        None => break,
                    },
                    () = stopped.cancelled() => break,
                    _ = tick.tick() => Message::Heartbeat,
                };
                if write_message(&mut send, &message, WRITE_DEADLINE)
                    .await
                    .is_err()
                {
                    return None;
                }
            }
            // Whatever was queued before the stop still goes out, in order.
            while let Ok(message) = rx.try_recv() {
                if write_message(&mut send, &message, WRITE_DEADLINE)
                    .await
                    .is_err()
                {
                    return None;
                }
            }
            Some(send)
        });
        Self { queue, stop, task }
    }

    /// A sender for messages, e.g. a handler's progress.
    pub(crate) fn queue(&self) -> mpsc::Sender<Message> {
        self.queue.clone()
    }

    /// Queues a message; false when the writer has stopped (the stream failed).
    pub(crate) async fn send(&self, message: Message) -> bool {
        self.queue.send(message).await.is_ok()
    }

    /// Stops the heartbeats and returns the stream once everything queued is written (`None`
    /// if writing failed).
    pub(crate) async fn stop(self) -> Option<SendStream> {
        self.stop.cancel();
        self.task.await.ok().flatten()
    }
}

/// Writes a last message on a stream and finishes it.
pub(crate) async fn finish_with(send: Option<SendStream>, message: &Message) {
    let Some(mut send) = send else {
        return;
    };
    if write_message(&mut send, message, WRITE_DEADLINE)
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}
