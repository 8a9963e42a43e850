//! Crash safety: a child process (this test binary, re-run with an environment variable)
//! writes to the store in a loop and prints each change once it has returned, i.e. once it is
//! committed. The parent kills it with SIGKILL at a random moment, reopens the store, and
//! checks that it opens, that every reported change is there (pairing secrets included), and
//! that nothing else is, except at most the one change in flight at the kill.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use crate::common;

use std::collections::{HashMap, HashSet};
use std::env;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Device, file_only, hex, pair, rng, sample_pairing};
use rand_core::Rng;
use tether_identity::NodeId;
use tether_registry::{DeviceRegistry, KeyManager, TrustLevel};

const CHILD_DIR: &str = "TETHER_REGISTRY_CRASH_CHILD_DIR";
const CHILD_SEED: &str = "TETHER_REGISTRY_CRASH_CHILD_SEED";
const CHILD_MODE: &str = "TETHER_REGISTRY_CRASH_CHILD_MODE";
const ROUNDS: u64 = 25;

/// The child's body. In a normal test run the variables are unset and it does nothing.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(seed), Ok(mode)) = (
        env::var(CHILD_DIR),
        env::var(CHILD_SEED),
        env::var(CHILD_MODE),
    ) else {
        return;
    };
    let dir = Path::new(&dir);
    let mut out = std::io::stdout();
    if mode == "keys" {
        let keys = KeyManager::open_or_create(dir, &file_only()).unwrap();
        writeln!(out, "created {}", keys.node_id()).unwrap();
        return;
    }
    let keys = KeyManager::open(dir, &file_only()).unwrap();
    let registry = DeviceRegistry::open(dir, keys.storage_key()).unwrap();
    writeln!(out, "opened").unwrap();
    let mut rng = rng(seed.parse().unwrap());
    let mut mine = Vec::new();
    for i in 0u64.. {
        let pairing = sample_pairing(&mut rng, &format!("child {seed} #{i}"));
        let node = pairing.node_id;
        let secret = hex(pairing.secret.as_bytes());
        writeln!(out, "begin {node}").unwrap();
        pair(&registry, pairing);
        writeln!(out, "committed {node} {secret}").unwrap();
        mine.push(node);
        // Other kinds of writes in between: trust changes and revocations.
        if i % 4 == 3 {
            let victim = mine.remove(0);
            writeln!(out, "begin-revoke {victim}").unwrap();
            registry.revoke(victim).unwrap();
            writeln!(out, "revoked {victim}").unwrap();
        } else if i % 4 == 1 {
            for trust in [TrustLevel::Blocked, TrustLevel::Trusted] {
                writeln!(out, "begin-trust {node}").unwrap();
                registry.set_trust(node, trust).unwrap();
                writeln!(out, "trust {node} {}", trust == TrustLevel::Trusted).unwrap();
            }
        }
    }
}

