//! The session handshake on a connection's first streams, for either side.
//!
//! The acceptor speaks first. [`admit`] takes every incoming connection; on the session ALPN
//! it runs [`greet`] while the connection is still being accepted, which opens a
//! unidirectional stream and writes the `Hello` (a fresh ephemeral key): it leaves with the
//! acceptor's first TLS flight (QUIC's 0.5-RTT data). The dialler
//! reads it ([`dial`]), opens the message stream and writes its `Init`; its first sealed
//! frames may follow at once. The acceptor, once the TLS handshake is done and the gate has
//! let the peer in, reads the `Init` on that stream, checks it and answers `Response`
//! ([`accept`]) before any sealed frame. The dialler checks the `Response`
//! ([`Pending::confirm`]) before it opens anything the acceptor sealed. One deadline,
//! [`HANDSHAKE_TIMEOUT`], covers each side's part from its first step: the hello's read or
//! write to the response's.
//!
//! The message encoding is negotiated inside it: the acceptor's hello ends with the encodings
//! it reads (nothing when [`crate::NetworkingConfig::binary_messages`] is off, as from a build
//! without them), the dialler's `Init` names the one it chose from them, and both sides then
//! seal every control payload in it. The hello is on a stream of its own and the dialler
//! reads it to its end; an older dialler reads its first 33 bytes and never sees the offer.

use iroh::endpoint::{
    AlpnError, ConnectingError, Connection, ConnectionError, Incoming, IncomingZeroRttConnection,
    RecvStream, SendStream, WriteError,
};
use rand_core::UnwrapErr;
use std::time::Duration;
use tether_crypto::handshake::{
    AwaitingInit, EncodingOffer, HelloMessage, InitMessage, Initiator, Responder, ResponseCheck,
    ResponseMessage,
};
use tether_crypto::{CryptoError, PairingSecret, SessionKeys};
use tokio::time::Instant;

use tether_identity::{NetworkIdentity, NodeId, error_chain};
use tether_wire::Encoding;

use crate::NetworkError;
use crate::close::{CLOSE_PROTOCOL, SYNC_ALPN};

/// How long the session handshake may take.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The reason the acceptor gives, with [`CLOSE_PROTOCOL`], when the dialler's `Init` does not
/// verify (its signature, or its key confirmation: another pairing secret). The dialler
/// reports it as [`NetworkError::InvalidSignature`], as it does a `Response` that fails.
pub(crate) const UNVERIFIED_REASON: &str = "session handshake did not verify";

/// The acceptor's hello is out; what it needs to answer the `Init`.
#[derive(Debug)]
pub(crate) struct Greeting {
    state: AwaitingInit,
    /// The end of the acceptor's handshake, counted from the hello.
    deadline: Instant,
}

/// The encodings this side reads, preferred first, as handshake ids: every one this version
/// knows, or none (JSON only, as an older build).
fn readable(binary: bool) -> Vec<u8> {
    if binary {
        Encoding::ALL.iter().map(|encoding| encoding.id()).collect()
    } else {
        Vec::new()
    }
}

/// The encoding an `Init` chose (JSON when it chose none). The handshake has checked that it
/// is one this side offered, so it is one this version knows.
fn chosen(init: &InitMessage) -> Encoding {
    init.encoding()
        .and_then(Encoding::from_id)
        .unwrap_or(Encoding::Json)
}

/// Sends the acceptor's `Hello` on a connection still being accepted (before the peer is
/// authenticated: it carries nothing but a fresh ephemeral key and the encodings this side
/// reads).
async fn greet(
    connection: &IncomingZeroRttConnection,
    binary: bool,
) -> Result<Greeting, WriteError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let offer = EncodingOffer::new(&readable(binary));
    let (state, hello) = Responder::hello_offering(&mut UnwrapErr(getrandom::SysRng), offer);
    let mut stream = connection.open_uni().await?;
    stream.write_all(&hello.to_bytes()).await?;
    stream.finish()?;
    Ok(Greeting { state, deadline })
}

