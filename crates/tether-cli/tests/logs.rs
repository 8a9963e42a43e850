//! No secret in any log at any level: two `tether up` nodes on loopback (`--local-only`) and a
//! short-lived one pair by word code and by ticket through the real binary, every process with
//! `RUST_LOG=trace`, and the whole of every process's stderr is searched for the code's words
//! and the ticket.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::node::Running;
use common::{event, json_lines};

/// Generous bounds, only so that a broken build fails instead of hanging.
const START: Duration = Duration::from_secs(60);

/// `tether --local-only --json --insecure-key-file --data-dir DATA ARGS...` (see
/// [`common::Tether`]) logging everything to `log`.
fn tether(runtime: &Path, data: &Path, args: &[&str], log: &Path) -> Command {
    let mut command = common::tether(runtime, data, args);
    command
        .env("RUST_LOG", "trace")
        .stderr(File::create(log).unwrap());
    command
}

/// `command` running with its standard error in its log, waited on for up to [`START`].
fn spawn(command: Command) -> Running {
    Running::spawn_keeping_stderr(command).patience(START)
}

/// Runs `command` with `input` on its standard input.
fn run_with_input(mut command: Command, input: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", output.status);
    output
}

/// `tether pair` through the running node of `data`; the code it shows, once shown.
fn show_code(runtime: &Path, data: &Path, ticket: bool, log: &Path) -> (Running, String) {
    let mut args = vec!["pair", "--yes"];
    if ticket {
        args.push("--ticket");
    }
    let pairing = spawn(tether(runtime, data, &args, log));
    let code = pairing.wait_for("code")["code"]
        .as_str()
        .unwrap()
        .to_owned();
    (pairing, code)
}

/// The lowercase ASCII words of `text`, as whole words.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

fn read(paths: &[PathBuf]) -> String {
    let mut all = String::new();
    for path in paths {
        all.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
    }
    all
}

#[test]
fn trace_logs_of_a_pairing_hold_no_code_and_no_ticket() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let logs = rt.join("logs");
    std::fs::create_dir(&logs).unwrap();
    let log = |name: &str| logs.join(format!("{name}.log"));
    let (desk, laptop, phone) = (rt.join("desk"), rt.join("laptop"), rt.join("phone"));

    for (data, name) in [(&desk, "desk"), (&laptop, "laptop"), (&phone, "phone")] {
        let init = tether(
            rt,
            data,
            &["init", "--name", name],
            &log(&format!("{name}-init")),
        )
        .output()
        .unwrap();
        assert!(init.status.success(), "init {name}: {}", init.status);
    }

    // The desk and the laptop run `tether up`; pair and join go through their control sockets.
    let desk_up = spawn(tether(rt, &desk, &["up"], &log("desk-up")));
    let laptop_up = spawn(tether(rt, &laptop, &["up"], &log("laptop-up")));
    desk_up.wait_for("up");
    laptop_up.wait_for("up");

    // By word code: desk (running node) ← laptop (running node).
    let (pairing, code) = show_code(rt, &desk, false, &log("desk-pair-code"));
    let joined = run_with_input(
        tether(rt, &laptop, &["join", "-"], &log("laptop-join")),
        &format!("{code}\n"),
    );
    assert_eq!(event(&json_lines(&joined.stdout), "paired")["name"], "desk");
    pairing.wait_for("paired");
    drop(pairing);

    // By ticket: desk (running node) ← phone (a short-lived node of its own).
    let (pairing, ticket) = show_code(rt, &desk, true, &log("desk-pair-ticket"));
    assert!(ticket.starts_with("tether1"), "{ticket}");
    let joined = run_with_input(
        tether(rt, &phone, &["join", "-"], &log("phone-join")),
        &format!("{ticket}\n"),
    );
    assert_eq!(event(&json_lines(&joined.stdout), "paired")["name"], "desk");
    pairing.wait_for("paired");
    drop(pairing);
    drop(desk_up);
    drop(laptop_up);

    let code_run = read(&[
        log("desk-up"),
        log("laptop-up"),
        log("desk-pair-code"),
        log("laptop-join"),
    ]);
    let ticket_run = read(&[log("desk-pair-ticket"), log("phone-join")]);
    let everything = format!("{code_run}{ticket_run}");
    assert!(
        everything.lines().count() > 100,
        "RUST_LOG=trace logged too little to mean anything"
    );

    let lower = everything.to_ascii_lowercase();
    assert!(
        !lower.contains(&ticket.to_ascii_lowercase()),
        "the ticket is in the log"
    );
    assert!(!lower.contains(&code), "the code is in the log");
    // A code word may also be a word the logs use anyway ("ready", say): such a word counts
    // only when the logs of the ticket pairing, which had no word code, do not use it.
    let vocabulary = words(&ticket_run);
    let logged = words(&code_run);
    for word in code.split('-') {
        assert!(
            !logged.contains(word) || vocabulary.contains(word),
            "the code's word {word:?} is in the log"
        );
    }
}
