//! Pulling a file by entry id from a paired device: verified, scoped per device by the sharer's
//! `ShareProvider`, refused with a typed error, and resumed after the sharer restarts or the
//! requester is killed with SIGKILL (the requester then runs as a child process: this test
//! binary re-run with `TETHER_PULL_CHILD` set, selecting the ignored `child_requester`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, next_event, pair};
use tether::{
    DeviceInfo, DeviceName, NetworkError, NetworkEvent, NetworkingConfig, NetworkingService,
    NodeId, PullEvent, PullOptions, ShareProvider, SharedEntry, TransferEvent, TransferReport,
    Uuid,
};

/// Shares each (device, entry) pair it was given, and records every question it is asked.
#[derive(Debug, Default)]
struct Shares {
    shared: Mutex<HashMap<(NodeId, Uuid), PathBuf>>,
    asked: Mutex<Vec<(NodeId, Uuid)>>,
}

impl Shares {
    fn share(&self, with: NodeId, entry: Uuid, path: &Path) {
        self.shared
            .lock()
            .unwrap()
            .insert((with, entry), path.to_owned());
    }

    fn asked(&self) -> Vec<(NodeId, Uuid)> {
        self.asked.lock().unwrap().clone()
    }
}

/// The provider the service holds: the test keeps the `Arc` to share and to read the record.
#[derive(Debug, Clone)]
struct Provider(Arc<Shares>);

impl ShareProvider for Provider {
    fn resolve(&self, from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        self.0
            .asked
            .lock()
            .unwrap()
            .push((from.public_key, entry_id));
        let shared = self.0.shared.lock().unwrap();
        shared
            .get(&(from.public_key, entry_id))
            .map(|path| SharedEntry::new(path.clone()))
    }
}

/// `size` pseudo-random bytes from `seed` (BLAKE3's output stream), written to `path`.
fn random_file(path: &Path, size: u64, seed: u8) {
    let mut stream = blake3::Hasher::new().update(&[seed]).finalize_xof();
    let mut file = std::fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        stream.fill(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

fn hash_of(path: &Path) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).unwrap())
        .unwrap();
    hasher.finalize()
}

/// A sharer ("laptop") holding `shares`, and a requester ("phone"), paired.
async fn sharer_and_requester(
    lab: &Lab,
    shares: &Arc<Shares>,
) -> (NetworkingService, NetworkingService) {
    let sharer = start_sharer(lab, shares).await;
    let requester = lab.start("phone").await;
    pair(&sharer, &requester).await;
    (sharer, requester)
}

async fn start_sharer(lab: &Lab, shares: &Arc<Shares>) -> NetworkingService {
    let config = lab
        .config("laptop")
        .with_share_provider(Provider(Arc::clone(shares)));
    NetworkingService::start(config).await.unwrap()
}

