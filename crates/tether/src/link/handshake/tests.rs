//! The session handshake between real iroh endpoints on 127.0.0.1: the dialler's first request
//! leaves before the acceptor's `Response` (the acceptor here holds its `Response` back until
//! that request has arrived, which would hang a dialler that waited), a wrong pairing secret and
//! a forged `Response` fail with [`NetworkError::InvalidSignature`], and nothing the acceptor
//! sent after a bad `Response` is read.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::endpoint::{ConnectionError, RecvStream, SendStream};
use rand_core::UnwrapErr;
use tether_crypto::PairingSecret;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, NodeId};
use tether_iroh::{AdmitAll, Transport, TransportConfig};
use tether_protocol::PairedPeer;
use tether_session::{Config, Session, Side};
use tether_wire::{NetworkMessage, Ping};
use tokio::sync::mpsc;

use iroh::endpoint::Connection;
use tether_crypto::handshake::{HelloMessage, InitMessage, Initiator, ResponseMessage};
use tether_wire::Encoding;

use super::{Greeting, UNVERIFIED_REASON, admit};
use crate::NetworkError;
use crate::close::{CLOSE_PROTOCOL, SYNC_ALPN};
use crate::link::{Inbox, Link};

/// How long a step may take before the test calls it stuck.
const STEP: Duration = Duration::from_secs(5);

/// Alice dials, Bob accepts; both on 127.0.0.1, every connection admitted.
struct Peers {
    alice: NetworkIdentity,
    bob: NetworkIdentity,
    dialler: Transport,
    acceptor: Transport,
}

async fn peers() -> Peers {
    let mut rng = UnwrapErr(getrandom::SysRng);
    let alice = NetworkIdentity::generate(&mut rng);
    let bob = NetworkIdentity::generate(&mut rng);
    let bind = |identity: &NetworkIdentity| {
        let identity = identity.clone();
        async move {
            let alpns = vec![SYNC_ALPN.to_vec()];
            Transport::bind(
                &identity,
                &TransportConfig::local_only(),
                alpns,
                Arc::new(AdmitAll),
            )
            .await
            .unwrap()
        }
    };
    Peers {
        dialler: bind(&alice).await,
        acceptor: bind(&bob).await,
        alice,
        bob,
    }
}

fn inbox(peer: NodeId) -> Inbox {
    let mut rng = UnwrapErr(getrandom::SysRng);
    Inbox {
        events: mpsc::channel(8).0,
        handler: Arc::default(),
        max_text_len: tether_wire::limits::MAX_TEXT_LEN,
        binary_messages: true,
        answers: crate::link::answer_cache(STEP),
        limiter: Arc::new(crate::rate::MessageLimiter::new(None)),
        peer: PairedPeer {
            node_id: peer,
            device: DeviceInfo {
                device_id: DeviceId::random(&mut rng),
                device_name: DeviceName::new("peer").unwrap(),
                device_type: DeviceType::Desktop,
                public_key: peer,
            },
        },
    }
}

fn secret(byte: u8) -> PairingSecret {
    PairingSecret::from_bytes([byte; 32])
}

fn ping() -> NetworkMessage {
    NetworkMessage::Ping(Ping { timestamp_ms: 1 })
}

/// Bob's side up to the dialler's `Init`: the connection admitted (hello sent, offering JSON
/// only, as an older build, so the `Init` is the 129-byte one and the raw sessions here speak
/// JSON), the message stream, the `Init`, and the greeting to answer it with.
async fn bob_until_init(
    acceptor: &Transport,
) -> (Connection, Greeting, SendStream, RecvStream, InitMessage) {
    let incoming = acceptor.endpoint().accept().await.unwrap();
    let (connection, greeting) = admit(incoming, false).await.unwrap();
    let greeting = greeting.expect("the session ALPN gets a hello");
    let (send, mut recv) = connection.accept_bi().await.unwrap();
    let mut init = [0u8; InitMessage::LEN];
    recv.read_exact(&mut init).await.unwrap();
    let init = InitMessage::from_bytes(&init).unwrap();
    (connection, greeting, send, recv, init)
}

