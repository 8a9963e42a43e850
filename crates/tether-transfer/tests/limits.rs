//! Limits of the machine and of the user: a full disk (an 8 MiB tmpfs, mounted when root),
//! bandwidth limits per transfer, shared between transfers, and on the receiving side, and
//! sixteen transfers at once into one receiver.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic,
    clippy::needless_pass_by_value,
    missing_docs
)]

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use common::{Setup, hash_file, leftovers, listen, random_file, send_to, serve_one};
use tether_transfer::{
    AbortCode, LocalError, OutgoingTransfer, PeerError, RateLimiter, Receiver, RunContext,
    TransferError, TransferReport,
};
use uuid::Uuid;

/// Runs one transfer of `source` into `receiver`; returns both sides' results.
async fn transfer(
    source: &Path,
    receiver: Receiver,
    setup: &Setup,
) -> (
    Result<TransferReport, TransferError>,
    Result<TransferReport, TransferError>,
) {
    let (listener, port) = listen().await;
    let server = tokio::spawn(serve_one(
        listener,
        receiver,
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sent = send_to(port, source, setup).await;
    (sent, server.await.unwrap())
}

/// An 8 MiB tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn is_empty(dir: &Path) -> bool {
    fs::read_dir(dir).unwrap().next().is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_leaves_the_destination_untouched() {
    let Some(disk) = Tmpfs::mount() else {
        eprintln!(
            "SKIPPED full_disk_leaves_the_destination_untouched: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let big = src.path().join("big.bin");
    random_file(&big, 16 << 20, 1);

    // Refused before Accept by the free-space check.
    let setup = Setup::default();
    let (sent, received) = transfer(
        &big,
        Receiver::new(setup.receiver_config(disk.path())),
        &setup,
    )
    .await;
    let Err(TransferError::Local(error @ LocalError::DiskFull { .. })) = &received else {
        panic!("{received:?}");
    };
    eprintln!("receiver's error: {error}");
    assert!(error.to_string().contains("not enough space"));
    assert!(
        matches!(
            sent,
            Err(TransferError::Peer(PeerError::Declined {
                code: AbortCode::NoSpace,
                ..
            }))
        ),
        "{sent:?}"
    );
    assert!(is_empty(disk.path()));

    // Without the check: two 5 MiB files in nested directories; the second cannot be allocated.
    // The transfer's partial files, records and new directories are removed again.
    let tree = src.path().join("tree");
    fs::create_dir_all(tree.join("a/b")).unwrap();
    random_file(&tree.join("a/one.bin"), 5 << 20, 2);
    random_file(&tree.join("a/b/two.bin"), 5 << 20, 3);
    let setup = Setup {
        no_space_check: true,
        ..Setup::default()
    };
    for source in [&big, &tree] {
        let (sent, received) = transfer(
            source,
            Receiver::new(setup.receiver_config(disk.path())),
            &setup,
        )
        .await;
        assert!(
            matches!(
                received,
                Err(TransferError::Local(LocalError::DiskFull { .. }))
            ),
            "{received:?}"
        );
        assert!(
            matches!(
                sent,
                Err(TransferError::Peer(PeerError::Aborted {
                    code: AbortCode::NoSpace,
                    ..
                }))
            ),
            "{sent:?}"
        );
        let left: Vec<_> = fs::read_dir(disk.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    // What fits still arrives.
    let small = src.path().join("small.bin");
    random_file(&small, 3 << 20, 4);
    let (sent, received) = transfer(
        &small,
        Receiver::new(setup.receiver_config(disk.path())),
        &setup,
    )
    .await;
    sent.unwrap();
    received.unwrap();
    assert_eq!(hash_file(&disk.path().join("small.bin")), hash_file(&small));
}

const LIMIT: u64 = 6 << 20;

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1048576.0
}

/// The limiter may let a rate through at most 10 % above the limit; slower is only load.
fn assert_rate(label: &str, bytes: u64, secs: f64) {
    let rate = bytes as f64 / secs;
    eprintln!(
        "{label}: {:.2} MiB/s measured against a {:.2} MiB/s limit ({:+.1} %)",
        mib_per_s(bytes, secs),
        mib_per_s(LIMIT, 1.0),
        (rate / LIMIT as f64 - 1.0) * 100.0
    );
    assert!(rate <= LIMIT as f64 * 1.10, "{label}: too fast");
    assert!(rate >= LIMIT as f64 * 0.5, "{label}: far too slow");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_hold() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    random_file(&file, 12 << 20, 5);

    // Per transfer, on the sender.
    let dest = tempfile::tempdir().unwrap();
    let setup = Setup {
        rate: Some(LIMIT),
        ..Setup::default()
    };
    let (sent, _) = transfer(
        &file,
        Receiver::new(setup.receiver_config(dest.path())),
        &setup,
    )
    .await;
    let sent = sent.unwrap();
    assert_rate("sender limit", sent.wire_bytes, sent.duration.as_secs_f64());

    // Per transfer, on the receiver.
    let dest = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let config = setup.receiver_config(dest.path()).rate_limit(Some(LIMIT));
    let (_, received) = transfer(&file, Receiver::new(config), &setup).await;
    let received = received.unwrap();
    assert_rate(
        "receiver limit",
        received.wire_bytes,
        received.duration.as_secs_f64(),
    );

    // One global limit shared by two transfers running at once.
    let dest = tempfile::tempdir().unwrap();
    let second = src.path().join("b.bin");
    random_file(&second, 12 << 20, 6);
    let global = RateLimiter::new(LIMIT);
    let (listener, port) = listen().await;
    let receiver = Receiver::new(Setup::default().receiver_config(dest.path()));
    let serving = tokio::spawn(async move {
        // Two transfers on one listener: serve until both ended.
        let a = serve_one(
            listener,
            receiver.clone(),
            Setup::default(),
            Arc::new(|_| {}),
        );
        a.await
    });
    let (listener2, port2) = listen().await;
    let receiver2 = Receiver::new(Setup::default().receiver_config(dest.path()));
    let serving2 = tokio::spawn(serve_one(
        listener2,
        receiver2,
        Setup::default(),
        Arc::new(|_| {}),
    ));
    let start = Instant::now();
    let (one, two) = tokio::join!(
        send_shared(port, &file, global.clone()),
        send_shared(port2, &second, global.clone())
    );
    let elapsed = start.elapsed().as_secs_f64();
    let wire = one.unwrap().wire_bytes + two.unwrap().wire_bytes;
    serving.await.unwrap().unwrap();
    serving2.await.unwrap().unwrap();
    assert_rate("global limit, two transfers", wire, elapsed);
}

async fn send_shared(
    port: u16,
    source: &Path,
    limiter: RateLimiter,
) -> Result<TransferReport, TransferError> {
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, source.to_path_buf())].into();
    let outgoing =
        OutgoingTransfer::prepare(&resolver, &[id], Setup::default().send_options()).await?;
    let mut streams = common::connect(port, 1)
        .await
        .map_err(TransferError::Link)?;
    outgoing
        .send(
            streams.remove(0),
            Vec::new(),
            RunContext::new().shared_limit(limiter),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_transfers_at_once() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    // All sixteen come from one device (`serve_one`'s peer) at the same moment: the receiver
    // is told to answer them all at once (by default it answers two per device, and declines
    // the rest as busy: tests/policy.rs).
    let receiver = Receiver::new(
        Setup::default()
            .receiver_config(dest.path())
            .max_offers_per_peer(16),
    );
    let mut files = Vec::new();
    for i in 0..16u64 {
        let file = src.path().join(format!("file-{i:02}.bin"));
        random_file(&file, (2 << 20) + i * 1000, 100 + i);
        files.push(file);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, file) in files.iter().cloned().enumerate() {
        let receiver = receiver.clone();
        tasks.push(tokio::spawn(async move {
            let setup = Setup {
                key_seed: (i % 2 == 0).then_some(i as u64),
                compress: i % 3 == 0,
                lanes: 1 + i % 2,
                ..Setup::default()
            };
            let (listener, port) = listen().await;
            let server = tokio::spawn(serve_one(
                listener,
                receiver,
                setup.clone(),
                Arc::new(|_| {}),
            ));
            let sent = send_to(port, &file, &setup).await.unwrap();
            let received = server.await.unwrap().unwrap();
            (sent, received)
        }));
    }
    let mut total = 0;
    for task in tasks {
        let (sent, received) = task.await.unwrap();
        assert_eq!(sent.bytes_verified, received.bytes_total);
        total += received.bytes_transferred;
    }
    let secs = start.elapsed().as_secs_f64();
    for file in &files {
        assert_eq!(
            hash_file(&dest.path().join(file.file_name().unwrap())),
            hash_file(file)
        );
    }
    assert!(leftovers(dest.path()).is_empty());
    eprintln!("16 transfers at once: {} MiB in {secs:.2} s", total >> 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_transfers_to_one_target_do_not_mix() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let (a, b) = (src.path().join("a"), src.path().join("b"));
    fs::create_dir_all(&a).unwrap();
    fs::create_dir_all(&b).unwrap();
    random_file(&a.join("same.bin"), 8 << 20, 7);
    random_file(&b.join("same.bin"), 8 << 20, 8);
    let receiver = Receiver::new(Setup::default().receiver_config(dest.path()));
    let slow = Setup {
        rate: Some(4 << 20),
        ..Setup::default()
    };
    let (file_a, file_b) = (a.join("same.bin"), b.join("same.bin"));
    // The second starts once the first is receiving data (its targets are claimed by then).
    let (progress, mut receiving) = tokio::sync::watch::channel(0u64);
    let (listener, port) = listen().await;
    let server = tokio::spawn(serve_one(
        listener,
        receiver.clone(),
        slow.clone(),
        Arc::new(move |done| {
            progress.send_replace(done);
        }),
    ));
    let first_send = tokio::spawn({
        let slow = slow.clone();
        async move { send_to(port, &file_a, &slow).await }
    });
    receiving.wait_for(|done| *done > 0).await.unwrap();
    let second = transfer(&file_b, receiver.clone(), &slow).await;
    let first = (first_send.await.unwrap(), server.await.unwrap());
    first.1.unwrap();
    assert!(
        matches!(
            second.1,
            Err(TransferError::Local(LocalError::TargetBusy(_)))
        ),
        "{:?}",
        second.1
    );
    // The sender hears "busy", which trying again cures (the other transfer ends), not a
    // refusal: a restarted sender whose old transfer the receiver still runs resumes.
    assert!(
        matches!(
            second.0,
            Err(TransferError::Peer(PeerError::Declined {
                code: AbortCode::Busy,
                ..
            }))
        ),
        "{:?}",
        second.0
    );
    assert_eq!(
        hash_file(&dest.path().join("same.bin")),
        hash_file(&a.join("same.bin"))
    );
    assert!(leftovers(dest.path()).is_empty());
}

/// A file the user creates at a target path while its transfer runs is never replaced: that
/// file fails with `TargetExists` (renames are no-replace), the user's bytes stay, and every
/// other file is either in place and whole or not there at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_created_mid_transfer_is_not_replaced() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let tree = src.path().join("album");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..24u64 {
        random_file(&tree.join(format!("f{i:02}.bin")), 256 << 10, 100 + i);
    }
    let receiver = Receiver::new(Setup::default().receiver_config(dest.path()));
    // About 3 s in all, so the user's file lands while the transfer runs.
    let slow = Setup {
        rate: Some(2 << 20),
        ..Setup::default()
    };
    let (progress, mut receiving) = tokio::sync::watch::channel(0u64);
    let (listener, port) = listen().await;
    let server = tokio::spawn(serve_one(
        listener,
        receiver.clone(),
        slow.clone(),
        Arc::new(move |done| {
            progress.send_replace(done);
        }),
    ));
    let send = tokio::spawn({
        let (slow, tree) = (slow.clone(), tree.clone());
        async move { send_to(port, &tree, &slow).await }
    });
    receiving.wait_for(|done| *done > 0).await.unwrap();
    let mine = dest.path().join("album").join("f23.bin");
    fs::create_dir_all(mine.parent().unwrap()).unwrap();
    fs::write(&mine, b"the user's own file").unwrap();

    let received = server.await.unwrap();
    let _ = send.await.unwrap();
    assert!(
        matches!(
            received,
            Err(TransferError::Local(LocalError::TargetExists(ref path))) if path == &mine
        ),
        "{received:?}"
    );
    assert_eq!(fs::read(&mine).unwrap(), b"the user's own file");
    let mut placed = 0;
    for i in 0..23u64 {
        let name = format!("f{i:02}.bin");
        let target = dest.path().join("album").join(&name);
        if target.exists() {
            assert_eq!(hash_file(&target), hash_file(&tree.join(&name)), "{name}");
            placed += 1;
        }
    }
    eprintln!("placed {placed} of 23 other files before the clash ended the transfer");
}
