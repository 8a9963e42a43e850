//! The real `tether` binary, driven as a person would: the demo, and two nodes in separate
//! processes and data directories pairing by word code and by ticket, then pinging; and how
//! `tether join` takes the code (never from the command line).
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Tether, event, json_lines};
use serde_json::Value;

/// `tether` with no global option but `--insecure-key-file` (see [`common::Tether`]).
fn bare(runtime: &Path) -> Command {
    Tether::without_data_dir(runtime)
        .no_network_option()
        .text()
        .command(&[])
}

#[test]
fn the_demo_pairs_and_talks_on_loopback() {
    let runtime = tempfile::tempdir().unwrap();
    let output = bare(runtime.path())
        .args(["demo", "--json", "--pings", "5", "--size", "8"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = json_lines(&output.stdout);
    let summary = event(&lines, "summary");
    assert_eq!(summary["path"], "direct");
    assert!(summary["pairing_ms"].as_f64().unwrap() > 0.0);
    let paired = event(&lines, "paired");
    assert_eq!(
        paired["verification_code"].as_str().unwrap().len(),
        7,
        "{paired}"
    );
    assert!(
        event(&lines, "message")["answer"]
            .as_str()
            .unwrap()
            .contains("Ack")
    );
}

/// Starts `tether pair --yes` and returns the process and the code it shows.
fn start_pair(runtime: &Path, data: &Path, ticket: bool) -> (Child, String) {
    start_pair_asking(runtime, data, ticket, true)
}

/// Starts `tether pair` (with `--yes` if `yes`; standard input is no terminal) and returns
/// the process and the code it shows.
fn start_pair_asking(runtime: &Path, data: &Path, ticket: bool, yes: bool) -> (Child, String) {
    let mut command = Tether::new(runtime, data).command(&["pair"]);
    if ticket {
        command.arg("--ticket");
    }
    if yes {
        command.arg("--yes");
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["event"], "code");
    let code = first["code"].as_str().unwrap().to_owned();
    // Keep reading the rest in the background so the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    (child, code)
}

fn wait(mut child: Child, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the process did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pair_and_ping(ticket: bool) {
    let runtime = tempfile::tempdir().unwrap();
    let (a, b) = (runtime.path().join("a"), runtime.path().join("b"));
    let init = Tether::new(runtime.path(), &a)
        .text()
        .command(&["init", "--name", "desk"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    let (pairing, code) = start_pair(runtime.path(), &a, ticket);
    let join = join_with_stdin(runtime.path(), &b, &format!("{code}\n"));
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    let joined = json_lines(&join.stdout);
    assert_eq!(event(&joined, "paired")["name"], "desk");
    assert!(wait(pairing, Duration::from_secs(20)).success());

    let devices = Tether::new(runtime.path(), &a)
        .no_network_option()
        .command(&["devices"])
        .output()
        .unwrap();
    assert!(devices.status.success());
    assert_eq!(json_lines(&devices.stdout).len(), 1);

    // `up` on one side, `ping` from the other.
    let mut up = Tether::new(runtime.path(), &a)
        .command(&["up"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut up_lines = BufReader::new(up.stdout.take().unwrap()).lines();
    let ready: Value = serde_json::from_str(&up_lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(ready["event"], "up");
    std::thread::spawn(move || for _ in up_lines {});
    let ping = Tether::new(runtime.path(), &b)
        .command(&["ping", "desk"])
        .output()
        .unwrap();
    up.kill().unwrap();
    let _ = up.wait();
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stderr)
    );
    let pongs = json_lines(&ping.stdout);
    assert_eq!(pongs.iter().filter(|l| l["event"] == "pong").count(), 5);
    assert_eq!(pongs[0]["path"], "direct");
}

#[test]
fn two_processes_pair_by_word_code_and_ping() {
    pair_and_ping(false);
}

#[test]
fn two_processes_pair_by_ticket_and_ping() {
    pair_and_ping(true);
}

/// `tether join -` for `data`, with `input` on its standard input.
fn join_with_stdin(runtime: &Path, data: &Path, input: &str) -> std::process::Output {
    let mut child = Tether::new(runtime, data)
        .command(&["join", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// The paired devices `tether devices` lists for `data`.
fn paired_devices(runtime: &Path, data: &Path) -> Vec<Value> {
    let devices = Tether::new(runtime, data)
        .command(&["devices"])
        .output()
        .unwrap();
    assert!(
        devices.status.success(),
        "{}",
        String::from_utf8_lossy(&devices.stderr)
    );
    json_lines(&devices.stdout)
        .into_iter()
        .filter(|d| d["paired"] == true)
        .collect()
}

#[test]
fn a_code_on_the_command_line_is_refused_and_nothing_pairs() {
    let runtime = tempfile::tempdir().unwrap();
    let (a, b) = (runtime.path().join("a"), runtime.path().join("b"));
    let (mut pairing, code) = start_pair(runtime.path(), &a, false);
    let join = Tether::new(runtime.path(), &b)
        .command(&["join", &code])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = common::error_text(&join);
    assert_eq!(join.status.code(), Some(2), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    for words in ["every user of this machine", "tether join -", "TETHER_CODE"] {
        assert!(error[0].contains(words), "{words:?} in {stderr}");
    }
    // The one sentence does not repeat the code.
    assert!(!stderr.contains(&code), "{stderr}");
    // The initiator is still waiting: nobody redeemed the code.
    assert!(pairing.try_wait().unwrap().is_none());
    pairing.kill().unwrap();
    let _ = pairing.wait();
    assert_eq!(paired_devices(runtime.path(), &b), Vec::<Value>::new());
    assert_eq!(paired_devices(runtime.path(), &a), Vec::<Value>::new());
}

#[test]
fn pair_without_a_terminal_or_yes_rejects_the_joiner_and_stores_nothing() {
    let runtime = tempfile::tempdir().unwrap();
    let (a, b) = (runtime.path().join("a"), runtime.path().join("b"));
    let (pairing, code) = start_pair_asking(runtime.path(), &a, false, false);
    let join = join_with_stdin(runtime.path(), &b, &format!("{code}\n"));
    let stderr = common::error_text(&join);
    assert!(!join.status.success(), "{stderr}");
    assert!(stderr.contains("declined"), "{stderr}");
    assert!(!wait(pairing, Duration::from_secs(20)).success());
    assert_eq!(paired_devices(runtime.path(), &b), Vec::<Value>::new());
    assert_eq!(paired_devices(runtime.path(), &a), Vec::<Value>::new());
}

#[test]
fn join_dash_reads_the_code_from_stdin_and_pairs() {
    let runtime = tempfile::tempdir().unwrap();
    let (a, b) = (runtime.path().join("a"), runtime.path().join("b"));
    let (pairing, code) = start_pair(runtime.path(), &a, false);
    // Surrounding blank space, as a paste or `echo` leaves it, is ignored.
    let join = join_with_stdin(runtime.path(), &b, &format!("  {code}  \n"));
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    assert!(wait(pairing, Duration::from_secs(20)).success());
    assert_eq!(paired_devices(runtime.path(), &b).len(), 1);
    assert_eq!(paired_devices(runtime.path(), &a).len(), 1);
}

#[test]
fn tether_code_in_the_environment_pairs() {
    let runtime = tempfile::tempdir().unwrap();
    let (a, b) = (runtime.path().join("a"), runtime.path().join("b"));
    let (pairing, code) = start_pair(runtime.path(), &a, true);
    let join = Tether::new(runtime.path(), &b)
        .command(&["join"])
        .env("TETHER_CODE", &code)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    assert!(wait(pairing, Duration::from_secs(20)).success());
    assert_eq!(paired_devices(runtime.path(), &b).len(), 1);
}

#[test]
fn join_without_a_code_or_a_terminal_says_how_to_give_one() {
    let runtime = tempfile::tempdir().unwrap();
    let output = Tether::new(runtime.path(), &runtime.path().join("x"))
        .text()
        .command(&["join"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = common::error_text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tether join -"), "{stderr}");
    let empty = join_with_stdin(runtime.path(), &runtime.path().join("x"), "\n");
    assert_eq!(empty.status.code(), Some(2));
}

#[test]
fn a_mistyped_code_is_exit_code_3_with_suggestions() {
    let runtime = tempfile::tempdir().unwrap();
    let output = join_with_stdin(
        runtime.path(),
        &runtime.path().join("x"),
        "harbor-brave-lionn-sunset\n",
    );
    assert_eq!(output.status.code(), Some(3));
    let stderr = common::error_text(&output);
    assert!(stderr.contains("lion"), "{stderr}");
}

#[test]
fn pinging_an_unknown_device_is_exit_code_4() {
    let runtime = tempfile::tempdir().unwrap();
    let output = Tether::new(runtime.path(), &runtime.path().join("x"))
        .text()
        .command(&["ping", "nobody"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn help_fits_80_columns_and_lists_exit_codes() {
    let runtime = tempfile::tempdir().unwrap();
    for command in [
        "",
        "demo",
        "init",
        "id",
        "pair",
        "join",
        "up",
        "devices",
        "send",
        "ping",
        "unpair",
        "trust",
        "rename",
        "doctor",
        "queue",
        "queue cancel",
        "key",
        "key protect",
        "quota",
        "stream",
        "channel",
    ] {
        let mut tether = bare(runtime.path());
        tether.args(command.split_whitespace());
        let output = tether.arg("--help").output().unwrap();
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "tether {command} --help: {line:?}"
            );
        }
        if command.is_empty() {
            for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"] {
                assert!(
                    text.contains(&format!("  {code}")),
                    "exit code {code} in {text}"
                );
            }
        }
    }
}

#[test]
fn a_relay_that_is_not_a_url_is_a_usage_error() {
    let runtime = tempfile::tempdir().unwrap();
    let output = Tether::new(runtime.path(), &runtime.path().join("x"))
        .text()
        .no_network_option()
        .command(&["--relay", "relay.example", "id"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("https://"));
}

/// Text that reaches the terminal is escaped where it is printed: an error that repeats a
/// name full of terminal escapes (here the one typed, as a peer's reason would be) shows them
/// as `\u{1b}`, in text and in `--json`.
#[test]
fn control_characters_in_an_error_reach_the_terminal_escaped() {
    let runtime = tempfile::tempdir().unwrap();
    let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{202e}x";
    for json in [false, true] {
        let mut setup = Tether::new(runtime.path(), &runtime.path().join("x"));
        if !json {
            setup = setup.text();
        }
        let mut command = setup.command(&["ping", hostile]);
        let output = command.output().unwrap();
        assert_eq!(output.status.code(), Some(4));
        for stream in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(stream);
            assert!(
                !text.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
                "raw control characters: {text:?}"
            );
        }
        let stderr = common::error_text(&output);
        assert!(stderr.contains("\\u{1b}]0;owned"), "{stderr}");
    }
}
