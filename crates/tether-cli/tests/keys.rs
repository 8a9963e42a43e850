//! The device key at rest, through the real binary: a new key is never stored unprotected
//! unless the person says so, a passphrase can come from a file, the environment or the
//! terminal, and `tether key protect` seals an existing unprotected key atomically (SIGKILL at
//! every step leaves a key that opens, with the same node id).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Tether;

/// `tether --local-only --json --data-dir DATA ARGS...` (see [`common::Tether`]) without
/// `--insecure-key-file`: no terminal on standard input and no passphrase in the environment.
fn tether(runtime: &Path, data: &Path, args: &[&str]) -> Command {
    let mut command = Tether::new(runtime, data).sealed_key().command(args);
    command.env("RUST_LOG", "warn");
    command
}

/// Issue 17: no keychain (`--local-only`), no passphrase, no terminal and no
/// `--insecure-key-file`: refused with one sentence naming the three ways out, exit 2, and no
/// key written.
#[test]
fn a_new_key_with_no_way_to_protect_it_is_refused_in_one_sentence() {
    let runtime = tempfile::tempdir().unwrap();
    let data = runtime.path().join("data");
    let output = tether(runtime.path(), &data, &["init", "--name", "bare"])
        .output()
        .unwrap();
    let stderr = common::error_text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    for way in [
        "TETHER_PASSPHRASE",
        "--passphrase-file",
        "--insecure-key-file",
    ] {
        assert!(lines[0].contains(way), "{way} missing: {stderr}");
    }
    assert!(!data.join("device.key").exists(), "a key was written");
}

const PASSPHRASE: &str = "correct horse battery staple";

/// A passphrase file in `dir`.
fn passphrase_file(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("passphrase");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    file
}

/// Runs `command`, checks it succeeded, and returns its `identity` line.
fn identity(mut command: impl std::borrow::BorrowMut<Command>, what: &str) -> serde_json::Value {
    let output = command.borrow_mut().output().unwrap();
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    common::event(&common::json_lines(&output.stdout), "identity").clone()
}

/// The files under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// The device's secret key bytes, read with the passphrase through the registry.
fn secret_key(data: &Path) -> Vec<u8> {
    let options =
        tether::KeyOptions::with_passphrase(zeroize::Zeroizing::new(PASSPHRASE.to_owned()))
            .keychain(tether::KeychainPolicy::Never);
    let keys = tether::KeyManager::open(data, &options).unwrap();
    keys.identity().to_secret_bytes().to_vec()
}

#[test]
fn a_passphrase_file_seals_a_new_key_and_no_raw_key_byte_is_on_disk() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let data = rt.join("data");
    let file = passphrase_file(rt);
    let made = identity(
        tether(
            rt,
            &data,
            &["init", "--name", "sealed", "--passphrase-file"],
        )
        .arg(&file),
        "init",
    );
    assert!(
        made["key_storage"].as_str().unwrap().contains("passphrase"),
        "{made}"
    );
    let secret = secret_key(&data);
    assert_eq!(
        files_containing(&data, &secret),
        Vec::<std::path::PathBuf>::new()
    );

    // The same key opens from the environment, and not without a passphrase.
    let again = identity(
        tether(rt, &data, &["id"]).env("TETHER_PASSPHRASE", PASSPHRASE),
        "id",
    );
    assert_eq!(again["node_id"], made["node_id"]);
    let without = tether(rt, &data, &["id"]).output().unwrap();
    let stderr = common::error_text(&without);
    assert_eq!(without.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--passphrase-file"), "{stderr}");
    assert!(!stderr.contains(PASSPHRASE));
}

/// Issue 17: a key file made unprotected keeps working, with one short warning line that says
/// how to protect it.
#[test]
fn an_existing_unprotected_key_keeps_working_with_one_warning_line() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let data = rt.join("data");
    let made = identity(
        tether(
            rt,
            &data,
            &["init", "--insecure-key-file", "--name", "bare"],
        ),
        "init",
    );
    let output = tether(rt, &data, &["id"]).output().unwrap();
    let stderr = common::error_text(&output);
    assert!(output.status.success(), "{stderr}");
    let id = common::event(&common::json_lines(&output.stdout), "identity").clone();
    assert_eq!(id["node_id"], made["node_id"]);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tether key protect"), "{stderr}");
}

