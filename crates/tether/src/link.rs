//! A live, encrypted `tether/sync/1` connection to one paired device.
//!
//! The side that dials opens one bidirectional stream and runs the tether-crypto session
//! handshake on it (fresh X25519 keys, both identities' signatures, the pairing secret mixed
//! in); afterwards every control message on that stream is a sealed tether-wire frame.
//! Requests carry a [`RequestId`]; the answer (`Pong`, `Ack`, `Error`, `SyncResponse`,
//! `FileResponse`) carries the same id and completes the waiting request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use iroh::endpoint::{Connection, ConnectionError, RecvStream, SendStream, Side};
use rand_core::UnwrapErr;
use tether_crypto::handshake::{FinishMessage, InitMessage, Initiator, Responder, ResponseMessage};
use tether_crypto::{PairingSecret, SessionKeys};
use tether_identity::{NetworkIdentity, NodeId};
use tether_wire::{
    ControlMessage, ErrorCode, ErrorReply, Frame, FrameKind, NetworkMessage, Pong, RequestId,
    read_frame, write_frame,
};

use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::NetworkError;
use crate::error::short;

/// The ALPN of Tether's messaging protocol.
pub const SYNC_ALPN: &[u8] = b"tether/sync/1";

/// QUIC close code: a normal close.
pub(crate) const CLOSE_NORMAL: u32 = 0;
/// QUIC close code: the peer broke the protocol (bad handshake, frame that does not open).
pub(crate) const CLOSE_PROTOCOL: u32 = 0x7001;
/// QUIC close code: the device was unpaired.
pub(crate) const CLOSE_REVOKED: u32 = 0x7003;
/// QUIC close code: the peer stopped answering keep-alive pings.
pub(crate) const CLOSE_DEAD: u32 = 0x7004;

/// How long the session handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<NetworkMessage>>>>;

/// One authenticated, encrypted connection to a paired device.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) node_id: NodeId,
    pub(crate) connection: Connection,
    outgoing: mpsc::Sender<ControlMessage>,
    pending: Pending,
    next_id: AtomicU64,
    last_heard: Mutex<Instant>,
    /// When the session handshake finished.
    established: Instant,
    /// Why this side closed the connection, if it did.
    local_close: Mutex<Option<&'static str>>,
    /// A keep-alive ping is in flight.
    probing: AtomicBool,
    /// The session's keys, shared with the reader and writer tasks; transfers derive theirs.
    keys: Arc<Mutex<SessionKeys>>,
}

/// What the reader hands to the service: messages that are not answers.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) from: NodeId,
    pub(crate) message: NetworkMessage,
}

impl Link {
    /// Dials side: runs the handshake as initiator on a new stream.
    pub(crate) async fn dial(
        connection: Connection,
        identity: &NetworkIdentity,
        peer: NodeId,
        secret: &PairingSecret,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<Self>, NetworkError> {
        let handshake = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(|e| failed(&peer, e))?;
            let mut rng = UnwrapErr(getrandom::SysRng);
            let (state, init) = Initiator::start(&mut rng, identity, peer, secret);
            send.write_all(&init.to_bytes())
                .await
                .map_err(|e| failed(&peer, e))?;
            let mut response = [0u8; ResponseMessage::LEN];
            recv.read_exact(&mut response)
                .await
                .map_err(|e| failed(&peer, e))?;
            let response =
                ResponseMessage::from_bytes(&response).map_err(|e| violation(&peer, e))?;
            let (keys, finish) = state
                .receive(&response)
                .map_err(|_| NetworkError::InvalidSignature { node: short(&peer) })?;
            send.write_all(&finish.to_bytes())
                .await
                .map_err(|e| failed(&peer, e))?;
            Ok::<_, NetworkError>((send, recv, keys))
        };
        match timeout("session handshake", handshake).await {
            Ok((send, recv, keys)) => Ok(Self::start(connection, peer, send, recv, keys, incoming)),
            // The gate closes a refused connection right after the TLS handshake, so the
            // refusal shows up here, on the first read.
            Err(error) => Err(crate::gate::refusal(&connection).unwrap_or(error)),
        }
    }

