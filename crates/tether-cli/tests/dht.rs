//! `--dht-bootstrap`: a node joins the DHT through the listed nodes only. The test starts a
//! testnet of Mainline nodes on 127.0.0.1 (`n0_mainline::Testnet`: no built-in public bootstrap
//! node is ever asked) and reads back, from one of its nodes, the record `tether up` published:
//! the node's own address, signed by its key. Nothing leaves loopback.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::time::{Duration, Instant};

use common::node::{Running, init};
use n0_mainline::Testnet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_publishes_its_record_on_the_dht_it_was_given() {
    let testnet = Testnet::new(3).await.unwrap();
    let bootstrap = testnet.bootstrap.join(",");
    assert!(
        testnet
            .bootstrap
            .iter()
            .all(|n| n.starts_with("127.0.0.1:"))
    );
    let runtime = tempfile::tempdir().unwrap();
    let desk = runtime.path().join("desk");
    let dir = runtime.path().to_owned();
    let (node, ready) = tokio::task::spawn_blocking(move || {
        init(&dir, &desk, "desk");
        let up = common::tether(&dir, &desk, &["--dht-bootstrap", &bootstrap, "up"]);
        let node = Running::spawn(up);
        let ready = node.wait_for("up");
        (node, ready)
    })
    .await
    .unwrap();
    let node_id: tether::NodeId = ready["node_id"].as_str().unwrap().parse().unwrap();
    let addrs = ready["addrs"].clone();

    // Published once the node's DHT client has joined the testnet: a second or so.
    let started = Instant::now();
    let item = loop {
        let found = testnet.nodes[0]
            .get_mutable_most_recent(node_id.as_bytes(), None)
            .await
            .unwrap();
        if let Some(item) = found {
            break item;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no record on the DHT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("record on the DHT after {:?}", started.elapsed());
    assert_eq!(item.key(), node_id.as_bytes());
    // The DNS packet names the node's address (the record holds the direct address: every
    // bootstrap node is on loopback, where there is no relay).
    let record = String::from_utf8_lossy(item.value()).into_owned();
    let addr = addrs[0].as_str().unwrap();
    assert!(record.contains(addr), "{record:?} lacks {addr}");

    // The doctor (through the running node) names the DHT and its bootstrap nodes.
    let doctor = common::tether(runtime.path(), &runtime.path().join("desk"), &["doctor"]);
    let output = tokio::task::spawn_blocking(move || { doctor }.output())
        .await
        .unwrap()
        .unwrap();
    let lines = common::node::check(&output, "doctor");
    let discovery = common::event(&lines, "discovery");
    assert_eq!(
        discovery["dht"]["bootstrap"],
        serde_json::json!(testnet.bootstrap),
        "{discovery}"
    );
    assert_eq!(discovery["dht"]["publish_ip_addrs"], true);
    drop(node);
}

#[test]
fn a_bootstrap_node_that_is_not_an_ipv4_address_is_refused() {
    let runtime = tempfile::tempdir().unwrap();
    let data = runtime.path().join("desk");
    for bad in ["router.bittorrent.com:6881", "[::1]:6881", "127.0.0.1"] {
        let output = common::tether(runtime.path(), &data, &["--dht-bootstrap", bad, "devices"])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(error.contains("invalid DHT bootstrap node"), "{error}");
    }
}