/// `tether key protect` once, whole: the same node id, sealed, and the raw key gone from the
/// data directory.
#[test]
fn key_protect_seals_an_unprotected_key_in_place() {
    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let data = rt.join("data");
    let file = passphrase_file(rt);
    let made = identity(
        tether(
            rt,
            &data,
            &["init", "--insecure-key-file", "--name", "bare"],
        ),
        "init",
    );
    // No passphrase and no terminal: a usage error, nothing changed.
    let before = std::fs::read(data.join("device.key")).unwrap();
    let refused = tether(rt, &data, &["key", "protect"]).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(std::fs::read(data.join("device.key")).unwrap(), before);

    let protect = tether(rt, &data, &["key", "protect", "--passphrase-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        protect.status.success(),
        "{}",
        String::from_utf8_lossy(&protect.stderr)
    );
    let secret = secret_key(&data);
    assert_eq!(
        files_containing(&data, &secret),
        Vec::<std::path::PathBuf>::new()
    );
    let sealed = identity(
        tether(rt, &data, &["id", "--passphrase-file"]).arg(&file),
        "id",
    );
    assert_eq!(sealed["node_id"], made["node_id"]);
    assert!(
        sealed["key_storage"]
            .as_str()
            .unwrap()
            .contains("passphrase")
    );

    // Again: already sealed, nothing changed.
    let before = std::fs::read(data.join("device.key")).unwrap();
    let again = tether(rt, &data, &["key", "protect", "--passphrase-file"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already protected"));
    assert_eq!(std::fs::read(data.join("device.key")).unwrap(), before);
}

/// Where `tether key protect` can be stopped (the `test-hooks` feature of tether-registry,
/// on in test builds): after sealing, inside the temporary file, after its fsync, after the
/// rename, after the directory's fsync.
const PAUSE_POINTS: [(&str, bool); 5] = [
    ("protect:sealed", false),
    ("protect:temp-partial", false),
    ("protect:temp-synced", false),
    ("protect:renamed", true),
    ("protect:done", true),
];

/// A fresh data directory holding a copy of the unprotected key file `key`.
fn copy_of(rt: &Path, round: usize, key: &[u8]) -> std::path::PathBuf {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let data = rt.join(format!("round-{round}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&data)
        .unwrap();
    let path = data.join("device.key");
    std::fs::write(&path, key).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    data
}

/// After a kill: the key opens with the passphrase given (whether or not the file was sealed
/// yet), its node id is unchanged, it is sealed iff `sealed`, and no temporary file is left.
fn check_after_kill(
    rt: &Path,
    data: &Path,
    file: &Path,
    node_id: &serde_json::Value,
    sealed: Option<bool>,
    what: &str,
) -> bool {
    let id = identity(
        tether(rt, data, &["id", "--passphrase-file"]).arg(file),
        what,
    );
    assert_eq!(&id["node_id"], node_id, "{what}");
    let is_sealed = id["key_storage"].as_str().unwrap().contains("passphrase");
    if let Some(sealed) = sealed {
        assert_eq!(is_sealed, sealed, "{what}: {id}");
    }
    let names: Vec<String> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.ends_with(".tmp")),
        "{what}: a temporary file is left: {names:?}"
    );
    is_sealed
}

#[test]
fn key_protect_killed_at_any_step_leaves_a_key_that_opens() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    let runtime = tempfile::tempdir().unwrap();
    let rt = runtime.path();
    let file = passphrase_file(rt);
    let original = rt.join("original");
    let made = identity(
        tether(
            rt,
            &original,
            &["init", "--insecure-key-file", "--name", "bare"],
        ),
        "init",
    );
    let node_id = made["node_id"].clone();
    let key = std::fs::read(original.join("device.key")).unwrap();
    let mut round = 0;

    // SIGKILL at each pause point, twice.
    for _ in 0..2 {
        for (point, sealed) in PAUSE_POINTS {
            round += 1;
            let data = copy_of(rt, round, &key);
            let mut child = tether(rt, &data, &["key", "protect", "--passphrase-file"])
                .arg(&file)
                .env("TETHER_TEST_PAUSE_AT", point)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = BufReader::new(child.stderr.take().unwrap());
            let mut paused = false;
            for line in stderr.lines() {
                let line = line.unwrap();
                if line.contains(&format!("paused at {point}")) {
                    paused = true;
                    break;
                }
            }
            assert!(paused, "{point}: the process ended without pausing");
            child.kill().unwrap();
            child.wait().unwrap();
            check_after_kill(rt, &data, &file, &node_id, Some(sealed), point);
        }
    }

    // SIGKILL at random moments of an uninterrupted run.
    let timed = Instant::now();
    let whole = tether(
        rt,
        &copy_of(rt, 1000, &key),
        &["key", "protect", "--passphrase-file"],
    )
    .arg(&file)
    .output()
    .unwrap();
    assert!(whole.status.success());
    let span = timed.elapsed().as_micros() as u64;
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut sealed_seen = [0, 0];
    for _ in 0..12 {
        round += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_micros(seed % span.max(1));
        let data = copy_of(rt, round, &key);
        let mut child = tether(rt, &data, &["key", "protect", "--passphrase-file"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        child.wait().unwrap();
        let what = format!("killed after {delay:?}");
        let sealed = check_after_kill(rt, &data, &file, &node_id, None, &what);
        sealed_seen[usize::from(sealed)] += 1;
    }
    eprintln!(
        "random kills: {} left it clear, {} sealed",
        sealed_seen[0], sealed_seen[1]
    );
}
