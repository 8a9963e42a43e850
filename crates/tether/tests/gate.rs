//! The gate: a device that never paired reaches no handler. A plain iroh client (its own fresh
//! key, 127.0.0.1) dials a real service on the sync ALPN, on a registered third-party ALPN and
//! on an ALPN nobody serves; each connection is closed right after its TLS handshake with
//! Tether's close code, and the handler never runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Lab, iroh_addr, next_event, pair_by_ticket, raw_client};
use iroh::endpoint::{ConnectionError, VarInt};
use tether::gate::CLOSE_NOT_PAIRED;
use tether::{Connection, NetworkError, NetworkEvent, NetworkProtocol, PairedPeer, ProtocolError};

const CUSTOM_ALPN: &[u8] = b"test/counted/1";

/// Counts how often it is asked to serve a connection, then answers one stream with "hi".
#[derive(Debug, Clone, Default)]
struct Counted {
    calls: Arc<AtomicUsize>,
}

#[tether::async_trait]
impl NetworkProtocol for Counted {
    fn alpn(&self) -> &'static [u8] {
        CUSTOM_ALPN
    }

    async fn accept(&self, connection: Connection, _peer: PairedPeer) -> Result<(), ProtocolError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (mut send, _recv) = connection.accept_bi().await?;
        send.write_all(b"hi").await?;
        send.finish().map_err(ProtocolError::other)?;
        connection.closed().await;
        Ok(())
    }
}

/// The application close code of a connection the other side closed.
async fn close_code(connection: &Connection) -> Option<VarInt> {
    let reason = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .expect("the gate did not close the connection");
    match reason {
        ConnectionError::ApplicationClosed(close) => Some(close.error_code),
        other => panic!("closed, but not by the application: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaired_client_is_refused_on_the_sync_alpn() {
    let lab = Lab::new();
    let service = lab.start_undiscovered("service").await;
    let mut events = service.subscribe();
    let client = raw_client().await;

    let connection = client
        .connect(iroh_addr(&service), tether::SYNC_ALPN)
        .await
        .unwrap();
    // What a session handshake would start with; nobody reads it.
    if let Ok((mut send, _recv)) = connection.open_bi().await {
        let _ = send.write_all(&[0u8; 64]).await;
    }
    assert_eq!(
        close_code(&connection).await,
        Some(VarInt::from_u32(CLOSE_NOT_PAIRED))
    );

    // No session started: no `Connected` event, nothing in the registry.
    assert!(service.devices().is_empty(), "{:?}", service.devices());
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, NetworkEvent::Connected { .. }),
            "{event:?}"
        );
    }
    client.close().await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaired_client_is_refused_on_a_custom_alpn_before_its_handler_runs() {
    let lab = Lab::new();
    let service = lab.start_undiscovered("service").await;
    let counted = Counted::default();
    service.register_protocol(counted.clone()).unwrap();
    let client = raw_client().await;

    let connection = client
        .connect(iroh_addr(&service), CUSTOM_ALPN)
        .await
        .unwrap();
    let read = async {
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(b"hello?").await?;
        anyhow::Ok(recv.read_to_end(16).await?)
    };
    assert!(read.await.is_err(), "the unpaired client got an answer");
    assert_eq!(
        close_code(&connection).await,
        Some(VarInt::from_u32(CLOSE_NOT_PAIRED))
    );
    assert_eq!(counted.calls.load(Ordering::SeqCst), 0);

    // The control: a paired device does reach the handler on the same service, so a count of
    // zero above means refused rather than broken.
    let friend = lab.start_undiscovered("friend").await;
    pair_by_ticket(&service, &friend).await;
    let connection = friend
        .connect_protocol(service.node_id(), CUSTOM_ALPN)
        .await
        .unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    // The handler only sees the stream once something is written on it.
    send.write_all(b"x").await.unwrap();
    assert_eq!(recv.read_to_end(16).await.unwrap(), b"hi");
    assert_eq!(counted.calls.load(Ordering::SeqCst), 1);

    client.close().await;
    friend.shutdown().await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_alpn_is_refused() {
    let lab = Lab::new();
    let service = lab.start_undiscovered("service").await;
    let counted = Counted::default();
    service.register_protocol(counted.clone()).unwrap();
    let client = raw_client().await;

    // Nobody serves it: the TLS handshake itself fails (no common application protocol).
    let refused = client
        .connect(iroh_addr(&service), b"test/nobody-serves-this/1")
        .await;
    assert!(refused.is_err(), "connected on an unknown ALPN");
    assert_eq!(counted.calls.load(Ordering::SeqCst), 0);

    // The pairing ALPN is refused while no code is shown...
    let pairing = client
        .connect(iroh_addr(&service), tether::PAIRING_ALPN)
        .await
        .unwrap();
    assert_eq!(
        close_code(&pairing).await,
        Some(VarInt::from_u32(tether::gate::CLOSE_NOT_PAIRING))
    );
    // ... and open to strangers while one is: the PAKE is its check.
    let _invite = service.start_pairing_with_ticket().unwrap();
    let pairing = client
        .connect(iroh_addr(&service), tether::PAIRING_ALPN)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pairing.close_reason().is_none());
    client.close().await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paired_device_on_an_unregistered_alpn_is_refused_too() {
    let lab = Lab::new();
    let service = lab.start_undiscovered("service").await;
    let friend = lab.start_undiscovered("friend").await;
    pair_by_ticket(&service, &friend).await;
    let mut events = friend.subscribe();
    // Refused in the TLS handshake (no common ALPN), reported as such, and not retried.
    let started = std::time::Instant::now();
    let refused = friend
        .connect_protocol(service.node_id(), CUSTOM_ALPN)
        .await;
    assert!(
        matches!(&refused, Err(NetworkError::UnknownProtocol { alpn }) if alpn == "test/counted/1"),
        "{refused:?}"
    );
    // Three attempts would spend at least 450 ms in backoff alone.
    assert!(started.elapsed() < Duration::from_millis(400), "retried");
    // The sync ALPN still works for it.
    friend
        .device(service.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    next_event(&mut events, |e| matches!(e, NetworkEvent::Connected { .. })).await;
    friend.shutdown().await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_on_the_first_session_layouts_alpn_fails_the_tls_handshake() {
    // `tether/sync/1` carried the initiator-first handshake; a peer still speaking it shares
    // no ALPN with this one, so it fails before any session message (and is told so as
    // `UnknownProtocol` when it is a Tether service; see the test above).
    let lab = Lab::new();
    let service = lab.start_undiscovered("service").await;
    assert_eq!(tether::SYNC_ALPN, b"tether/sync/2");
    let client = raw_client().await;
    let old = client.connect(iroh_addr(&service), b"tether/sync/1").await;
    assert!(old.is_err(), "connected on the old session ALPN");
    // The control: the current ALPN gets through TLS (and then meets the gate).
    let current = client
        .connect(iroh_addr(&service), tether::SYNC_ALPN)
        .await
        .unwrap();
    assert_eq!(
        close_code(&current).await,
        Some(VarInt::from_u32(CLOSE_NOT_PAIRED))
    );
    client.close().await;
    service.shutdown().await;
}
