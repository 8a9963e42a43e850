//! The receive directory's upkeep through the real binary: `tether gc` (a dry run lists,
//! a run removes and says how much it freed, a symlink planted in the directory is never
//! followed), and a paired device's storage quota set, shown, enforced and reset with
//! `tether trust` and `tether devices` against running `tether up` nodes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use common::event;
use common::node::{Pair, check, init, pair, tether, two_devices, up};
use serde_json::Value;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes `len` bytes to `path`, last modified `age` ago.
fn plant(path: &Path, len: usize, age: Duration) {
    std::fs::write(path, vec![7u8; len]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn gc_lists_on_a_dry_run_removes_the_old_leftover_and_follows_no_symlink() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let desk = rt.join("desk");
    init(rt, &desk, "desk");
    let inbox = desk.join("received");
    std::fs::create_dir_all(&inbox).unwrap();
    plant(&inbox.join(".old.bin.tether-partial"), 64 * 1024, 8 * DAY);
    plant(&inbox.join(".new.bin.tether-partial"), 4096, DAY);
    plant(&inbox.join("done.bin"), 4096, 30 * DAY);
    // Old leftovers outside the receive directory, reachable only through planted symlinks.
    let outside = rt.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let victim = outside.join(".victim.bin.tether-partial");
    plant(&victim, 4096, 30 * DAY);
    symlink(&victim, inbox.join(".link.bin.tether-partial")).unwrap();
    symlink(&outside, inbox.join("linked-dir")).unwrap();
    let before = names(&inbox);

    let listed = check(
        &tether(rt, &desk, &["gc", "--dry-run"]).output().unwrap(),
        "gc --dry-run",
    );
    let leftovers: Vec<&Value> = listed.iter().filter(|l| l["event"] == "leftover").collect();
    assert_eq!(leftovers.len(), 1, "{listed:?}");
    let old = inbox.join(".old.bin.tether-partial");
    assert_eq!(leftovers[0]["path"], old.to_str().unwrap());
    let summary = event(&listed, "gc");
    assert_eq!(summary["files"], 1);
    assert_eq!(summary["dry_run"], true);
    assert!(summary["bytes"].as_u64().unwrap() >= 64 * 1024, "{summary}");
    assert_eq!(names(&inbox), before, "a dry run removed something");

    // As a person reads it (no --json).
    let removed = tether_text(rt, &desk, &["gc"]);
    assert!(removed.status.success(), "{removed:?}");
    let text = String::from_utf8_lossy(&removed.stdout);
    eprintln!("gc said:\n{text}");
    assert!(
        text.contains(&format!("removed {}", old.display())),
        "{text}"
    );
    assert!(
        text.contains("removed 1 file of interrupted transfers, 64.0 KiB freed"),
        "{text}"
    );
    assert!(!old.exists());
    let mut left = before.clone();
    left.retain(|name| name != ".old.bin.tether-partial");
    assert_eq!(names(&inbox), left);
    assert_eq!(
        std::fs::read(&victim).unwrap().len(),
        4096,
        "followed a symlink"
    );
    assert_eq!(names(&outside), [".victim.bin.tether-partial"]);
}

/// `tether` as [`tether`] runs it, but printing text for a person instead of JSON.
fn tether_text(rt: &Path, data: &Path, args: &[&str]) -> Output {
    let command = tether(rt, data, args);
    let json: Vec<_> = command
        .get_args()
        .filter(|arg| *arg != "--json")
        .map(ToOwned::to_owned)
        .collect();
    let mut plain = std::process::Command::new(command.get_program());
    plain.args(json);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => plain.env(key, value),
            None => plain.env_remove(key),
        };
    }
    plain.stdin(std::process::Stdio::null()).output().unwrap()
}

/// The desk's `devices` line for the laptop.
fn laptop_on(rt: &Path, desk: &Path) -> Value {
    let lines = check(&tether(rt, desk, &["devices"]).output().unwrap(), "devices");
    lines
        .into_iter()
        .find(|l| l["event"] == "device" && l["name"] == "laptop")
        .expect("the desk lists the laptop")
}

fn send(rt: &Path, laptop: &Path, path: &Path) -> Output {
    tether(rt, laptop, &["send", "desk"])
        .arg(path)
        .output()
        .unwrap()
}

