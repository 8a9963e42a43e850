//! The real `tether` binary on a LAN made of two network namespaces (a veth pair with
//! multicast on) that the test creates: `tether pair` in one, `tether join` (the code in `TETHER_CODE`) in the other
//! finds it by mDNS (`--lan`: every interface, mDNS, no relays), then `tether up` and
//! `tether ping`. Only processes inside the namespaces multicast; without root (or `ip`) the
//! test says so and skips.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::panic
)]

#[path = "../../tether/tests/common/netns.rs"]
mod netns;

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::node::{JsonLines, check};
use common::{Tether, event, json_lines};
use netns::{Netns, Side};
use serde_json::Value;

/// `tether --lan --json --insecure-key-file --data-dir DATA ARGS...` inside `side`'s
/// namespace (see [`common::Tether`]; throwaway keys: no passphrase).
fn tether_in(netns: &Netns, side: Side, runtime: &Path, data: &Path, args: &[&str]) -> Command {
    let mut command = netns.command(side, env!("CARGO_BIN_EXE_tether"), runtime);
    Tether::new(runtime, data).lan().set_up(&mut command);
    command.args(args);
    command
}

/// A process in a namespace (the namespace kills it when dropped) and its stdout JSON lines.
struct InNamespace {
    index: usize,
    lines: JsonLines,
}

impl InNamespace {
    fn spawn(netns: &Netns, mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = JsonLines::read(child.stdout.take().unwrap()).patience(STEP);
        let index = netns.adopt(child);
        Self { index, lines }
    }

    /// The next line whose `event` is `name` (others are skipped).
    fn wait_for(&self, name: &str) -> Value {
        self.lines.wait_for(name)
    }
}

/// Generous, only so that a broken build fails instead of hanging.
const STEP: Duration = Duration::from_secs(60);

#[test]
fn two_lan_nodes_up_in_namespaces_pair_by_word_code_over_mdns_and_ping() {
    let netns = match Netns::create() {
        Ok(netns) => netns,
        Err(reason) => {
            eprintln!(
                "skipped: the CLI's mDNS test runs only inside network namespaces it makes; {reason}"
            );
            return;
        }
    };
    let runtime = tempfile::tempdir().unwrap();
    let (desk, phone) = (runtime.path().join("desk"), runtime.path().join("phone"));
    for (dir, name) in [(&desk, "desk"), (&phone, "phone")] {
        // The identity is made offline (a key file, never the OS keychain).
        let init = common::tether(runtime.path(), dir, &["init", "--name", name])
            .output()
            .unwrap();
        check(&init, "init");
    }

    // A `tether up --lan` node in each namespace.
    let desk_up = InNamespace::spawn(
        &netns,
        tether_in(&netns, Side::A, runtime.path(), &desk, &["up"]),
    );
    let phone_up = InNamespace::spawn(
        &netns,
        tether_in(&netns, Side::B, runtime.path(), &phone, &["up"]),
    );
    desk_up.wait_for("up");
    phone_up.wait_for("up");

    // `tether pair` on the desk (through its running node) prints a word code...
    let pairing = InNamespace::spawn(
        &netns,
        tether_in(&netns, Side::A, runtime.path(), &desk, &["pair", "--yes"]),
    );
    let code = pairing.wait_for("code")["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(code.split('-').count(), 4, "a word code: {code}");

    // ...and `tether join` on the phone finds the desk by mDNS alone.
    let started = Instant::now();
    let join = tether_in(&netns, Side::B, runtime.path(), &phone, &["join"])
        .env("TETHER_CODE", &code)
        .output()
        .unwrap();
    let join_time = started.elapsed();
    check(&join, "join");
    let joined = json_lines(&join.stdout);
    let paired = event(&joined, "paired");
    assert_eq!(paired["name"], "desk");
    assert_eq!(
        pairing.wait_for("paired")["verification_code"],
        paired["verification_code"]
    );
    assert!(
        netns.wait(pairing.index, STEP).unwrap().success(),
        "pair did not end well"
    );

    // `tether ping desk` from the phone.
    let ping = tether_in(&netns, Side::B, runtime.path(), &phone, &["ping", "desk"])
        .output()
        .unwrap();
    check(&ping, "ping");
    let pongs: Vec<Value> = json_lines(&ping.stdout)
        .into_iter()
        .filter(|l| l["event"] == "pong")
        .collect();
    assert!(!pongs.is_empty(), "no pong");
    assert_eq!(pongs[0]["path"], "direct", "{}", pongs[0]);
    println!(
        "tether join over mDNS between two up nodes (namespaces, veth): {:.0} ms for the command; \
         first ping: {}",
        join_time.as_secs_f64() * 1000.0,
        pongs[0]
    );
    // Dropping `netns` kills both nodes and deletes the namespaces.
}
