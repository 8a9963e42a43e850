//! One link: a connection to a paired device on the channel ALPN, one bidirectional stream of
//! frames each way. Frames to the device wait in a bounded queue that one task writes out,
//! each within a deadline; the frames it sends are read and handled here.

use std::collections::HashSet;

use tether::{Connection, NodeId, ProtocolError, RecvStream, SendStream};
use tokio::sync::mpsc;

use crate::channels::Channels;
use crate::peer::{CLOSE_VIOLATION, Link, close_slow};
use crate::topic::ChannelMessage;
use crate::wire::{Frame, VERSION, read_frame};

impl Channels {
    /// Runs a link this device dialled: it opens the stream and speaks first.
    pub(crate) async fn run_dialled(&self, node: NodeId, connection: Connection) {
        let opened = connection.open_bi().await;
        let Ok((send, recv)) = opened else {
            return;
        };
        let ended = self.run_link(node, connection, send, recv, true).await;
        if let Err(error) = ended {
            tracing::debug!(node = %node.fmt_short(), error = %tether::ErrorChain(&error), "channel link ended");
        }
    }

    /// Runs a link a paired device dialled; its stream must open within the frame deadline.
    pub(crate) async fn run_accepted(
        &self,
        node: NodeId,
        connection: Connection,
    ) -> Result<(), ProtocolError> {
        let deadline = self.inner.limits.frame_deadline;
        let Ok(accepted) = tokio::time::timeout(deadline, connection.accept_bi()).await else {
            connection.close(CLOSE_VIOLATION.into(), b"no stream");
            return Err(ProtocolError::Violation("no stream in time".to_owned()));
        };
        let (send, recv) = accepted?;
        self.run_link(node, connection, send, recv, false).await
    }

    async fn run_link(
        &self,
        node: NodeId,
        connection: Connection,
        send: SendStream,
        mut recv: RecvStream,
        dialled: bool,
    ) -> Result<(), ProtocolError> {
        let limits = self.inner.limits;
        let (queue, frames) = mpsc::channel(limits.queue);
        let id = self.next_link_id();
        if dialled {
            let _ = queue.try_send(Frame::Hello { version: VERSION });
        }
        for frame in self.subscriptions() {
            let _ = queue.try_send(frame);
        }
        self.inner
            .state
            .lock()
            .links
            .entry(node)
            .or_default()
            .push(Link {
                id,
                node,
                connection: connection.clone(),
                queue: queue.clone(),
                topics: HashSet::new(),
            });
        self.spawn(write_frames(
            connection.clone(),
            send,
            frames,
            limits.write_deadline,
        ));
        // A device revoked while this link was set up must not stay on it.
        if !self.trusted(node) {
            self.drop_device(node);
        }
        let result = loop {
            match read_frame(&mut recv, limits.frame_deadline).await {
                Ok(Some(frame)) => {
                    if let Err(error) = self.handle(node, id, &queue, frame) {
                        connection.close(CLOSE_VIOLATION.into(), b"protocol violation");
                        break Err(error);
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => {
                    connection.close(CLOSE_VIOLATION.into(), b"bad frame");
                    break Err(ProtocolError::Violation(tether::error_chain(&error)));
                }
            }
        };
        self.link_ended(node, id);
        result
    }

    fn handle(
        &self,
        node: NodeId,
        id: u64,
        queue: &mpsc::Sender<Frame>,
        frame: Frame,
    ) -> Result<(), ProtocolError> {
        match frame {
            Frame::Hello { version } if version == VERSION => {}
            Frame::Hello { version } => {
                return Err(ProtocolError::Violation(format!(
                    "unsupported version {version}"
                )));
            }
            Frame::Subscribe { topic, cursors } => {
                let missed = self.peer_subscribed(node, id, &topic, &cursors)?;
                if !missed.is_empty() {
                    self.spawn(send_history(
                        queue.clone(),
                        missed,
                        self.inner.limits.write_deadline,
                    ));
                }
            }
            Frame::Unsubscribe { topic } => self.peer_unsubscribed(node, id, &topic),
            Frame::Message {
                topic,
                sender,
                seq,
                hlc,
                body,
            } => {
                let sender = NodeId::from_bytes(&sender)
                    .map_err(|_| ProtocolError::Violation("bad sender id".to_owned()))?;
                let message = ChannelMessage {
                    sender,
                    seq,
                    hlc,
                    body,
                };
                self.peer_message(node, &topic, message);
            }
            Frame::Floor { topic, seq } => self.peer_floor(node, &topic, seq),
        }
        Ok(())
    }
}

/// Queues a history answer, waiting for room at most `deadline` per frame (a subscriber that
/// reads nothing is not waited for longer).
async fn send_history(
    queue: mpsc::Sender<Frame>,
    frames: Vec<Frame>,
    deadline: std::time::Duration,
) {
    for frame in frames {
        if queue.send_timeout(frame, deadline).await.is_err() {
            return;
        }
    }
}

/// Writes queued frames until the link's queue closes; a write that misses its deadline
/// drops the subscriber.
async fn write_frames(
    connection: Connection,
    mut send: SendStream,
    mut frames: mpsc::Receiver<Frame>,
    deadline: std::time::Duration,
) {
    while let Some(frame) = frames.recv().await {
        let bytes = frame.encode();
        match tokio::time::timeout(deadline, send.write_all(&bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                close_slow(std::slice::from_ref(&connection));
                return;
            }
        }
    }
    let _ = send.finish();
}
