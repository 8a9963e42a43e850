//! Strangers flooding the pairing ALPN: 500 connections from fresh identities that open no
//! stream, first while no code is shown, then while a ticket is shown. The node runs in a child
//! process (this test binary, [`flood_target_node`]) so that its memory is its own.
//!
//! Every connection must be closed by the node within its deadline (at once while no code is
//! shown; within the first-message deadline while one is) and a real pairing started during the
//! flood must succeed. Once iroh's per-endpoint tasks idle out, the node's live heap must be
//! back within a few MiB of where it started (see MEMORY_NOTE).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

mod common;

use std::alloc::System;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Lab, raw_client};
use tether::{DeviceName, NetworkingConfig, NetworkingService};

const FLOOD: usize = 500;
/// The node's first-message deadline is 5 s; closes are awaited this long after connecting.
const CLOSED_WITHIN: Duration = Duration::from_secs(10);
// MEMORY_NOTE: each stranger's connection costs the node about 16 KiB of heap, even while the
// gate refuses every one right after its TLS handshake: iroh keeps a task per remote endpoint
// id until it has been idle for 60 s (`ACTOR_MAX_IDLE_TIMEOUT`, not configurable). After that
// the heap is back within a few MiB of the start. RSS stays higher: the allocator keeps the
// freed pages for reuse, so the test measures live heap bytes, counted by its allocator.
/// iroh's idle time for a remote endpoint's task.
const IROH_IDLE: Duration = Duration::from_secs(60);
/// How far above its start the node's live heap may end.
const HEAP_SLACK_KIB: u64 = 4 * 1024;

/// The system allocator, counting the bytes live on the heap: what the process holds, apart
/// from what the allocator keeps for reuse (which RSS includes). The node is this binary run
/// as a child, so this counts the node's heap.
#[global_allocator]
static ALLOCATOR: cap::Cap<System> = cap::Cap::new(System, usize::MAX);

/// The node under attack. Only runs as [`a_flood_of_silent_strangers_is_bounded`]'s child.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of a_flood_of_silent_strangers_is_bounded"]
async fn flood_target_node() {
    let dir = PathBuf::from(std::env::var_os("TETHER_FLOOD_DIR").expect("run by the flood test"));
    let config = NetworkingConfig::local_only(dir.join("node"))
        .with_insecure_key_file()
        .with_device_name(DeviceName::new("target").unwrap());
    let service = NetworkingService::start(config).await.unwrap();
    let addr = service.addr();
    let line = format!(
        "{} {}",
        addr.node_id,
        addr.direct.first().expect("a loopback address")
    );
    publish(&dir.join("addr"), &line);
    let mut shown = false;
    while !dir.join("stop").exists() {
        if !shown && dir.join("show").exists() {
            shown = true;
            let mut invite = service.start_pairing_with_ticket().unwrap();
            publish(&dir.join("ticket"), &invite.code);
            let paired = dir.join("paired");
            tokio::spawn(async move {
                let device = invite.paired().await.unwrap();
                publish(&paired, &device.device.device_name.to_string());
            });
        }
        publish(&dir.join("live"), &ALLOCATOR.allocated().to_string());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.shutdown().await;
}

/// Writes `text` to `path` all at once (the reader polls for the file).
fn publish(path: &Path, text: &str) {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).unwrap();
    std::fs::rename(&partial, path).unwrap();
}

fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The node's live heap bytes, as it last wrote them, in KiB.
fn live_kib(dir: &Path) -> u64 {
    std::thread::sleep(Duration::from_millis(120));
    wait_for_file(&dir.join("live"))
        .trim()
        .parse::<u64>()
        .unwrap()
        / 1024
}

struct Node {
    child: Child,
    dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("stop"), "");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How one stranger's connection ended.
#[derive(Debug)]
enum Outcome {
    /// The node closed it (or refused the handshake) this long after the dial began.
    Closed(Duration),
    /// Still open at the end of the wait.
    Open,
}

