//! Five real local-only services (127.0.0.1, no relays, no mDNS), paired with each other,
//! on one topic: delivery to all, order per sender, a device restarted mid-stream catching up
//! from history, a revoked device dropped at once; and a stranger refused on the ALPN.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tether::{Builder, DeviceName, NetworkingConfig, NetworkingService, NodeId};
use tether_channels::{CHANNEL_ALPN, ChannelEvent, Channels, Subscription};

const TOPIC: &str = "kitchen";

struct Lab {
    root: tempfile::TempDir,
    started: Instant,
}

struct Device {
    name: &'static str,
    service: NetworkingService,
    channels: Channels,
}

impl Lab {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
            started: Instant::now(),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    async fn start(&self, name: &'static str) -> Device {
        let mut config = NetworkingConfig::local_only(self.dir(name))
            .with_device_name(DeviceName::new(name).unwrap())
            .with_loopback_discovery(self.root.path().join("discovery"))
            .with_insecure_key_file();
        config.discovery_timeout = Duration::from_secs(5);
        let channels = Channels::open(&self.dir(name).join("channels")).unwrap();
        let service = Builder::from_config(config)
            .protocol(channels.clone())
            .spawn()
            .await
            .unwrap();
        Device {
            name,
            service,
            channels,
        }
    }

    fn log(&self, what: &str) {
        println!("[{:>6.2} s] {what}", self.started.elapsed().as_secs_f64());
    }
}

async fn pair(initiator: &NetworkingService, joiner: &NetworkingService) {
    let mut invite = initiator.start_pairing_with_ticket().unwrap();
    joiner.join_pairing(&invite.code).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap()
        .unwrap();
}

/// Waits (at most 10 s) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "not within 10 s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The messages a subscription heard, per sender, in order; the presence events too.
#[derive(Default)]
struct Heard {
    messages: HashMap<NodeId, Vec<String>>,
    left: Vec<NodeId>,
}

impl Heard {
    fn count(&self) -> usize {
        self.messages.values().map(Vec::len).sum()
    }
}

/// Reads `subscription` until `want` messages came (at most 10 s), then for `linger` more.
async fn hear(subscription: &mut Subscription, want: usize, linger: Duration) -> Heard {
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let until = if heard.count() >= want {
            tokio::time::Instant::now() + linger
        } else {
            deadline
        };
        let Ok(event) = tokio::time::timeout_at(until, subscription.next()).await else {
            break;
        };
        match event.expect("the subscription ended") {
            ChannelEvent::Message(message) => heard
                .messages
                .entry(message.sender)
                .or_default()
                .push(String::from_utf8(message.body).unwrap()),
            ChannelEvent::Left { device } => heard.left.push(device),
            ChannelEvent::Gap {
                sender,
                first,
                last,
            } => {
                panic!("a gap from {sender}: {first}..={last}")
            }
            _ => {}
        }
        if heard.count() >= want && linger.is_zero() {
            break;
        }
    }
    heard
}

