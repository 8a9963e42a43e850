//! Two `tether up` nodes in separate processes and data directories on loopback
//! (`--local-only`), driven through the real binary as a person would: pairing through the
//! running nodes' control sockets by word code and by ticket, `send` of a directory with the
//! hashes checked, a receiver killed with SIGKILL mid-transfer and restarted (its stale control
//! socket is removed) and the same `send` resuming, a send to an offline device, rename,
//! doctor, a second `up` for the same data directory refused, and `history` on both nodes (by
//! device, and from the store after a SIGKILL), and a file shared by `up --share` played
//! through `tether stream`'s HTTP server (whole, by range, and refused without the token).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::node::{FINISH, Pair, Running, check, init, pair, tether, two_devices, up, up_with};
use common::{event, json_lines};
use serde_json::Value;

/// Every file under `root`, by relative path, with its BLAKE3 hash.
fn hashes(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let hash = blake3::hash(&std::fs::read(&path).unwrap());
                found.insert(
                    path.strip_prefix(root).unwrap().to_owned(),
                    hash.to_hex().to_string(),
                );
            }
        }
    }
    found
}

/// Everything under `root`, hidden files included: each path with its kind and, for a file,
/// its bytes' hash.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let what = if meta.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else if meta.is_file() {
                format!("file {}", blake3::hash(&std::fs::read(&path).unwrap()))
            } else {
                "other".to_owned()
            };
            found.insert(rel, what);
        }
    }
    found
}

/// A directory of random files: `big.bin` of `big` bytes, and a subdirectory of small ones.
fn source(root: &Path, big: usize) -> PathBuf {
    let dir = root.join("photos");
    std::fs::create_dir_all(dir.join("2026/trip")).unwrap();
    let mut state = 0x1234_5678_9abc_def0_u64;
    let mut random = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    };
    std::fs::write(dir.join("big.bin"), random(big)).unwrap();
    std::fs::write(dir.join("2026/trip/a.jpg"), random(70_000)).unwrap();
    std::fs::write(dir.join("2026/trip/b.jpg"), random(1_500)).unwrap();
    std::fs::write(dir.join("2026/notes.txt"), b"hello from the laptop\n").unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    dir
}

fn pair_running_nodes_and_send(ticket: bool) {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    // The desk takes the laptop's files without asking (it pairs only after this start).
    let desk_up = up_with(rt, &desk, &["--accept-from", "laptop"]);
    let laptop_up = up(rt, &laptop);
    let (joiner_code, initiator_code) = pair(rt, &desk, &laptop, ticket);
    assert_eq!(joiner_code, initiator_code);
    assert_eq!(desk_up.wait_for("paired")["name"], "laptop");

    // `send` goes through the laptop's running node (its control socket).
    let src = source(rt, 3 << 20);
    let sent = check(
        &tether(rt, &laptop, &["send", "desk"])
            .arg(&src)
            .output()
            .unwrap(),
        "send",
    );
    let report = event(&sent, "sent");
    eprintln!("send: {report}");
    assert_eq!(report["files"], 5);
    assert_eq!(report["path"], "direct");
    assert_eq!(
        report["bytes_verified"].as_u64(),
        report["bytes_total"].as_u64()
    );
    assert_eq!(hashes(&src), hashes(&desk.join("received/photos")));
    // Encrypted by default; both sides name the cipher they agreed on.
    assert!(
        matches!(
            report["cipher"].as_str(),
            Some("aes-256-gcm" | "chacha20-poly1305")
        ),
        "{report}"
    );
    let received = desk_up.wait_for("received");
    assert_eq!(received["files"], 5);
    assert_eq!(received["cipher"], report["cipher"]);

    // `tether up` takes only encrypted transfers: a plain send is declined, and says why.
    if !ticket {
        let file = rt.join("plain.txt");
        std::fs::write(&file, b"not sealed").unwrap();
        let output = tether(rt, &laptop, &["send", "desk", "--no-encrypt"])
            .arg(&file)
            .output()
            .unwrap();
        let stderr = common::error_text(&output);
        assert!(!output.status.success(), "{stderr}");
        assert!(
            stderr.contains("takes only encrypted transfers")
                && stderr.contains("without --no-encrypt"),
            "{stderr}"
        );
        assert!(!desk.join("received/plain.txt").exists());
    }

    // The devices list shows the live connection.
    let devices = check(
        &tether(rt, &laptop, &["devices"]).output().unwrap(),
        "devices",
    );
    let row = event(&devices, "device");
    assert_eq!(row["name"], "desk");
    assert_eq!(row["state"], "connected");
    assert_eq!(row["path"], "direct");
    assert!(row["rtt_ms"].as_f64().unwrap() > 0.0, "{row}");
    drop(laptop_up);
}

