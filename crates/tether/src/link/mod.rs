//! A live, encrypted `tether/sync/2` connection to one paired device: a thin driver of a
//! [`tether_session::Session`] over an iroh stream.
//!
//! The tether-crypto session handshake (fresh X25519 keys, both identities' signatures, the
//! pairing secret mixed in) costs no round trip of its own (see [`handshake`]): the side that
//! accepts says hello in its first TLS flight, the side that dials answers on the one
//! bidirectional stream it opens and may send its first request right behind, and reads
//! nothing from the peer before the acceptor's answer checks out. Afterwards every control
//! message on that stream is a sealed tether-wire frame, and the session owns everything
//! about them: request ids (odd from the side that dialled, even from the side that
//! accepted; an app's request carries its key across links), which answer fits which
//! request, request timeouts, the `Ping` auto-reply, the busy limit, keep-alive probes and
//! what counts as use of the link.
//!
//! The driver holds the session behind a mutex (lock, feed or poll, unlock; never held
//! across an await) and moves bytes, time and events: [`reader`] feeds what the stream brings
//! and dispatches the events (answers to the waiting callers, requests to the app's handler
//! on tasks of their own, messages to the inbox; a repeat of a request named across links is
//! answered from the service's cache, [`repeats`]), a timer task feeds the time when the
//! session asks for it, and [`outbox`] writes the sealed bytes the session transmits
//! (whoever sends writes, in counter order).

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use iroh::endpoint::{Connection, ConnectionError, RecvStream, SendStream, Side};
use parking_lot::{Mutex, MutexGuard};
use tether_crypto::PairingSecret;
use tether_identity::{ErrorChain, NetworkIdentity, NodeId, error_chain};
use tether_protocol::PairedPeer;
use tether_session::{Config, Event, RequestError, RequestKey, Session};
use tether_transfer::TransferError;
use tether_wire::{Encoding, NetworkMessage, RequestId};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

mod dispatch;
mod handshake;
mod outbox;
mod reader;
mod repeats;

pub(crate) use handshake::{Greeting, admit};

use outbox::{Outbox, SendError};
pub(crate) use repeats::{AnswerSlot, answer_cache};

use crate::NetworkError;
use crate::close::{CLOSE_DEAD, CLOSE_IDLE, CLOSE_PROTOCOL};
use crate::error::PeerSilent;
use crate::error::short;
use crate::rate::MessageLimiter;
use crate::request::HandlerSlot;

/// Callers waiting for the answers to their requests.
type Waiters = HashMap<RequestId, oneshot::Sender<Result<NetworkMessage, RequestError>>>;

/// While the link is in use (a transfer on it, a request waiting), a peer silent on the
/// session stream this long is pinged (an idle link waits for the service's keep-alive
/// interval instead)...
pub(crate) const BUSY_PROBE_AFTER: Duration = Duration::from_secs(1);
/// ... and counts as dead, the link closed, when the ping gets no answer this soon: a peer
/// killed mid-transfer (no close frame) or cut off is noticed within 3 s of its last word,
/// where QUIC alone would wait for its 30 s idle timeout.
pub(crate) const BUSY_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the timer looks at what QUIC heard from the peer while a ping waits on a link in
/// use (see [`Session::transport_heard`]).
const TRANSPORT_LOOK: Duration = Duration::from_millis(500);

/// The session stream's send priority: above the transfer streams' (0), so a pong does not
/// wait behind a transfer's data in this side's send buffer.
const SESSION_PRIORITY: i32 = 1;

