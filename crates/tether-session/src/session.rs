//! The [`Session`] state machine.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tether_crypto::{CryptoError, SessionKeys, TRANSFER_ID_LEN, TransferSecret};
use tether_identity::{ErrorChain, error_chain};
use tether_wire::{
    ControlMessage, EncodeError, Encoding, ErrorCode, ErrorReply, FrameDecoder, FrameError,
    FrameKind, MessageKind, NetworkMessage, Pong, RequestId, SealError, limits::MAX_TEXT_LEN,
};
use tracing::debug;

use crate::answers::{answers, expected_answer, needs_app};
use crate::key::RequestKey;

mod liveness;

/// How many of the peer's requests the application may be answering at once; more are
/// answered `Busy`.
pub const MAX_ANSWERING: usize = 64;

/// Which side of the connection this session is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This side dialled: its requests are numbered 1, 3, 5, ...
    Dialler,
    /// This side accepted: its requests are numbered 2, 4, 6, ...
    Acceptor,
}

impl RequestKey {
    /// The id the key travels as when `side` sends the request: odd from the dialler, even
    /// from the acceptor.
    pub fn id_on(self, side: Side) -> RequestId {
        RequestId((self.bits() << 1) | u64::from(side == Side::Dialler))
    }
}

/// The session's timers. Keep-alive and idle checks are off unless set: a driver may run them
/// itself with [`Session::silent_for`], [`Session::idle_for`] and [`Session::start_probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Ping the peer when it has been silent this long and no probe is in flight.
    pub keepalive_interval: Option<Duration>,
    /// How long a keep-alive ping may wait for its answer before the peer counts as dead.
    pub probe_timeout: Duration,
    /// While something uses the link ([`Session::idle_for`] is `None`: a request waiting, a
    /// transfer), ping the peer when it has been silent this long, however long
    /// `keepalive_interval` is: a peer that died mid-transfer is noticed in
    /// `busy_probe_after + busy_probe_timeout`. An idle link gets no such pings.
    pub busy_probe_after: Option<Duration>,
    /// While something uses the link, how long any keep-alive ping (this one's, or one sent
    /// before the use began) may wait for its answer before the peer counts as dead, counted
    /// from the ping or from the last time the transport heard from the peer
    /// ([`Session::transport_heard`]), whichever is later. Used only with `busy_probe_after`.
    pub busy_probe_timeout: Duration,
    /// Report [`Event::Close`] with [`CloseReason::Idle`] after this long without application
    /// traffic and with nothing using the link.
    pub idle_timeout: Option<Duration>,
    /// The longest `Text` taken from the peer, in bytes; a longer one is answered with an
    /// `Error` reply of code `LimitExceeded` and never reaches the application. Texts over
    /// the protocol's [`MAX_TEXT_LEN`] do not decode, whatever this says.
    pub max_text_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            keepalive_interval: None,
            probe_timeout: Duration::from_secs(30),
            busy_probe_after: None,
            busy_probe_timeout: Duration::from_secs(3),
            idle_timeout: None,
            max_text_len: MAX_TEXT_LEN,
        }
    }
}

/// Why the session asks its driver to close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// A frame did not open (wrong key, replayed, tampered with, or not a control frame).
    Protocol,
    /// A keep-alive ping got no answer in time: the peer went silent.
    PeerDead,
    /// No application traffic and nothing in use for the idle timeout.
    Idle,
}

impl CloseReason {
    /// The reason, for the close frame and for people.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Protocol => "frame did not authenticate",
            Self::PeerDead => "no answer to a keep-alive ping",
            Self::Idle => "idle",
        }
    }
}

/// Why one of this side's requests got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The peer answered with an `Error` reply.
    #[error("rejected ({code:?}): {message}")]
    Rejected {
        /// The peer's error code.
        code: ErrorCode,
        /// The peer's explanation.
        message: String,
    },
    /// The peer answered with a message that does not answer the request.
    #[error("answered a {} with a {}", request.as_str(), answer.as_str())]
    Mismatch {
        /// The request's kind.
        request: MessageKind,
        /// The answer's kind.
        answer: MessageKind,
    },
    /// No answer came within the request's timeout.
    #[error("no answer within {after:?}")]
    TimedOut {
        /// The request's timeout.
        after: Duration,
    },
}

