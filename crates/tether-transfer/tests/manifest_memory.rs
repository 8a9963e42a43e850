//! A paired peer's hostile manifest, at every limit, must not make the receiver hold memory out
//! of proportion to it: each case runs a receiver (consent declines, so the whole manifest is
//! read, checked and surveyed, as before any person is asked) in a child process under a 1 GiB
//! address-space cap, and its peak RSS (`VmHWM`) must stay under 64 MiB above where it started.
//! The manifest is made page by page in this process as it is sent, over TCP on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::print_stdout,
    missing_docs,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{ChildProc, Setup, listen, node_id, peak_rss_kib};
use serde_json::{Value, json};
use tether_transfer::{
    CHUNK_SIZE, DeclineAll, Hello, Limits, MAX_COMPONENT_LEN, MAX_DEPTH, MAX_PATH_LEN, Receiver,
    ReceiverConfig, RunContext,
};
use tether_wire::{Frame, FrameKind, write_frame};
use tokio::net::TcpStream;
use uuid::Uuid;

const ROLE: &str = "TETHER_T_MANIFEST_ROLE";

/// The child: one receiver with the default limits, declining consent; prints its port, its
/// peak RSS before the offer and after the run, and the run's error.
#[test]
fn manifest_child() {
    if std::env::var(ROLE).is_err() {
        return;
    }
    let cap = 1u64 << 30;
    rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(cap),
            maximum: Some(cap),
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dest = tempfile::tempdir().unwrap();
        let (listener, port) = listen().await;
        let receiver = Receiver::new(
            ReceiverConfig::new(dest.path())
                .consent(DeclineAll)
                .check_free_space(false),
        );
        println!("\nport {port}");
        let (stream, _) = listener.accept().await.unwrap();
        println!("\nstart {}", peak_rss_kib().unwrap());
        let outcome = match tether_transfer::read_hello(stream).await {
            Ok(Hello::Offer(offer)) => {
                match receiver.receive(offer, node_id(1), RunContext::new()).await {
                    Ok(_) => "accepted".to_owned(),
                    Err(error) => error.to_string(),
                }
            }
            Ok(_) => "not an offer".to_owned(),
            Err(error) => error.to_string(),
        };
        let cut: String = outcome.chars().take(200).collect();
        println!("\nrss {}", peak_rss_kib().unwrap());
        println!("\noutcome {cut}");
    });
    std::process::exit(0);
}

fn control(value: &Value) -> Frame {
    Frame::new(FrameKind::Control, serde_json::to_vec(value).unwrap()).unwrap()
}

/// A name of `len` bytes that is unique for `n`.
fn name(n: u64, len: usize) -> String {
    let digits = format!("{n:x}");
    format!(
        "{digits}{}",
        "x".repeat(len.saturating_sub(digits.len()).max(1))
    )
}

/// How one hostile manifest is made: entry `i`'s path and whether it is a file.
struct Case {
    label: &'static str,
    path: Box<dyn Fn(u64) -> String>,
    file: bool,
}

