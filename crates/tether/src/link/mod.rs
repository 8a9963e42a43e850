//! A live, encrypted `tether/sync/1` connection to one paired device.
//!
//! The side that dials opens one bidirectional stream and runs the tether-crypto session
//! handshake on it (fresh X25519 keys, both identities' signatures, the pairing secret mixed
//! in); afterwards every control message on that stream is a sealed tether-wire frame.
//! Requests carry a [`RequestId`]; the answer carries the same id and completes the waiting
//! request. The side that dialled numbers its requests 1, 3, 5, ... and the side that accepted
//! 2, 4, 6, ..., so a message whose id has this side's parity is an answer to one of its own
//! requests (whatever its kind: a `LibraryAnnounce` answers a `LibraryRequest`), and any other
//! message is the peer's.
//!
//! Sending and receiving: [`outbox`] (whoever sends seals and writes, under one lock, in
//! counter order) and [`reader`] (one task reads and dispatches; it answers `Ping` itself).
//!
//! The link also keeps what the service needs to tell a link in use from an idle one: how many
//! things use it now (requests waiting for answers, transfers, requests the app is answering)
//! and when the last of them ended. Keep-alive pings and their pongs do not count.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use iroh::endpoint::{Connection, ConnectionError, RecvStream, SendStream, Side};
use rand_core::UnwrapErr;
use tether_crypto::handshake::{FinishMessage, InitMessage, Initiator, Responder, ResponseMessage};
use tether_crypto::{PairingSecret, SessionKeys};
use tether_identity::{NetworkIdentity, NodeId, error_chain};
use tether_protocol::PairedPeer;
use tether_wire::{ControlMessage, ErrorReply, NetworkMessage, Ping, RequestId};
use tokio::sync::{mpsc, oneshot};

mod outbox;
mod reader;

use outbox::{Outbox, SendError};

use crate::NetworkError;
use crate::close::{CLOSE_IDLE, CLOSE_PROTOCOL};
use crate::request::{self, HandlerSlot};

/// How many of the peer's requests the app's handler may be answering at once on one link;
/// more are answered `Busy`.
const MAX_ANSWERING: usize = 64;

/// How long the session handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<NetworkMessage>>>>;

/// What uses a link now, and since when nothing has.
#[derive(Debug)]
pub(crate) struct Activity {
    in_use: AtomicUsize,
    last_used: Mutex<Instant>,
}

impl Activity {
    fn new() -> Self {
        Self {
            in_use: AtomicUsize::new(0),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Marks the link in use until the guard is dropped.
    pub(crate) fn use_it(self: &Arc<Self>) -> InUse {
        self.in_use.fetch_add(1, Ordering::AcqRel);
        InUse(Arc::clone(self))
    }

    /// Application traffic just passed.
    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// How long nothing has used the link; `None` while something does.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_use.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(
            self.last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .elapsed(),
        )
    }
}

/// Keeps a link in use (a request, a transfer, an answer being made); the end of the use
/// counts as application traffic.
#[derive(Debug)]
pub(crate) struct InUse(Arc<Activity>);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_use.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Where a link delivers what the peer sends that is not an answer.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    /// Messages for the app's event stream.
    pub(crate) events: mpsc::Sender<Incoming>,
    /// The app's request handler, if it registered one.
    pub(crate) handler: HandlerSlot,
    /// Who the peer is (authenticated, paired), for the handler.
    pub(crate) peer: PairedPeer,
}