#[test]
fn running_nodes_pair_by_word_code_and_send_a_directory() {
    pair_running_nodes_and_send(false);
}

#[test]
fn running_nodes_pair_by_ticket_and_send_a_directory() {
    pair_running_nodes_and_send(true);
}

/// Bytes a send may have to send again per receiver killed mid-transfer: what was on its way
/// (QUIC lets the sender run at most one stream window ahead of what the receiver read; it
/// goes on writing into that until it notices the silence) and the chunk the receiver was
/// verifying (the unit it keeps).
fn lost_per_kill() -> u64 {
    u64::from(tether::QuicTuning::default().stream_receive_window) + 256 * 1024
}

#[test]
fn a_receiver_killed_three_times_mid_transfer_is_resumed_by_the_same_send() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let mut desk_up = up(rt, &desk);
    let _laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    // Marked on the desk: still so after its restarts below.
    check(
        &tether(rt, &desk, &["trust", "laptop", "--auto-accept"])
            .output()
            .unwrap(),
        "trust",
    );
    let size = 4 << 20;
    let src = source(rt, size);

    // 1 MB/s: each kill comes while the big file is on its way.
    let mut send = tether(rt, &laptop, &["send", "desk", "--limit", "1M"]);
    send.arg(&src);
    let sending = Running::spawn(send).patience(Duration::from_secs(60));
    for kill in 1..=3u64 {
        loop {
            let progress = sending.wait_for("progress");
            if progress["bytes_done"].as_u64().unwrap() >= kill << 20 {
                break;
            }
        }
        desk_up.child.kill().unwrap(); // SIGKILL: no clean-up, the socket file stays
        let killed = Instant::now();
        desk_up.child.wait().unwrap();
        desk_up = up(rt, &desk);
        let retrying = sending.wait_for("retrying");
        eprintln!("kill {kill}: {retrying}");
        assert_eq!(retrying["device"], "desk", "{retrying}");
        // The link's in-use probe noticed the silence (no close frame came).
        let reason = retrying["reason"].as_str().unwrap();
        assert!(reason.contains("went silent"), "{reason}");
        // Resumed: data moves again on a new run.
        sending.wait_for("started");
        eprintln!("kill {kill}: resumed {:?} after the kill", killed.elapsed());
    }
    let (status, lines) = sending.wait(FINISH);
    assert_eq!(status.code(), Some(0), "{lines:?}");
    let report = event(&lines, "sent");
    eprintln!("the send: {report}");
    assert_eq!(report["resumes"].as_u64(), Some(3), "{report}");
    let resent = report["bytes_resent"].as_u64().unwrap();
    assert!(
        resent <= 3 * lost_per_kill(),
        "{resent} bytes sent twice: {report}"
    );
    assert_eq!(hashes(&src), hashes(&desk.join("received/photos")));
    drop(desk_up);
}

