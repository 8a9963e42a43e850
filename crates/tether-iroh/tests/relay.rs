//! Real iroh endpoints and a real `iroh-relay` server, all on 127.0.0.1: custom relays with a
//! trusted root certificate, the relay path forced by clearing direct addresses.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use iroh_relay::server::{CertConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::NetworkIdentity;
use tether_iroh::{
    AdmitAll, ConnectionInfo, LowestLatency, PathKind, Transport, TransportConfig, TrustedRoot,
};
use tether_protocol::{RelayCandidate, RelaySelector};

const ALPN: &[u8] = b"tether-test/echo/1";

fn identity(seed: u64) -> NetworkIdentity {
    NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

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

async fn echo_server(transport: Transport) {
    while let Some(incoming) = transport.endpoint().accept().await {
        tokio::spawn(async move {
            let Ok(connection) = incoming.await else {
                return;
            };
            while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                let data = recv.read_to_end(1 << 20).await.unwrap();
                send.write_all(&data).await.unwrap();
                send.finish().unwrap();
            }
            // Keep the connection until the peer closes it.
            connection.closed().await;
        });
    }
}

async fn round_trip(connection: &iroh::endpoint::Connection, data: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(data).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(1 << 20).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_relay_path_with_trusted_self_signed_relay() {
    let (_relay, url, root) = start_relay().await;
    let config = TransportConfig::local_only()
        .with_relays([url.clone()])
        .with_relay_roots([root]);
    let server = Transport::bind(
        &identity(1),
        &config,
        vec![ALPN.to_vec()],
        Arc::new(AdmitAll),
    )
    .await
    .unwrap();
    let mut forced_config = config.clone();
    forced_config.force_relay = true;
    let client = Transport::bind(&identity(2), &forced_config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    let home = tokio::time::timeout(Duration::from_secs(20), server.home_relay_connected())
        .await
        .expect("the server reaches its relay");
    assert_eq!(
        home.as_str().trim_end_matches('/'),
        url.trim_end_matches('/')
    );
    tokio::spawn(echo_server(server.clone()));

    let addr = server.addr();
    assert_eq!(
        addr.relay_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/')),
        Some(url.trim_end_matches('/'))
    );
    let forced = addr.relay_only();
    assert!(forced.direct.is_empty());
    let connection = tokio::time::timeout(Duration::from_secs(20), client.connect(&forced, ALPN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        round_trip(&connection, b"over the relay").await,
        b"over the relay"
    );
    assert!(
        client.bound_addrs().is_empty(),
        "{:?}",
        client.bound_addrs()
    );
    // Give hole punching every chance to move the connection off the relay; it cannot.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        round_trip(&connection, b"still relayed").await,
        b"still relayed"
    );
    let info = ConnectionInfo::of(&connection);
    assert_eq!(info.path, PathKind::Relayed, "{info:?}");
    assert!(info.remote.unwrap().contains("127.0.0.1"));
    // What a pairing would keep: the relay, and no direct address.
    assert_eq!(
        tether_iroh::relay_url(&connection).map(|u| u.as_str().trim_end_matches('/').to_owned()),
        Some(url.trim_end_matches('/').to_owned())
    );
    assert_eq!(tether_iroh::direct_addrs(&connection), vec![]);
}

/// Without the switch, the same relay-only address is upgraded to the direct path by hole
/// punching: clearing the peer's direct addresses alone does not force the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_address_is_upgraded_to_direct() {
    let (_relay, url, root) = start_relay().await;
    let config = TransportConfig::local_only()
        .with_relays([url])
        .with_relay_roots([root]);
    let server = Transport::bind(
        &identity(3),
        &config,
        vec![ALPN.to_vec()],
        Arc::new(AdmitAll),
    )
    .await
    .unwrap();
    let client = Transport::bind(&identity(4), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), server.home_relay_connected())
        .await
        .unwrap();
    tokio::spawn(echo_server(server.clone()));
    let connection = tokio::time::timeout(
        Duration::from_secs(20),
        client.connect(&server.addr().relay_only(), ALPN),
    )
    .await
    .unwrap()
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while ConnectionInfo::of(&connection).path != PathKind::Direct {
        assert!(tokio::time::Instant::now() < deadline, "never went direct");
        assert_eq!(round_trip(&connection, b"ping").await, b"ping");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A relay whose certificate is not trusted is never used: the endpoint does not come
/// online through it (certificates are always verified).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_relay_certificate_is_refused() {
    let (_relay, url, _root) = start_relay().await;
    let config = TransportConfig::local_only().with_relays([url]);
    let transport = Transport::bind(&identity(5), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    let online =
        tokio::time::timeout(Duration::from_secs(3), transport.home_relay_connected()).await;
    assert!(
        online.is_err(),
        "connected to a relay with an untrusted certificate"
    );
    assert_eq!(transport.home_relay(), None);
}

#[tokio::test]
async fn force_relay_without_relay_is_a_bind_error() {
    let mut config = TransportConfig::local_only();
    config.force_relay = true;
    let error = Transport::bind(&identity(6), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("force_relay"), "{error}");
}

async fn wait_home_relay(transport: &Transport, want: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let home = transport.home_relay();
        if home.as_ref().map(|h| h.as_str().trim_end_matches('/'))
            == Some(want.trim_end_matches('/'))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "home relay {home:?}, wanted {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An application's own policy: the last reachable relay in the list.
#[derive(Debug)]
struct LastReachable;

impl RelaySelector for LastReachable {
    fn choose(&self, candidates: &[RelayCandidate]) -> Option<usize> {
        candidates.iter().rposition(|c| c.latency.is_some())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_latency_relay_is_chosen_and_replaced_when_it_goes_away() {
    let (relay_a, url_a, root_a) = start_relay().await;
    let (relay_b, url_b, root_b) = start_relay().await;
    let config = TransportConfig::local_only()
        .with_relays([url_a.clone(), url_b.clone()])
        .with_relay_roots([root_a, root_b]);
    let server = Transport::bind(
        &identity(7),
        &config,
        vec![ALPN.to_vec()],
        Arc::new(AdmitAll),
    )
    .await
    .unwrap();
    tokio::spawn(echo_server(server.clone()));

    let measured = server.measure_relays().await;
    eprintln!("measured: {measured:?}");
    assert_eq!(measured.len(), 2);
    assert!(measured.iter().all(|c| c.latency.is_some()), "{measured:?}");
    let preferred = LowestLatency.choose(&measured).unwrap();

    let selection = {
        let server = server.clone();
        tokio::spawn(async move {
            server
                .select_relays(Arc::new(LowestLatency), Duration::from_secs(3600))
                .await;
        })
    };
    // Which relay measures lower on one machine is noise; the test follows the choice.
    let chosen = chosen_and_home(&server).await;
    let (stop, other) = if chosen == url_a.parse::<iroh::RelayUrl>().unwrap() {
        (relay_a, (url_b, relay_b))
    } else {
        (relay_b, (url_a, relay_a))
    };
    eprintln!(
        "lowest of the first measurement: {}; chosen and home: {chosen}",
        measured[preferred].url
    );
    let started = std::time::Instant::now();
    stop.shutdown().await.unwrap();
    wait_home_relay(&server, &other.0).await;
    assert_eq!(
        server.chosen_relay().map(|url| url.to_string()),
        Some(other.0.parse::<iroh::RelayUrl>().unwrap().to_string())
    );
    eprintln!(
        "home relay moved after the preferred one stopped: {:?}",
        started.elapsed()
    );

    // A peer that can only use relays reaches it through the remaining one.
    let mut forced = config.clone();
    forced.force_relay = true;
    forced.relay = tether_iroh::RelayConfig::Custom(vec![other.0.clone()]);
    let client = Transport::bind(&identity(8), &forced, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    let addr = server.addr();
    assert_eq!(
        addr.relay_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/')),
        Some(other.0.trim_end_matches('/'))
    );
    let connection = tokio::time::timeout(Duration::from_secs(20), client.connect(&addr, ALPN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        round_trip(&connection, b"after the switch").await,
        b"after the switch"
    );
    assert_eq!(ConnectionInfo::of(&connection).path, PathKind::Relayed);
    selection.abort();
    drop(other.1);
}

/// Waits until the selection has chosen a relay and the endpoint's home relay is that one.
async fn chosen_and_home(transport: &Transport) -> iroh::RelayUrl {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(chosen) = transport.chosen_relay() {
            wait_home_relay(transport, chosen.as_str()).await;
            return chosen;
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing chosen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_application_selector_decides_the_home_relay() {
    let (_relay_a, url_a, root_a) = start_relay().await;
    let (_relay_b, url_b, root_b) = start_relay().await;
    for (order, want) in [([&url_a, &url_b], &url_b), ([&url_b, &url_a], &url_a)] {
        let config = TransportConfig::local_only()
            .with_relays(order.map(|u| u.clone()))
            .with_relay_roots([root_a.clone(), root_b.clone()]);
        let transport = Transport::bind(&identity(9), &config, vec![], Arc::new(AdmitAll))
            .await
            .unwrap();
        let selection = {
            let transport = transport.clone();
            tokio::spawn(async move {
                transport
                    .select_relays(Arc::new(LastReachable), Duration::from_secs(3600))
                    .await;
            })
        };
        assert_eq!(
            chosen_and_home(&transport).await,
            want.parse::<iroh::RelayUrl>().unwrap()
        );
        selection.abort();
        transport.close().await;
    }
}

#[test]
fn lowest_latency_skips_unreachable_relays() {
    let candidate = |url: &str, ms: Option<u64>| RelayCandidate {
        url: url.parse().unwrap(),
        latency: ms.map(Duration::from_millis),
    };
    let candidates = [
        candidate("https://a", None),
        candidate("https://b", Some(40)),
        candidate("https://c", Some(12)),
        candidate("https://d", Some(90)),
    ];
    assert_eq!(LowestLatency.choose(&candidates), Some(2));
    assert_eq!(LowestLatency.choose(&candidates[..2]), Some(1));
    assert_eq!(LowestLatency.choose(&candidates[..1]), None);
    assert_eq!(LowestLatency.choose(&[]), None);
}
