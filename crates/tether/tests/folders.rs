//! Real folders between two paired services over loopback (issue 16): the toolchain's own
//! `share/doc/rust/html/core` (41,462 files), and a folder sent again on the same services
//! after a cancelled send of it, then another folder, each verified file by file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Lab, event_within};
use tether::{
    NetworkError, NetworkEvent, NetworkingService, TransferEvent, TransferOptions, TransferReport,
};

/// The longest a whole folder may take before the test calls it a stall (the facade's own stall
/// bound, 60 s without a byte, should end one first).
const SEND_LIMIT: Duration = Duration::from_secs(300);

/// A temporary directory for received (and generated) trees: on `/dev/shm` when it exists, so
/// tens of thousands of file creations, renames and fsyncs cost memory writes rather than ext4
/// journal commits on a small CI machine; else in the default temporary directory.
fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(dir) = tempfile::Builder::new()
            .prefix("tether-folders-")
            .tempdir_in(shm)
    {
        return dir;
    }
    tempfile::tempdir().unwrap()
}

/// Every file under `root` by relative path with its BLAKE3 hash; a directory as `path/` with
/// no hash, so empty directories count too.
fn tree(root: &Path) -> BTreeMap<String, Option<blake3::Hash>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), None);
                stack.push(path);
            } else {
                let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                out.insert(rel, Some(blake3::hash(&bytes)));
            }
        }
    }
    out
}

/// Panics unless `received` holds exactly the files and directories of `source`, byte for
/// byte, naming the first differences.
fn assert_same_tree(source: &Path, received: &Path) {
    let want = tree(source);
    let got = tree(received);
    let mut differences = Vec::new();
    for (path, hash) in &want {
        match got.get(path) {
            None => differences.push(format!("missing {path}")),
            Some(other) if other != hash => differences.push(format!("different {path}")),
            Some(_) => {}
        }
    }
    differences.extend(
        got.keys()
            .filter(|path| !want.contains_key(*path))
            .map(|path| format!("extra {path}")),
    );
    assert!(
        differences.is_empty(),
        "{} of {} entries differ between {} and {}; the first: {:#?}",
        differences.len(),
        want.len(),
        source.display(),
        received.display(),
        &differences[..differences.len().min(20)]
    );
}

/// The engine's partial files and resume records anywhere under `dir`.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains(".tether-"))
            {
                found.push(path);
            }
        }
    }
    found
}

/// Bytes that differ from file to file, from `seed`.
fn pseudo_random(len: usize, seed: u32) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect()
}

/// `small` files of tens of bytes spread over `small / 100` directories, and `big` files of
/// 1 to 2 MiB among them; returns the file count.
fn synthetic_tree(root: &Path, small: usize, big: u32, name_stem: &str) -> usize {
    for i in 0..small {
        let dir = root.join(format!("dir_{:03}", i / 100));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("{name_stem}_{i:05}.html")),
            format!("<p>{name_stem} {i}</p>\n"),
        )
        .unwrap();
    }
    for i in 0..big {
        let len = (1 << 20) + (i as usize * 300_000) % (1 << 20);
        let dir = root.join(format!("dir_{:03}", i * 7 % (small as u32 / 100).max(1)));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("search-index-{i}.js")),
            pseudo_random(len, i),
        )
        .unwrap();
    }
    small + big as usize
}

/// Offers the folder `source` from `sender` to `receiver` with default options and waits (at
/// most [`SEND_LIMIT`]) for the sender's end.
async fn offer(
    sender: &NetworkingService,
    receiver: &NetworkingService,
    source: &Path,
) -> Result<TransferReport, NetworkError> {
    let handle = sender
        .share_with_device(
            receiver.node_id(),
            &[source.to_path_buf()],
            TransferOptions::default(),
        )
        .await?;
    tokio::time::timeout(SEND_LIMIT, handle.finish())
        .await
        .unwrap_or_else(|_| panic!("{} did not go through in {SEND_LIMIT:?}", source.display()))
}