/// Why a message could not be sent. The session is fine either way.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message does not encode (too large, say).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The frame does not seal (the session's counter is used up).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A request with this key is already waiting for its answer on this link.
    #[error("a request with this key is already waiting")]
    InFlight,
}

/// Why the session stopped taking input.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The bytes are not frames: framing cannot resync, the stream is over.
    #[error("the message stream is not framed")]
    Framing(#[source] FrameError),
    /// A frame did not open; an [`Event::Close`] asks to close the connection.
    #[error("a frame did not authenticate")]
    Unauthentic,
    /// Input came after an error.
    #[error("the session takes no more input")]
    Stopped,
}

/// What the session tells its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One of this side's requests ended: its answer, or why there is none.
    Answered {
        /// The request's id, as [`Session::request`] returned it.
        id: RequestId,
        /// The answer (of the kind the request expects), or why there is none.
        result: Result<NetworkMessage, RequestError>,
    },
    /// The peer asks something only the application can answer; answer with
    /// [`Session::answer`]. The link counts as in use until then.
    Request {
        /// The id to answer with.
        id: RequestId,
        /// The request's name across links, when the peer gave it one (`"once"`): a repeat
        /// with the same key is the same request, to be answered once (see
        /// [`crate::AnswerCache`]).
        key: Option<RequestKey>,
        /// The request.
        message: NetworkMessage,
    },
    /// The peer sent a message for the application (an announcement). Once it is delivered
    /// (or cannot be), call [`Session::acknowledge`].
    Message {
        /// The id to acknowledge, when the peer wants an acknowledgement.
        id: Option<RequestId>,
        /// The request's name across links, when the peer acknowledges it once (as for
        /// [`Event::Request`]).
        key: Option<RequestKey>,
        /// The message.
        message: NetworkMessage,
    },
    /// The keep-alive ping in flight was answered.
    ProbeAnswered,
    /// Close the connection, for this reason.
    Close(CloseReason),
}

/// One of this side's requests waiting for its answer.
#[derive(Debug)]
struct Waiting {
    kind: MessageKind,
    /// When it was sent.
    sent: Instant,
    deadline: Instant,
    timeout: Duration,
    /// A keep-alive ping: not application traffic.
    probe: bool,
}

/// The session of one sync link, without IO: bytes in ([`Self::handle_input`]), sealed
/// bytes out ([`Self::poll_transmit`]), time in ([`Self::handle_timeout`],
/// [`Self::poll_timeout`]), events out ([`Self::poll_event`]).
#[derive(Debug)]
pub struct Session {
    keys: SessionKeys,
    side: Side,
    config: Config,
    decoder: FrameDecoder,
    /// How control payloads are encoded, both ways.
    encoding: Encoding,
    /// Input stopped for good (an error).
    stopped: bool,
    next_id: u64,
    waiting: HashMap<RequestId, Waiting>,
    /// The peer's requests the application is answering (a count per id: nothing stops a
    /// peer from reusing one).
    answering: HashMap<RequestId, usize>,
    /// Their sum.
    answering_count: usize,
    /// The keep-alive ping in flight.
    probe: Option<RequestId>,
    /// How many things use the link now (own requests, requests being answered, transfers).
    in_use: usize,
    last_used: Instant,
    last_heard: Instant,
    /// When the transport last heard from the peer (see [`Self::transport_heard`]).
    transport_heard: Instant,
    established: Instant,
    /// An idle close was asked for since the last use.
    idle_reported: bool,
    /// The peer was found dead: no more keep-alive pings.
    dead: bool,
    transmit: Vec<u8>,
    events: VecDeque<Event>,
}

