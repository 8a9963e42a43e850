//! Two services with a real `iroh-relay` server the test starts on 127.0.0.1 (self-signed
//! certificate, trusted through `TransportConfig::relay_roots`): with the relay path forced,
//! pairing, messages and a transfer go through the relay and say so; without it, the same
//! services talk directly. Round trips are printed with `--nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{Lab, next_event, pair};
use iroh_relay::server::{CertConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use tether::{
    NetworkEvent, NetworkMessage, NetworkingConfig, NetworkingService, PathKind, Ping,
    TransferOptions, TransferPathKind, TrustedRoot,
};

/// A relay server on 127.0.0.1 with a fresh self-signed certificate; its URL and the
/// certificate to trust.
async fn start_relay() -> (Server, String, TrustedRoot) {
    let (certs, server_config) = iroh_relay::server::testing::self_signed_tls_certs_and_config();
    let mut relay = RelayConfig::new((Ipv4Addr::LOCALHOST, 0));
    relay.tls = Some(TlsConfig::new(
        (Ipv4Addr::LOCALHOST, 0),
        CertConfig::Manual { server_config },
    ));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    let server = Server::spawn(config).await.unwrap();
    let url = format!("https://{}", server.https_addr().unwrap());
    (server, url, TrustedRoot::from_der(certs[0].to_vec()))
}

fn with_relay(mut config: NetworkingConfig, url: &str, root: &TrustedRoot) -> NetworkingConfig {
    config.transport = config
        .transport
        .with_relays([url])
        .with_relay_roots([root.clone()]);
    config
}

/// Starts a service and waits until it is reachable through the relay.
async fn start_on_relay(config: NetworkingConfig) -> NetworkingService {
    let service = NetworkingService::start(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.home_relay().is_none() {
        assert!(Instant::now() < deadline, "no home relay after 20 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service
}

/// Median of `n` message round trips (send, the peer's answer back).
async fn median_round_trip(from: &NetworkingService, to: &NetworkingService, n: usize) -> Duration {
    let device = from.device(to.node_id()).unwrap();
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        let reply = device
            .send_message(NetworkMessage::Ping(Ping {
                timestamp_ms: i as u64,
            }))
            .await
            .unwrap();
        times.push(started.elapsed());
        assert!(matches!(reply, NetworkMessage::Pong(_)), "{reply:?}");
    }
    times.sort();
    times[n / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_relay_path_carries_pairing_messages_and_a_transfer() {
    let lab = Lab::new();
    let (_relay, url, root) = start_relay().await;
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();

    let desk =
        start_on_relay(with_relay(lab.config("desk"), &url, &root).with_receive_dir(&inbox)).await;
    let mut forced = with_relay(lab.config("phone"), &url, &root);
    forced.transport.force_relay = true;
    let phone = start_on_relay(forced).await;
    assert!(phone.addr().direct.is_empty(), "{:?}", phone.addr());
    assert_eq!(
        desk.home_relay().unwrap().as_str().trim_end_matches('/'),
        url.trim_end_matches('/')
    );

    // Pairing by word code: the phone finds the desk's slot and reaches it through the relay.
    pair(&desk, &phone).await;
    desk.set_auto_accept(phone.node_id(), true).unwrap();

    let reply = phone
        .device(desk.node_id())
        .unwrap()
        .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 7 }))
        .await
        .unwrap();
    assert!(matches!(reply, NetworkMessage::Pong(_)), "{reply:?}");
    for (side, info) in [
        ("phone", phone.connection_info(desk.node_id()).unwrap()),
        ("desk", desk.connection_info(phone.node_id()).unwrap()),
    ] {
        assert_eq!(info.path, PathKind::Relayed, "{side}: {info:?}");
        assert_eq!(
            info.relay_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/')),
            Some(url.trim_end_matches('/')),
            "{side}: {info:?}"
        );
    }

    // A small file, verified, over the relay.
    let source = lab.root.path().join("note.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&source, &data).unwrap();
    let mut desk_events = desk.subscribe();
    let handle = phone
        .share_with_device(
            desk.node_id(),
            std::slice::from_ref(&source),
            TransferOptions::default(),
        )
        .await
        .unwrap();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.path, TransferPathKind::Relayed);
    assert_eq!(report.bytes_verified, 300_000);
    next_event(&mut desk_events, |e| {
        matches!(e, NetworkEvent::TransferReceived { .. })
    })
    .await;
    assert_eq!(std::fs::read(inbox.join("note.bin")).unwrap(), data);

    let relayed = median_round_trip(&phone, &desk, 50).await;
    let info = phone.connection_info(desk.node_id()).unwrap();
    eprintln!(
        "relayed: message round trip median {relayed:?} (50), path rtt {:?}",
        info.rtt
    );
    assert_eq!(info.path, PathKind::Relayed);
    desk.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_relay_configured_the_normal_path_is_direct() {
    let lab = Lab::new();
    let (_relay, url, root) = start_relay().await;
    let desk = start_on_relay(with_relay(lab.config("desk"), &url, &root)).await;
    let phone = start_on_relay(with_relay(lab.config("phone"), &url, &root)).await;
    assert!(!phone.addr().direct.is_empty());
    pair(&desk, &phone).await;
    let direct = median_round_trip(&phone, &desk, 50).await;
    let info = phone.connection_info(desk.node_id()).unwrap();
    eprintln!(
        "direct: message round trip median {direct:?} (50), path rtt {:?}",
        info.rtt
    );
    assert_eq!(info.path, PathKind::Direct, "{info:?}");
    assert_eq!(
        desk.connection_info(phone.node_id()).unwrap().path,
        PathKind::Direct
    );
    desk.shutdown().await;
    phone.shutdown().await;
}

/// Both devices list two relays; the one the desk uses stops; the desk (and the phone, which
/// can only use relays) move to the other, and messages flow again through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_move_to_the_other_relay_when_theirs_stops() {
    let lab = Lab::new();
    let (relay_a, url_a, root_a) = start_relay().await;
    let (relay_b, url_b, root_b) = start_relay().await;
    let two_relays = |config: NetworkingConfig| {
        let mut config = with_relay(config, &url_a, &root_a);
        config.transport = config
            .transport
            .with_relays([url_a.clone(), url_b.clone()])
            .with_relay_roots([root_b.clone()]);
        config
    };
    let desk = start_on_relay(two_relays(lab.config("desk"))).await;
    let mut forced = two_relays(lab.config("phone"));
    forced.transport.force_relay = true;
    let phone = start_on_relay(forced).await;
    pair(&desk, &phone).await;
    median_round_trip(&phone, &desk, 3).await;

    let home = desk.home_relay().unwrap();
    let (stopped, remaining, _keep) = if home.as_str().trim_end_matches('/') == url_a {
        (relay_a, url_b.clone(), relay_b)
    } else {
        (relay_b, url_a.clone(), relay_a)
    };
    let started = Instant::now();
    stopped.shutdown().await.unwrap();
    for service in [&desk, &phone] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while service
            .home_relay()
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/'))
            != Some(remaining.as_str())
        {
            assert!(Instant::now() < deadline, "{:?}", service.home_relay());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "both devices on the remaining relay {:?} after the first stopped",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reply = phone
            .device(desk.node_id())
            .unwrap()
            .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 1 }))
            .await;
        if matches!(reply, Ok(NetworkMessage::Pong(_))) {
            break;
        }
        assert!(Instant::now() < deadline, "{reply:?}");
    }
    eprintln!("messages flow again {:?} after the stop", started.elapsed());
    let info = phone.connection_info(desk.node_id()).unwrap();
    assert_eq!(info.path, PathKind::Relayed);
    assert_eq!(
        info.relay_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/')),
        Some(remaining.as_str())
    );
    desk.shutdown().await;
    phone.shutdown().await;
}