/// Why this side closed the connection (close code and reason), if it did; shared with the
/// uses of the link, which tell their errors by it.
type LocalClose = Arc<Mutex<Option<(u32, &'static str)>>>;

/// Keeps a link in use (a transfer, say) until dropped; the end of the use counts as
/// application traffic.
#[derive(Debug)]
pub(crate) struct InUse {
    session: Arc<Mutex<Session>>,
    local_close: LocalClose,
}

impl InUse {
    /// A transfer's error as it was: the link lost because the peer went silent is said so
    /// (see [`Link::explain`]).
    pub(crate) fn explain(&self, error: TransferError) -> TransferError {
        explain(&self.session, &self.local_close, error)
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        self.session.lock().end_use(Instant::now());
    }
}

/// A transfer that lost its link because this side closed it for a silent peer (a keep-alive
/// ping went unanswered) ends with [`PeerSilent`] as the cause of its link error: still
/// [`TransferError::Link`], so resumable, and with an [`io::ErrorKind::TimedOut`].
fn explain(
    session: &Mutex<Session>,
    local_close: &LocalClose,
    error: TransferError,
) -> TransferError {
    let dead = matches!(*local_close.lock(), Some((CLOSE_DEAD, _)));
    match error {
        TransferError::Link(_) if dead => {
            let silent_for = session.lock().unheard_for(Instant::now());
            TransferError::Link(io::Error::new(
                io::ErrorKind::TimedOut,
                PeerSilent { silent_for },
            ))
        }
        other => other,
    }
}

/// Where a link delivers what the peer sends that is not an answer.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    /// Messages for the app's event stream.
    pub(crate) events: mpsc::Sender<Incoming>,
    /// The app's request handler, if it registered one.
    pub(crate) handler: HandlerSlot,
    /// The longest text taken from the peer ([`crate::NetworkingConfig::max_text_len`]).
    pub(crate) max_text_len: usize,
    /// Whether a link this side dials chooses the binary encoding when the peer offers it
    /// ([`crate::NetworkingConfig::binary_messages`]).
    pub(crate) binary_messages: bool,
    /// Who the peer is (authenticated, paired), for the handler.
    pub(crate) peer: PairedPeer,
    /// The service's answers to requests named across links, for repeats.
    pub(crate) answers: AnswerSlot,
    /// Each paired device's message rate ([`crate::NetworkingConfig::message_rate`]).
    pub(crate) limiter: Arc<MessageLimiter>,
}

/// One authenticated, encrypted connection to a paired device.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) node_id: NodeId,
    pub(crate) connection: Connection,
    /// The session: ids, answers, timers, keys. Shared with the outbox, which writes what it
    /// transmits.
    session: Arc<Mutex<Session>>,
    /// The message stream's sending half; every task that sends writes through it.
    outbox: Arc<Outbox<SendStream>>,
    /// Callers waiting for the answers to their requests (locked after the session, never
    /// before it).
    waiters: Mutex<Waiters>,
    /// The service's keep-alive probe in flight: told whether the peer is dead.
    probe: Mutex<Option<oneshot::Sender<bool>>>,
    /// Wakes the timer task: the session's next deadline is earlier than [`Self::armed`].
    timer: Arc<Notify>,
    /// The deadline the timer task sleeps to (`None`: none). Read and written only under the
    /// session's lock, so a new deadline either is seen by the timer or wakes it.
    armed: Mutex<Option<Instant>>,
    /// Why this side closed the connection (close code and reason), if it did.
    local_close: LocalClose,
    /// The count of frames heard from the peer (see [`peer_frames`]) when the timer last
    /// looked.
    frames_heard: Mutex<u64>,
    /// Where the peer's messages go.
    inbox: Inbox,
    /// The message stream, until [`Link::start_reading`].
    reader: Mutex<Option<RecvStream>>,
    /// The dialler's check of the acceptor's `Response`, until [`Link::confirm`] has run it.
    pending: Mutex<Option<handshake::Pending>>,
    /// The acceptor's `Response` did not verify: requests sent before it fail with
    /// [`NetworkError::InvalidSignature`], as the handshake did.
    unverified: Mutex<bool>,
}

/// What the reader hands to the service: messages that are not answers.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) from: NodeId,
    pub(crate) message: NetworkMessage,
}

/// A keep-alive probe in flight (see [`Link::start_probe`]).
#[derive(Debug)]
pub(crate) struct Probe(oneshot::Receiver<bool>);

impl Probe {
    /// Whether the probe got no answer in time. A probe that ended otherwise (answered, or
    /// the connection closed) is not a dead peer.
    pub(crate) async fn dead(self) -> bool {
        self.0.await.unwrap_or(false)
    }
}

impl Link {
    /// Dialling side: reads the acceptor's `Hello`, opens the message stream and writes the
    /// `Init`. The link can send at once; it reads nothing from the peer before
    /// [`Link::confirm`] has checked the acceptor's `Response`.
    pub(crate) async fn dial(
        connection: Connection,
        identity: &NetworkIdentity,
        peer: NodeId,
        secret: &PairingSecret,
        inbox: Inbox,
    ) -> Result<Arc<Self>, NetworkError> {
        let binary = inbox.binary_messages;
        match handshake::dial(&connection, identity, peer, secret, binary).await {
            Ok(dialled) => {
                let streams = (dialled.send, dialled.recv);
                let link = Self::start(
                    connection,
                    peer,
                    streams,
                    (dialled.keys, dialled.encoding),
                    inbox,
                );
                *link.pending.lock() = Some(dialled.pending);
                Ok(link)
            }
            // The gate closes a refused connection right after the TLS handshake, so the
            // refusal shows up here, on the first read.
            Err(error) => Err(crate::gate::refusal(&connection).unwrap_or(error)),
        }
    }