#[test]
fn a_send_to_several_devices_reports_each_and_exits_with_the_worst() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let phone = rt.join("phone");
    init(rt, &phone, "phone");
    let desk_up = up(rt, &desk);
    let phone_up = up(rt, &phone);
    let _laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    pair(rt, &phone, &laptop, false);
    for receiver in [&desk, &phone] {
        let mut marked = tether(rt, receiver, &["trust", "laptop", "--auto-accept"]);
        check(&marked.output().unwrap(), "trust");
    }
    let src = source(rt, 1 << 20);

    // Both at once: a line per device, every other line names its device, both verified.
    let both = check(
        &tether(rt, &laptop, &["send", "desk,phone"])
            .arg(&src)
            .output()
            .unwrap(),
        "send to two",
    );
    let deliveries: Vec<&Value> = both.iter().filter(|l| l["event"] == "delivery").collect();
    assert_eq!(deliveries.len(), 2, "{both:?}");
    assert!(deliveries.iter().all(|d| d["ok"] == true), "{deliveries:?}");
    let sent: Vec<&Value> = both.iter().filter(|l| l["event"] == "sent").collect();
    assert_eq!(sent.len(), 2, "{both:?}");
    let mut named: Vec<&str> = sent.iter().map(|l| l["device"].as_str().unwrap()).collect();
    named.sort_unstable();
    assert_eq!(named, ["desk", "phone"]);
    assert_eq!(hashes(&src), hashes(&desk.join("received/photos")));
    assert_eq!(hashes(&src), hashes(&phone.join("received/photos")));

    // The phone is gone (and not waited for): --all still delivers to the desk, says what
    // became of each, and exits with the phone's code.
    drop(phone_up);
    let note = rt.join("note.txt");
    std::fs::write(&note, b"for everyone").unwrap();
    let all = tether(rt, &laptop, &["send", "--all", "--retry-for", "0"])
        .arg(&note)
        .output()
        .unwrap();
    let lines = json_lines(&all.stdout);
    let stderr = common::error_text(&all);
    assert!(
        matches!(all.status.code(), Some(4 | 5)),
        "{stderr} {lines:?}"
    );
    assert!(stderr.contains("1 of 2 devices"), "{stderr}");
    let outcome = |device: &str| {
        lines
            .iter()
            .find(|l| l["event"] == "delivery" && l["device"] == device)
            .unwrap_or_else(|| panic!("no delivery line for {device}: {lines:?}"))
    };
    assert_eq!(outcome("desk")["ok"], true);
    assert_eq!(outcome("phone")["ok"], false);
    assert_eq!(outcome("phone")["exit_code"], all.status.code().unwrap());
    assert_eq!(
        std::fs::read(desk.join("received/note.txt")).unwrap(),
        b"for everyone"
    );
    drop(desk_up);
}

#[test]
fn sending_to_an_offline_device_is_exit_code_4() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    {
        let _desk_up = up(rt, &desk);
        let _laptop_up = up(rt, &laptop);
        pair(rt, &desk, &laptop, false);
    }
    // No node is running for either: `send` starts a short-lived one, and the desk is off.
    let file = rt.join("note.txt");
    std::fs::write(&file, b"are you there?").unwrap();
    let output = tether(rt, &laptop, &["send", "desk"])
        .arg(&file)
        .output()
        .unwrap();
    let stderr = common::error_text(&output);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("offline or unreachable"), "{stderr}");
    assert!(stderr.contains("tether up"), "{stderr}");
}