/// One authenticated, encrypted connection to a paired device.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) node_id: NodeId,
    pub(crate) connection: Connection,
    /// The message stream's sending half; every task that sends writes through it.
    outbox: Arc<Outbox<SendStream>>,
    pending: Pending,
    /// This side's next request id (odd when it dialled, even when it accepted; steps by 2).
    next_id: AtomicU64,
    last_heard: Mutex<Instant>,
    /// What uses the link now, for the idle rule.
    activity: Arc<Activity>,
    /// When the session handshake finished.
    established: Instant,
    /// Why this side closed the connection (close code and reason), if it did.
    local_close: Mutex<Option<(u32, &'static str)>>,
    /// A keep-alive ping is in flight.
    probing: AtomicBool,
    /// The session's keys, shared with the reader and the outbox; transfers derive theirs.
    keys: Arc<Mutex<SessionKeys>>,
    /// The message stream and where its messages go, until [`Link::start_reading`].
    reader: Mutex<Option<(RecvStream, Inbox)>>,
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
        inbox: Inbox,
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
                .map_err(|_| NetworkError::InvalidSignature { node: peer })?;
            send.write_all(&finish.to_bytes())
                .await
                .map_err(|e| failed(&peer, e))?;
            Ok::<_, NetworkError>((send, recv, keys))
        };
        match timeout("session handshake", handshake).await {
            Ok((send, recv, keys)) => Ok(Self::start(connection, peer, send, recv, keys, inbox)),
            // The gate closes a refused connection right after the TLS handshake, so the
            // refusal shows up here, on the first read.
            Err(error) => Err(crate::close::refusal(&connection).unwrap_or(error)),
        }
    }

    /// Accepting side: runs the handshake as responder on the first stream.
    pub(crate) async fn accept(
        connection: Connection,
        identity: &NetworkIdentity,
        peer: NodeId,
        secret: &PairingSecret,
        inbox: Inbox,
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
                .map_err(|_| NetworkError::InvalidSignature { node: peer })?;
            Ok::<_, NetworkError>((send, recv, keys))
        };
        match timeout("session handshake", handshake).await {
            Ok((send, recv, keys)) => Ok(Self::start(connection, peer, send, recv, keys, inbox)),
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
        inbox: Inbox,
    ) -> Arc<Self> {
        let keys = Arc::new(Mutex::new(keys));
        let first_id = if connection.side() == Side::Client {
            1
        } else {
            2
        };
        Arc::new(Self {
            node_id,
            connection,
            outbox: Outbox::new(send, Arc::clone(&keys)),
            pending: Arc::default(),
            next_id: AtomicU64::new(first_id),
            last_heard: Mutex::new(Instant::now()),
            activity: Arc::new(Activity::new()),
            established: Instant::now(),
            local_close: Mutex::new(None),
            probing: AtomicBool::new(false),
            keys,
            reader: Mutex::new(Some((recv, inbox))),
        })
    }

    /// Starts reading the peer's messages. The service calls it once the link is in the pool
    /// and announced, so an app hears `Connected` before the first message on it.
    pub(crate) fn start_reading(self: &Arc<Self>) {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((recv, inbox)) = reader {
            tokio::spawn(reader::read_loop(
                recv,
                Arc::clone(&self.keys),
                Arc::downgrade(self),
                inbox,
            ));
        }
    }

    /// The secret of one transfer, derived from this connection's session; the peer derives
    /// the same one from its side of the session with the same id. The transfer's keys come
    /// from it under the cipher the two ends agree on.
    pub(crate) fn transfer_keys(
        &self,
        transfer_id: uuid::Uuid,
    ) -> Result<tether_crypto::TransferSecret, NetworkError> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transfer_secret(transfer_id.as_bytes())
            .map_err(|error| NetworkError::ProtocolViolation {
                node: self.node_id,
                reason: format!("transfer keys: {error}"),
            })
    }

    /// Sends an application request and waits for its answer. The link counts as in use
    /// until then. An `Error` reply is [`NetworkError::Rejected`]; an answer of the wrong kind
    /// is a [`NetworkError::ProtocolViolation`].
    pub(crate) async fn request(
        &self,
        message: NetworkMessage,
        wait: Duration,
    ) -> Result<NetworkMessage, NetworkError> {
        let _in_use = self.activity.use_it();
        self.exchange(message, wait).await
    }

    /// Sends a keep-alive `Ping` and waits for its `Pong`; not application traffic.
    pub(crate) async fn probe(
        &self,
        timestamp_ms: u64,
        wait: Duration,
    ) -> Result<(), NetworkError> {
        self.exchange(NetworkMessage::Ping(Ping { timestamp_ms }), wait)
            .await
            .map(drop)
    }

    async fn exchange(
        &self,
        message: NetworkMessage,
        wait: Duration,
    ) -> Result<NetworkMessage, NetworkError> {
        let kind = message.kind();
        let id = self.next_id.fetch_add(2, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, answer);
        // Dropped (the caller gave up) or timed out, the request is forgotten; its frame, if
        // begun, is still finished on the wire (see `outbox`).
        let forget = Forget { link: self, id };
        let request = ControlMessage::with_id(RequestId(id), message);
        let exchanged = tokio::time::timeout(wait, async {
            match self.outbox.send(&request).await {
                Ok(()) => answered.await.map_err(|_| self.gone()),
                Err(SendError::Closed) => Err(self.gone()),
                Err(error @ SendError::Message(_)) => Err(NetworkError::Usage(error.to_string())),
            }
        })
        .await;
        drop(forget);
        let reply = match exchanged {
            Ok(answer) => answer?,
            Err(_) => {
                return Err(NetworkError::TimedOut {
                    what: "request",
                    after: wait,
                });
            }
        };
        match reply {
            NetworkMessage::Error(ErrorReply { code, message }) => Err(NetworkError::Rejected {
                node: self.node_id,
                code,
                message,
            }),
            reply if request::answers(kind, reply.kind()) => Ok(reply),
            reply => Err(NetworkError::ProtocolViolation {
                node: self.node_id,
                reason: format!(
                    "answered a {} with a {}",
                    kind.as_str(),
                    reply.kind().as_str()
                ),
            }),
        }
    }

    /// How long no application traffic has used the link; `None` while something does.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.activity.idle_for()
    }

    /// Marks the link in use (a transfer on it, say) until the guard is dropped.
    pub(crate) fn use_it(&self) -> InUse {
        self.activity.use_it()
    }

    /// Whether the connection ended because either side found it idle.
    pub(crate) fn closed_idle(&self) -> bool {
        match self.connection.close_reason() {
            Some(ConnectionError::ApplicationClosed(close)) => {
                close.error_code.into_inner() == u64::from(CLOSE_IDLE)
            }
            Some(ConnectionError::LocallyClosed) => self.local_close_code() == Some(CLOSE_IDLE),
            _ => false,
        }
    }

    /// The close code this side used, if it closed the connection.
    pub(crate) fn local_close_code(&self) -> Option<u32> {
        self.local_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|(code, _)| code)
    }

    /// Whether a request id is one of this side's own (an answer carries it back).
    fn is_own(&self, RequestId(id): RequestId) -> bool {
        id % 2 == u64::from(self.connection.side() == Side::Client)
    }

    /// Time since the peer last sent anything (keep-alive pongs included).
    pub(crate) fn silent_for(&self) -> Duration {
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
            .get_or_insert((code, reason));
        self.connection.close(code.into(), reason.as_bytes());
    }

    /// Why the connection ended, for people: this side's own reason when it closed it.
    pub(crate) fn end_reason(&self, error: &ConnectionError) -> String {
        let local = *self
            .local_close
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (error, local) {
            (ConnectionError::LocallyClosed, Some((_, reason))) => format!("closed here: {reason}"),
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

    fn gone(&self) -> NetworkError {
        if let Some(refused) = crate::close::refusal(&self.connection) {
            return refused;
        }
        NetworkError::ConnectionFailed {
            node: self.node_id,
            reason: self
                .connection
                .close_reason()
                .map_or_else(|| "the connection closed".to_owned(), |r| r.to_string()),
        }
    }
}

/// Removes a request's waiter when the request ends, however it ends.
struct Forget<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.link
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
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

fn failed(peer: &NodeId, error: impl std::error::Error) -> NetworkError {
    NetworkError::ConnectionFailed {
        node: *peer,
        reason: error_chain(&error),
    }
}

fn violation(peer: &NodeId, error: impl std::error::Error) -> NetworkError {
    NetworkError::ProtocolViolation {
        node: *peer,
        reason: error_chain(&error),
    }
}