/// Why an incoming connection was not admitted (see [`admit`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdmitError {
    /// The connection could not be accepted.
    #[error("accepting the connection failed")]
    Accept(#[source] ConnectionError),
    /// The peer's ALPN could not be read.
    #[error("reading the peer's ALPN failed")]
    Alpn(#[source] AlpnError),
    /// The TLS handshake failed, or the gate refused the peer.
    #[error("the TLS handshake did not complete")]
    Handshake(#[source] ConnectingError),
    /// The session handshake's hello could not be sent.
    #[error("sending the session hello failed")]
    Hello(#[source] WriteError),
    /// The TLS handshake did not complete within the session handshake's deadline.
    #[error("the TLS handshake ran past the session handshake's deadline")]
    TimedOut,
}

/// Takes an incoming connection through its TLS handshake and the gate (iroh's
/// after-handshake hook, which closes a refused connection before the handshake counts as
/// complete). On the session ALPN the session handshake's hello goes out first, with this
/// side's first TLS flight (QUIC's 0.5-RTT data, before the peer is authenticated; see
/// [`greet`]), offering the binary encoding when `binary`; every other ALPN is accepted as it
/// is.
pub(crate) async fn admit(
    incoming: Incoming,
    binary: bool,
) -> Result<(Connection, Option<Greeting>), AdmitError> {
    let mut accepting = incoming.accept().map_err(AdmitError::Accept)?;
    let alpn = accepting.alpn().await.map_err(AdmitError::Alpn)?;
    if alpn != SYNC_ALPN {
        let connection = accepting.await.map_err(AdmitError::Handshake)?;
        return Ok((connection, None));
    }
    let early = accepting.into_0rtt();
    let greeting = greet(&early, binary).await.map_err(AdmitError::Hello)?;
    // Resolves only once the gate has admitted the peer.
    let connection = tokio::time::timeout_at(greeting.deadline, early.handshake_completed())
        .await
        .map_err(|_| AdmitError::TimedOut)?
        .map_err(AdmitError::Handshake)?;
    Ok((connection, Some(greeting)))
}

/// The dialler's check of the `Response`, still to come on the message stream.
#[derive(Debug)]
pub(super) struct Pending {
    check: ResponseCheck,
    deadline: Instant,
}

impl Pending {
    /// Reads the `Response` from the start of the message stream and checks it, within the
    /// handshake's deadline. Nothing after it on the stream is read.
    pub(super) async fn confirm(
        self,
        connection: &Connection,
        recv: &mut RecvStream,
        peer: NodeId,
    ) -> Result<(), NetworkError> {
        let mut bytes = [0u8; ResponseMessage::LEN];
        match tokio::time::timeout_at(self.deadline, recv.read_exact(&mut bytes)).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) => return Err(closed_early(connection, &peer, error)),
            Ok(Ok(())) => {}
        }
        let response = ResponseMessage::from_bytes(&bytes).map_err(|e| violation(&peer, e))?;
        self.check
            .verify(&response)
            .map_err(|_| NetworkError::InvalidSignature { node: peer })
    }
}

/// The dialler's part up to its `Init`: the message stream, the keys its first frames are
/// sealed with, the `Response` still to check, and the encoding the `Init` chose.
pub(super) struct Dialled {
    pub(super) send: SendStream,
    pub(super) recv: RecvStream,
    pub(super) keys: SessionKeys,
    pub(super) pending: Pending,
    pub(super) encoding: Encoding,
}

/// What the acceptor's part ends with: the message stream, the keys, and the encoding the
/// dialler chose.
pub(super) struct Accepted {
    pub(super) send: SendStream,
    pub(super) recv: RecvStream,
    pub(super) keys: SessionKeys,
    pub(super) encoding: Encoding,
}

/// Runs the dialler's part up to its `Init`: reads the acceptor's `Hello` (to the end of its
/// stream, offer included), derives the keys, opens the message stream and writes the `Init`
/// on it, choosing binary when the hello offers it and `binary` is on.
pub(super) async fn dial(
    connection: &Connection,
    identity: &NetworkIdentity,
    peer: NodeId,
    secret: &PairingSecret,
    binary: bool,
) -> Result<Dialled, NetworkError> {
    let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
    let handshake = async {
        let mut hello_stream = connection
            .accept_uni()
            .await
            .map_err(|e| failed(&peer, e))?;
        let hello = hello_stream
            .read_to_end(HelloMessage::MAX_LEN)
            .await
            .map_err(|e| failed(&peer, e))?;
        let hello = HelloMessage::from_bytes(&hello).map_err(|e| violation(&peer, e))?;
        let mut rng = UnwrapErr(getrandom::SysRng);
        let reads = readable(binary);
        let (state, init) =
            Initiator::start_choosing(&mut rng, identity, peer, secret, &hello, &reads)
                .map_err(|e| violation(&peer, e))?;
        let (mut send, recv) = connection.open_bi().await.map_err(|e| failed(&peer, e))?;
        send.write_all(&init.to_bytes())
            .await
            .map_err(|e| failed(&peer, e))?;
        let (keys, check) = state.into_early_keys();
        Ok(Dialled {
            send,
            recv,
            keys,
            pending: Pending { check, deadline },
            encoding: chosen(&init),
        })
    };
    tokio::time::timeout_at(deadline, handshake)
        .await
        .unwrap_or(Err(timed_out()))
}

/// Runs the acceptor's part after its hello: reads the `Init` on the stream the dialler
/// opened (its type byte says its length), checks it, and writes the `Response`. On an `Init`
/// that does not verify, closes the connection with [`UNVERIFIED_REASON`].
pub(super) async fn accept(
    connection: &Connection,
    greeting: Greeting,
    identity: &NetworkIdentity,
    peer: NodeId,
    secret: &PairingSecret,
) -> Result<Accepted, NetworkError> {
    let handshake = async {
        let (mut send, mut recv) = connection.accept_bi().await.map_err(|e| failed(&peer, e))?;
        let mut bytes = [0u8; InitMessage::CHOOSING_LEN];
        let (first, rest) = bytes.split_at_mut(1);
        recv.read_exact(first).await.map_err(|e| failed(&peer, e))?;
        let type_byte = first.first().copied().unwrap_or_default();
        // An unknown type byte: read what a 0x05 init would have, and let decoding refuse it.
        let len = InitMessage::len_for_type(type_byte).unwrap_or(InitMessage::LEN);
        let rest = rest.get_mut(..len - 1).unwrap_or_default();
        recv.read_exact(rest).await.map_err(|e| failed(&peer, e))?;
        let bytes = bytes.get(..len).unwrap_or_default();
        let init = InitMessage::from_bytes(bytes).map_err(|e| violation(&peer, e))?;
        let (keys, response) = match greeting.state.receive(identity, peer, secret, &init) {
            Ok(done) => done,
            Err(CryptoError::Signature | CryptoError::KeyConfirmation) => {
                connection.close(CLOSE_PROTOCOL.into(), UNVERIFIED_REASON.as_bytes());
                return Err(NetworkError::InvalidSignature { node: peer });
            }
            Err(error) => return Err(violation(&peer, error)),
        };
        send.write_all(&response.to_bytes())
            .await
            .map_err(|e| failed(&peer, e))?;
        Ok(Accepted {
            send,
            recv,
            keys,
            encoding: chosen(&init),
        })
    };
    tokio::time::timeout_at(greeting.deadline, handshake)
        .await
        .unwrap_or(Err(timed_out()))
}

/// The handshake ran past its deadline.
fn timed_out() -> NetworkError {
    NetworkError::TimedOut {
        what: "session handshake",
        after: HANDSHAKE_TIMEOUT,
    }
}

/// Whether the peer closed `connection` because this side's `Init` did not verify.
pub(crate) fn refused_unverified(connection: &Connection) -> bool {
    tether_iroh::peer_close(connection).is_some_and(|close| {
        close.code == u64::from(CLOSE_PROTOCOL) && close.reason == UNVERIFIED_REASON
    })
}

/// The message stream failed before the `Response`: the acceptor refused our `Init` (said
/// with [`UNVERIFIED_REASON`]), or the connection failed.
fn closed_early(
    connection: &Connection,
    peer: &NodeId,
    error: impl std::error::Error,
) -> NetworkError {
    if refused_unverified(connection) {
        NetworkError::InvalidSignature { node: *peer }
    } else {
        failed(peer, error)
    }
}

/// The connection failed under the handshake.
fn failed(peer: &NodeId, error: impl std::error::Error) -> NetworkError {
    NetworkError::ConnectionFailed {
        node: *peer,
        reason: error_chain(&error),
    }
}

/// The peer sent what the handshake does not take.
fn violation(peer: &NodeId, error: impl std::error::Error) -> NetworkError {
    NetworkError::ProtocolViolation {
        node: *peer,
        reason: error_chain(&error),
    }
}

#[cfg(test)]
mod tests;
