//! The doctor's facts from the transport, all on loopback: the port mapper is off in the
//! local-only configuration, the NAT type comes from iroh's net report (two relays on
//! 127.0.0.2 and 127.0.0.3 answering QUIC address discovery), and multicast on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::NetworkIdentity;
use tether_iroh::{
    AdmitAll, Interfaces, MulticastOutcome, NatType, PortMapping, Transport, TransportConfig,
    TrustedRoot, check_multicast, mdns_can_work,
};

fn identity(seed: u64) -> NetworkIdentity {
    NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_only_builds_the_endpoint_without_the_port_mapper() {
    // Asked for a port mapping and every interface, the local-only rules still win.
    let config = TransportConfig {
        local_only: true,
        port_mapping: true,
        bind_addr: "0.0.0.0:0".parse().unwrap(),
        ..TransportConfig::default()
    };
    assert!(TransportConfig::default().port_mapping);
    assert!(!TransportConfig::local_only().port_mapping);
    let transport = Transport::bind(&identity(1), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    assert!(!transport.config().port_mapping);
    assert_eq!(transport.port_mapping(), PortMapping::Off);
    // Off means the gateway is not even asked.
    assert!(
        transport
            .probe_gateway(Duration::from_secs(1))
            .await
            .is_none()
    );
    // No relay: nobody to ask for the public address.
    assert_eq!(transport.nat_status().nat_type, NatType::Unknown);
    transport.close().await;
}

/// A relay on `ip` (HTTPS on a random port, QUIC address discovery on 7842, where clients
/// look for it) with a self-signed certificate for that address.
async fn relay_on(ip: Ipv4Addr) -> (Server, String, TrustedRoot) {
    let cert = rcgen::generate_simple_self_signed(vec![ip.to_string()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .unwrap();
    let mut relay = RelayConfig::new((ip, 0));
    relay.tls = Some(TlsConfig::new(
        (ip, 0),
        CertConfig::Manual {
            server_config: server_config.clone(),
        },
    ));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    let mut quic = QuicConfig::new((IpAddr::V4(ip), 7842));
    quic.server_config = Some(server_config);
    config.quic = Some(quic);
    let server = Server::spawn(config).await.unwrap();
    let url = format!("https://{}", server.https_addr().unwrap());
    (server, url, TrustedRoot::from_der(cert.cert.der().to_vec()))
}

async fn nat_type_with(relays: &[(Server, String, TrustedRoot)]) -> (NatType, Vec<String>) {
    let config = TransportConfig::local_only()
        .with_relays(relays.iter().map(|r| r.1.clone()))
        .with_relay_roots(relays.iter().map(|r| r.2.clone()));
    let transport = Transport::bind(&identity(2), &config, vec![], Arc::new(AdmitAll))
        .await
        .unwrap();
    let mut status = transport.nat_status();
    for _ in 0..100 {
        if status.nat_type != NatType::Unknown {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        status = transport.nat_status();
    }
    transport.close().await;
    let public = status
        .public_addrs
        .iter()
        .map(ToString::to_string)
        .collect();
    (status.nat_type, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_type_needs_two_relays_and_is_endpoint_independent_on_loopback() {
    let first = relay_on(Ipv4Addr::new(127, 0, 0, 2)).await;
    let second = relay_on(Ipv4Addr::new(127, 0, 0, 3)).await;
    let relays = [first, second];

    let (one, public) = nat_type_with(&relays[..1]).await;
    assert_eq!(one, NatType::OneServer, "{public:?}");
    assert!(
        public.iter().all(|a| a.starts_with("127.0.0.1:")),
        "{public:?}"
    );

    // No NAT on loopback: both relays see the same address.
    let (two, public) = nat_type_with(&relays).await;
    assert_eq!(two, NatType::EndpointIndependent, "{public:?}");
}

#[test]
fn multicast_on_loopback_only_checks_loopback_and_never_counts_it_for_mdns() {
    let checks = check_multicast(Interfaces::LoopbackOnly, Duration::from_millis(300));
    assert!(!checks.is_empty());
    assert!(checks.iter().all(|c| c.loopback), "{checks:?}");
    let lo = checks
        .iter()
        .find(|c| c.addr == Ipv4Addr::LOCALHOST)
        .unwrap();
    // Joining the group on 127.0.0.1 works wherever IPv4 does.
    assert!(
        !matches!(lo.outcome, MulticastOutcome::JoinFailed(_)),
        "{checks:?}"
    );
    // Loopback is no LAN: mDNS cannot find devices through it, whatever the check said.
    assert!(!mdns_can_work(&checks), "{checks:?}");
}