impl Session {
    /// A session established at `now` with the keys of a finished handshake.
    pub fn new(keys: SessionKeys, side: Side, config: Config, now: Instant) -> Self {
        Self {
            keys,
            side,
            config,
            decoder: FrameDecoder::new(),
            encoding: Encoding::Json,
            stopped: false,
            next_id: match side {
                Side::Dialler => 1,
                Side::Acceptor => 2,
            },
            waiting: HashMap::new(),
            answering: HashMap::new(),
            answering_count: 0,
            probe: None,
            in_use: 0,
            last_used: now,
            last_heard: now,
            transport_heard: now,
            established: now,
            idle_reported: false,
            dead: false,
            transmit: Vec::new(),
            events: VecDeque::new(),
        }
    }

    /// The session with its control payloads in `encoding` (the one the handshake chose), in
    /// both directions; [`Encoding::Json`] unless set.
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// The encoding of this session's control payloads.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Which side this session is on.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The secret of one transfer, derived from the session's keys (see
    /// [`SessionKeys::transfer_secret`]: each id once per session).
    pub fn transfer_secret(
        &mut self,
        transfer_id: &[u8; TRANSFER_ID_LEN],
    ) -> Result<TransferSecret, CryptoError> {
        self.keys.transfer_secret(transfer_id)
    }

    /// Takes bytes read from the stream: decodes, opens and handles every whole frame in
    /// them (a frame split across calls is kept). Hearing anything resets the keep-alive.
    ///
    /// A frame that does not open stops the session's input and queues
    /// [`Event::Close`] with [`CloseReason::Protocol`]; a message that opens but does not
    /// decode is answered with an `Error` reply, and the session goes on.
    pub fn handle_input(&mut self, now: Instant, mut input: &[u8]) -> Result<(), InputError> {
        if self.stopped {
            return Err(InputError::Stopped);
        }
        self.last_heard = now;
        loop {
            let frame = match self.decoder.decode(&mut input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(error) => {
                    self.stopped = true;
                    return Err(InputError::Framing(error));
                }
            };
            let plain = match frame.open(&mut self.keys) {
                Ok(plain) if plain.kind() == FrameKind::Control => plain,
                Ok(_) | Err(_) => {
                    self.stopped = true;
                    self.events.push_back(Event::Close(CloseReason::Protocol));
                    return Err(InputError::Unauthentic);
                }
            };
            match ControlMessage::decode_with(self.encoding, plain.payload()) {
                Ok(message) => self.dispatch(now, message),
                Err(error) => {
                    // The frame authenticated, so the stream is in step: answer and go on,
                    // with the request's id when the peer's request carried one (an older
                    // peer's answer to a kind it does not know), so it ends at once.
                    let reply = NetworkMessage::Error(ErrorReply {
                        code: error.code(),
                        message: error_chain(&error),
                    });
                    let reply = match RequestId::of_payload_with(self.encoding, plain.payload()) {
                        Some(id) if !self.is_own(id) => ControlMessage::with_id(id, reply),
                        _ => ControlMessage::new(reply),
                    };
                    self.queue(&reply);
                }
            }
        }
    }

    /// The stream ended: an error if it ended inside a frame.
    pub fn handle_end(&mut self) -> Result<(), FrameError> {
        self.stopped = true;
        self.decoder.finish()
    }

    /// Fails every request still waiting (the stream is gone): they end without an event,
    /// and stop counting as uses of the link.
    pub fn fail_requests(&mut self, now: Instant) {
        for (_, waiting) in self.waiting.drain() {
            if !waiting.probe {
                self.in_use = self.in_use.saturating_sub(1);
                self.last_used = now;
            }
        }
        self.probe = None;
    }

