//! mDNS between two real services, each in a network namespace of the test's own (two
//! namespaces joined by a veth pair, multicast on): pairing by word code found through mDNS
//! alone (no ticket, no address, no loopback discovery), reconnection by mDNS after both
//! restart, and what exactly is broadcast while a code waits.
//!
//! Each `#[test]` here makes the namespaces and re-runs this binary inside them, once per
//! device, selecting an `#[ignore]`d `child_*` test; the children share a temporary directory
//! (the code, the node ids, their results). Only the children, inside the namespaces, turn
//! mDNS on: nothing multicasts on the host's interfaces. Without root (or `ip`) the tests say
//! so and skip. Run with `--nocapture` to see the figures.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use crate::common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::netns::{Netns, Side, child_dir, publish};
use tether::{
    DeviceName, Hlc, LibraryAnnounce, LibraryInfo, NetworkEvent, NetworkMessage, NetworkingConfig,
    NetworkingService, NodeId, RelayConfig,
};
use tokio::sync::broadcast;

/// How long a child may take: generous, since several test binaries share two cores.
const CHILD_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a child waits for an event or a file from the other.
const STEP: Duration = Duration::from_secs(60);

// ---- the tests (parents) ----

#[test]
fn pair_by_word_code_found_through_mdns_then_message_both_ways() {
    let Some((netns, dir)) = lab("pair_by_word_code_found_through_mdns_then_message_both_ways")
    else {
        return;
    };
    pair_in(&netns, dir.path());

    let laptop = results(dir.path(), "laptop");
    let phone = results(dir.path(), "phone");
    assert_eq!(laptop["paired_with"], phone["node_id"]);
    assert_eq!(phone["paired_with"], laptop["node_id"]);
    assert_eq!(laptop["verification_code"], phone["verification_code"]);
    assert_eq!(phone["found_by"], "mdns");
    assert_eq!(laptop["got"], "from phone");
    assert_eq!(phone["got"], "from laptop");
    assert_eq!(phone["path"], "Direct");
    // The connection runs over the veth pair, not loopback.
    assert!(
        phone["remote"].contains(&Netns::addr(Side::A).to_string()),
        "{}",
        phone["remote"]
    );
    println!(
        "mDNS pairing (namespaces, veth): joiner start to paired {} ms, of which join_pairing {} ms; \
         ping round trip {} µs; path {} via {}",
        phone["start_to_paired_ms"],
        phone["join_ms"],
        phone["rtt_us"],
        phone["path"],
        phone["remote"]
    );
}

#[test]
fn after_pairing_both_restarted_find_each_other_by_mdns_and_reconnect() {
    let Some((netns, dir)) =
        lab("after_pairing_both_restarted_find_each_other_by_mdns_and_reconnect")
    else {
        return;
    };
    pair_in(&netns, dir.path());
    let before = (results(dir.path(), "laptop"), results(dir.path(), "phone"));

    // New processes, same data directories, new random ports: only mDNS can bring them
    // together (the addresses stored at pairing time are stale).
    let a = netns.spawn_test(
        Side::A,
        "mdns::child_restarted_laptop",
        dir.path(),
        "laptop-restarted",
    );
    let b = netns.spawn_test(
        Side::B,
        "mdns::child_restarted_phone",
        dir.path(),
        "phone-restarted",
    );
    finish(
        &netns,
        dir.path(),
        &[(a, "laptop-restarted"), (b, "phone-restarted")],
    );

    let laptop = results(dir.path(), "laptop-restarted");
    let phone = results(dir.path(), "phone-restarted");
    assert_eq!(laptop["node_id"], before.0["node_id"]);
    assert_eq!(phone["node_id"], before.1["node_id"]);
    for (me, peer) in [(&laptop, &before.1), (&phone, &before.0)] {
        assert_eq!(me["still_paired_with"], peer["node_id"]);
        assert_eq!(me["found_by"], "mdns");
        assert_eq!(me["path"], "Direct");
    }
    assert_eq!(laptop["got"], "from phone-restarted");
    assert_eq!(phone["got"], "from laptop-restarted");
    println!(
        "restart: both found again by mDNS and reconnected {} ms (laptop) / {} ms (phone) after start; \
         ping {} µs",
        laptop["start_to_connected_ms"], phone["start_to_connected_ms"], phone["rtt_us"]
    );
}