/// Waits for the receiver's side of `sent` on `events`, checks both reports and every file of
/// `source` as it arrived in `inbox`, and prints the rate over `elapsed`.
async fn check_received(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    sent: &TransferReport,
    source: &Path,
    inbox: &Path,
    elapsed: Duration,
) {
    let received = event_within(events, Duration::from_secs(30), |event| {
        matches!(event, NetworkEvent::TransferReceived { report, .. }
            if report.transfer_id == sent.transfer_id)
    })
    .await
    .expect("the receiver did not report the transfer within 30 s of the sender's end");
    let NetworkEvent::TransferReceived {
        report: received, ..
    } = received
    else {
        unreachable!()
    };
    let files = tree(source).values().filter(|hash| hash.is_some()).count();
    eprintln!(
        "{}: {files} files, {} bytes ({} resumed) in {:.2} s: {:.0} files/s, {:.1} MB/s",
        source.display(),
        sent.bytes_total,
        sent.bytes_resumed,
        elapsed.as_secs_f64(),
        files as f64 / elapsed.as_secs_f64(),
        sent.bytes_total as f64 / elapsed.as_secs_f64() / 1e6,
    );
    assert_eq!(sent.files as usize, files, "{sent:?}");
    assert_eq!(sent.bytes_verified, sent.bytes_total, "{sent:?}");
    assert_eq!(received.bytes_verified, sent.bytes_total, "{received:?}");
    assert_same_tree(source, &inbox.join(source.file_name().unwrap()));
    let left = leftovers(inbox);
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Sends the folder `source` into `inbox` (the receiver's receive directory) and checks it.
async fn send_folder(
    sender: &NetworkingService,
    receiver: &NetworkingService,
    source: &Path,
    inbox: &Path,
) -> TransferReport {
    let mut events = receiver.subscribe();
    let began = Instant::now();
    let sent = offer(sender, receiver, source)
        .await
        .unwrap_or_else(|e| panic!("sending {}: {e}", source.display()));
    check_received(&mut events, &sent, source, inbox, began.elapsed()).await;
    sent
}

/// The toolchain's `share/doc/rust/html/core`, or why it is not there.
fn toolchain_core_docs() -> Result<PathBuf, String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = std::process::Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("{} --print sysroot: {e}", rustc.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "{} --print sysroot failed: {}",
            rustc.to_string_lossy(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let core = Path::new(&sysroot).join("share/doc/rust/html/core");
    if core.is_dir() {
        Ok(core)
    } else {
        Err(format!(
            "{} not found (the rust-docs component is not installed)",
            core.display()
        ))
    }
}

/// The folder that stalled at 90.6 % and panicked the sender in issue 16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_toolchains_core_docs_go_through() {
    let core = match toolchain_core_docs() {
        Ok(core) => core,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let lab = Lab::new();
    let scratch = scratch();
    let inbox = scratch.path().join("inbox");
    let (sender, receiver) = lab.sender_and_receiver(&inbox).await;

    let report = send_folder(&sender, &receiver, &core, &inbox).await;
    assert!(report.files > 40_000, "{report:?}");
    sender.shutdown().await;
    receiver.shutdown().await;
}

/// A cancelled send ends (resumable), leaves nothing behind that stops the same folder from
/// going through on the same two services, nor a different folder after it (issue 16: after a
/// stalled send, the next one failed with "connection lost").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_a_cancelled_one_of_the_same_folder_completes() {
    let lab = Lab::new();
    let scratch = scratch();
    let inbox = scratch.path().join("inbox");
    let source = scratch.path().join("site");
    let files = synthetic_tree(&source, 3_000, 4, "page");
    let (sender, receiver) = lab.sender_and_receiver(&inbox).await;

    // Slow enough (about 6 s in all) to be cancelled part way.
    let options = TransferOptions::default().rate_limit(Some(1 << 20));
    let mut handle = sender
        .share_with_device(receiver.node_id(), std::slice::from_ref(&source), options)
        .await
        .unwrap();
    let at_cancel = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = handle.events.recv().await {
            if let TransferEvent::Progress(progress) = event
                && progress.bytes_done > progress.bytes_total / 3
            {
                handle.cancel();
                return progress;
            }
        }
        panic!("the send ended before a third of it was sent")
    })
    .await
    .expect("a third of the folder was not sent within 60 s");
    assert!(
        at_cancel.bytes_done < at_cancel.bytes_total,
        "cancelled only at the end: {at_cancel:?}"
    );
    let ended = tokio::time::timeout(Duration::from_secs(20), handle.finish())
        .await
        .expect("a cancelled send did not end within 20 s");
    match ended {
        Err(NetworkError::Transfer(error)) if error.is_resumable() => {
            eprintln!(
                "cancelled at {} of {} bytes: {error}",
                at_cancel.bytes_done, at_cancel.bytes_total
            );
        }
        other => panic!("a cancelled send must end with a resumable error: {other:?}"),
    }

    // The receiver learns of the cancel when the stream ends; until then the folder is busy
    // there and a new offer for it is turned away (resumably). A person presses "send" again.
    let mut events = receiver.subscribe();
    let began = Instant::now();
    let deadline = began + Duration::from_secs(10);
    let resent = loop {
        match offer(&sender, &receiver, &source).await {
            Ok(report) => break report,
            Err(NetworkError::Transfer(error))
                if error.is_resumable() && Instant::now() < deadline =>
            {
                eprintln!("resend turned away for now: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the resend never went through: {error}"),
        }
    };
    check_received(&mut events, &resent, &source, &inbox, began.elapsed()).await;
    assert_eq!(resent.files as usize, files, "{resent:?}");
    assert!(
        resent.bytes_resumed > 0 && resent.bytes_resumed < resent.bytes_total,
        "the resend keeps what the cancelled one verified: {resent:?}"
    );

    let other = scratch.path().join("another_site");
    synthetic_tree(&other, 1_000, 2, "a_page_with_a_fairly_long_name");
    let report = send_folder(&sender, &receiver, &other, &inbox).await;
    assert_eq!(report.bytes_resumed, 0, "{report:?}");
    sender.shutdown().await;
    receiver.shutdown().await;
}
