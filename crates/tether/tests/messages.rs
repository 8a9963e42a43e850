//! Encrypted messages between two paired services: both ways with replies, events on the
//! receiving side, one pooled connection for many concurrent requests, and the figures
//! (pairing time, connect time, round trip) printed with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::print_stdout)]

use crate::common;

use std::time::{Duration, Instant};

use common::{
    Lab, connected_to, disconnected_from, event_within, next_event, pair, pair_by_ticket,
};
use tether::{Hlc, LibraryAnnounce, LibraryInfo, NetworkEvent, NetworkMessage, NodeId, Ping, Pong};

fn announce(name: &str) -> NetworkMessage {
    NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: vec![LibraryInfo {
            id: uuid_from(name),
            name: name.to_owned(),
            entry_count: 42,
            updated: Hlc::default(),
        }],
    })
}

fn uuid_from(name: &str) -> tether::Uuid {
    let mut bytes = [0u8; 16];
    for (byte, source) in bytes.iter_mut().zip(name.bytes()) {
        *byte = source;
    }
    tether::Uuid::from_bytes(bytes)
}

async fn received_from(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    sender: NodeId,
) -> NetworkMessage {
    match next_event(
        events,
        |e| matches!(e, NetworkEvent::MessageReceived { from, .. } if *from == sender),
    )
    .await
    {
        NetworkEvent::MessageReceived { message, .. } => message,
        other => unreachable!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_both_ways_arrive_as_events_and_are_acknowledged() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    pair(&laptop, &phone).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();

    let reply = phone
        .device(laptop.node_id())
        .unwrap()
        .send_message(announce("photos"))
        .await
        .unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    assert_eq!(
        received_from(&mut laptop_events, phone.node_id()).await,
        announce("photos")
    );

    let reply = laptop
        .device(phone.node_id())
        .unwrap()
        .send_message(announce("music"))
        .await
        .unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    assert_eq!(
        received_from(&mut phone_events, laptop.node_id()).await,
        announce("music")
    );

    // A ping is answered by the service itself, echoing the timestamp; no event.
    let reply = laptop
        .device(phone.node_id())
        .unwrap()
        .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 99 }))
        .await
        .unwrap();
    assert_eq!(reply, NetworkMessage::Pong(Pong { timestamp_ms: 99 }));

    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_messages_share_one_connection() {
    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    pair_by_ticket(&laptop, &phone).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();

    let device = phone.device(laptop.node_id()).unwrap();
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..20 {
        let device = device.clone();
        sends.spawn(async move { device.send_message(announce(&format!("lib{i}"))).await });
    }
    while let Some(reply) = sends.join_next().await {
        assert_eq!(reply.unwrap().unwrap(), NetworkMessage::Ack);
    }
    next_event(&mut phone_events, connected_to(laptop.node_id())).await;
    next_event(&mut laptop_events, connected_to(phone.node_id())).await;
    // One dial, one connection: no second `Connected` on either side.
    let again = event_within(
        &mut laptop_events,
        Duration::from_millis(100),
        connected_to(phone.node_id()),
    )
    .await;
    assert!(again.is_none(), "{again:?}");
    assert!(
        phone_events
            .try_recv()
            .map_or(true, |e| !connected_to(laptop.node_id())(&e))
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_dialling_at_once_keep_the_same_connection() {
    let lab = Lab::new();
    let start = |name: &'static str| {
        let mut config = lab.config(name);
        config.loopback_discovery = None;
        // The retired duplicate closes after this grace period.
        config.request_timeout = Duration::from_millis(300);
        tether::NetworkingService::start(config)
    };
    let laptop = start("laptop").await.unwrap();
    let phone = start("phone").await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();

    // Both send first, so both dial: two connections, one dialled by each side.
    let to_phone = laptop.device(phone.node_id()).unwrap();
    let to_laptop = phone.device(laptop.node_id()).unwrap();
    let (a, b) = tokio::join!(
        to_phone.send_message(announce("a")),
        to_laptop.send_message(announce("b"))
    );
    assert_eq!(a.unwrap(), NetworkMessage::Ack);
    assert_eq!(b.unwrap(), NetworkMessage::Ack);

    // Both devices retire the same one: had they kept different ones, both connections would
    // close after the grace period and each side would see its pooled link go.
    for (events, peer) in [
        (&mut laptop_events, phone.node_id()),
        (&mut phone_events, laptop.node_id()),
    ] {
        let lost = event_within(
            events,
            Duration::from_secs(1),
            |e| matches!(e, NetworkEvent::Disconnected { node_id, .. } if *node_id == peer),
        )
        .await;
        assert!(lost.is_none(), "{lost:?}");
    }
    assert_eq!(
        to_phone.send_message(announce("c")).await.unwrap(),
        NetworkMessage::Ack
    );
    assert_eq!(
        to_laptop.send_message(announce("d")).await.unwrap(),
        NetworkMessage::Ack
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}

const HANGS_ALPN: &[u8] = b"test/hangs-up/1";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Not a benchmark (debug build, both ends in one process on 2 cores): the order of magnitude
/// of what a user waits for. Run with `--nocapture` to see the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;

    let started = Instant::now();
    pair(&laptop, &phone).await;
    let pairing = started.elapsed();

    let device = phone.device(laptop.node_id()).unwrap();
    let started = Instant::now();
    device.ping().await.unwrap();
    let first = started.elapsed();

    let mut rtts = Vec::new();
    for _ in 0..50 {
        rtts.push(device.ping().await.unwrap());
    }
    let rtt = median(rtts);

    // Serves nothing: the figures only time the connect (QUIC + TLS + the gate).
    laptop
        .register_protocol(common::protocols::Idle(HANGS_ALPN))
        .unwrap();
    let mut connects = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let connection = phone
            .connect_protocol(laptop.node_id(), HANGS_ALPN)
            .await
            .unwrap();
        connects.push(started.elapsed());
        connection.close(0u32.into(), b"measured");
    }
    let connect = median(connects);

    println!(
        "figures: pairing by word code {pairing:?}; first message (connect + session \
         handshake + ping) {first:?}; ping round trip median {rtt:?}; connect on a \
         third-party ALPN median {connect:?}"
    );
    assert!(rtt < Duration::from_secs(1));
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_is_announced_before_the_first_message_on_the_connection() {
    let lab = Lab::new();
    // A short idle timeout: every round below gets a fresh connection.
    let mut config = lab
        .config("laptop")
        .with_idle_timeout(Some(Duration::from_millis(200)));
    config.loopback_discovery = None;
    let laptop = tether::NetworkingService::start(config).await.unwrap();
    let phone = lab.start_undiscovered("phone").await;
    pair_by_ticket(&laptop, &phone).await;
    for _ in 0..3 {
        let mut laptop_events = laptop.subscribe();
        let reply = phone
            .device(laptop.node_id())
            .unwrap()
            .send_message(announce("first"))
            .await
            .unwrap();
        assert_eq!(reply, NetworkMessage::Ack);
        // The laptop accepted the connection and got the message on it at once; an app that
        // waits for `Connected` before listening for messages must not miss it.
        let first = next_event(&mut laptop_events, |e| {
            matches!(
                e,
                NetworkEvent::Connected { .. } | NetworkEvent::MessageReceived { .. }
            )
        })
        .await;
        assert!(matches!(first, NetworkEvent::Connected { .. }), "{first:?}");
        next_event(&mut laptop_events, |e| {
            matches!(e, NetworkEvent::IdleClosed { .. })
        })
        .await;
    }
    laptop.shutdown().await;
    phone.shutdown().await;
}

/// A LibraryAnnounce of about 300 KB: many of them at once are more than the stream's flow
/// control lets through, so senders wait part-way through their frames.
fn big_announce(i: usize) -> NetworkMessage {
    NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: (0..1024u64)
            .map(|n| LibraryInfo {
                id: uuid_from(&format!("{i}-{n}")),
                name: "n".repeat(256),
                entry_count: n,
                updated: Hlc::default(),
            })
            .collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_given_up_mid_write_leave_the_connection_in_step() {
    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    pair_by_ticket(&laptop, &phone).await;
    let device = phone.device(laptop.node_id()).unwrap();
    device.ping().await.unwrap();
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();

    // 24 large requests at once (about 7 MB), each given up after a few milliseconds: some
    // are dropped before their frame starts, some half-way through it, some are answered.
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..24 {
        let device = device.clone();
        sends.spawn(async move {
            tokio::time::timeout(
                Duration::from_millis(1 + (i % 4) as u64),
                device.send_message(big_announce(i)),
            )
            .await
        });
    }
    let mut given_up = 0;
    while let Some(outcome) = sends.join_next().await {
        match outcome.unwrap() {
            Ok(reply) => assert_eq!(reply.unwrap(), NetworkMessage::Ack),
            Err(_) => given_up += 1,
        }
    }
    println!("{given_up} of 24 requests given up");

    // Every frame that reached the laptop opened, in order: the link is the same one and
    // still answers (a frame cut short or out of order would have closed it).
    for _ in 0..5 {
        device.ping().await.unwrap();
    }
    let reply = device.send_message(announce("after")).await.unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    for (events, peer) in [
        (&mut laptop_events, phone.node_id()),
        (&mut phone_events, laptop.node_id()),
    ] {
        let dropped =
            event_within(events, Duration::from_millis(200), disconnected_from(peer)).await;
        assert!(dropped.is_none(), "{dropped:?}");
    }
    laptop.shutdown().await;
    phone.shutdown().await;
}