#[test]
fn rename_doctor_and_a_second_up() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let desk_up = up(rt, &desk);
    let _laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, true);

    // A second node for the same data directory is refused while the first runs.
    let second = tether(rt, &desk, &["up"]).output().unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // A name that reads as a node-id or device-id prefix is refused, for this device and for a
    // paired one, so that `tether send <id>` can never reach a device that took such a name.
    for args in [
        &["rename", "3f9a1c2d0e"][..],
        &["rename", "--device", "desk", "DEADBEEF"],
        &["rename", "--device", "desk", "0a1b2c3d-4e5f"],
    ] {
        let refused = tether(rt, &laptop, args).output().unwrap();
        let stderr = common::error_text(&refused);
        assert_eq!(refused.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("looks like"), "{args:?}: {stderr}");
    }
    let id = check(&tether(rt, &laptop, &["id"]).output().unwrap(), "id");
    assert_eq!(event(&id, "identity")["name"], "laptop");

    // Renaming the running node shows in its `id` at once, and on the connected laptop (it
    // is told); then the laptop names the desk its way, which a later rename does not undo.
    check(
        &tether(rt, &laptop, &["doctor", "desk"]).output().unwrap(),
        "doctor",
    );
    check(
        &tether(rt, &desk, &["rename", "studio"]).output().unwrap(),
        "rename",
    );
    let id = check(&tether(rt, &desk, &["id"]).output().unwrap(), "id");
    assert_eq!(event(&id, "identity")["name"], "studio");
    let told = Instant::now();
    loop {
        let devices = check(
            &tether(rt, &laptop, &["devices"]).output().unwrap(),
            "devices",
        );
        if event(&devices, "device")["name"] == "studio" {
            break;
        }
        assert!(told.elapsed() < Duration::from_secs(10), "{devices:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    check(
        &tether(rt, &laptop, &["rename", "--device", "studio", "the studio"])
            .output()
            .unwrap(),
        "rename --device",
    );
    let devices = check(
        &tether(rt, &laptop, &["devices"]).output().unwrap(),
        "devices",
    );
    assert_eq!(event(&devices, "device")["name"], "the studio");

    // The doctor reports key storage, local-only state and how the desk is reached.
    let doctor = check(
        &tether(rt, &laptop, &["doctor", "the studio"])
            .output()
            .unwrap(),
        "doctor",
    );
    assert_eq!(event(&doctor, "keys")["key_storage"], "unprotected_file");
    assert_eq!(event(&doctor, "network")["mode"], "local_only");
    assert_eq!(event(&doctor, "network")["local_only"], true);
    assert_eq!(event(&doctor, "relay")["relays"], "off");
    assert_eq!(event(&doctor, "node")["running"], true);
    // Local-only: multicast is checked on loopback only, which never counts for mDNS; no
    // relay to ask for the NAT type; the port mapper is off.
    let multicast = event(&doctor, "multicast");
    assert_eq!(multicast["checked"], "loopback", "{multicast}");
    assert_eq!(multicast["mdns_can_work"], false, "{multicast}");
    let interfaces = multicast["interfaces"].as_array().unwrap();
    assert!(!interfaces.is_empty(), "{multicast}");
    assert!(
        interfaces.iter().all(|i| i["loopback"] == true),
        "{multicast}"
    );
    assert_eq!(event(&doctor, "nat")["nat"], "unknown");
    assert_eq!(event(&doctor, "port_mapping")["port_mapping"], "off");
    let reach = event(&doctor, "reach");
    assert_eq!(reach["reachable"], true, "{reach}");
    assert_eq!(reach["path"], "direct");
    assert!(
        event(&doctor, "discovery")["services"][0]
            .as_str()
            .unwrap()
            .starts_with("loopback")
    );

    // A bad rate is a usage error with the way out.
    let bad = tether(rt, &laptop, &["send", "desk", "--limit", "fast"])
        .arg(rt)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("10M"));
    drop(desk_up);
}

#[test]
fn a_key_sealed_with_a_passphrase_is_reported_and_needed() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let data = rt.join("sealed");
    check(
        &tether(rt, &data, &["init", "--name", "sealed"])
            .env("TETHER_PASSPHRASE", "correct horse battery staple")
            .output()
            .unwrap(),
        "init",
    );
    let doctor = check(
        &tether(rt, &data, &["doctor"])
            .env("TETHER_PASSPHRASE", "correct horse battery staple")
            .output()
            .unwrap(),
        "doctor",
    );
    assert_eq!(event(&doctor, "keys")["key_storage"], "passphrase_file");
    assert_eq!(event(&doctor, "node")["running"], false);
    let without = tether(rt, &data, &["id"]).output().unwrap();
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("TETHER_PASSPHRASE"));
}

/// `tether send desk SRC` from the laptop: its output, failed or not.
fn send_to_desk(rt: &Path, laptop: &Path, src: &Path) -> Output {
    tether(rt, laptop, &["send", "desk"])
        .arg(src)
        .output()
        .unwrap()
}