#[test]
fn only_the_public_slot_is_broadcast_while_a_code_waits() {
    let Some((netns, dir)) = lab("only_the_public_slot_is_broadcast_while_a_code_waits") else {
        return;
    };
    let a = netns.spawn_test(Side::A, "mdns::child_show_code", dir.path(), "laptop");
    let b = netns.spawn_test(Side::B, "mdns::child_observe_mdns", dir.path(), "observer");
    finish(&netns, dir.path(), &[(a, "laptop"), (b, "observer")]);

    let laptop = results(dir.path(), "laptop");
    let code = &laptop["code"];
    let words: Vec<&str> = code.split('-').collect();
    assert_eq!(words.len(), 4, "{code}");
    let (slot, secret) = (words[0], &words[1..]);

    // Everything the observer's mDNS discovery reported about the laptop, one line each.
    let seen = std::fs::read_to_string(dir.path().join("observer.seen")).unwrap();
    let user_data: Vec<&str> = seen
        .lines()
        .filter_map(|line| line.strip_prefix("user_data="))
        .collect();
    assert!(
        user_data.contains(&format!("tether-pair={slot}").as_str()),
        "the slot was never seen: {seen}"
    );
    for data in &user_data {
        assert!(
            *data == "none" || *data == format!("tether-pair={slot}"),
            "unexpected user data {data:?}: only the slot may be announced"
        );
    }
    let lowered = seen.to_lowercase();
    for word in secret {
        assert!(
            !lowered.contains(&word.to_lowercase()),
            "a secret word ({word}) appeared in what mDNS announced: {seen}"
        );
    }
    // Once the code is cancelled, the slot is withdrawn.
    assert_eq!(user_data.last(), Some(&"none"), "{seen}");
    // The device's public record (global discovery) never carries the slot.
    let global = results(dir.path(), "global");
    let published = &global["user_data"];
    assert!(
        !published.is_empty(),
        "the laptop's public record was never found"
    );
    assert!(
        !published.contains("tether-pair"),
        "the slot reached the global publisher: {published}"
    );
    println!(
        "mDNS announcements of the laptop seen by another device: user data {user_data:?} \
         (code {slot}-…, then cancelled); none of the 3 secret words in any record"
    );
}

