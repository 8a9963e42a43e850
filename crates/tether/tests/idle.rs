//! Connection states and the idle rule: a connection without application traffic closes after
//! the idle timeout (keep-alive pings do not keep it open), neither side treats that as a
//! failure, the next message dials again, and a running transfer is never cut for being idle.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::common;

use std::time::Duration;

use common::{Lab, connected_to, next_event, pair_by_ticket};
use tether::{
    ConnectionState, DeviceState, LibraryAnnounce, NetworkEvent, NetworkMessage, NetworkingService,
    NodeId, TransferOptions,
};

/// Whether the registry recorded a normal close (not a timeout or an error).
fn is_normal_close(state: &DeviceState) -> bool {
    matches!(state, DeviceState::Disconnected { reason } if format!("{reason:?}") == "Closed")
}

fn announce() -> NetworkMessage {
    NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: Vec::new(),
    })
}

/// Two services found by ticket only; `idle` is the laptop's idle timeout, the phone never
/// closes for idleness, and both ping every 100 ms when the peer is silent.
async fn two(lab: &Lab, idle: Option<Duration>) -> (NetworkingService, NetworkingService) {
    let start = |name: &'static str, idle: Option<Duration>| {
        let mut config = lab.config(name).with_idle_timeout(idle);
        config.loopback_discovery = None;
        config.keepalive_interval = Duration::from_millis(100);
        NetworkingService::start(config)
    };
    let laptop = start("laptop", idle).await.unwrap();
    let phone = start("phone", None).await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    (laptop, phone)
}

fn idle_closed(node: NodeId, by_peer: bool) -> impl Fn(&NetworkEvent) -> bool {
    move |event| {
        matches!(event, NetworkEvent::IdleClosed { node_id, by_peer: b }
            if *node_id == node && *b == by_peer)
    }
}

fn state_of(node: NodeId, want: ConnectionState) -> impl Fn(&NetworkEvent) -> bool {
    move |event| {
        matches!(event, NetworkEvent::ConnectionStateChanged { node_id, state }
            if *node_id == node && *state == want)
    }
}