/// Sends `case`'s entries to a fresh child until it hangs up or the default limits are
/// reached; returns (peak RSS above the start in KiB, the child's outcome).
fn run_case(case: &Case) -> (Option<u64>, String) {
    let limits = Limits::default();
    let child = ChildProc::start(
        "manifest_child",
        "receive",
        &[(ROLE, "1".to_owned())],
        &Setup::default(),
    );
    let port: u16 = child
        .wait_for("port", Duration::from_secs(30))
        .expect("child did not start")
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let empty = hex::encode(blake3::hash(b"").as_bytes());
        let offer = control(&json!({"type": "Offer", "body": {
            "version": 3, "transfer_id": Uuid::from_u128(7), "entries": limits.max_entries,
            "total_bytes": 0, "chunk_size": CHUNK_SIZE, "compression": "none",
            "encrypted": false, "lanes": 1
        }}));
        if write_frame(&mut stream, &offer).await.is_err() {
            return;
        }
        let mut sent = 0u64;
        let mut i = 0u64;
        'pages: while i < limits.max_entries {
            let mut entries = Vec::new();
            let mut bytes = 0;
            while bytes < 256 << 10 && i < limits.max_entries {
                let path = (case.path)(i);
                bytes += path.len() + 200;
                let entry = if case.file {
                    json!({"id": Uuid::from_u128(u128::from(i) + 1), "path": path,
                        "kind": "file", "size": 0, "mtime_ns": 1, "hash": empty})
                } else {
                    json!({"id": Uuid::from_u128(u128::from(i) + 1), "path": path,
                        "kind": "dir", "size": 0, "mtime_ns": 0})
                };
                entries.push(entry);
                i += 1;
            }
            let page = control(&json!({"type": "Manifest", "body": {"entries": entries}}));
            sent += page.payload().len() as u64;
            // The page that crosses the byte limit is sent too: the receiver refuses it.
            if write_frame(&mut stream, &page).await.is_err() || sent > limits.max_manifest_bytes {
                break 'pages;
            }
        }
        // The receiver answers (a Decline) and hangs up; wait for it.
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            Duration::from_secs(120),
            tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut sink),
        )
        .await;
    });
    let start: Option<u64> = child
        .wait_for("start", Duration::from_secs(5))
        .and_then(|v| v.parse().ok());
    let rss: Option<u64> = child
        .wait_for("rss", Duration::from_secs(120))
        .and_then(|v| v.parse().ok());
    let outcome = child
        .wait_for("outcome", Duration::from_secs(5))
        .unwrap_or_else(|| "the receiver died (out of memory under its 1 GiB cap?)".to_owned());
    child.wait();
    let above = start.zip(rss).map(|(start, rss)| rss.saturating_sub(start));
    (above, outcome)
}

#[test]
fn hostile_manifests_at_every_limit_stay_in_bounded_memory() {
    if std::env::var(ROLE).is_ok() {
        return;
    }
    // Components of 63 bytes: 64 of them fill a path of the longest length.
    let deep_component = (MAX_PATH_LEN - MAX_DEPTH) / MAX_DEPTH;
    let long_dir: Vec<String> = (0..(MAX_PATH_LEN / (MAX_COMPONENT_LEN + 1)) - 1)
        .map(|d| name(d as u64, MAX_COMPONENT_LEN))
        .collect();
    let long_dir = long_dir.join("/");
    let medium_dir: Vec<String> = (0..10).map(|d| name(d, 40)).collect();
    let medium_dir = medium_dir.join("/");
    let cases = [
        Case {
            // Every entry a new chain of the most components: the ancestors of each path.
            label: "deepest paths",
            path: Box::new(move |i| {
                (0..MAX_DEPTH as u64)
                    .map(|d| name(i * 64 + d, deep_component))
                    .collect::<Vec<_>>()
                    .join("/")
            }),
            file: false,
        },
        Case {
            label: "most entries",
            path: Box::new(|i| format!("f{i:07}")),
            file: true,
        },
        Case {
            // Paths of the longest length with the longest names, sharing their directories.
            label: "longest names",
            path: Box::new(move |i| {
                let last = MAX_PATH_LEN - long_dir.len() - 1;
                format!("{long_dir}/{}", name(i, last.min(MAX_COMPONENT_LEN)))
            }),
            file: true,
        },
        Case {
            // The most entries that the manifest byte limit lets through, each as long as fits.
            label: "max total",
            path: Box::new(move |i| format!("{medium_dir}/{}", name(i, 180))),
            file: true,
        },
    ];
    let mut failures = Vec::new();
    for case in &cases {
        let (above, outcome) = run_case(case);
        eprintln!(
            "{}: peak RSS {} MiB above the start; outcome: {outcome}",
            case.label,
            above.map_or("?".to_owned(), |kib| (kib >> 10).to_string())
        );
        match above {
            Some(kib) if kib < 64 << 10 => {}
            Some(kib) => failures.push(format!(
                "{}: peak RSS {} MiB above the start (bound 64 MiB)",
                case.label,
                kib >> 10
            )),
            None => failures.push(format!("{}: {outcome}", case.label)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