    /// Accepting side: runs the handshake as responder on the first stream.
    pub(crate) async fn accept(
        connection: Connection,
        identity: &NetworkIdentity,
        peer: NodeId,
        secret: &PairingSecret,
        incoming: mpsc::Sender<Incoming>,
    ) -> Result<Arc<Self>, NetworkError> {
        let handshake = async {
            let (mut send, mut recv) =
                connection.accept_bi().await.map_err(|e| failed(&peer, e))?;
            let mut init = [0u8; InitMessage::LEN];
            recv.read_exact(&mut init)
                .await
                .map_err(|e| failed(&peer, e))?;
            let init = InitMessage::from_bytes(&init).map_err(|e| violation(&peer, e))?;
            let mut rng = UnwrapErr(getrandom::SysRng);
            let (state, response) = Responder::respond(&mut rng, identity, peer, secret, &init)
                .map_err(|e| violation(&peer, e))?;
            send.write_all(&response.to_bytes())
                .await
                .map_err(|e| failed(&peer, e))?;
            let mut finish = [0u8; FinishMessage::LEN];
            recv.read_exact(&mut finish)
                .await
                .map_err(|e| failed(&peer, e))?;
            let finish = FinishMessage::from_bytes(&finish).map_err(|e| violation(&peer, e))?;
            let keys = state
                .receive(&finish)
                .map_err(|_| NetworkError::InvalidSignature { node: short(&peer) })?;
            Ok::<_, NetworkError>((send, recv, keys))
        };
        match timeout("session handshake", handshake).await {
            Ok((send, recv, keys)) => Ok(Self::start(connection, peer, send, recv, keys, incoming)),
            Err(error) => {
                connection.close(CLOSE_PROTOCOL.into(), b"session handshake failed");
                Err(error)
            }
        }
    }

    fn start(
        connection: Connection,
        node_id: NodeId,
        send: SendStream,
        recv: RecvStream,
        keys: SessionKeys,
        incoming: mpsc::Sender<Incoming>,
    ) -> Arc<Self> {
        let keys = Arc::new(Mutex::new(keys));
        let (outgoing, queue) = mpsc::channel(256);
        let link = Arc::new(Self {
            node_id,
            connection,
            outgoing,
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
            last_heard: Mutex::new(Instant::now()),
            established: Instant::now(),
            local_close: Mutex::new(None),
            probing: AtomicBool::new(false),
            keys: Arc::clone(&keys),
        });
        tokio::spawn(write_loop(
            send,
            queue,
            Arc::clone(&keys),
            link.connection.clone(),
        ));
        tokio::spawn(read_loop(recv, keys, Arc::downgrade(&link), incoming));
        link
    }

    /// Keys for one transfer, derived from this connection's session; the peer derives the
    /// same ones from its side of the session with the same id.
    pub(crate) fn transfer_keys(
        &self,
        transfer_id: uuid::Uuid,
    ) -> Result<SessionKeys, NetworkError> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transfer_keys(transfer_id.as_bytes())
            .map_err(|error| NetworkError::ProtocolViolation {
                node: short(&self.node_id),
                reason: format!("transfer keys: {error}"),
            })
    }

    /// Sends a request and waits for its answer.
    pub(crate) async fn request(
        &self,
        message: NetworkMessage,
        wait: Duration,
    ) -> Result<NetworkMessage, NetworkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, answer);
        let sent = self
            .outgoing
            .send(ControlMessage::with_id(RequestId(id), message))
            .await;
        if sent.is_err() {
            self.forget(id);
            return Err(self.gone());
        }
        match tokio::time::timeout(wait, answered).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(self.gone()),
            Err(_) => {
                self.forget(id);
                Err(NetworkError::TimedOut {
                    what: "request",
                    after: wait,
                })
            }
        }
    }

    /// Time since the peer last sent anything.
    pub(crate) fn idle_for(&self) -> Duration {
        self.last_heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Closes the connection, remembering why for [`Self::end_reason`].
    pub(crate) fn close(&self, code: u32, reason: &'static str) {
        self.local_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        self.connection.close(code.into(), reason.as_bytes());
    }

    /// Why the connection ended, for people: this side's own reason when it closed it.
    pub(crate) fn end_reason(&self, error: &ConnectionError) -> String {
        let local = *self
            .local_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (error, local) {
            (ConnectionError::LocallyClosed, Some(reason)) => format!("closed here: {reason}"),
            _ => error.to_string(),
        }
    }

    /// Whether this side dialled the connection.
    pub(crate) fn dialled_here(&self) -> bool {
        self.connection.side() == Side::Client
    }

    /// How long ago the session was established.
    pub(crate) fn age(&self) -> Duration {
        self.established.elapsed()
    }

    /// Claims the right to send the next keep-alive ping; `false` while one is in flight.
    pub(crate) fn start_probe(&self) -> bool {
        !self.probing.swap(true, Ordering::AcqRel)
    }

    /// The keep-alive ping in flight got its answer (or gave up).
    pub(crate) fn end_probe(&self) {
        self.probing.store(false, Ordering::Release);
    }

    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    }

    fn gone(&self) -> NetworkError {
        if let Some(refused) = crate::gate::refusal(&self.connection) {
            return refused;
        }
        NetworkError::ConnectionFailed {
            node: short(&self.node_id),
            reason: self
                .connection
                .close_reason()
                .map_or_else(|| "the connection closed".to_owned(), |r| r.to_string()),
        }
    }
}