    fn dispatch(&mut self, now: Instant, control: ControlMessage) {
        let ControlMessage { id, once, message } = control;
        if let Some(id) = id.filter(|id| self.is_own(*id)) {
            return self.answered(now, id, message);
        }
        let key = id.filter(|_| once).map(RequestKey::of);
        let kind = message.kind();
        if let NetworkMessage::Ping(ping) = &message {
            // Keep-alive: answered here, and not application traffic.
            if let Some(id) = id {
                let pong = NetworkMessage::Pong(Pong {
                    timestamp_ms: ping.timestamp_ms,
                });
                self.queue(&ControlMessage::with_id(id, pong));
            }
            return;
        }
        self.touch(now);
        let reply = if needs_app(kind) {
            let Some(id) = id else {
                debug!(
                    request = kind.as_str(),
                    "a request without an id; nobody to answer"
                );
                return;
            };
            if self.answering_count >= MAX_ANSWERING {
                NetworkMessage::Error(ErrorReply {
                    code: ErrorCode::Busy,
                    message: "too many requests at once".to_owned(),
                })
            } else {
                *self.answering.entry(id).or_default() += 1;
                self.answering_count += 1;
                self.in_use += 1;
                self.events.push_back(Event::Request { id, key, message });
                return;
            }
        } else if expected_answer(kind).is_none() {
            // An answer kind that answers none of our requests.
            debug!(kind = kind.as_str(), "an unsolicited answer");
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Unsupported,
                message: format!("{} answers a request; it is not one", kind.as_str()),
            })
        } else if kind == MessageKind::FileRequest {
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Unsupported,
                message: "file requests belong to a transfer stream".to_owned(),
            })
        } else if let NetworkMessage::Text(text) = &message
            && text.text.len() > self.config.max_text_len
        {
            debug!(len = text.text.len(), "a text over this device's limit");
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::LimitExceeded,
                message: format!(
                    "a text of {} bytes; this device takes at most {}",
                    text.text.len(),
                    self.config.max_text_len
                ),
            })
        } else {
            self.events.push_back(Event::Message { id, key, message });
            return;
        };
        if let Some(id) = id {
            self.queue(&ControlMessage::with_id(id, reply));
        }
    }

    fn answered(&mut self, now: Instant, id: RequestId, reply: NetworkMessage) {
        let Some(waiting) = self.waiting.remove(&id) else {
            debug!(id = id.0, "an answer nobody waits for");
            return;
        };
        if waiting.probe {
            self.probe = None;
            self.events.push_back(Event::ProbeAnswered);
            return;
        }
        self.end_use(now);
        let result = match reply {
            NetworkMessage::Error(ErrorReply { code, message }) => {
                Err(RequestError::Rejected { code, message })
            }
            reply if answers(waiting.kind, reply.kind()) => Ok(reply),
            reply => Err(RequestError::Mismatch {
                request: waiting.kind,
                answer: reply.kind(),
            }),
        };
        self.events.push_back(Event::Answered { id, result });
    }

    /// Sends an application request; its answer (or its timeout) comes as
    /// [`Event::Answered`] with the returned id. The link counts as in use until then.
    pub fn request(
        &mut self,
        now: Instant,
        message: NetworkMessage,
        timeout: Duration,
    ) -> Result<RequestId, SendError> {
        let id = self.send_request(now, message, timeout, false)?;
        self.begin_use();
        Ok(id)
    }

    /// Sends an application request named across links by `key` (`"once"` on the wire): its
    /// id is the key's on this side ([`RequestKey::id_on`]), the same request the caller may
    /// have sent on an earlier link, and the peer answers a repeat once. Otherwise as
    /// [`Self::request`]; [`SendError::InFlight`] if a request with this key already waits
    /// here.
    pub fn request_once(
        &mut self,
        now: Instant,
        key: RequestKey,
        message: NetworkMessage,
        timeout: Duration,
    ) -> Result<RequestId, SendError> {
        let id = key.id_on(self.side);
        if self.waiting.contains_key(&id) {
            return Err(SendError::InFlight);
        }
        let kind = message.kind();
        self.seal(&ControlMessage::once(id, message))?;
        self.wait_for(now, id, kind, timeout, false);
        self.begin_use();
        Ok(id)
    }

    fn send_request(
        &mut self,
        now: Instant,
        message: NetworkMessage,
        timeout: Duration,
        probe: bool,
    ) -> Result<RequestId, SendError> {
        // Skip the ids of keyed requests waiting here (a chance of 2^-62 per request).
        while self.waiting.contains_key(&RequestId(self.next_id)) {
            self.next_id = self.next_id.saturating_add(2);
        }
        let id = RequestId(self.next_id);
        let kind = message.kind();
        self.seal(&ControlMessage::with_id(id, message))?;
        self.next_id = self.next_id.saturating_add(2);
        self.wait_for(now, id, kind, timeout, probe);
        Ok(id)
    }

    fn wait_for(
        &mut self,
        now: Instant,
        id: RequestId,
        kind: MessageKind,
        timeout: Duration,
        probe: bool,
    ) {
        self.waiting.insert(
            id,
            Waiting {
                kind,
                sent: now,
                deadline: now.checked_add(timeout).unwrap_or(now),
                timeout,
                probe,
            },
        );
    }

    /// Gives up on a request: its answer, if one comes, is dropped, and it ends without an
    /// event.
    pub fn cancel(&mut self, now: Instant, id: RequestId) {
        if let Some(waiting) = self.waiting.remove(&id) {
            if waiting.probe {
                self.probe = None;
            } else {
                self.end_use(now);
            }
        }
    }

    /// Answers one of the peer's requests ([`Event::Request`]), or sends any message with a
    /// given id. The answer's kind is not checked here: the application's handler is.
    pub fn answer(
        &mut self,
        now: Instant,
        id: RequestId,
        reply: NetworkMessage,
    ) -> Result<(), SendError> {
        self.abandon(now, id);
        self.seal(&ControlMessage::with_id(id, reply))
    }

    /// Gives up answering one of the peer's requests (the application's handler failed): the
    /// request stops counting against the busy limit and as a use of the link; the peer gets
    /// no answer and times out.
    pub fn abandon(&mut self, now: Instant, id: RequestId) {
        if let Some(count) = self.answering.get_mut(&id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.answering.remove(&id);
            }
            self.answering_count = self.answering_count.saturating_sub(1);
            self.end_use(now);
        }
    }

    /// A message of [`Event::Message`] was delivered to the application (or could not be,
    /// the application is shutting down): acknowledges it, when the peer asked.
    pub fn acknowledge(&mut self, id: Option<RequestId>, delivered: bool) {
        if let Some(id) = id {
            self.reply(id, Self::acknowledgement(delivered));
        }
    }

    /// The acknowledgement of a message that was delivered (`Ack`) or could not be (`Busy`).
    pub fn acknowledgement(delivered: bool) -> NetworkMessage {
        if delivered {
            NetworkMessage::Ack
        } else {
            NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Busy,
                message: "the device is shutting down".to_owned(),
            })
        }
    }

    /// Sends `reply` to the peer's message `id` (of [`Event::Message`]): an acknowledgement
    /// made earlier, say, for a repeat. One that does not seal is logged.
    pub fn reply(&mut self, id: RequestId, reply: NetworkMessage) {
        self.queue(&ControlMessage::with_id(id, reply));
    }

    /// Sends a message that wants no answer.
    pub fn send(&mut self, message: NetworkMessage) -> Result<(), SendError> {
        self.seal(&ControlMessage::new(message))
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// All sealed bytes to write, in counter order; `None` when there are none.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.transmit.is_empty()).then(|| std::mem::take(&mut self.transmit))
    }

    /// How many sealed bytes wait for [`Self::poll_transmit`].
    pub fn queued(&self) -> usize {
        self.transmit.len()
    }

    /// Drops the bytes waiting to be written (the stream failed).
    pub fn discard_transmit(&mut self) {
        self.transmit = Vec::new();
    }

    /// Whether a request id is one of this side's own (an answer carries it back).
    fn is_own(&self, RequestId(id): RequestId) -> bool {
        (id % 2 == 1) == (self.side == Side::Dialler)
    }

    /// Seals an answer the session makes itself; one that does not seal is logged.
    fn queue(&mut self, message: &ControlMessage) {
        if let Err(error) = self.seal(message) {
            debug!(error = %ErrorChain(&error), "cannot send an answer");
        }
    }

    fn seal(&mut self, message: &ControlMessage) -> Result<(), SendError> {
        let sealed = message.to_frame_with(self.encoding)?.seal(&mut self.keys)?;
        sealed.encode_into(&mut self.transmit);
        Ok(())
    }
}