/// Waits for the pull's end, counting its progress events.
async fn finish(mut handle: tether::TransferHandle) -> (Result<TransferReport, NetworkError>, u64) {
    let mut progress = 0;
    while let Some(event) = handle.events.recv().await {
        if matches!(event, TransferEvent::Progress(_)) {
            progress += 1;
        }
    }
    (handle.finish().await, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulled_file_arrives_verified_with_progress() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let (sharer, requester) = sharer_and_requester(&lab, &shares).await;
    let source = lab.root.path().join("film.bin");
    random_file(&source, 6 << 20, 1);
    let entry = Uuid::from_u128(0xf11);
    shares.share(requester.node_id(), entry, &source);
    let mut sharer_events = sharer.subscribe();

    let inbox = lab.root.path().join("pulled");
    // Slowed to about 0.4 s, so the 100 ms progress ticks come.
    let options = PullOptions::default().rate_limit(Some(16 << 20));
    let handle = requester
        .device(sharer.node_id())
        .unwrap()
        .request_file(entry, &inbox, options)
        .await
        .unwrap();
    let (report, progress) = finish(handle).await;
    let report = report.unwrap();
    assert_eq!(hash_of(&inbox.join("film.bin")), hash_of(&source));
    assert_eq!(report.bytes_total, 6 << 20);
    assert_eq!(report.bytes_transferred, 6 << 20);
    assert!(report.cipher.is_some(), "pulls are sealed like pushes");
    assert!(progress > 0, "no progress events");

    let started = next_event(&mut sharer_events, |event| {
        matches!(event, NetworkEvent::Pull(PullEvent::Started { .. }))
    })
    .await;
    let NetworkEvent::Pull(PullEvent::Started {
        from,
        entry_id,
        bytes_total,
        ..
    }) = started
    else {
        unreachable!()
    };
    assert_eq!(
        (from, entry_id, bytes_total),
        (requester.node_id(), entry, 6 << 20)
    );
    next_event(&mut sharer_events, |event| {
        matches!(event, NetworkEvent::Pull(PullEvent::Completed { entry_id, .. }) if *entry_id == entry)
    })
    .await;
    sharer.shutdown().await;
    requester.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_not_shared_is_refused_and_nothing_is_read() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let (sharer, requester) = sharer_and_requester(&lab, &shares).await;
    // The shared entry's file does not exist: serving it would fail, not refuse. Asking for
    // another id must be refused before the provider's answer is used for anything.
    let shared = Uuid::from_u128(1);
    let other = Uuid::from_u128(2);
    shares.share(requester.node_id(), shared, &lab.root.path().join("absent"));
    let mut sharer_events = sharer.subscribe();

    let inbox = lab.root.path().join("pulled");
    let handle = requester
        .request_file(sharer.node_id(), other, &inbox, PullOptions::default())
        .await
        .unwrap();
    let (refused, _) = finish(handle).await;
    let refused = refused.unwrap_err();
    assert!(
        matches!(refused, NetworkError::NotShared { entry_id } if entry_id == other),
        "{refused:?}"
    );
    common::checked_chain(&refused);
    assert_eq!(shares.asked(), vec![(requester.node_id(), other)]);
    assert_eq!(
        std::fs::read_dir(&inbox).unwrap().count(),
        0,
        "something was written"
    );
    next_event(&mut sharer_events, |event| {
        matches!(event, NetworkEvent::Pull(PullEvent::Refused { entry_id, .. }) if *entry_id == other)
    })
    .await;

    // The shared id whose file is missing fails on the sharer's side, and says only that.
    let handle = requester
        .request_file(sharer.node_id(), shared, &inbox, PullOptions::default())
        .await
        .unwrap();
    let failed = finish(handle).await.0.unwrap_err();
    assert!(
        !matches!(failed, NetworkError::NotShared { .. }),
        "{failed:?}"
    );
    let text = common::checked_chain(&failed);
    assert!(!text.contains("absent"), "the sharer's path leaked: {text}");
    sharer.shutdown().await;
    requester.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_shares_nothing_refuses_every_pull() {
    let lab = Lab::new();
    let sharer = lab.start("laptop").await;
    let requester = lab.start("phone").await;
    pair(&sharer, &requester).await;
    let handle = requester
        .request_file(
            sharer.node_id(),
            Uuid::from_u128(7),
            &lab.root.path().join("pulled"),
            PullOptions::default(),
        )
        .await
        .unwrap();
    let refused = finish(handle).await.0.unwrap_err();
    assert!(
        matches!(refused, NetworkError::NotShared { entry_id } if entry_id == Uuid::from_u128(7)),
        "{refused:?}"
    );
    sharer.shutdown().await;
    requester.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_is_shared_with_one_device_and_not_another() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let sharer = start_sharer(&lab, &shares).await;
    let a = lab.start("phone").await;
    let c = lab.start("tablet").await;
    pair(&sharer, &a).await;
    pair(&sharer, &c).await;
    let source = lab.root.path().join("notes.txt");
    random_file(&source, 300 << 10, 2);
    let entry = Uuid::from_u128(0x5);
    shares.share(a.node_id(), entry, &source);

    let from_c = lab.root.path().join("c");
    let handle = c
        .request_file(sharer.node_id(), entry, &from_c, PullOptions::default())
        .await
        .unwrap();
    let refused = finish(handle).await.0.unwrap_err();
    assert!(
        matches!(refused, NetworkError::NotShared { .. }),
        "{refused:?}"
    );
    assert!(!from_c.join("notes.txt").exists());

    let from_a = lab.root.path().join("a");
    let handle = a
        .request_file(sharer.node_id(), entry, &from_a, PullOptions::default())
        .await
        .unwrap();
    finish(handle).await.0.unwrap();
    assert_eq!(hash_of(&from_a.join("notes.txt")), hash_of(&source));
    assert_eq!(
        shares.asked(),
        vec![(c.node_id(), entry), (a.node_id(), entry)]
    );
    for service in [sharer, a, c] {
        service.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_gets_at_most_four_pulls_served_at_once() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let (sharer, requester) = sharer_and_requester(&lab, &shares).await;
    let source = lab.root.path().join("big.bin");
    random_file(&source, 8 << 20, 5);
    let entry = Uuid::from_u128(0xb16);
    shares.share(requester.node_id(), entry, &source);
    let slow = PullOptions::default().rate_limit(Some(1 << 20));
    let mut handles = Vec::new();
    for i in 0..=tether::MAX_PULLS_PER_DEVICE {
        let inbox = lab.root.path().join(format!("pulled-{i}"));
        let handle = requester
            .request_file(sharer.node_id(), entry, &inbox, slow.clone())
            .await
            .unwrap();
        handles.push(handle);
    }
    // The four served move bytes for seconds; the fifth is refused at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut busy = 0;
    for handle in handles {
        handle.cancel();
        match finish(handle).await.0 {
            Err(NetworkError::Transfer(tether::TransferError::Peer(error))) => {
                let text = error.to_string();
                assert!(text.contains("Busy"), "{text}");
                busy += 1;
            }
            Err(NetworkError::Transfer(tether::TransferError::Cancelled)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(busy, 1);
    sharer.shutdown().await;
    requester.shutdown().await;
}

/// Waits until the pull's progress passes `bytes`; returns the handle, still running.
async fn until_past(handle: &mut tether::TransferHandle, bytes: u64) {
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match handle.events.recv().await {
                Some(TransferEvent::Progress(progress)) if progress.bytes_done >= bytes => return,
                Some(_) => {}
                None => panic!("the pull ended before {bytes} bytes"),
            }
        }
    })
    .await
    .expect("no progress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_resumes_after_the_sharer_restarts() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let (sharer, requester) = sharer_and_requester(&lab, &shares).await;
    let source = lab.root.path().join("disk.img");
    let size = 16 << 20;
    random_file(&source, size, 3);
    let entry = Uuid::from_u128(0xd15c);
    shares.share(requester.node_id(), entry, &source);
    let inbox = lab.root.path().join("pulled");
    let slow = PullOptions::default().rate_limit(Some(4 << 20));

    let mut handle = requester
        .request_file(sharer.node_id(), entry, &inbox, slow.clone())
        .await
        .unwrap();
    until_past(&mut handle, 4 << 20).await;
    sharer.shutdown().await;
    let cut = finish(handle).await.0.unwrap_err();
    let NetworkError::Transfer(cut) = cut else {
        panic!("{cut:?}")
    };
    assert!(cut.is_resumable(), "{cut:?}");
    assert!(!inbox.join("disk.img").exists());

    // The same data directory: the same device, still paired; it shares the same entry.
    let sharer = start_sharer(&lab, &shares).await;
    let handle = requester
        .request_file(
            sharer.node_id(),
            entry,
            &inbox,
            PullOptions::default().resume_from(4 << 20),
        )
        .await
        .unwrap();
    let report = finish(handle).await.0.unwrap();
    assert_eq!(hash_of(&inbox.join("disk.img")), hash_of(&source));
    assert_resumed(&report, size);
    sharer.shutdown().await;
    requester.shutdown().await;
}

const CHILD: &str = "TETHER_PULL_CHILD";

/// The requester's config, the same in the test and in its child process.
fn requester_config(root: &Path) -> NetworkingConfig {
    let mut config = NetworkingConfig::local_only(root.join("phone"))
        .with_device_name(DeviceName::new("phone").unwrap())
        .with_loopback_discovery(root.join("discovery"))
        .with_insecure_key_file();
    config.discovery_timeout = Duration::from_secs(5);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_resumes_after_the_requester_is_killed() {
    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let sharer = start_sharer(&lab, &shares).await;
    let requester = NetworkingService::start(requester_config(lab.root.path()))
        .await
        .unwrap();
    pair(&sharer, &requester).await;
    let requester_id = requester.node_id();
    requester.shutdown().await;

    let source = lab.root.path().join("backup.tar");
    let size: u64 = 16 << 20;
    random_file(&source, size, 4);
    let entry = Uuid::from_u128(0xbac);
    shares.share(requester_id, entry, &source);
    let inbox = lab.root.path().join("pulled");

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pull::child_requester",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD, lab.root.path())
        .env("TETHER_PULL_SHARER", sharer.node_id().to_string())
        .env("TETHER_PULL_ENTRY", entry.to_string())
        .env("TETHER_PULL_INBOX", &inbox)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap());
    let reached = tokio::task::spawn_blocking(move || {
        for line in lines.lines() {
            let line = line.unwrap();
            if let Some(bytes) = line.strip_prefix("pull-progress ")
                && bytes.parse::<u64>().unwrap() >= 4 << 20
            {
                return true;
            }
            if line.starts_with("pull-done") {
                return false;
            }
        }
        false
    });
    let reached = tokio::time::timeout(Duration::from_secs(90), reached)
        .await
        .expect("the child made no progress")
        .unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        reached,
        "the child finished (or ended) before it was killed"
    );
    assert!(!inbox.join("backup.tar").exists());

    let requester = NetworkingService::start(requester_config(lab.root.path()))
        .await
        .unwrap();
    let handle = requester
        .request_file(sharer.node_id(), entry, &inbox, PullOptions::default())
        .await
        .unwrap();
    let report = finish(handle).await.0.unwrap();
    assert_eq!(hash_of(&inbox.join("backup.tar")), hash_of(&source));
    assert_resumed(&report, size);
    sharer.shutdown().await;
    requester.shutdown().await;
}

/// The requester of `a_pull_resumes_after_the_requester_is_killed`, in a child process: pulls
/// slowly, printing its progress, until it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by a_pull_resumes_after_the_requester_is_killed"]
async fn child_requester() {
    let Some(root) = std::env::var_os(CHILD) else {
        println!("run only as a child of a_pull_resumes_after_the_requester_is_killed");
        return;
    };
    let var = |name| std::env::var(name).unwrap();
    let sharer: NodeId = var("TETHER_PULL_SHARER").parse().unwrap();
    let entry: Uuid = var("TETHER_PULL_ENTRY").parse().unwrap();
    let inbox = PathBuf::from(var("TETHER_PULL_INBOX"));
    let requester = NetworkingService::start(requester_config(Path::new(&root)))
        .await
        .unwrap();
    let mut handle = requester
        .request_file(
            sharer,
            entry,
            &inbox,
            PullOptions::default().rate_limit(Some(2 << 20)),
        )
        .await
        .unwrap();
    let mut out = std::io::stdout();
    while let Some(event) = handle.events.recv().await {
        if let TransferEvent::Progress(progress) = event {
            writeln!(out, "pull-progress {}", progress.bytes_done).unwrap();
            out.flush().unwrap();
        }
    }
    let result = handle.finish().await;
    writeln!(out, "pull-done {}", result.is_ok()).unwrap();
}

/// At least 2 MiB was kept from the interrupted attempt, and nothing was sent twice.
fn assert_resumed(report: &TransferReport, size: u64) {
    assert!(report.bytes_resumed >= 2 << 20, "{report:?}");
    assert_eq!(
        report.bytes_resumed + report.bytes_transferred,
        size,
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_into_an_existing_directory_leaves_its_permissions_alone() {
    use std::os::unix::fs::PermissionsExt;

    let lab = Lab::new();
    let shares = Arc::new(Shares::default());
    let (sharer, requester) = sharer_and_requester(&lab, &shares).await;
    let source = lab.root.path().join("song.bin");
    random_file(&source, 1 << 20, 4);
    let entry = Uuid::from_u128(0x5);
    shares.share(requester.node_id(), entry, &source);
    // The person's own folder, readable by others on purpose.
    let downloads = lab.root.path().join("Downloads");
    std::fs::create_dir(&downloads).unwrap();
    std::fs::set_permissions(&downloads, std::fs::Permissions::from_mode(0o755)).unwrap();

    let handle = requester
        .request_file(sharer.node_id(), entry, &downloads, PullOptions::default())
        .await
        .unwrap();
    finish(handle).await.0.unwrap();
    let mode = std::fs::metadata(&downloads).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o755,
        "the pull changed the folder's permissions to {mode:o}"
    );
    sharer.shutdown().await;
    requester.shutdown().await;
}

/// Shares one file, slowly: every answer takes `delay` (a sharer hashing a large file).
#[derive(Debug)]
struct Slow {
    path: PathBuf,
    delay: Duration,
}

impl ShareProvider for Slow {
    fn resolve(&self, _from: &DeviceInfo, _entry_id: Uuid) -> Option<SharedEntry> {
        std::thread::sleep(self.delay);
        Some(SharedEntry::new(self.path.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sharer_slower_to_answer_than_the_stall_bound_is_still_waited_for() {
    let lab = Lab::new();
    let source = lab.root.path().join("archive.bin");
    random_file(&source, 1 << 20, 5);
    let config = lab.config("laptop").with_share_provider(Slow {
        path: source.clone(),
        delay: Duration::from_millis(1500),
    });
    let sharer = NetworkingService::start(config).await.unwrap();
    let requester = lab.start("phone").await;
    pair(&sharer, &requester).await;

    let inbox = lab.root.path().join("pulled");
    let options = PullOptions::default().stall_timeout(Duration::from_millis(500));
    let handle = requester
        .request_file(sharer.node_id(), Uuid::from_u128(0x6), &inbox, options)
        .await
        .unwrap();
    let report = finish(handle).await.0.unwrap();
    assert_eq!(report.bytes_total, 1 << 20);
    assert_eq!(hash_of(&inbox.join("archive.bin")), hash_of(&source));
    sharer.shutdown().await;
    requester.shutdown().await;
}