// ---- the children (run inside a namespace by the tests above) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_pair_initiator() {
    let Some(dir) = child_dir() else { return };
    init_tracing();
    let laptop = NetworkingService::start(lan_config(&dir, "laptop"))
        .await
        .unwrap();
    let mut events = laptop.subscribe();
    let mut invite = laptop.start_pairing_as_initiator().unwrap();
    publish(&dir.join("code"), &invite.code);
    publish(&dir.join("laptop.id"), &laptop.node_id().to_string());

    let paired = tokio::time::timeout(STEP, invite.paired())
        .await
        .expect("nobody joined within the step time")
        .unwrap();
    let phone = paired.device.public_key;
    let got = message_from(&mut events, phone).await;
    let reply = laptop
        .device(phone)
        .unwrap()
        .send_message(announce("from laptop"))
        .await
        .unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    wait_for_file(&dir.join("phone.done")).await;

    write_results(
        &dir,
        "laptop",
        &[
            ("node_id", laptop.node_id().to_string()),
            ("paired_with", phone.to_string()),
            ("verification_code", paired.verification_code.clone()),
            ("got", got),
        ],
    );
    laptop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_pair_joiner() {
    let Some(dir) = child_dir() else { return };
    init_tracing();
    let code = wait_for_file(&dir.join("code")).await;

    // The phone starts only now, cold: the time to paired includes finding the code's slot.
    let started = Instant::now();
    let phone = NetworkingService::start(lan_config(&dir, "phone"))
        .await
        .unwrap();
    publish(&dir.join("phone.id"), &phone.node_id().to_string());
    let mut events = phone.subscribe();
    let called = Instant::now();
    let paired = phone.join_pairing(&code).await.unwrap();
    let join_time = called.elapsed();
    let start_to_paired = started.elapsed();
    let laptop = paired.device.public_key;
    let found_by = discovered_by(&mut events, laptop);

    let device = phone.device(laptop).unwrap();
    let reply = device.send_message(announce("from phone")).await.unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    let got = message_from(&mut events, laptop).await;
    let rtt = device.ping().await.unwrap();
    let info = phone.connection_info(laptop).unwrap();

    write_results(
        &dir,
        "phone",
        &[
            ("node_id", phone.node_id().to_string()),
            ("paired_with", laptop.to_string()),
            ("verification_code", paired.verification_code.clone()),
            ("found_by", found_by),
            ("got", got),
            ("join_ms", millis(join_time)),
            ("start_to_paired_ms", millis(start_to_paired)),
            ("rtt_us", rtt.as_micros().to_string()),
            ("path", format!("{:?}", info.path)),
            ("remote", info.remote.unwrap_or_default()),
        ],
    );
    publish(&dir.join("phone.done"), "done");
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_restarted_laptop() {
    let Some(dir) = child_dir() else { return };
    restarted(&dir, "laptop", "phone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_restarted_phone() {
    let Some(dir) = child_dir() else { return };
    restarted(&dir, "phone", "laptop").await;
}

/// A device that paired in an earlier process starts again and waits until mDNS found its
/// peer and the service reconnected on its own; then they message both ways.
async fn restarted(dir: &Path, me: &str, peer: &str) {
    init_tracing();
    let peer_id: NodeId = std::fs::read_to_string(dir.join(format!("{peer}.id")))
        .unwrap()
        .parse()
        .unwrap();
    let started = Instant::now();
    let service = NetworkingService::start(lan_config(dir, me)).await.unwrap();
    let mut events = service.subscribe();
    let paired: Vec<NodeId> = service.paired_devices().iter().map(|d| d.node_id).collect();
    assert_eq!(
        paired,
        vec![peer_id],
        "the pairing did not survive the restart"
    );

    // Nothing is sent: the service reconnects by itself once mDNS reports the peer. The
    // peer may get there first and send its message before this side's own mDNS reports it.
    let mut found_by = None;
    let mut connected = false;
    let mut got = None;
    tokio::time::timeout(STEP, async {
        while found_by.is_none() || !connected {
            match events.recv().await {
                Ok(NetworkEvent::DeviceDiscovered { node_id, source }) if node_id == peer_id => {
                    found_by = Some(source);
                }
                Ok(NetworkEvent::Connected { node_id, .. }) if node_id == peer_id => {
                    connected = true;
                }
                Ok(NetworkEvent::MessageReceived {
                    from,
                    message: NetworkMessage::LibraryAnnounce(announce),
                }) if from == peer_id => {
                    got = Some(announce.libraries[0].name.clone());
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the service stopped"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!("{me}: no reconnection (found by {found_by:?}, connected {connected})")
    });
    let start_to_connected = started.elapsed();

    let device = service.device(peer_id).unwrap();
    let reply = device
        .send_message(announce(&format!("from {me}-restarted")))
        .await
        .unwrap();
    assert_eq!(reply, NetworkMessage::Ack);
    let got = match got {
        Some(got) => got,
        None => message_from(&mut events, peer_id).await,
    };
    let rtt = device.ping().await.unwrap();
    let info = service.connection_info(peer_id).unwrap();

    write_results(
        dir,
        &format!("{me}-restarted"),
        &[
            ("node_id", service.node_id().to_string()),
            ("still_paired_with", peer_id.to_string()),
            ("found_by", found_by.unwrap_or_default().to_owned()),
            ("got", got),
            ("start_to_connected_ms", millis(start_to_connected)),
            ("rtt_us", rtt.as_micros().to_string()),
            ("path", format!("{:?}", info.path)),
        ],
    );
    publish(&dir.join(format!("{me}-restarted.done")), "done");
    wait_for_file(&dir.join(format!("{peer}-restarted.done"))).await;
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_show_code() {
    let Some(dir) = child_dir() else { return };
    init_tracing();
    // Global discovery too, against a DNS server of the test's own inside the namespace: the
    // slot must stay on the LAN, out of the device's public record.
    let (_dns, global) = common::dns::start_dns_server(&dir.join("dns")).await;
    let mut config = lan_config(&dir, "laptop");
    config.transport.global_discovery = Some(global.clone());
    let laptop = NetworkingService::start(config).await.unwrap();
    let invite = laptop.start_pairing_as_initiator().unwrap();
    publish(&dir.join("laptop.id"), &laptop.node_id().to_string());
    write_results(
        &dir,
        "laptop",
        &[
            ("node_id", laptop.node_id().to_string()),
            ("code", invite.code.clone()),
        ],
    );
    // Show the code until the observer has seen its slot, then read the laptop's public
    // record (published again whenever its data changes) and cancel the code.
    wait_for_file(&dir.join("observer.slot")).await;
    let resolver = iroh::dns::DnsResolver::with_nameserver(global.nameserver.unwrap());
    let id = iroh::EndpointId::from_bytes(laptop.node_id().as_bytes()).unwrap();
    let mut published = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        resolver.clear_cache();
        if let Ok(info) = resolver
            .lookup_endpoint_by_id(&id, common::dns::ORIGIN)
            .await
        {
            let data = info
                .data
                .user_data()
                .map_or_else(|| "none".to_owned(), |d| d.as_ref().to_owned());
            published.push(data);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    write_results(&dir, "global", &[("user_data", published.join(" "))]);
    laptop.cancel_pairing();
    drop(invite);
    wait_for_file(&dir.join("observer.done")).await;
    laptop.shutdown().await;
}

/// A bare mDNS listener (iroh's own address lookup, not announcing itself) that records
/// everything the laptop's announcements carry, as another device on the LAN sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child: runs inside a network namespace made by an mDNS test"]
async fn child_observe_mdns() {
    use iroh_mdns_address_lookup::{DiscoveryEvent, MdnsAddressLookup};
    use n0_future::StreamExt;

    let Some(dir) = child_dir() else { return };
    init_tracing();
    let me = iroh::SecretKey::from_bytes(&[7; 32]).public();
    let mdns = MdnsAddressLookup::builder()
        .service_name("tether")
        .advertise(false)
        .build(me)
        .unwrap();
    let mut stream = mdns.subscribe().await;
    let laptop = wait_for_file(&dir.join("laptop.id")).await;

    let mut seen = Vec::new();
    let mut slot_seen = false;
    let _ = tokio::time::timeout(STEP, async {
        // Until the slot shows up, and then until it is withdrawn (the code was cancelled).
        while let Some(event) = stream.next().await {
            let DiscoveryEvent::Discovered { endpoint_info, .. } = event else {
                continue;
            };
            let id = NodeId::from_bytes(endpoint_info.endpoint_id.as_bytes()).unwrap();
            if id.to_string() != laptop {
                continue;
            }
            let data = endpoint_info
                .data
                .user_data()
                .map_or_else(|| "none".to_owned(), |d| d.as_ref().to_owned());
            seen.push(format!("user_data={data}"));
            seen.push(format!("record={endpoint_info:?}"));
            if data != "none" && !slot_seen {
                slot_seen = true;
                publish(&dir.join("observer.slot"), "seen");
            } else if data == "none" && slot_seen {
                break;
            }
        }
    })
    .await;
    publish(&dir.join("observer.seen"), &seen.join("\n"));
    write_results(
        &dir,
        "observer",
        &[("records", (seen.len() / 2).to_string())],
    );
    publish(&dir.join("observer.done"), "done");
}

// ---- helpers ----

/// The namespaces and the children's shared directory, or `None` (after saying why) when
/// this machine cannot make namespaces.
fn lab(test: &str) -> Option<(Netns, tempfile::TempDir)> {
    match Netns::create() {
        Ok(netns) => Some((netns, tempfile::tempdir().unwrap())),
        Err(reason) => {
            eprintln!(
                "skipped {test}: mDNS runs only inside network namespaces the test makes; {reason}"
            );
            None
        }
    }
}

/// Pairs "laptop" (namespace A) and "phone" (B) by word code over mDNS.
fn pair_in(netns: &Netns, dir: &Path) {
    let a = netns.spawn_test(Side::A, "mdns::child_pair_initiator", dir, "laptop");
    let b = netns.spawn_test(Side::B, "mdns::child_pair_joiner", dir, "phone");
    finish(netns, dir, &[(a, "laptop"), (b, "phone")]);
}

/// Waits for every child; on any failure prints every child's log and fails.
fn finish(netns: &Netns, dir: &Path, children: &[(usize, &str)]) {
    let mut failures = Vec::new();
    for (index, name) in children {
        match netns.wait(*index, CHILD_TIMEOUT) {
            Ok(status) if status.success() && dir.join(format!("{name}.result")).exists() => {}
            Ok(status) => failures.push(format!("{name}: {status}, no result or failed")),
            Err(error) => failures.push(format!("{name}: {error}")),
        }
    }
    if !failures.is_empty() {
        for (_, name) in children {
            let log = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
            eprintln!("---- {name}.log ----\n{log}");
        }
        panic!("children failed: {failures:?}");
    }
}

fn results(dir: &Path, name: &str) -> HashMap<String, String> {
    std::fs::read_to_string(dir.join(format!("{name}.result")))
        .unwrap()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn write_results(dir: &Path, name: &str, fields: &[(&str, String)]) {
    let text: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
    publish(&dir.join(format!("{name}.result")), &text.join("\n"));
}

/// A device on the namespace's LAN: every interface (only the veth and loopback exist
/// there), a random port, mDNS on, no relays, no loopback discovery.
fn lan_config(dir: &Path, name: &str) -> NetworkingConfig {
    let mut config = NetworkingConfig::local_only(dir.join(name))
        .with_device_name(DeviceName::new(name).unwrap())
        .with_insecure_key_file();
    config.loopback_discovery = None;
    config.transport.bind_addr = "0.0.0.0:0".parse().unwrap();
    config.transport.relay = RelayConfig::Disabled;
    config.transport.mdns = true;
    config.transport.local_only = false;
    config.discovery_timeout = STEP;
    config
}

async fn wait_for_file(path: &Path) -> String {
    tokio::time::timeout(STEP, async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} did not appear", path.display()))
}

/// Which discovery reported `node` (from events already received).
fn discovered_by(events: &mut broadcast::Receiver<NetworkEvent>, node: NodeId) -> String {
    while let Ok(event) = events.try_recv() {
        if let NetworkEvent::DeviceDiscovered { node_id, source } = event
            && node_id == node
        {
            return source.to_owned();
        }
    }
    "nothing".to_owned()
}

/// The first `LibraryAnnounce` from `sender`: the library's name.
async fn message_from(events: &mut broadcast::Receiver<NetworkEvent>, sender: NodeId) -> String {
    tokio::time::timeout(STEP, async {
        loop {
            match events.recv().await {
                Ok(NetworkEvent::MessageReceived {
                    from,
                    message: NetworkMessage::LibraryAnnounce(announce),
                }) if from == sender => {
                    return announce.libraries[0].name.clone();
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the service stopped"),
            }
        }
    })
    .await
    .expect("no message from the peer")
}

fn announce(name: &str) -> NetworkMessage {
    NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: vec![LibraryInfo {
            id: tether::Uuid::from_bytes([1; 16]),
            name: name.to_owned(),
            entry_count: 1,
            updated: Hlc::default(),
        }],
    })
}

fn millis(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
}
