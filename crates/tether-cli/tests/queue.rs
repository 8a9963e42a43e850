//! `tether send --queue` with real processes on loopback (`--local-only`): a send queued for
//! a receiver that is stopped, through the sender's running node; the sender's `tether up`
//! killed with SIGKILL and a second send queued meanwhile (written into the store by the
//! command itself); the sender started again, then the receiver: both files arrive with the
//! same hash and `tether queue` ends empty. `tether queue cancel` takes one out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::node::{Pair, check, pair, tether, two_devices, up, up_with};
use common::{event, json_lines};
use serde_json::Value;

fn queued(lines: &[Value]) -> Vec<&Value> {
    lines
        .iter()
        .filter(|line| line["event"] == "queued_send")
        .collect()
}

fn queue(rt: &Path, data: &Path) -> Vec<Value> {
    check(&tether(rt, data, &["queue"]).output().unwrap(), "queue")
}

fn send_queued(rt: &Path, data: &Path, file: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["send", "--queue", "desk"];
    args.extend_from_slice(extra);
    let lines = check(
        &tether(rt, data, &args).arg(file).output().unwrap(),
        "send --queue",
    );
    event(&lines, "queued").clone()
}

fn hash(path: &Path) -> String {
    blake3::hash(&std::fs::read(path).unwrap())
        .to_hex()
        .to_string()
}

#[test]
fn a_queued_send_survives_a_sigkill_of_the_sender_and_arrives_when_the_receiver_starts() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let desk_up = up_with(rt, &desk, &["--accept-from", "laptop"]);
    let mut laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    drop(desk_up); // SIGKILL: the receiver is gone.

    // 3 MiB at 1 MB/s: the sender is killed again while this one is on its way.
    let first = rt.join("first.bin");
    let size = 3u64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&first, data).unwrap();
    let one = send_queued(rt, &laptop, &first, &["--limit", "1M"]);
    eprintln!("queued through the running node: {one}");
    assert_eq!(one["node_running"], true, "{one}");
    assert_eq!(
        (one["files"].as_u64(), one["bytes_total"].as_u64()),
        (Some(1), Some(size))
    );
    let listed = queue(rt, &laptop);
    let entries = queued(&listed);
    assert_eq!(entries.len(), 1, "{listed:?}");
    assert_eq!(entries[0]["id"], one["id"]);
    assert_eq!(entries[0]["name"], "desk");
    assert_eq!(entries[0]["state"], "pending");
    assert_eq!(
        entries[0]["paths"][0],
        first.canonicalize().unwrap().to_str().unwrap()
    );

    // The sender's node is killed; a send queued meanwhile goes into its store directly.
    laptop_up.child.kill().unwrap();
    laptop_up.child.wait().unwrap();
    let second = rt.join("second.txt");
    std::fs::write(&second, b"queued while no node ran\n").unwrap();
    let two = send_queued(rt, &laptop, &second, &[]);
    eprintln!("queued with no node running: {two}");
    assert_eq!(two["node_running"], false, "{two}");
    assert!(two["id"].as_u64() > one["id"].as_u64());
    // A third, cancelled: it never goes out.
    let third = rt.join("third.txt");
    std::fs::write(&third, b"cancelled\n").unwrap();
    let three = send_queued(rt, &laptop, &third, &[]);
    let id = three["id"].as_u64().unwrap().to_string();
    check(
        &tether(rt, &laptop, &["queue", "cancel", &id])
            .output()
            .unwrap(),
        "queue cancel",
    );
    let again = tether(rt, &laptop, &["queue", "cancel", &id])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2), "cancelled twice");
    assert_eq!(queued(&queue(rt, &laptop)).len(), 2);

    // The sender starts again, then the receiver: the first queued send goes out.
    laptop_up = up(rt, &laptop);
    let started = Instant::now();
    let _desk_up = up_with(rt, &desk, &["--accept-from", "laptop"]);
    let received = desk.join("received");
    let partial = received.join(".first.bin.tether-partial");
    while !partial.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no partial file"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "on its way {:?} after the receiver started",
        started.elapsed()
    );
    // Killed mid-delivery, and started again: the entry is still queued and resumes.
    std::thread::sleep(Duration::from_millis(1500));
    laptop_up.child.kill().unwrap();
    laptop_up.child.wait().unwrap();
    laptop_up = up(rt, &laptop).patience(Duration::from_secs(60));
    let first_done = laptop_up.wait_for("queued_delivered");
    let second_done = laptop_up.wait_for("queued_delivered");
    eprintln!("delivered: {first_done} {second_done}");
    assert_eq!(first_done["id"], one["id"], "oldest first");
    assert_eq!(second_done["id"], two["id"]);
    assert!(
        first_done["bytes_resumed"].as_u64().unwrap() > 0,
        "{first_done}"
    );
    assert_eq!(hash(&received.join("first.bin")), hash(&first));
    assert_eq!(hash(&received.join("second.txt")), hash(&second));
    assert!(!received.join("third.txt").exists());
    let listed = queue(rt, &laptop);
    assert!(queued(&listed).is_empty(), "{listed:?}");
    // And in the history, as any send.
    let history = json_lines(
        &tether(rt, &laptop, &["history", "desk"])
            .output()
            .unwrap()
            .stdout,
    );
    let sent: Vec<&Value> = history
        .iter()
        .filter(|line| line["event"] == "transfer" && line["outcome"] == "verified")
        .collect();
    assert_eq!(sent.len(), 2, "{history:?}");
}