#[test]
fn up_without_a_terminal_declines_an_unmarked_device_and_writes_nothing() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let desk_up = up(rt, &desk);
    let _laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    let inbox = desk.join("received");
    std::fs::create_dir_all(inbox.join("old")).unwrap();
    std::fs::write(inbox.join("old/keep.txt"), b"was here before\n").unwrap();
    let src = source(rt, 3 << 20);
    let before = tree(&inbox);

    // Not marked, no terminal on the desk: declined, with a reason the sender prints.
    let refused = send_to_desk(rt, &laptop, &src);
    let stderr = common::error_text(&refused);
    eprintln!("unmarked send: {} {stderr}", refused.status);
    assert!(!refused.status.success(), "the unmarked send went through");
    assert!(stderr.contains("declined"), "{stderr}");
    assert!(stderr.contains("auto-accept"), "{stderr}");
    assert_eq!(tree(&inbox), before, "a declined offer changed the inbox");

    // Marked on the desk (through its running node): it goes through.
    let marked = check(
        &tether(rt, &desk, &["trust", "laptop", "--auto-accept"])
            .output()
            .unwrap(),
        "trust --auto-accept",
    );
    assert_eq!(event(&marked, "trust")["auto_accept"], true);
    let sent = check(&send_to_desk(rt, &laptop, &src), "marked send");
    assert_eq!(event(&sent, "sent")["files"], 5);
    assert_eq!(hashes(&src), hashes(&inbox.join("photos")));

    // The mark is stored: it survives a restart (a clean stop, Ctrl-C, so the laptop's node
    // sees the connection close); and it can be taken back.
    let stopped = Command::new("kill")
        .args(["-INT", &desk_up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    let (status, _) = desk_up.wait(FINISH);
    assert!(status.success(), "up after Ctrl-C: {status}");
    let desk_up = up(rt, &desk);
    std::fs::write(src.join("after-restart.txt"), b"new\n").unwrap();
    check(&send_to_desk(rt, &laptop, &src), "send after a restart");
    assert_eq!(hashes(&src), hashes(&inbox.join("photos")));
    check(
        &tether(rt, &desk, &["trust", "laptop", "--no-auto-accept"])
            .output()
            .unwrap(),
        "trust --no-auto-accept",
    );
    std::fs::write(src.join("after-unmark.txt"), b"newer\n").unwrap();
    let before = tree(&inbox);
    let refused = send_to_desk(rt, &laptop, &src);
    assert!(!refused.status.success(), "the unmarked send went through");
    assert_eq!(tree(&inbox), before, "a declined offer changed the inbox");
    drop(desk_up);
}

/// The lines of `lines` whose `event` is `name`.
fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event"] == name).collect()
}

