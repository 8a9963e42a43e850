//! The session handshake on a connection's first stream, for either side.
//!
//! One driver runs both roles: the side that dialled opens the stream and speaks first
//! (`Init`, then `Finish` once the `Response` checks out), the side that accepted takes the
//! stream and answers (`Response`, then the keys once the `Finish` checks out). Each role is
//! a [`Step`] that says how many bytes it waits for and what it sends back.

use iroh::endpoint::{Connection, RecvStream, SendStream, Side};
use rand_core::UnwrapErr;
use std::time::Duration;
use tether_crypto::handshake::{
    AwaitingFinish, AwaitingResponse, FinishMessage, InitMessage, Initiator, Responder,
    ResponseMessage,
};
use tether_crypto::{PairingSecret, SessionKeys};

use tether_identity::{NetworkIdentity, NodeId, error_chain};

use crate::NetworkError;

/// How long the session handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where one side of the handshake stands.
enum Step<'id> {
    /// The dialler sent `Init` and waits for the `Response`.
    AwaitResponse(AwaitingResponse<'id>),
    /// The acceptor waits for the `Init`.
    AwaitInit,
    /// The acceptor sent its `Response` and waits for the `Finish`.
    AwaitFinish(AwaitingFinish),
    /// The keys.
    Done(Box<SessionKeys>),
}

/// What a side knows besides its step.
struct Parties<'a> {
    identity: &'a NetworkIdentity,
    peer: NodeId,
    secret: &'a PairingSecret,
}

impl<'id> Step<'id> {
    /// How many bytes this step waits for.
    fn expects(&self) -> usize {
        match self {
            Self::AwaitResponse(_) => ResponseMessage::LEN,
            Self::AwaitInit => InitMessage::LEN,
            Self::AwaitFinish(_) => FinishMessage::LEN,
            Self::Done(_) => 0,
        }
    }

    /// Takes the message this step waits for; the next step, and what to send.
    fn receive(
        self,
        parties: &Parties<'id>,
        bytes: &[u8],
    ) -> Result<(Self, Option<Vec<u8>>), NetworkError> {
        let peer = &parties.peer;
        match self {
            Self::AwaitResponse(state) => {
                let response =
                    ResponseMessage::from_bytes(bytes).map_err(|e| violation(peer, e))?;
                let (keys, finish) = state
                    .receive(&response)
                    .map_err(|_| NetworkError::InvalidSignature { node: *peer })?;
                Ok((Self::Done(Box::new(keys)), Some(finish.to_bytes().to_vec())))
            }
            Self::AwaitInit => {
                let init = InitMessage::from_bytes(bytes).map_err(|e| violation(peer, e))?;
                let mut rng = UnwrapErr(getrandom::SysRng);
                let (state, response) =
                    Responder::respond(&mut rng, parties.identity, *peer, parties.secret, &init)
                        .map_err(|e| violation(peer, e))?;
                Ok((Self::AwaitFinish(state), Some(response.to_bytes().to_vec())))
            }
            Self::AwaitFinish(state) => {
                let finish = FinishMessage::from_bytes(bytes).map_err(|e| violation(peer, e))?;
                let keys = state
                    .receive(&finish)
                    .map_err(|_| NetworkError::InvalidSignature { node: *peer })?;
                Ok((Self::Done(Box::new(keys)), None))
            }
            Self::Done(keys) => Ok((Self::Done(keys), None)),
        }
    }
}

/// Runs the handshake on `connection` as the side it is (the dialler opens the stream, the
/// acceptor takes the first one the peer opens), within [`HANDSHAKE_TIMEOUT`].
pub(super) async fn run(
    connection: &Connection,
    identity: &NetworkIdentity,
    peer: NodeId,
    secret: &PairingSecret,
) -> Result<(SendStream, RecvStream, SessionKeys), NetworkError> {
    let parties = Parties {
        identity,
        peer,
        secret,
    };
    let handshake = async {
        let (mut send, mut recv, mut step, mut out) = match connection.side() {
            Side::Client => {
                let (send, recv) = connection.open_bi().await.map_err(|e| failed(&peer, e))?;
                let mut rng = UnwrapErr(getrandom::SysRng);
                let (state, init) = Initiator::start(&mut rng, identity, peer, secret);
                let init = init.to_bytes().to_vec();
                (send, recv, Step::AwaitResponse(state), Some(init))
            }
            Side::Server => {
                let (send, recv) = connection.accept_bi().await.map_err(|e| failed(&peer, e))?;
                (send, recv, Step::AwaitInit, None)
            }
        };
        loop {
            if let Some(bytes) = out.take() {
                send.write_all(&bytes).await.map_err(|e| failed(&peer, e))?;
            }
            if let Step::Done(keys) = step {
                return Ok((send, recv, *keys));
            }
            let mut bytes = vec![0u8; step.expects()];
            recv.read_exact(&mut bytes)
                .await
                .map_err(|e| failed(&peer, e))?;
            (step, out) = step.receive(&parties, &bytes)?;
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or(Err(NetworkError::TimedOut {
            what: "session handshake",
            after: HANDSHAKE_TIMEOUT,
        }))
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