/// Runs the child until a random moment, kills it, and returns the lines it printed.
fn run_and_kill(dir: &Path, seed: u64, mode: &str, kill_after: Duration) -> Vec<String> {
    let mut child = Command::new(env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    thread::sleep(kill_after);
    // `Child::kill` sends SIGKILL on Unix: no destructor, no flush, no clean close.
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    receiver.try_iter().collect()
}

#[test]
fn sigkill_during_writes_loses_no_committed_change() {
    if env::var(CHILD_DIR).is_ok() {
        return;
    }
    let device = Device::new();
    drop(device.registry()); // key file and an empty store
    let mut timing = rng(99);
    let mut paired: HashMap<NodeId, String> = HashMap::new();
    let mut revoked: HashSet<NodeId> = HashSet::new();
    let mut blocked: HashSet<NodeId> = HashSet::new();
    let mut killed_while_writing = 0;
    let started = Instant::now();

    for round in 0..ROUNDS {
        let kill_after = Duration::from_millis(20 + u64::from(timing.next_u32() % 180));
        let lines = run_and_kill(&device.dir, 1000 + round, "store", kill_after);
        let mut in_flight = HashSet::new();
        let mut trust_in_flight = None;
        for line in &lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["begin", node] | ["begin-revoke", node] => {
                    in_flight.insert(node.parse::<NodeId>().unwrap());
                }
                ["begin-trust", node] => trust_in_flight = Some(node.parse::<NodeId>().unwrap()),
                ["trust", node, trusted] => {
                    let node = node.parse().unwrap();
                    trust_in_flight = None;
                    if *trusted == "true" {
                        blocked.remove(&node);
                    } else {
                        blocked.insert(node);
                    }
                }
                ["committed", node, secret] => {
                    let node = node.parse().unwrap();
                    in_flight.remove(&node);
                    paired.insert(node, (*secret).to_owned());
                }
                ["revoked", node] => {
                    let node = node.parse().unwrap();
                    in_flight.remove(&node);
                    paired.remove(&node);
                    revoked.insert(node);
                }
                _ => {}
            }
        }
        if !in_flight.is_empty() || trust_in_flight.is_some() {
            killed_while_writing += 1;
        }
        // A trust change in flight may or may not have landed; take what the store says.
        if let Some(node) = trust_in_flight {
            blocked.remove(&node);
        }

        // It always opens, and everything in it decrypts (opening decrypts every record).
        let keys = KeyManager::open(&device.dir, &file_only()).unwrap();
        let registry = DeviceRegistry::open(&device.dir, keys.storage_key())
            .unwrap_or_else(|error| panic!("round {round}: store does not open: {error}"));
        // A revocation in flight may or may not have landed; take what the store says.
        for node in &in_flight {
            if registry.is_revoked(node) {
                paired.remove(node);
                revoked.insert(*node);
            }
        }
        if let Some(node) = trust_in_flight
            && registry
                .device(&node)
                .and_then(|d| d.paired)
                .map(|d| d.trust)
                == Some(TrustLevel::Blocked)
        {
            blocked.insert(node);
        }
        for (node, secret) in &paired {
            let stored = registry.device(node).and_then(|d| d.paired);
            let stored = stored.unwrap_or_else(|| panic!("round {round}: committed {node} lost"));
            if blocked.contains(node) {
                assert_eq!(stored.trust, TrustLevel::Blocked, "round {round}");
                registry.set_trust(*node, TrustLevel::Trusted).unwrap();
                blocked.remove(node);
            }
            let found = registry
                .check_connection(node)
                .unwrap_or_else(|refused| panic!("round {round}: committed {node} {refused}"));
            assert_eq!(&hex(found.as_bytes()), secret, "round {round}");
        }
        for node in &revoked {
            assert!(
                registry.is_revoked(node),
                "round {round}: revocation of {node} lost"
            );
            assert!(registry.device(node).is_none(), "round {round}");
        }
        // Nothing else, except the change in flight at the kill (committed, not yet printed).
        let mut unexpected = 0;
        for device in registry.paired_devices() {
            if !paired.contains_key(&device.node_id) {
                assert!(
                    in_flight.contains(&device.node_id),
                    "round {round}: stray device"
                );
                unexpected += 1;
            }
        }
        assert!(unexpected <= 1, "round {round}");
        // Adopt what the kill left behind, so the next round checks it too.
        for device in registry.paired_devices() {
            paired.entry(device.node_id).or_insert_with(|| {
                hex(registry
                    .check_connection(&device.node_id)
                    .unwrap()
                    .as_bytes())
            });
        }
    }
    eprintln!(
        "{ROUNDS} kills in {:?}: {} paired, {} revoked, {killed_while_writing} kills between \
         'begin' and 'committed'",
        started.elapsed(),
        paired.len(),
        revoked.len()
    );
    assert!(
        paired.len() >= ROUNDS as usize,
        "the child made too little progress"
    );
    assert!(killed_while_writing > 0, "no kill landed during a write");
}

#[test]
fn sigkill_during_key_creation_leaves_no_or_a_whole_key_file() {
    if env::var(CHILD_DIR).is_ok() {
        return;
    }
    let mut timing = rng(98);
    for round in 0..15 {
        let device = Device::new();
        let kill_after = Duration::from_millis(u64::from(timing.next_u32() % 40));
        let lines = run_and_kill(&device.dir, round, "keys", kill_after);
        let reported = lines.iter().find_map(|line| line.strip_prefix("created "));
        // Either there is no key file (and a new start makes one), or it is whole.
        let keys = KeyManager::open_or_create(&device.dir, &file_only())
            .unwrap_or_else(|error| panic!("round {round}: {error}"));
        if let Some(node) = reported {
            assert_eq!(keys.node_id().to_string(), node, "round {round}");
        }
    }
}