#[test]
fn history_shows_a_send_on_both_nodes_by_device_and_after_a_sigkill() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let phone = rt.join("phone");
    init(rt, &phone, "phone");
    let mut desk_up = up_with(rt, &desk, &["--accept-from", "laptop"]);
    let _laptop_up = up(rt, &laptop);
    let _phone_up = up_with(rt, &phone, &["--accept-from", "laptop"]);
    pair(rt, &desk, &laptop, false);
    pair(rt, &phone, &laptop, false);
    let file = rt.join("note.txt");
    std::fs::write(&file, b"for the history\n").unwrap();
    for device in ["desk", "phone"] {
        check(
            &tether(rt, &laptop, &["send", device])
                .arg(&file)
                .output()
                .unwrap(),
            "send",
        );
    }
    // The desk printed its `received` line after its record was committed.
    desk_up.wait_for("received");

    // The laptop (through its running node): both sends, newest first.
    let all = check(
        &tether(rt, &laptop, &["history"]).output().unwrap(),
        "history",
    );
    let sent = events(&all, "transfer");
    assert_eq!(sent.len(), 2, "{all:?}");
    assert_eq!(sent[0]["name"], "phone");
    assert_eq!(sent[1]["name"], "desk");
    assert!(sent[0]["id"].as_u64() > sent[1]["id"].as_u64());
    let record = sent[1];
    assert_eq!(record["direction"], "send", "{record}");
    assert_eq!(record["pull"], false);
    assert_eq!(record["files"], 1);
    assert_eq!(record["bytes_total"], 16);
    assert_eq!(record["bytes_transferred"], 16);
    assert_eq!(record["resumed"], false);
    assert_eq!(record["path"], "direct");
    assert_eq!(record["outcome"], "verified");
    assert!(record["cipher"].is_string(), "{record}");
    assert!(
        record["started_at"].as_str().unwrap().ends_with('Z'),
        "{record}"
    );
    // By device.
    let desk_only = check(
        &tether(rt, &laptop, &["history", "desk"]).output().unwrap(),
        "history desk",
    );
    let desk_only = events(&desk_only, "transfer");
    assert_eq!(desk_only.len(), 1, "{desk_only:?}");
    assert_eq!(desk_only[0], record);
    // For people: a table.
    let table = common::Tether::new(rt, &laptop)
        .text()
        .command(&["history", "--limit", "1"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    eprintln!("{table}");
    assert!(table.starts_with("WHEN (UTC)"), "{table}");
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains("phone") && table.contains("verified"),
        "{table}"
    );

    // The desk is killed (SIGKILL): its record was committed when the transfer ended, and a
    // short-lived node reads it from the store.
    desk_up.child.kill().unwrap();
    desk_up.child.wait().unwrap();
    let kept = check(
        &tether(rt, &desk, &["history", "laptop"]).output().unwrap(),
        "history after SIGKILL",
    );
    let received = events(&kept, "transfer");
    assert_eq!(received.len(), 1, "{kept:?}");
    assert_eq!(received[0]["direction"], "receive");
    assert_eq!(received[0]["name"], "laptop");
    assert_eq!(received[0]["outcome"], "verified");
    assert_eq!(received[0]["bytes_total"], 16);
    assert_eq!(received[0]["cipher"], record["cipher"]);
}

/// One raw HTTP/1.1 `GET` of `path` on `addr`, with `range` if given: the status line and body.
fn http_get(addr: &str, path: &str, range: Option<&str>) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let range = range.map_or_else(String::new, |range| format!("Range: bytes={range}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{range}Connection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).unwrap();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, answer[split + 4..].to_vec())
}

#[test]
fn a_file_shared_by_up_is_streamed_over_http_behind_its_token() {
    let Pair {
        runtime,
        desk,
        laptop,
    } = two_devices();
    let rt = runtime.path();
    let film = rt.join("film.bin");
    let bytes: Vec<u8> = (0..(1 << 20) + 7)
        .map(|i: u32| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&film, &bytes).unwrap();
    let film = film.canonicalize().unwrap();
    let desk_up = up_with(rt, &desk, &["--share", film.to_str().unwrap()]);
    let laptop_up = up(rt, &laptop);
    pair(rt, &desk, &laptop, false);
    // `tether stream` runs a node of its own: not beside the laptop's `up`.
    drop(laptop_up);

    let unshared = tether(rt, &laptop, &["stream", "desk", "/etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(
        unshared.status.code(),
        Some(2),
        "{}",
        common::error_text(&unshared)
    );

    let mut command = tether(rt, &laptop, &["stream", "desk"]);
    command.arg(&film);
    let stream = Running::spawn(command);
    let shown = stream.wait_for("stream");
    assert_eq!(shown["size"], bytes.len());
    let url = shown["url"].as_str().unwrap();
    let (addr, path) = url
        .strip_prefix("http://")
        .unwrap()
        .split_once('/')
        .unwrap();
    assert!(addr.starts_with("127.0.0.1:"), "{url}");
    let path = format!("/{path}");
    let (status, body) = http_get(addr, &path, None);
    assert!(status.contains(" 200 "), "{status}");
    assert!(body == bytes, "the body is not the file");
    let (status, body) = http_get(addr, &path, Some("1048570-"));
    assert!(status.contains(" 206 "), "{status}");
    assert_eq!(body, bytes[1_048_570..]);
    let (status, _) = http_get(addr, "/film.bin", None);
    assert!(status.contains(" 404 "), "{status}");
    drop(stream);
    drop(desk_up);
}