    /// Dialling side: reads and checks the acceptor's `Response` (once; later calls return at
    /// once). Until it has, the link reads nothing else from the peer. A `Response` that does
    /// not verify (or none within the handshake's deadline) closes the connection and fails
    /// every request already sent.
    pub(crate) async fn confirm(&self) -> Result<(), NetworkError> {
        let Some(pending) = self.pending.lock().take() else {
            return Ok(());
        };
        let recv = self.reader.lock().take();
        let Some(mut recv) = recv else {
            return Err(self.gone());
        };
        match pending
            .confirm(&self.connection, &mut recv, self.node_id)
            .await
        {
            Ok(()) => {
                *self.reader.lock() = Some(recv);
                Ok(())
            }
            Err(error) => {
                let error = crate::gate::refusal(&self.connection).unwrap_or(error);
                *self.unverified.lock() = matches!(error, NetworkError::InvalidSignature { .. });
                // A connection the peer closed keeps the peer's reason.
                if self.connection.close_reason().is_none() {
                    self.close(CLOSE_PROTOCOL, "session handshake failed");
                }
                self.fail_requests();
                Err(error)
            }
        }
    }

    /// Accepting side, after its hello (see [`admit`]): reads and checks the dialler's `Init`
    /// and answers `Response` on the stream the dialler opened.
    pub(crate) async fn accept(
        connection: Connection,
        greeting: Greeting,
        identity: &NetworkIdentity,
        peer: NodeId,
        secret: &PairingSecret,
        inbox: Inbox,
    ) -> Result<Arc<Self>, NetworkError> {
        match handshake::accept(&connection, greeting, identity, peer, secret).await {
            Ok(accepted) => Ok(Self::start(
                connection,
                peer,
                (accepted.send, accepted.recv),
                (accepted.keys, accepted.encoding),
                inbox,
            )),
            Err(error) => {
                connection.close(CLOSE_PROTOCOL.into(), b"session handshake failed");
                Err(error)
            }
        }
    }

    /// Starts the link on the message stream, with the handshake's keys and the encoding it
    /// chose.
    fn start(
        connection: Connection,
        node_id: NodeId,
        (send, recv): (SendStream, RecvStream),
        (keys, encoding): (tether_crypto::SessionKeys, Encoding),
        inbox: Inbox,
    ) -> Arc<Self> {
        let side = match connection.side() {
            Side::Client => tether_session::Side::Dialler,
            Side::Server => tether_session::Side::Acceptor,
        };
        // Keep-alive and idle checks are the service's (see its keep-alive loop); the session
        // times out requests and probes, and probes a silent peer itself while the link is in
        // use.
        let config = Config {
            busy_probe_after: Some(BUSY_PROBE_AFTER),
            busy_probe_timeout: BUSY_PROBE_TIMEOUT,
            max_text_len: inbox.max_text_len,
            ..Config::default()
        };
        // Pings and pongs (and the app's messages) go ahead of transfer data on the wire.
        if let Err(error) = send.set_priority(SESSION_PRIORITY) {
            debug!(error = %ErrorChain(&error), "stream priority");
        }
        let session = Session::new(keys, side, config, Instant::now()).with_encoding(encoding);
        let session = Arc::new(Mutex::new(session));
        let link = Arc::new(Self {
            node_id,
            connection,
            outbox: Outbox::new(send, Arc::clone(&session)),
            session,
            waiters: Mutex::default(),
            probe: Mutex::default(),
            timer: Arc::new(Notify::new()),
            armed: Mutex::new(None),
            local_close: LocalClose::default(),
            frames_heard: Mutex::new(0),
            inbox,
            reader: Mutex::new(Some(recv)),
            pending: Mutex::new(None),
            unverified: Mutex::new(false),
        });
        tokio::spawn(timer_loop(Arc::downgrade(&link), Arc::clone(&link.timer)));
        link
    }

    /// Starts reading the peer's messages. The service calls it once the link is in the pool
    /// and announced, so an app hears `Connected` before the first message on it.
    pub(crate) fn start_reading(self: &Arc<Self>) {
        // Nothing the peer sealed is opened before its `Response` checked out.
        if self.pending.lock().is_some() {
            warn!(peer = %short(&self.node_id), "not reading before the session handshake is confirmed");
            return;
        }
        let recv = self.reader.lock().take();
        if let Some(recv) = recv {
            tokio::spawn(Self::read_loop(recv, Arc::downgrade(self)));
        }
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock()
    }