/// Alice's side as the service's send path runs it: dial, then the `Response` checked (and the
/// reader started) while the first request goes out.
async fn alice_sends_first(
    p: &Peers,
    secret: &PairingSecret,
) -> (
    Arc<Link>,
    Result<(), NetworkError>,
    Result<NetworkMessage, NetworkError>,
) {
    let bob_id = p.bob.node_id();
    let connection = p
        .dialler
        .connect(&p.acceptor.addr(), SYNC_ALPN)
        .await
        .unwrap();
    let link = Link::dial(connection, &p.alice, bob_id, secret, inbox(bob_id))
        .await
        .unwrap();
    let confirmed = async {
        link.confirm().await?;
        link.start_reading();
        Ok(())
    };
    let (confirmed, answer) = tokio::join!(
        confirmed,
        link.request(
            tether_session::RequestKey::from_random(7),
            ping(),
            STEP,
            STEP
        )
    );
    (link, confirmed, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_request_leaves_before_the_response_arrives() {
    let p = peers().await;
    let (bob, alice_id) = (p.bob.clone(), p.alice.node_id());
    let acceptor = p.acceptor.clone();
    let bob_side = tokio::spawn(async move {
        let (connection, greeting, mut send, mut recv, init) = bob_until_init(&acceptor).await;
        let (keys, response) = greeting
            .state
            .receive(&bob, alice_id, &secret(1), &init)
            .unwrap();
        let mut session = Session::new(keys, Side::Acceptor, Config::default(), Instant::now());
        // No `Response` sent yet: the first request must come anyway.
        let pong = loop {
            let chunk = tokio::time::timeout(STEP, recv.read_chunk(64 * 1024))
                .await
                .expect("the dialler's first request did not come before the response")
                .unwrap()
                .expect("the stream ended before the first request");
            session.handle_input(Instant::now(), &chunk).unwrap();
            if let Some(pong) = session.poll_transmit() {
                break pong;
            }
        };
        send.write_all(&response.to_bytes()).await.unwrap();
        send.write_all(&pong).await.unwrap();
        // Keep the connection until Alice closes it.
        let _ = tokio::time::timeout(STEP, connection.closed()).await;
    });

    let (link, confirmed, answer) = alice_sends_first(&p, &secret(1)).await;
    confirmed.unwrap();
    assert!(matches!(answer, Ok(NetworkMessage::Pong(_))), "{answer:?}");
    link.close(0, "done");
    bob_side.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pairing_secret_fails_with_invalid_signature_on_both_sides() {
    let p = peers().await;
    let (bob, alice_id) = (p.bob.clone(), p.alice.node_id());
    let acceptor = p.acceptor.clone();
    let bob_side = tokio::spawn(async move {
        let incoming = acceptor.endpoint().accept().await.unwrap();
        let (connection, greeting) = admit(incoming, false).await.unwrap();
        let linked = Link::accept(
            connection,
            greeting.unwrap(),
            &bob,
            alice_id,
            &secret(2),
            inbox(alice_id),
        )
        .await;
        linked.map(drop)
    });

    let (link, confirmed, answer) = alice_sends_first(&p, &secret(3)).await;
    let bob_id = p.bob.node_id();
    assert!(
        matches!(confirmed, Err(NetworkError::InvalidSignature { node }) if node == bob_id),
        "{confirmed:?}"
    );
    // The request that went out behind the `Init` fails the same way.
    assert!(
        matches!(answer, Err(NetworkError::InvalidSignature { node }) if node == bob_id),
        "{answer:?}"
    );
    let bob_result = bob_side.await.unwrap();
    assert!(
        matches!(bob_result, Err(NetworkError::InvalidSignature { node }) if node == alice_id),
        "{bob_result:?}"
    );
    // Bob said why he closed.
    let close = tether_iroh::peer_close(&link.connection).expect("closed by Bob");
    assert_eq!(close.code, u64::from(CLOSE_PROTOCOL));
    assert_eq!(close.reason, UNVERIFIED_REASON);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_response_closes_the_connection_before_anything_after_it_is_read() {
    let p = peers().await;
    let (bob, alice_id) = (p.bob.clone(), p.alice.node_id());
    let acceptor = p.acceptor.clone();
    let bob_side = tokio::spawn(async move {
        let (connection, greeting, mut send, mut recv, init) = bob_until_init(&acceptor).await;
        let (keys, response) = greeting
            .state
            .receive(&bob, alice_id, &secret(4), &init)
            .unwrap();
        // Bob answers the first request honestly, behind a `Response` with one bit of its
        // signature flipped.
        let mut session = Session::new(keys, Side::Acceptor, Config::default(), Instant::now());
        let pong = loop {
            let chunk = recv.read_chunk(64 * 1024).await.unwrap().unwrap();
            session.handle_input(Instant::now(), &chunk).unwrap();
            if let Some(pong) = session.poll_transmit() {
                break pong;
            }
        };
        let mut forged = response.to_bytes().to_vec();
        if let Some(last) = forged.last_mut() {
            *last ^= 1;
        }
        // One write, so Alice cannot close the connection between the two parts.
        forged.extend_from_slice(&pong);
        send.write_all(&forged).await.unwrap();
        tokio::time::timeout(STEP, connection.closed())
            .await
            .unwrap()
    });

    let (link, confirmed, answer) = alice_sends_first(&p, &secret(4)).await;
    let bob_id = p.bob.node_id();
    assert!(
        matches!(confirmed, Err(NetworkError::InvalidSignature { node }) if node == bob_id),
        "{confirmed:?}"
    );
    // The Pong behind the forged `Response` was never read: the request fails with the
    // handshake's error, not with an answer.
    assert!(
        matches!(answer, Err(NetworkError::InvalidSignature { node }) if node == bob_id),
        "{answer:?}"
    );
    assert_eq!(link.local_close_code(), Some(CLOSE_PROTOCOL));
    match bob_side.await.unwrap() {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), u64::from(CLOSE_PROTOCOL));
        }
        other => panic!("Bob saw {other:?}"),
    }
}

/// What a build without the binary encoding does as the dialler, byte for byte: it reads the
/// hello's first 33 bytes, answers with the 129-byte `Init` and speaks JSON. An acceptor that
/// offers binary takes it, and the link speaks JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_dialler_that_reads_33_bytes_of_the_hello_gets_json() {
    let p = peers().await;
    let (bob, alice_id) = (p.bob.clone(), p.alice.node_id());
    let acceptor = p.acceptor.clone();
    let bob_side = tokio::spawn(async move {
        let incoming = acceptor.endpoint().accept().await.unwrap();
        let (connection, greeting) = admit(incoming, true).await.unwrap();
        let link = Link::accept(
            connection,
            greeting.unwrap(),
            &bob,
            alice_id,
            &secret(5),
            inbox(alice_id),
        )
        .await
        .unwrap();
        link.start_reading();
        let encoding = link.encoding();
        let _ = tokio::time::timeout(STEP, link.connection.closed()).await;
        encoding
    });

    let connection = p
        .dialler
        .connect(&p.acceptor.addr(), SYNC_ALPN)
        .await
        .unwrap();
    let mut hello_stream = connection.accept_uni().await.unwrap();
    let mut hello = [0u8; HelloMessage::LEN];
    hello_stream.read_exact(&mut hello).await.unwrap();
    let hello = HelloMessage::from_bytes(&hello).unwrap();
    let mut rng = UnwrapErr(getrandom::SysRng);
    let (state, init) =
        Initiator::start(&mut rng, &p.alice, p.bob.node_id(), &secret(5), &hello).unwrap();
    assert_eq!(init.to_bytes().len(), InitMessage::LEN);
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    let (keys, check) = state.into_early_keys();
    let mut session = Session::new(keys, Side::Dialler, Config::default(), Instant::now());
    let ping = session.request(Instant::now(), ping(), STEP).unwrap();
    let mut first = init.to_bytes();
    first.extend(session.poll_transmit().unwrap());
    send.write_all(&first).await.unwrap();
    let mut response = [0u8; ResponseMessage::LEN];
    recv.read_exact(&mut response).await.unwrap();
    check
        .verify(&ResponseMessage::from_bytes(&response).unwrap())
        .unwrap();
    let answer = loop {
        let chunk = tokio::time::timeout(STEP, recv.read_chunk(64 * 1024))
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        session.handle_input(Instant::now(), &chunk).unwrap();
        if let Some(tether_session::Event::Answered { id, result }) = session.poll_event() {
            assert_eq!(id, ping);
            break result.unwrap();
        }
    };
    assert!(matches!(answer, NetworkMessage::Pong(_)), "{answer:?}");
    connection.close(0u32.into(), b"done");
    assert_eq!(bob_side.await.unwrap(), Encoding::Json);
}