fn file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn trust_sets_a_quota_devices_shows_it_a_send_over_it_fails_and_a_reset_lets_it_in() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let _desk_up = up(rt, &desk);
    let _laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    let set = check(
        &tether(
            rt,
            &desk,
            &["trust", "laptop", "--auto-accept", "--quota", "1MiB"],
        )
        .output()
        .unwrap(),
        "trust --quota",
    );
    assert_eq!(event(&set, "quota")["quota"], 1 << 20);
    let shown = laptop_on(rt, &desk);
    assert_eq!(shown["quota"], 1 << 20, "{shown}");
    assert_eq!(shown["stored_bytes"], 0, "{shown}");

    let first = file(rt, "first.bin", 600 * 1024);
    let second = file(rt, "second.bin", 600 * 1024);
    check(&send(rt, &laptop, &first), "the first send");
    assert_eq!(laptop_on(rt, &desk)["stored_bytes"], 600 * 1024);

    let refused = send(rt, &laptop, &second);
    let stderr = common::error_text(&refused);
    eprintln!("over the quota: {} {stderr}", refused.status);
    assert!(
        !refused.status.success(),
        "a send over the quota went through"
    );
    assert!(stderr.contains("storage quota"), "{stderr}");
    // A quota is not a full disk: the sentence must not send the person to free space.
    assert!(!stderr.contains("disk is full"), "{stderr}");
    assert!(stderr.contains("reset quota"), "{stderr}");
    assert!(!desk.join("received/second.bin").exists());

    check(
        &tether(rt, &desk, &["trust", "laptop", "--quota-reset"])
            .output()
            .unwrap(),
        "trust --quota-reset",
    );
    assert_eq!(laptop_on(rt, &desk)["stored_bytes"], 0);
    check(&send(rt, &laptop, &second), "the send after a reset");
    assert!(desk.join("received/second.bin").exists());
    assert_eq!(laptop_on(rt, &desk)["stored_bytes"], 600 * 1024);

    let unset = check(
        &tether(rt, &desk, &["trust", "laptop", "--no-quota"])
            .output()
            .unwrap(),
        "trust --no-quota",
    );
    assert_eq!(event(&unset, "quota")["quota"], Value::Null);
    assert_eq!(laptop_on(rt, &desk)["quota"], Value::Null);
}

/// The laptop's send quota for the desk, as `tether quota desk --json` shows it.
fn send_use(rt: &Path, laptop: &Path) -> Value {
    let lines = check(
        &tether(rt, laptop, &["quota", "desk"]).output().unwrap(),
        "quota desk",
    );
    event(&lines, "quota")["send"].clone()
}

/// A bandwidth quota set with `tether quota` on a running node counts what a transfer sends;
/// the node is killed (SIGKILL) part-way, restarted, and still counts at least what was sent.
#[test]
fn a_killed_node_keeps_the_bandwidth_it_counted() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let _desk_up = up(rt, &desk);
    let laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    check(
        &tether(rt, &desk, &["trust", "laptop", "--auto-accept"])
            .output()
            .unwrap(),
        "trust",
    );
    let set = check(
        &tether(rt, &laptop, &["quota", "desk", "--send", "100MiB/day"])
            .output()
            .unwrap(),
        "quota --send",
    );
    let shown = &event(&set, "quota")["send"];
    assert_eq!(shown["quota"]["bytes"], 100 << 20, "{shown}");
    assert_eq!(shown["quota"]["period"], "day", "{shown}");
    assert_eq!(shown["used"], 0, "{shown}");

    let big = file(rt, "big.bin", 24 << 20);
    let mut command = tether(rt, &laptop, &["send", "desk", "--limit", "4MiB/s"]);
    command.arg(&big);
    let sending = common::node::Running::spawn(command);
    let mut sent = 0;
    while sent < 6 << 20 {
        sent = sending.wait_for("progress")["bytes_done"].as_u64().unwrap();
    }
    drop(laptop_up); // SIGKILL, as `Running` kills
    drop(sending);
    eprintln!("killed the laptop's node after {sent} bytes were sent");

    let _laptop_up = up(rt, &laptop);
    let counted = send_use(rt, &laptop);
    eprintln!("after the restart: {counted}");
    let used = counted["used"].as_u64().unwrap();
    assert!(used >= sent, "{used} counted, {sent} sent");
    assert!(used <= sent + (8 << 20), "{used} counted, {sent} sent");
    assert!(counted["resets_at"].as_u64().is_some(), "{counted}");
    let devices = check(
        &tether(rt, &laptop, &["devices"]).output().unwrap(),
        "devices",
    );
    let desk_line = devices
        .iter()
        .find(|l| l["event"] == "device" && l["name"] == "desk")
        .unwrap();
    assert_eq!(desk_line["bandwidth"]["send"]["used"], used, "{desk_line}");
}
