//! Global discovery against a real `iroh-dns-server` (pkarr relay + DNS) the test starts on
//! 127.0.0.1: two paired devices with no LAN discovery and no loopback discovery find each
//! other again by node id alone after one restarts on a new port. The time to re-find is
//! printed with `--nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::time::{Duration, Instant};

use common::dns::start_dns_server;
use common::{Lab, pair_by_ticket};
use tether::{GlobalDiscoveryConfig, NetworkMessage, NetworkingConfig, NetworkingService, Ping};

fn global_only(lab: &Lab, name: &str, global: &GlobalDiscoveryConfig) -> NetworkingConfig {
    let mut config = lab.config(name);
    config.loopback_discovery = None;
    config.transport.global_discovery = Some(global.clone());
    config
}

async fn ping(
    from: &NetworkingService,
    to: &NetworkingService,
) -> Result<(), tether::NetworkError> {
    let reply = from
        .device(to.node_id())
        .unwrap()
        .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 1 }))
        .await?;
    assert!(matches!(reply, NetworkMessage::Pong(_)), "{reply:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paired_devices_refind_each_other_by_node_id_after_a_restart() {
    let lab = Lab::new();
    let (_dns, global) = start_dns_server(&lab.root.path().join("dns")).await;

    let desk = NetworkingService::start(global_only(&lab, "desk", &global))
        .await
        .unwrap();
    let phone = NetworkingService::start(global_only(&lab, "phone", &global))
        .await
        .unwrap();
    pair_by_ticket(&desk, &phone).await;
    ping(&phone, &desk).await.unwrap();

    // The desk goes away and comes back on another port; nothing but DNS says where.
    let old = desk.addr();
    desk.shutdown().await;
    drop(desk);
    let desk = NetworkingService::start(global_only(&lab, "desk", &global))
        .await
        .unwrap();
    let new = desk.addr();
    assert_eq!(old.node_id, new.node_id);
    assert_ne!(old.direct, new.direct, "the restart kept the port");

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    loop {
        match ping(&phone, &desk).await {
            Ok(()) => break,
            Err(error) => assert!(Instant::now() < deadline, "never re-found: {error}"),
        }
    }
    eprintln!(
        "phone re-found the restarted desk through DNS in {:?}",
        started.elapsed()
    );
    // And the other way: the restarted desk finds the phone by node id.
    let started = Instant::now();
    ping(&desk, &phone).await.unwrap();
    eprintln!("desk reached the phone in {:?}", started.elapsed());
    desk.shutdown().await;
    phone.shutdown().await;
}

/// Pairing by word code with no LAN in common: the initiator's rendezvous record on the DNS
/// server (under a key derived from the public slot only) leads the joiner to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_by_word_code_through_the_global_rendezvous() {
    let lab = Lab::new();
    let (_dns, global) = start_dns_server(&lab.root.path().join("dns")).await;
    let desk = NetworkingService::start(global_only(&lab, "desk", &global))
        .await
        .unwrap();
    let phone = NetworkingService::start(global_only(&lab, "phone", &global))
        .await
        .unwrap();
    let started = Instant::now();
    common::pair(&desk, &phone).await;
    eprintln!(
        "paired by word code through the rendezvous in {:?}",
        started.elapsed()
    );
    ping(&phone, &desk).await.unwrap();
    desk.shutdown().await;
    phone.shutdown().await;
}

/// A cancelled code's rendezvous record is withdrawn: a joiner then finds no device for the
/// slot (and the code's secret words were never given to the discovery at all: `announce`
/// receives only the public slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_code_is_withdrawn_from_the_rendezvous() {
    let lab = Lab::new();
    let (_dns, global) = start_dns_server(&lab.root.path().join("dns")).await;
    let desk = NetworkingService::start(global_only(&lab, "desk", &global))
        .await
        .unwrap();
    let phone = NetworkingService::start(global_only(&lab, "phone", &global))
        .await
        .unwrap();
    let invite = desk.start_pairing_as_initiator().unwrap();
    desk.cancel_pairing();
    // Generous: the withdrawal is one HTTP PUT on loopback.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let error = phone.join_pairing(&invite.code).await.unwrap_err();
    assert!(
        matches!(error, tether::NetworkError::NoPairingPeer { .. }),
        "{error:?}"
    );
    desk.shutdown().await;
    phone.shutdown().await;
}