    /// The secret of one transfer, derived from this connection's session; the peer derives
    /// the same one from its side of the session with the same id. The transfer's keys come
    /// from it under the cipher the two ends agree on.
    pub(crate) fn transfer_keys(
        &self,
        transfer_id: uuid::Uuid,
    ) -> Result<tether_crypto::TransferSecret, NetworkError> {
        self.session()
            .transfer_secret(transfer_id.as_bytes())
            .map_err(|error| NetworkError::ProtocolViolation {
                node: self.node_id,
                reason: format!("transfer keys: {error}"),
            })
    }

    /// Sends an application request named across links by `key` and waits for its answer.
    /// The link counts as in use until then. An `Error` reply is [`NetworkError::Rejected`];
    /// an answer of the wrong kind is a [`NetworkError::ProtocolViolation`]; no answer within
    /// `wait` (counted from the call, a wait for room in the outbox included) is
    /// [`NetworkError::TimedOut`] after the request's whole `budget`; the link dying first is
    /// [`NetworkError::ConnectionFailed`] (or the peer's refusal).
    pub(crate) async fn request(
        &self,
        key: RequestKey,
        message: NetworkMessage,
        wait: Duration,
        budget: Duration,
    ) -> Result<NetworkMessage, NetworkError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + wait;
        let timed_out = NetworkError::TimedOut {
            what: "request",
            after: budget,
        };
        let (answer, answered) = oneshot::channel();
        // Dropped (the caller gave up) or failed, the request is forgotten; its frame, if
        // begun, is still finished on the wire (see `outbox`).
        let mut forget = Forget {
            link: self,
            id: None,
        };
        let sent = tokio::time::timeout_at(
            deadline,
            self.outbox.send(|session| {
                let now = Instant::now();
                let left = wait.saturating_sub(now.saturating_duration_since(started));
                let id = session
                    .request_once(now, key, message, left)
                    .map_err(|error| SendError::Message(error_chain(&error)))?;
                // Under the session's lock: the answer cannot come before its waiter.
                self.waiters.lock().insert(id, answer);
                Ok((id, self.deadline_moved(session)))
            }),
        )
        .await;
        match sent {
            Err(_) => return Err(timed_out),
            Ok(Err(SendError::Closed)) => return Err(self.gone()),
            Ok(Err(error @ SendError::Message(_))) => {
                return Err(NetworkError::Usage(error.to_string()));
            }
            Ok(Ok((id, wake))) => {
                forget.id = Some(id);
                if wake {
                    self.timer.notify_one();
                }
            }
        }
        let answer = answered.await;
        forget.id = None;
        match answer {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(RequestError::Rejected { code, message })) => Err(NetworkError::Rejected {
                node: self.node_id,
                code,
                message,
            }),
            Ok(Err(RequestError::TimedOut { .. })) => Err(timed_out),
            Ok(Err(error @ RequestError::Mismatch { .. })) => {
                Err(NetworkError::ProtocolViolation {
                    node: self.node_id,
                    reason: error.to_string(),
                })
            }
            // The stream ended: every waiting request fails.
            Err(_) => Err(self.gone()),
        }
    }

    /// Sends a keep-alive `Ping` unless one is in flight; no answer within `wait` makes the
    /// returned probe report the peer dead. Not application traffic.
    pub(crate) fn start_probe(&self, wait: Duration) -> Option<Probe> {
        let timestamp_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let (dead, probe) = oneshot::channel();
        let wake = {
            let mut session = self.session();
            if !session.start_probe(Instant::now(), timestamp_ms, wait) {
                return None;
            }
            *self.probe.lock() = Some(dead);
            self.deadline_moved(&session)
        };
        if wake {
            self.timer.notify_one();
        }
        let outbox = Arc::clone(&self.outbox);
        tokio::spawn(async move {
            let _ = outbox.write_queue().await;
        });
        Some(Probe(probe))
    }

    /// Whether the session's next deadline is earlier than the one the timer task sleeps to
    /// (called under the session's lock, given as `session`).
    fn deadline_moved(&self, session: &Session) -> bool {
        match (session.poll_timeout(), *self.armed.lock()) {
            (Some(next), Some(armed)) => next < armed,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Fails every request still waiting: the stream is gone.
    fn fail_requests(&self) {
        self.session().fail_requests(Instant::now());
        self.waiters.lock().clear();
        self.probe.lock().take();
    }

    /// How long no application traffic has used the link; `None` while something does.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        self.session().idle_for(Instant::now())
    }

    /// Marks the link in use (a transfer on it, say) until the guard is dropped. While it is,
    /// the session pings a peer silent for [`BUSY_PROBE_AFTER`].
    pub(crate) fn use_it(&self) -> InUse {
        let wake = {
            let mut session = self.session();
            session.begin_use();
            self.deadline_moved(&session)
        };
        if wake {
            self.timer.notify_one();
        }
        InUse {
            session: Arc::clone(&self.session),
            local_close: Arc::clone(&self.local_close),
        }
    }

    /// A transfer's error on this link as it was: when this side closed the link because the
    /// peer went silent, its [`TransferError::Link`] says [`PeerSilent`].
    pub(crate) fn explain(&self, error: TransferError) -> TransferError {
        explain(&self.session, &self.local_close, error)
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
        self.local_close.lock().map(|(code, _)| code)
    }

    /// Time since the peer last sent anything (keep-alive pongs included).
    pub(crate) fn silent_for(&self) -> Duration {
        self.session().silent_for(Instant::now())
    }

    /// The encoding of the link's control payloads, as the handshake chose it.
    pub(crate) fn encoding(&self) -> Encoding {
        self.session().encoding()
    }

    /// Whether the connection is still open.
    pub(crate) fn is_open(&self) -> bool {
        self.connection.close_reason().is_none()
    }

    /// Closes the connection, remembering why for [`Self::end_reason`].
    pub(crate) fn close(&self, code: u32, reason: &'static str) {
        self.local_close.lock().get_or_insert((code, reason));
        self.connection.close(code.into(), reason.as_bytes());
    }

    /// Why the connection ended, for people: this side's own reason when it closed it.
    pub(crate) fn end_reason(&self, error: &ConnectionError) -> String {
        let local = *self.local_close.lock();
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
        self.session().age(Instant::now())
    }

    fn gone(&self) -> NetworkError {
        // A request that went out behind the `Init` may see the acceptor's refusal before
        // `confirm` does.
        if *self.unverified.lock() || handshake::refused_unverified(&self.connection) {
            return NetworkError::InvalidSignature { node: self.node_id };
        }
        if let Some(refused) = crate::gate::refusal(&self.connection) {
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

impl Drop for Link {
    fn drop(&mut self) {
        // The timer task ends when it finds the link gone.
        self.timer.notify_one();
    }
}

/// Feeds the session the time whenever it asks, until the link is dropped.
async fn timer_loop(link: Weak<Link>, wake: Arc<Notify>) {
    loop {
        let deadline = match link.upgrade() {
            Some(link) => {
                let session = link.session();
                let mut deadline = session.poll_timeout();
                // While a ping waits and the link is in use, look at what QUIC heard often,
                // so the busy timeout counts from close to the peer's last packet.
                let now = Instant::now();
                if session.probing() && session.idle_for(now).is_none() {
                    let look = now + TRANSPORT_LOOK;
                    deadline = Some(deadline.map_or(look, |at| at.min(look)));
                }
                *link.armed.lock() = deadline;
                deadline
            }
            None => return,
        };
        match deadline {
            Some(deadline) => {
                let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline));
                tokio::select! {
                    () = sleep => {}
                    () = wake.notified() => continue,
                }
            }
            None => wake.notified().await,
        }
        let Some(link) = link.upgrade() else { return };
        // A pong queued behind a slow link is no dead peer while QUIC hears from it.
        let frames = peer_frames(&link.connection);
        let heard = std::mem::replace(&mut *link.frames_heard.lock(), frames) != frames;
        let events: Vec<Event> = {
            let mut session = link.session();
            let now = Instant::now();
            if heard {
                session.transport_heard(now);
            }
            session.handle_timeout(now);
            std::iter::from_fn(|| session.poll_event()).collect()
        };
        link.dispatch(events).await;
    }
}

/// How many frames the connection has received from the peer that show it is alive:
/// acknowledgements, stream data, flow-control credit, pings. Counted by QUIC from
/// authenticated packets only, so nobody but the peer moves it.
fn peer_frames(connection: &Connection) -> u64 {
    let frames = connection.stats().frame_rx;
    [
        frames.acks,
        frames.path_acks,
        frames.stream,
        frames.max_data,
        frames.max_stream_data,
        frames.ping,
    ]
    .into_iter()
    .fold(0, u64::saturating_add)
}

/// Removes a request's waiter when the request ends early, however it ends.
struct Forget<'a> {
    link: &'a Link,
    id: Option<RequestId>,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.link.session().cancel(Instant::now(), id);
            self.link.waiters.lock().remove(&id);
        }
    }
}