async fn write_loop(
    mut send: SendStream,
    mut queue: mpsc::Receiver<ControlMessage>,
    keys: Arc<Mutex<SessionKeys>>,
    connection: Connection,
) {
    while let Some(message) = queue.recv().await {
        let sealed = Frame::control(&message)
            .map_err(|e| e.to_string())
            .and_then(|frame| {
                let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
                frame.seal(&mut keys).map_err(|e| e.to_string())
            });
        let frame = match sealed {
            Ok(frame) => frame,
            Err(error) => {
                warn!(%error, "cannot send a message; dropping it");
                continue;
            }
        };
        if write_frame(&mut send, &frame).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
    drop(connection);
}

async fn read_loop(
    mut recv: RecvStream,
    keys: Arc<Mutex<SessionKeys>>,
    link: std::sync::Weak<Link>,
    incoming: mpsc::Sender<Incoming>,
) {
    loop {
        let frame = match read_frame(&mut recv).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                debug!(%error, "message stream ended");
                break;
            }
        };
        let Some(link) = link.upgrade() else { break };
        *link
            .last_heard
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        let opened = {
            let mut keys = keys.lock().unwrap_or_else(PoisonError::into_inner);
            frame.open(&mut keys)
        };
        let plain = match opened {
            Ok(plain) if plain.kind() == FrameKind::Control => plain,
            Ok(_) | Err(_) => {
                warn!(peer = %short(&link.node_id), "a frame did not open; closing the connection");
                link.close(CLOSE_PROTOCOL, "frame did not authenticate");
                break;
            }
        };
        let message = match ControlMessage::decode(plain.payload()) {
            Ok(message) => message,
            Err(error) => {
                // The frame authenticated, so the stream is in step: answer and go on.
                let reply = ErrorReply {
                    code: error.code(),
                    message: error.to_string(),
                };
                let _ = link
                    .outgoing
                    .send(ControlMessage::new(NetworkMessage::Error(reply)))
                    .await;
                continue;
            }
        };
        dispatch(&link, message, &incoming).await;
    }
    if let Some(link) = link.upgrade() {
        // Fail every request still waiting.
        link.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

async fn dispatch(link: &Link, message: ControlMessage, incoming: &mpsc::Sender<Incoming>) {
    let ControlMessage { id, message } = message;
    let is_answer = matches!(
        message,
        NetworkMessage::Pong(_)
            | NetworkMessage::Ack
            | NetworkMessage::Error(_)
            | NetworkMessage::SyncResponse(_)
            | NetworkMessage::FileResponse(_)
    );
    if is_answer {
        let waiter = id.and_then(|RequestId(id)| {
            link.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id)
        });
        match waiter {
            Some(waiter) => {
                let _ = waiter.send(message);
            }
            None => debug!(peer = %short(&link.node_id), "an answer nobody waits for"),
        }
        return;
    }
    let reply = match &message {
        NetworkMessage::Ping(ping) => Some(NetworkMessage::Pong(Pong {
            timestamp_ms: ping.timestamp_ms,
        })),
        NetworkMessage::FileRequest(_) => Some(NetworkMessage::Error(ErrorReply {
            code: ErrorCode::Unsupported,
            message: "file requests belong to a transfer stream".to_owned(),
        })),
        _ => {
            let delivered = incoming
                .send(Incoming {
                    from: link.node_id,
                    message: message.clone(),
                })
                .await;
            Some(if delivered.is_ok() {
                NetworkMessage::Ack
            } else {
                NetworkMessage::Error(ErrorReply {
                    code: ErrorCode::Busy,
                    message: "the device is shutting down".to_owned(),
                })
            })
        }
    };
    if let (Some(id), Some(reply)) = (id, reply) {
        let _ = link.outgoing.send(ControlMessage::with_id(id, reply)).await;
    }
}

async fn timeout<T>(
    what: &'static str,
    future: impl Future<Output = Result<T, NetworkError>>,
) -> Result<T, NetworkError> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, future)
        .await
        .unwrap_or(Err(NetworkError::TimedOut {
            what,
            after: HANDSHAKE_TIMEOUT,
        }))
}

fn failed(peer: &NodeId, error: impl std::fmt::Display) -> NetworkError {
    NetworkError::ConnectionFailed {
        node: short(peer),
        reason: error.to_string(),
    }
}

fn violation(peer: &NodeId, error: impl std::fmt::Display) -> NetworkError {
    NetworkError::ProtocolViolation {
        node: short(peer),
        reason: error.to_string(),
    }
}
