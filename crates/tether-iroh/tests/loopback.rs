//! Real iroh endpoints on 127.0.0.1: connecting, the gate, path info, loopback discovery.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use n0_future::StreamExt;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{NetworkIdentity, NodeId};
use tether_iroh::{
    AdmitAll, ConnectionGate, ConnectionInfo, LoopbackDiscovery, PathKind, PeerAddr, PeerClose,
    Refusal, Transport, TransportConfig, direct_addrs, peer_close, relay_url,
};
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent};

const ALPN: &[u8] = b"tether-test/echo/1";

fn identity(seed: u64) -> NetworkIdentity {
    NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

#[derive(Debug)]
struct OnlyThese {
    allowed: Vec<NodeId>,
    asked: AtomicUsize,
}

impl ConnectionGate for OnlyThese {
    fn admit(&self, peer: &NodeId, _alpn: &[u8]) -> Result<(), Refusal> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if self.allowed.contains(peer) {
            Ok(())
        } else {
            Err(Refusal {
                code: 403,
                reason: "not paired",
            })
        }
    }
}

async fn bind(seed: u64, gate: Arc<dyn ConnectionGate>) -> Transport {
    Transport::bind(
        &identity(seed),
        &TransportConfig::local_only(),
        vec![ALPN.to_vec()],
        gate,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_binds_loopback_and_endpoint_id_is_the_node_id() {
    let transport = bind(1, Arc::new(AdmitAll)).await;
    assert_eq!(transport.node_id(), identity(1).node_id());
    assert_eq!(
        transport.endpoint().id().as_bytes(),
        identity(1).node_id().as_bytes()
    );
    let addr = transport.addr();
    assert!(!addr.direct.is_empty());
    assert!(addr.direct.iter().all(|a| a.ip().is_loopback()), "{addr:?}");
    assert!(transport.bound_addrs().iter().all(|a| a.ip().is_loopback()));
    assert_eq!(addr.relay_url, None);
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_only_config_cannot_be_talked_into_the_public_internet() {
    let config = TransportConfig {
        local_only: true,
        bind_addr: "0.0.0.0:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    let transport = Transport::bind(&identity(9), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    assert!(transport.bound_addrs().iter().all(|a| a.ip().is_loopback()));
    assert_eq!(transport.config().relay, tether_iroh::RelayConfig::Disabled);
    assert!(!transport.config().mdns);
    assert!(transport.mdns().is_none());
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admitted_peers_talk_and_the_path_is_direct() {
    let client = bind(2, Arc::new(AdmitAll)).await;
    let gate = Arc::new(OnlyThese {
        allowed: vec![client.node_id()],
        asked: AtomicUsize::new(0),
    });
    let server = bind(3, gate.clone()).await;

    let server_ep = server.endpoint().clone();
    let echo = tokio::spawn(async move {
        let conn = server_ep.accept().await.unwrap().await.unwrap();
        let peer = tether_iroh::peer_node_id(&conn).unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let bytes = recv.read_to_end(1024).await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        conn.closed().await;
        peer
    });

    let conn = client.connect(&server.addr(), ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello");

    let info = ConnectionInfo::of(&conn);
    assert_eq!(info.path, PathKind::Direct);
    assert!(info.rtt.is_some());
    assert!(info.bytes_sent > 0 && info.bytes_received > 0);
    conn.close(0u32.into(), b"done");
    assert_eq!(echo.await.unwrap(), client.node_id());
    assert_eq!(gate.asked.load(Ordering::SeqCst), 1);
    client.close().await;
    server.close().await;
}

/// What a pairing keeps (the peer's direct addresses, no relay on loopback) and how the peer
/// closed the connection are read off the connection itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peers_addresses_and_close_code_are_read_off_the_connection() {
    let client = bind(6, Arc::new(AdmitAll)).await;
    let server = bind(7, Arc::new(AdmitAll)).await;
    let server_ep = server.endpoint().clone();
    // The server closes only when the client says so: the client first looks at the open
    // connection (closing as soon as the echo was acknowledged raced that look).
    let (close_now, close_signal) = tokio::sync::oneshot::channel::<()>();
    let closer = tokio::spawn(async move {
        let conn = server_ep.accept().await.unwrap().await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let bytes = recv.read_to_end(1024).await.unwrap();
        send.write_all(&bytes).await.unwrap();
        send.finish().unwrap();
        // Close only once the client has the echo (closing discards unsent data).
        let _ = send.stopped().await;
        close_signal.await.unwrap();
        conn.close(0x7042u32.into(), b"bye \xff");
    });

    let conn = client.connect(&server.addr(), ALPN).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello");

    let direct = direct_addrs(&conn);
    let selected = *direct.first().expect("a direct path on loopback");
    assert!(server.bound_addrs().contains(&selected), "{direct:?}");
    assert_eq!(relay_url(&conn), None);
    assert_eq!(peer_close(&conn), None, "open");
    close_now.send(()).unwrap();

    conn.closed().await;
    assert_eq!(
        peer_close(&conn),
        Some(PeerClose {
            code: 0x7042,
            reason: "bye \u{fffd}".to_owned(),
        })
    );
    closer.await.unwrap();

    // A connection this side closed carries no peer close.
    let server_ep = server.endpoint().clone();
    let waiter = tokio::spawn(async move {
        let conn = server_ep.accept().await.unwrap().await.unwrap();
        conn.closed().await;
        peer_close(&conn)
    });
    let conn = client.connect(&server.addr(), ALPN).await.unwrap();
    conn.close(0x7043u32.into(), b"mine");
    assert_eq!(peer_close(&conn), None);
    assert_eq!(
        waiter.await.unwrap(),
        Some(PeerClose {
            code: 0x7043,
            reason: "mine".to_owned(),
        })
    );
    client.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_refuses_before_any_stream_with_its_close_code() {
    let gate = Arc::new(OnlyThese {
        allowed: vec![],
        asked: AtomicUsize::new(0),
    });
    let server = bind(4, gate.clone()).await;
    let accepted = Arc::new(AtomicUsize::new(0));
    let server_ep = server.endpoint().clone();
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Some(incoming) = server_ep.accept().await {
            if incoming.await.is_ok() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    let stranger = bind(5, Arc::new(AdmitAll)).await;
    let result = stranger.connect(&server.addr(), ALPN).await;
    match result {
        Err(error) => assert!(
            error.to_string().contains("403")
                || error.to_string().contains("not paired")
                || error.to_string().contains("closed"),
            "{error}"
        ),
        Ok(conn) => {
            let reason = conn.closed().await;
            assert!(format!("{reason:?}").contains("403"), "{reason:?}");
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "a refused connection reached accept()"
    );
    assert_eq!(gate.asked.load(Ordering::SeqCst), 1);
    stranger.close().await;
    server.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_port_falls_back_to_a_random_one_when_taken() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut config = TransportConfig::local_only();
    config.bind_addr = taken.local_addr().unwrap();
    let transport = Transport::bind(&identity(6), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    assert!(
        transport
            .bound_addrs()
            .iter()
            .all(|a| a.port() != config.bind_addr.port())
    );

    config.fall_back_to_random_port = false;
    let error = Transport::bind(&identity(7), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains(&config.bind_addr.to_string()),
        "{error}"
    );
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_discovery_finds_announced_devices_and_their_slot_and_loses_them() {
    let root = tempfile::tempdir().unwrap();
    // A directory the discovery creates itself (mode 0700); the temporary one may be 0755.
    let dir = root.path().join("loopback");
    let a = LoopbackDiscovery::new(&dir).unwrap();
    let b = LoopbackDiscovery::new(&dir).unwrap();
    let a_id = identity(10).node_id();
    let b_id = identity(11).node_id();
    let addr: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
    a.announce(DiscoveredDevice {
        node_id: a_id,
        addrs: vec![addr, "192.0.2.1:1".parse().unwrap()],
        relay_url: None,
        pairing_slot: Some("harbor".into()),
        source: "loopback",
    });
    b.announce(DiscoveredDevice {
        node_id: b_id,
        addrs: vec![],
        relay_url: None,
        pairing_slot: None,
        source: "loopback",
    });
    let mut events = b.subscribe();
    let found = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let DiscoveryEvent::Found(device) = found else {
        panic!("{found:?}")
    };
    assert_eq!(device.node_id, a_id, "a device never sees itself");
    assert_eq!(
        device.addrs,
        vec![addr],
        "only loopback addresses are announced"
    );
    assert_eq!(device.pairing_slot.as_deref(), Some("harbor"));

    drop(a);
    let lost = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost, DiscoveryEvent::Lost(a_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_address_keeps_the_relay_and_drops_direct_paths() {
    let addr = PeerAddr {
        node_id: identity(12).node_id(),
        direct: vec!["127.0.0.1:1".parse().unwrap()],
        relay_url: Some("https://relay.example./".parse().unwrap()),
    };
    let relay_only = addr.relay_only();
    assert!(relay_only.direct.is_empty());
    assert_eq!(relay_only.relay_url, addr.relay_url);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remembered_addresses_let_iroh_dial_by_id_alone_until_forgotten() {
    let server = bind(5, Arc::new(AdmitAll)).await;
    let server_ep = server.endpoint().clone();
    tokio::spawn(async move {
        while let Some(incoming) = server_ep.accept().await {
            if let Ok(conn) = incoming.await {
                tokio::spawn(async move { conn.closed().await });
            }
        }
    });
    let server_id = iroh::EndpointId::from_bytes(server.node_id().as_bytes()).unwrap();
    let dial_by_id = |transport: &Transport| {
        let endpoint = transport.endpoint().clone();
        async move {
            tokio::time::timeout(
                Duration::from_secs(10),
                endpoint.connect(iroh::EndpointAddr::new(server_id), ALPN),
            )
            .await
            .expect("a dial by id did not end")
        }
    };

    // Told nothing, iroh has no address for an id alone.
    let client = bind(4, Arc::new(AdmitAll)).await;
    assert!(dial_by_id(&client).await.is_err());
    // What a discovery found, handed to iroh: the same dial finds the address.
    client.remember(&server.addr());
    let conn = dial_by_id(&client)
        .await
        .expect("iroh did not find the remembered address");
    conn.close(0u32.into(), b"done");

    // Remembered, then forgotten: nothing to dial again.
    let other = bind(6, Arc::new(AdmitAll)).await;
    other.remember(&server.addr());
    other.forget(&server.node_id());
    assert!(dial_by_id(&other).await.is_err());

    client.close().await;
    other.close().await;
    server.close().await;
}
