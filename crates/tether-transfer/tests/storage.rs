//! What a paired device may take of the receiver's disk: the free-space reserve (counted with
//! directories, checked again while receiving), the inode budget, and a per-device quota.
//! The disk tests mount small tmpfs file systems and skip, saying why, when not root.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic,
    missing_docs
)]

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};

use common::{Setup, leftovers, listen, node_id, random_file, send_to, serve_one};
use tether_identity::NodeId;
use tether_transfer::{
    AbortCode, Consent, Decision, LocalError, OfferSummary, PeerError, QuotaRefusal, Receiver,
    ReceiverConfig, Reserve, StorageQuota, TransferError, TransferReport,
};

/// A tmpfs with these mount options, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(options: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
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

/// A tmpfs with `options`, or `None` after saying why `test` is skipped.
fn tmpfs_or_skip(test: &str, options: &str) -> Option<Tmpfs> {
    let disk = Tmpfs::mount(options);
    if disk.is_none() {
        eprintln!("SKIPPED {test}: cannot mount a tmpfs (needs root)");
    }
    disk
}

type Results = (
    Result<TransferReport, TransferError>,
    Result<TransferReport, TransferError>,
);

/// Runs one transfer of `source` into a receiver with `config`; returns both sides' results.
async fn transfer(source: &Path, config: ReceiverConfig, setup: &Setup) -> Results {
    let (listener, port) = listen().await;
    let server = tokio::spawn(serve_one(
        listener,
        Receiver::new(config),
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sent = send_to(port, source, setup).await;
    (sent, server.await.unwrap())
}

/// Everything under `dir`, as relative paths.
fn contents(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().to_path_buf());
            if path.symlink_metadata().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    found
}

/// Free bytes on the file system of `path`.
fn free_bytes(path: &Path) -> u64 {
    let stat = rustix::fs::statvfs(path).unwrap();
    stat.f_bavail * stat.f_frsize
}

/// The sender was declined for lack of room, with a reason it can show.
fn assert_declined_no_space(sent: &Result<TransferReport, TransferError>) {
    match sent {
        Err(TransferError::Peer(PeerError::Declined {
            code: AbortCode::NoSpace,
            message,
        })) => {
            eprintln!("the sender reads: {message}");
            assert!(!message.is_empty());
        }
        other => panic!("expected a NoSpace decline, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_that_would_eat_into_the_space_reserve_is_declined() {
    let test = "an_offer_that_would_eat_into_the_space_reserve_is_declined";
    let Some(disk) = tmpfs_or_skip(test, "size=8m") else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("five.bin");
    random_file(&file, 5 << 20, 1);
    let setup = Setup::default();
    let config = setup
        .receiver_config(disk.path())
        .space_reserve(Reserve::Absolute(4 << 20));
    let (sent, received) = transfer(&file, config, &setup).await;
    let Err(TransferError::Local(error @ LocalError::ReserveReached { .. })) = &received else {
        panic!("expected the reserve to decline the offer, got {received:?}");
    };
    eprintln!("the receiver reads: {error}");
    assert!(error.to_string().contains("kept free"), "{error}");
    assert_declined_no_space(&sent);
    assert!(contents(disk.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directories_count_against_the_free_space() {
    let test = "directories_count_against_the_free_space";
    let Some(disk) = tmpfs_or_skip(test, "size=8m") else {
        return;
    };
    // 2,100 empty directories: no file byte at all, but at least a block each (8.2 MiB).
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    for i in 0..2100 {
        fs::create_dir_all(tree.join(format!("d{i}"))).unwrap();
    }
    let setup = Setup::default();
    let config = setup
        .receiver_config(disk.path())
        .space_reserve(Reserve::Absolute(0));
    let (sent, received) = transfer(&tree, config, &setup).await;
    assert!(
        matches!(
            &received,
            Err(TransferError::Local(LocalError::DiskFull { .. }))
        ),
        "expected the directories to count, got {:?}",
        received.as_ref().map(|r| r.files)
    );
    assert_declined_no_space(&sent);
    assert!(contents(disk.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_files_than_the_free_inodes_less_the_reserve_is_declined() {
    let test = "more_files_than_the_free_inodes_less_the_reserve_is_declined";
    let Some(disk) = tmpfs_or_skip(test, "size=64m,nr_inodes=5000") else {
        return;
    };
    // 6,000 empty files: no bytes to speak of, but an inode each.
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("many");
    fs::create_dir(&tree).unwrap();
    for i in 0..6000 {
        fs::write(tree.join(format!("f{i}")), b"").unwrap();
    }
    let setup = Setup::default();
    let config = setup.receiver_config(disk.path());
    let (sent, received) = transfer(&tree, config, &setup).await;
    let Err(TransferError::Local(error @ LocalError::InodesShort { .. })) = &received else {
        panic!(
            "expected the inode budget to decline the offer, got {:?}; {} entries written",
            received.as_ref().map(|r| r.files),
            contents(disk.path()).len()
        );
    };
    eprintln!("the receiver reads: {error}");
    assert_declined_no_space(&sent);
    assert!(contents(disk.path()).is_empty());

    // Within the budget (5 % of 5,000 kept): 4,000 files arrive.
    let fewer = src.path().join("fewer");
    fs::create_dir(&fewer).unwrap();
    for i in 0..4000 {
        fs::write(fewer.join(format!("f{i}")), b"").unwrap();
    }
    let config = setup.receiver_config(disk.path());
    let (sent, received) = transfer(&fewer, config, &setup).await;
    sent.unwrap();
    assert_eq!(received.unwrap().files, 4000);
}

/// Accepts, after filling the destination's disk as another program could, between the check
/// of the offer and the first allocation.
struct FillThenAccept {
    filler: PathBuf,
    bytes: u64,
}

impl Consent for FillThenAccept {
    fn decide<'a>(
        &'a self,
        _offer: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            random_file(&self.filler, self.bytes, 9);
            Decision::Accept
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_filled_after_accept_stops_the_transfer_before_the_reserve() {
    let test = "a_disk_filled_after_accept_stops_the_transfer_before_the_reserve";
    let Some(disk) = tmpfs_or_skip(test, "size=8m") else {
        return;
    };
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("three.bin");
    random_file(&file, 3 << 20, 2);
    let dest = disk.path().join("in");
    fs::create_dir(&dest).unwrap();
    let filler = disk.path().join("filler");
    let setup = Setup::default();
    let reserve = 2 << 20;
    let config = setup
        .receiver_config(&dest)
        .space_reserve(Reserve::Absolute(reserve))
        .consent(FillThenAccept {
            filler: filler.clone(),
            bytes: 4 << 20,
        });
    let (sent, received) = transfer(&file, config, &setup).await;
    let Err(TransferError::Local(error @ LocalError::ReserveReached { .. })) = &received else {
        panic!("expected the reserve to stop the transfer, got {received:?}");
    };
    eprintln!("the receiver reads: {error}");
    assert!(
        matches!(
            &sent,
            Err(TransferError::Peer(PeerError::Aborted {
                code: AbortCode::NoSpace,
                ..
            }))
        ),
        "{sent:?}"
    );
    assert!(!dest.join("three.bin").exists(), "a file was placed");
    let free = free_bytes(disk.path());
    eprintln!("free after: {free} bytes (reserve {reserve})");
    assert!(free >= reserve, "the reserve was eaten: {free} bytes free");

    // Once the other program's file is gone, the same transfer goes through.
    fs::remove_file(&filler).unwrap();
    let config = setup
        .receiver_config(&dest)
        .space_reserve(Reserve::Absolute(reserve));
    let (sent, received) = transfer(&file, config, &setup).await;
    sent.unwrap();
    received.unwrap();
    assert!(leftovers(&dest).is_empty(), "{:?}", leftovers(&dest));
    assert_eq!(
        fs::read(dest.join("three.bin")).unwrap(),
        fs::read(&file).unwrap()
    );
}

/// A quota kept in memory: bytes charged per device, against one limit for all.
struct CountingQuota {
    quota: u64,
    used: Mutex<HashMap<NodeId, u64>>,
}

impl StorageQuota for CountingQuota {
    fn charge(&self, peer: &NodeId, bytes: u64) -> Result<(), QuotaRefusal> {
        let mut used = self.used.lock().unwrap();
        let now = used.entry(*peer).or_default();
        if now.saturating_add(bytes) > self.quota {
            return Err(QuotaRefusal::exceeded(self.quota, *now));
        }
        *now += bytes;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_quota_is_declined_and_nothing_is_written() {
    let src = tempfile::tempdir().unwrap();
    let first = src.path().join("first");
    let second = src.path().join("second");
    fs::create_dir(&first).unwrap();
    fs::create_dir(&second).unwrap();
    random_file(&first.join("a.bin"), 600 << 10, 3);
    random_file(&second.join("b.bin"), 600 << 10, 4);
    let dest = tempfile::tempdir().unwrap();
    let quota = Arc::new(CountingQuota {
        quota: 1 << 20,
        used: Mutex::new(HashMap::new()),
    });
    let setup = Setup::default();
    let config = || setup.receiver_config(dest.path()).quota(quota.clone());

    let (sent, received) = transfer(&first, config(), &setup).await;
    sent.unwrap();
    received.unwrap();
    let before = contents(dest.path());
    assert_eq!(quota.used.lock().unwrap()[&node_id(1)], 600 << 10);

    let (sent, received) = transfer(&second, config(), &setup).await;
    let Err(TransferError::Local(error @ LocalError::QuotaExceeded { .. })) = &received else {
        panic!("expected the quota to decline the offer, got {received:?}");
    };
    eprintln!("the receiver reads: {error}");
    assert_declined_no_space(&sent);
    assert_eq!(contents(dest.path()), before, "something of it was written");
    assert_eq!(quota.used.lock().unwrap()[&node_id(1)], 600 << 10);

    // What is already in place costs nothing again.
    let (sent, received) = transfer(&first, config(), &setup).await;
    sent.unwrap();
    received.unwrap();
    assert_eq!(quota.used.lock().unwrap()[&node_id(1)], 600 << 10);
}