fn registry_state(service: &NetworkingService, node: NodeId) -> DeviceState {
    service
        .devices()
        .into_iter()
        .find(|d| d.node_id == node)
        .map(|d| d.state)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_closes_despite_keep_alive_and_the_next_send_reconnects() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Some(Duration::from_millis(600))).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();
    let to_laptop = phone.device(laptop.node_id()).unwrap();
    assert_eq!(to_laptop.connection_state(), ConnectionState::Closed);

    assert_eq!(
        to_laptop.send_message(announce()).await.unwrap(),
        NetworkMessage::Ack
    );
    next_event(
        &mut phone_events,
        state_of(laptop.node_id(), ConnectionState::Connecting),
    )
    .await;
    next_event(
        &mut phone_events,
        state_of(laptop.node_id(), ConnectionState::Connected),
    )
    .await;
    // The request has its answer: nothing uses the connection now. (Checked within a moment:
    // the first request rides on the link as it is made, and the link can be pooled a moment
    // after the answer came.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while to_laptop.connection_state() != ConnectionState::Idle {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {:?} 2 s after the answer",
            to_laptop.connection_state()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Keep-alive pings flow every 100 ms both ways (the phone's idle timeout is off), yet
    // the laptop closes the connection once nothing but pings crossed it for 600 ms.
    next_event(
        &mut laptop_events,
        state_of(phone.node_id(), ConnectionState::Closing),
    )
    .await;
    next_event(&mut laptop_events, idle_closed(phone.node_id(), false)).await;
    next_event(
        &mut laptop_events,
        state_of(phone.node_id(), ConnectionState::Closed),
    )
    .await;
    // The phone hears the idle close code: a normal close, not a dead peer.
    next_event(&mut phone_events, idle_closed(laptop.node_id(), true)).await;
    let NetworkEvent::Disconnected { reason, .. } = next_event(
        &mut phone_events,
        |e| matches!(e, NetworkEvent::Disconnected { node_id, .. } if *node_id == laptop.node_id()),
    )
    .await
    else {
        unreachable!()
    };
    assert!(reason.contains("idle"), "{reason}");
    assert!(!reason.contains("keep-alive"), "{reason}");
    next_event(
        &mut phone_events,
        state_of(laptop.node_id(), ConnectionState::Closed),
    )
    .await;
    assert!(
        is_normal_close(&registry_state(&phone, laptop.node_id())),
        "{:?}",
        registry_state(&phone, laptop.node_id())
    );
    assert!(
        is_normal_close(&registry_state(&laptop, phone.node_id())),
        "{:?}",
        registry_state(&laptop, phone.node_id())
    );
    assert_eq!(to_laptop.connection_state(), ConnectionState::Closed);
    assert!(phone.connection_info(laptop.node_id()).is_none());
    assert_eq!(phone.paired_devices().len(), 1, "still paired");

    // The next message dials again by itself.
    assert_eq!(
        to_laptop.send_message(announce()).await.unwrap(),
        NetworkMessage::Ack
    );
    next_event(&mut laptop_events, connected_to(phone.node_id())).await;
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_idle_timeout_the_connection_stays() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, None).await;
    let mut phone_events = phone.subscribe();
    let to_laptop = phone.device(laptop.node_id()).unwrap();
    to_laptop.ping().await.unwrap();
    // Many idle-timeout periods of the other test pass with pings only.
    let closed = common::event_within(&mut phone_events, Duration::from_secs(2), |e| {
        matches!(
            e,
            NetworkEvent::IdleClosed { .. } | NetworkEvent::Disconnected { .. }
        )
    })
    .await;
    assert!(closed.is_none(), "{closed:?}");
    assert_eq!(to_laptop.connection_state(), ConnectionState::Idle);
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_transfer_is_not_idle() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let idle = Some(Duration::from_millis(300));
    let mut config = lab.config("laptop").with_idle_timeout(idle);
    config.loopback_discovery = None;
    let laptop = NetworkingService::start(config).await.unwrap();
    let mut config = lab
        .config("phone")
        .with_idle_timeout(idle)
        .with_receive_dir(&inbox);
    config.loopback_discovery = None;
    let phone = NetworkingService::start(config).await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    phone.set_auto_accept(laptop.node_id(), true).unwrap();
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();

    // 3 MB at 1.5 MiB/s: about two seconds, many idle timeouts long, with no message sent.
    let source = lab.root.path().join("slow.bin");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &data).unwrap();
    let mut handle = laptop
        .share_with_device(
            phone.node_id(),
            std::slice::from_ref(&source),
            TransferOptions::default().rate_limit(Some(1_500_000)),
        )
        .await
        .unwrap();
    let mut saw_connected = false;
    while let Some(event) = handle.events.recv().await {
        if matches!(event, tether::TransferEvent::Progress(_)) && !saw_connected {
            assert_eq!(
                laptop.device(phone.node_id()).unwrap().connection_state(),
                ConnectionState::Connected,
                "a transfer uses the connection"
            );
            saw_connected = true;
        }
    }
    let report = handle.finish().await.unwrap();
    assert_eq!(report.bytes_verified, 3_000_000);
    assert!(saw_connected);
    // Neither side cut the connection while the transfer ran.
    for events in [&mut laptop_events, &mut phone_events] {
        while let Ok(event) = events.try_recv() {
            assert!(
                !matches!(
                    event,
                    NetworkEvent::IdleClosed { .. } | NetworkEvent::Disconnected { .. }
                ),
                "{event:?}"
            );
        }
    }
    assert_eq!(
        blake3::hash(&std::fs::read(inbox.join("slow.bin")).unwrap()),
        blake3::hash(&data)
    );
    // Once it is over, the connection is idle and goes.
    next_event(&mut laptop_events, |e| {
        matches!(e, NetworkEvent::IdleClosed { .. })
    })
    .await;
    laptop.shutdown().await;
    phone.shutdown().await;
}

const HOLD_ALPN: &[u8] = b"test/hold/1";

/// Keeps each connection until the client closes it.
#[derive(Debug)]
struct Hold;

#[tether::async_trait]
impl tether::NetworkProtocol for Hold {
    fn alpn(&self) -> &'static [u8] {
        HOLD_ALPN
    }

    async fn accept(
        &self,
        connection: tether::Connection,
        _peer: tether::PairedPeer,
    ) -> Result<(), tether::ProtocolError> {
        connection.closed().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_third_party_connection_keeps_the_device_in_use() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Some(Duration::from_millis(300))).await;
    laptop.register_protocol(Hold).unwrap();
    let mut laptop_events = laptop.subscribe();
    let to_laptop = phone.device(laptop.node_id()).unwrap();
    let held = phone
        .connect_protocol(laptop.node_id(), HOLD_ALPN)
        .await
        .unwrap();
    to_laptop.ping().await.unwrap();
    // The laptop sees the protocol's connection and counts the device as in use.
    let to_phone = laptop.device(phone.node_id()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while to_phone.connection_state() != ConnectionState::Connected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            to_phone.connection_state()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Several idle timeouts pass with only pings on the message link: it stays.
    let closed = common::event_within(&mut laptop_events, Duration::from_millis(1500), |e| {
        matches!(e, NetworkEvent::IdleClosed { .. })
    })
    .await;
    assert!(closed.is_none(), "{closed:?}");
    // Once the protocol's connection is gone, nothing uses the device: the link goes.
    held.close(0u32.into(), b"done");
    next_event(&mut laptop_events, idle_closed(phone.node_id(), false)).await;
    laptop.shutdown().await;
    phone.shutdown().await;
}
