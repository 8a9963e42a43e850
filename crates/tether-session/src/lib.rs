//! The session of one Tether sync link, as a sans-IO state machine.
//!
//! Once two paired devices have run tether-crypto's session handshake on a stream, every
//! control message on it is a sealed tether-wire frame. A [`Session`] is everything about
//! that stream except the IO: it numbers this side's requests (the dialler 1, 3, 5, ..., the
//! acceptor 2, 4, 6, ..., so a message whose id has this side's parity is an answer), checks
//! that each answer fits its request ([`answers`]), times requests out, answers the peer's
//! `Ping`s itself, answers `Busy` when the application is already answering
//! [`MAX_ANSWERING`] requests, pings a silent peer and reports it dead when the ping goes
//! unanswered, and counts what uses the link so an idle one can be closed. Which of two links
//! to one device to keep is [`DuplicateLinks::keep_older`], a pure function of plain facts.
//!
//! A request may outlive its link: named across links by a [`RequestKey`]
//! ([`Session::request_once`]), it is sent again on a new link when the old one died before
//! the answer came, on the schedule of [`Retries`] (exponential backoff, full jitter, within
//! the request's budget), and the receiver answers a repeat once from its [`AnswerCache`].
//!
//! The shape is quinn-proto's: the driver feeds bytes it read ([`Session::handle_input`])
//! and the time ([`Session::handle_timeout`] when [`Session::poll_timeout`] says), and takes
//! out sealed bytes to write ([`Session::poll_transmit`], in counter order) and events
//! ([`Session::poll_event`]). Nothing here reads a clock, sleeps or spawns: `now` is always
//! passed in, so the tests run two sessions on a virtual clock.
//!
//! ```
//! use std::time::{Duration, Instant};
//!
//! use tether_crypto::{Role, SessionSecrets};
//! use tether_session::{Config, Event, Session, Side};
//! use tether_wire::{NetworkMessage, Ping};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Keys from a finished handshake (a test pair here; see tether-crypto's `handshake`).
//! let [ours, theirs] = SessionSecrets::danger_pair_from_seed(1)?;
//! let now = Instant::now();
//! let config = Config::default();
//! let mut dialler = Session::new(ours.into_session_keys(Role::Initiator), Side::Dialler, config, now);
//! let mut acceptor = Session::new(theirs.into_session_keys(Role::Responder), Side::Acceptor, config, now);
//!
//! let ping = NetworkMessage::Ping(Ping { timestamp_ms: 7 });
//! let id = dialler.request(now, ping, Duration::from_secs(5))?;
//! // Carry the bytes across: the acceptor answers a `Ping` itself.
//! acceptor.handle_input(now, &dialler.poll_transmit().unwrap_or_default())?;
//! dialler.handle_input(now, &acceptor.poll_transmit().unwrap_or_default())?;
//! assert!(matches!(
//!     dialler.poll_event(),
//!     Some(Event::Answered { id: answered, result: Ok(NetworkMessage::Pong(_)) }) if answered == id
//! ));
//! # Ok(())
//! # }
//! ```
mod answer_cache;
mod answers;
mod duplicate;
mod key;
mod retry;
mod session;

pub use answer_cache::{AnswerCache, AnswerCacheConfig, Begin, ENTRY_OVERHEAD};
pub use answers::{answers, expected_answer, needs_app};
pub use duplicate::{DuplicateLinks, SIMULTANEOUS_OPEN};
pub use key::RequestKey;
pub use retry::{Backoff, Retries};
pub use session::{
    CloseReason, Config, Event, InputError, MAX_ANSWERING, RequestError, SendError, Session, Side,
};