fn texts(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_devices_share_a_topic() {
    let lab = Lab::new();
    let mut devices = Vec::new();
    for name in ["ann", "bob", "cat", "dan", "eve"] {
        devices.push(lab.start(name).await);
    }
    for i in 0..devices.len() {
        for j in i + 1..devices.len() {
            pair(&devices[i].service, &devices[j].service).await;
        }
    }
    lab.log("5 devices up, 10 pairings done");
    let mut subs = Vec::new();
    for device in &devices {
        device.channels.attach(&device.service);
        subs.push(device.channels.subscribe(TOPIC).unwrap());
    }
    for (i, device) in devices.iter().enumerate() {
        until("everyone sees the other four subscribed", || {
            subs[i].present().len() == 4
        })
        .await;
        lab.log(&format!("{} sees 4 others on {TOPIC:?}", device.name));
    }

    // Delivery to all, once, in order per sender: each publishes 5, interleaved.
    for round in 0..5 {
        for (i, device) in devices.iter().enumerate() {
            subs[i].publish(format!("{}{round}", device.name)).unwrap();
        }
    }
    for (i, device) in devices.iter().enumerate() {
        let heard = hear(&mut subs[i], 20, Duration::from_millis(200)).await;
        assert_eq!(heard.count(), 20, "{} heard {}", device.name, heard.count());
        for other in devices.iter().filter(|d| d.name != device.name) {
            assert_eq!(
                heard.messages[&other.service.node_id()],
                texts(other.name, 0..5),
                "{} from {}",
                device.name,
                other.name
            );
        }
        lab.log(&format!(
            "{} got 20 messages, 5 from each, in order, none twice",
            device.name
        ));
    }

    // Dan restarts mid-stream: he has ann3x0..2, misses ann3x3..5 and bob's two.
    for k in 0..3 {
        subs[0].publish(format!("ann3x{k}")).unwrap();
    }
    let heard = hear(&mut subs[3], 3, Duration::ZERO).await;
    assert_eq!(
        heard.messages[&devices[0].service.node_id()],
        texts("ann3x", 0..3)
    );
    let dan = devices.remove(3);
    let dan_id = dan.service.node_id();
    drop(subs.remove(3));
    dan.service.shutdown().await;
    drop(dan);
    lab.log("dan shut down after ann3x0..2");
    for k in 3..6 {
        subs[0].publish(format!("ann3x{k}")).unwrap();
    }
    subs[1].publish("bob-while-dan-was-away-0").unwrap();
    subs[1].publish("bob-while-dan-was-away-1").unwrap();
    let dan = lab.start("dan").await;
    assert_eq!(dan.service.node_id(), dan_id);
    dan.channels.attach(&dan.service);
    let mut dan_sub = dan.channels.subscribe(TOPIC).unwrap();
    let heard = hear(&mut dan_sub, 5, Duration::from_millis(500)).await;
    assert_eq!(heard.count(), 5, "dan caught up with {:?}", heard.messages);
    assert_eq!(
        heard.messages[&devices[0].service.node_id()],
        texts("ann3x", 3..6)
    );
    assert_eq!(
        heard.messages[&devices[1].service.node_id()],
        texts("bob-while-dan-was-away-", 0..2)
    );
    lab.log("dan restarted on the same data dir and caught up: exactly the 5 he missed");
    devices.insert(3, dan);
    subs.insert(3, dan_sub);
    // The others heard it all live: ann bob's two, bob ann's six, cat and eve all eight.
    for (i, want) in [(0, 2), (1, 6), (2, 8), (4, 8)] {
        let heard = hear(&mut subs[i], want, Duration::from_millis(50)).await;
        assert_eq!(heard.count(), want, "{}", devices[i].name);
    }

    // Eve is revoked: every other device unpairs her.
    let eve_id = devices[4].service.node_id();
    let revoked = Instant::now();
    for device in &devices[..4] {
        device.service.unpair(eve_id).unwrap();
    }
    until("eve gone from every topic", || {
        subs[..4].iter().all(|sub| !sub.present().contains(&eve_id))
    })
    .await;
    lab.log(&format!(
        "eve dropped from the topic on all 4 within {} ms",
        revoked.elapsed().as_millis()
    ));
    for i in 0..4 {
        let heard = hear(&mut subs[i], 0, Duration::from_millis(20)).await;
        assert!(heard.left.contains(&eve_id), "{}", devices[i].name);
    }
    subs[0].publish("after-eve").unwrap();
    let heard = hear(&mut subs[4], 0, Duration::from_millis(500)).await;
    assert_eq!(heard.count(), 0, "eve heard {:?}", heard.messages);
    assert!(subs[4].present().is_empty());
    lab.log("eve got nothing published after her revocation");

    // Eve still has ann paired; ann's gate refuses her on the channel ALPN.
    let refused = devices[4]
        .service
        .connect_protocol(devices[0].service.node_id(), CHANNEL_ALPN)
        .await;
    // `connect_protocol` opens the link first, so the gate's refusal comes on it.
    let code = match refused {
        Err(tether::NetworkError::Refused { code, .. }) => code,
        Err(error) => panic!("eve's dial failed before ann's gate: {error}"),
        Ok(connection) => {
            let reason = connection.closed().await;
            match reason {
                iroh::endpoint::ConnectionError::ApplicationClosed(close) => {
                    u32::try_from(close.error_code.into_inner()).unwrap()
                }
                other => panic!("not closed by ann's gate: {other:?}"),
            }
        }
    };
    assert_eq!(code, tether::gate::CLOSE_REVOKED);
    lab.log("eve's channel connection to ann: closed by the gate (revoked)");

    // A stranger (never paired) is closed by the gate on the channel ALPN.
    let stranger = stranger_endpoint().await;
    let connection = stranger
        .connect(iroh_addr(&devices[0].service), CHANNEL_ALPN)
        .await
        .unwrap();
    // It may already be closed; if not, it tries to speak.
    if let Ok((mut send, _recv)) = connection.open_bi().await {
        let hello = tether_channels::wire::Frame::Hello { version: 1 };
        let _ = send.write_all(&hello.encode()).await;
    }
    let close = connection.closed().await;
    match close {
        iroh::endpoint::ConnectionError::ApplicationClosed(close) => {
            assert_eq!(
                u32::try_from(close.error_code.into_inner()).unwrap(),
                tether::gate::CLOSE_NOT_PAIRED
            );
        }
        other => panic!("not closed by the gate: {other:?}"),
    }
    assert_eq!(subs[0].present().len(), 3);
    lab.log("a stranger on the channel ALPN: closed by the gate (not paired)");

    drop(subs);
    for device in devices {
        device.service.shutdown().await;
    }
    stranger.close().await;
    lab.log("done");
}

async fn stranger_endpoint() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap()
}

fn iroh_addr(service: &NetworkingService) -> iroh::EndpointAddr {
    let addr = service.addr();
    let id = iroh::EndpointId::from_bytes(addr.node_id.as_bytes()).unwrap();
    let direct = *addr.direct.first().unwrap();
    iroh::EndpointAddr::new(id).with_ip_addr(direct)
}