/// A stranger with a fresh identity connects on the pairing ALPN, opens no stream and waits
/// for the node to close the connection.
async fn stranger(target: iroh::EndpointAddr) -> Outcome {
    let client = raw_client().await;
    let start = Instant::now();
    let outcome = match client.connect(target, tether::PAIRING_ALPN).await {
        Err(_) => Outcome::Closed(start.elapsed()),
        Ok(connection) => match tokio::time::timeout(CLOSED_WITHIN, connection.closed()).await {
            Ok(_) => Outcome::Closed(start.elapsed()),
            Err(_) => Outcome::Open,
        },
    };
    client.close().await;
    outcome
}

async fn flood(target: &iroh::EndpointAddr) -> Vec<Outcome> {
    let tasks: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(stranger(target.clone())))
        .collect();
    let mut outcomes = Vec::with_capacity(FLOOD);
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

fn assert_all_closed(phase: &str, outcomes: &[Outcome]) {
    let open = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Open))
        .count();
    let slowest = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Closed(after) => Some(*after),
            Outcome::Open => None,
        })
        .max()
        .unwrap_or_default();
    println!(
        "{phase}: {} of {FLOOD} closed by the node, the slowest after {slowest:?}; {open} still open after {CLOSED_WITHIN:?}",
        FLOOD - open
    );
    assert_eq!(open, 0, "{phase}: connections the node never closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_strangers_is_bounded() {
    let lab = Lab::new();
    let dir = lab.root.path().to_path_buf();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "flood_target_node", "--ignored", "--nocapture"])
        .env("TETHER_FLOOD_DIR", &dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let node = Node {
        child,
        dir: dir.clone(),
    };
    let pid = node.child.id();
    let addr = wait_for_file(&dir.join("addr"));
    let (id, socket) = addr.split_once(' ').unwrap();
    let id: tether::NodeId = id.parse().unwrap();
    let target = iroh::EndpointAddr::new(iroh::EndpointId::from_bytes(id.as_bytes()).unwrap())
        .with_ip_addr(socket.parse().unwrap());

    // Warm up (the first connection allocates what every later one reuses), then measure.
    let _ = stranger(target.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_rss = rss_kib(pid);
    let start_live = live_kib(&dir);

    let outcomes = flood(&target).await;
    assert_all_closed("no code shown", &outcomes);

    // A ticket is shown; a real joiner starts while the flood is on.
    std::fs::write(dir.join("show"), "").unwrap();
    let ticket = wait_for_file(&dir.join("ticket"));
    let joiner = NetworkingService::start(
        NetworkingConfig::local_only(lab.data_dir("joiner"))
            .with_insecure_key_file()
            .with_device_name(DeviceName::new("joiner").unwrap()),
    )
    .await
    .unwrap();
    let flooding = tokio::spawn({
        let target = target.clone();
        async move { flood(&target).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joined = tokio::time::timeout(Duration::from_secs(60), joiner.join_pairing(&ticket))
        .await
        .expect("the real pairing did not end within a minute");
    let outcomes = flooding.await.unwrap();
    assert_all_closed("a ticket shown", &outcomes);
    let joined = joined.expect("the real pairing failed during the flood");
    assert_eq!(joined.device.device_name.to_string(), "target");
    assert_eq!(wait_for_file(&dir.join("paired")), "joiner");
    joiner.shutdown().await;

    // Every connection is gone. iroh keeps a task per remote endpoint until it has been idle
    // for 60 s (see MEMORY_NOTE); after that the heap must be back near where it started.
    let peak_live = live_kib(&dir);
    let deadline = Instant::now() + IROH_IDLE + Duration::from_secs(30);
    let end_live = loop {
        let live = live_kib(&dir);
        if live <= start_live + HEAP_SLACK_KIB || Instant::now() > deadline {
            break live;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!(
        "node heap: {start_live} KiB live before the floods, {peak_live} KiB after them, \
         {end_live} KiB once iroh's idle tasks ended; RSS {start_rss} KiB before, {} KiB after",
        rss_kib(pid)
    );
    assert!(
        end_live <= start_live + HEAP_SLACK_KIB,
        "the node's heap did not come back: {end_live} KiB live, {start_live} KiB before"
    );
    drop(node);
}
