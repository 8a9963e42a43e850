//! Real folders: many files over a stream whose buffer is bounded the way a QUIC stream's
//! flow-control window is, the toolchain's own documentation, a tree at the limits of names and
//! depth, and sends that follow a stalled or cancelled one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    clippy::panic,
    clippy::needless_pass_by_value,
    clippy::print_stderr
)]

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{ChildProc, Setup, leftovers, node_id, send_to, start_receiver, tree_hashes};
use tether_transfer::{
    AcceptAll, CancellationToken, Hello, OutgoingTransfer, Receiver, ReceiverConfig, RunContext,
    SendOptions, TransferError, TransferReport, Waiting,
};
use uuid::Uuid;

const ROOT: Uuid = Uuid::from_u128(0x51de);

/// Bytes a pipe end buffers before a write waits for the reader: far below what a folder's
/// requests add up to, as QUIC's per-stream window (1.25 MB) is below those of 40,000 files.
const PIPE_BUFFER: usize = 64 << 10;

/// Sends `source` into `receiver` over one in-memory stream of [`PIPE_BUFFER`] bytes each way;
/// both results, or a panic if the pair has not finished within `limit`.
async fn send_over_pipe(
    source: &Path,
    receiver: &Receiver,
    options: SendOptions,
    sender_cancel: CancellationToken,
    limit: Duration,
) -> (
    Result<TransferReport, TransferError>,
    Result<TransferReport, TransferError>,
) {
    let (a, b) = tokio::io::duplex(PIPE_BUFFER);
    let resolver: HashMap<Uuid, PathBuf> = [(ROOT, source.to_path_buf())].into();
    let outgoing = OutgoingTransfer::prepare(&resolver, &[ROOT], options)
        .await
        .unwrap();
    let send = outgoing.send(a, Vec::new(), RunContext::new().cancel(sender_cancel));
    let receive = async {
        match tether_transfer::read_hello(b).await? {
            Hello::Offer(offer) => receiver.receive(offer, node_id(1), RunContext::new()).await,
            _ => panic!("expected an offer"),
        }
    };
    tokio::time::timeout(limit, async { tokio::join!(send, receive) })
        .await
        .expect("the transfer neither finished nor failed in time: it stalled")
}

/// The name a shared folder gets at the destination.
fn name(path: &Path) -> &str {
    path.file_name().unwrap().to_str().unwrap()
}

fn receiver(dest: &Path) -> Receiver {
    Receiver::new(
        ReceiverConfig::new(dest)
            .consent(AcceptAll)
            .check_free_space(false),
    )
}

/// `count` one-chunk files named `prefix/NNNNN.html` under `root`.
fn small_files(root: &Path, prefix: &str, count: usize) {
    let dir = root.join(prefix);
    fs::create_dir_all(&dir).unwrap();
    for i in 0..count {
        fs::write(
            dir.join(format!("{i:05}.html")),
            format!("<p>{prefix} {i}</p>"),
        )
        .unwrap();
    }
}

/// The shape that stalled `share/doc/rust/html/core`: thousands of small files with a file of
/// several chunks here and there (each answered with a `FileRequest` on the stream the data
/// also uses), more requests in all than one stream window holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_whose_requests_outgrow_the_stream_window_goes_through() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    for dir in 0..20 {
        let prefix = format!("d{dir:02}");
        small_files(src.path(), &prefix, 200);
        let big = src.path().join(&prefix).join("search-index.js");
        common::random_file(&big, 600 << 10, dir);
    }

    let (sent, received) = send_over_pipe(
        src.path(),
        &receiver(dst.path()),
        SendOptions::default().encrypt(false),
        CancellationToken::new(),
        Duration::from_secs(120),
    )
    .await;
    let sent = sent.unwrap();
    received.unwrap();
    assert_eq!(sent.files, 4_020);
    assert_eq!(
        tree_hashes(src.path()),
        tree_hashes(&dst.path().join(name(src.path())))
    );
    assert!(leftovers(dst.path()).is_empty());
}

/// A folder of 1,000 small files travels several files to a data frame (batch frames, see
/// `src/batch.rs`): fewer bytes on the wire than one frame per file would take (each costs a
/// 25-byte chunk header and a frame header; a batch piece costs a 20-byte header), and every
/// file arrives verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_go_several_to_a_frame() {
    let src = fast_tempdir();
    let dst = fast_tempdir();
    let files = 1_000u64;
    let size = 4096u64;
    for i in 0..files {
        common::random_file(&src.path().join(format!("f{i:04}.bin")), size, i);
    }
    let (sent, received) = send_over_pipe(
        src.path(),
        &receiver(dst.path()),
        SendOptions::default().encrypt(false),
        CancellationToken::new(),
        Duration::from_secs(120),
    )
    .await;
    let sent = sent.unwrap();
    let received = received.unwrap();
    assert_eq!((sent.files, received.bytes_verified), (files, files * size));
    let overhead = sent.wire_bytes - files * size;
    assert!(
        overhead < 23 * files,
        "{overhead} bytes of framing for {files} files: one frame per file"
    );
    assert_eq!(
        tree_hashes(src.path()),
        tree_hashes(&dst.path().join(name(src.path())))
    );
    assert!(leftovers(dst.path()).is_empty());
}

fn is_child() -> bool {
    std::env::var(common::ROLE).is_ok()
}

/// A temporary directory on tmpfs where there is one: these tests are about the protocol and
/// the number of files, not the disk's fsync, which on ext4 would make them minutes long.
fn fast_tempdir() -> tempfile::TempDir {
    match Path::new("/dev/shm") {
        shm if shm.is_dir() => tempfile::tempdir_in(shm).unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

/// A name of exactly `len` bytes starting with `stem`.
fn name_of(stem: &str, len: usize) -> String {
    let mut name = stem.to_owned();
    while name.len() < len {
        name.push(char::from(b'a' + (name.len() % 26) as u8));
    }
    name
}

/// 100,000 entries (the default `Limits::max_entries`), the root included: a chain of
/// directories as deep as `MAX_DEPTH` allows whose path is as long as this machine can hold
/// under the source and destination (`MAX_PATH_LEN` is the same 4,096 bytes as Linux's
/// `PATH_MAX`, which counts the whole absolute path, and the partial file's name adds 16), and
/// files with `MAX_COMPONENT_LEN`-byte names spread over 100 directories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tree_at_the_limits_of_count_names_and_depth_goes_through() {
    use tether_transfer::{Limits, MAX_COMPONENT_LEN, MAX_DEPTH, MAX_PATH_LEN};
    if is_child() {
        return;
    }
    let src = fast_tempdir();
    let dst = fast_tempdir();
    let root = src.path().join("limits");
    fs::create_dir(&root).unwrap();
    // The deep chain: MAX_DEPTH components in all (the root's name included, the file last).
    let prefix = src
        .path()
        .as_os_str()
        .len()
        .max(dst.path().as_os_str().len());
    let longest = MAX_PATH_LEN.min(4095 - prefix - 1 - ".tether-partial.".len());
    let mut rel = String::from("limits");
    let depth = MAX_DEPTH - 1;
    let mut deep = root.clone();
    for level in 0..depth {
        // What is left for this component and the ones below it, with their separators.
        let levels = depth - level;
        let left = longest - rel.len() - levels;
        let len = if levels == 1 {
            left
        } else {
            (left / levels).min(MAX_COMPONENT_LEN)
        };
        let name = name_of(&format!("{level:02}"), len);
        rel.push('/');
        rel.push_str(&name);
        if level + 1 == depth {
            fs::write(deep.join(&name), b"at the bottom").unwrap();
        } else {
            deep = deep.join(&name);
            fs::create_dir(&deep).unwrap();
        }
    }
    assert_eq!(rel.len(), longest);
    assert_eq!(rel.split('/').count(), MAX_DEPTH);
    // Files with the longest names up to 100,000 entries: the root, the chain's directories
    // and file, 100 directories, and the files in them.
    let mut entries = 1 + depth;
    let dirs = 100;
    entries += dirs;
    let files = Limits::default().max_entries as usize - entries;
    for i in 0..files {
        let dir = root.join(name_of(&format!("d{:03}-", i % dirs), MAX_COMPONENT_LEN));
        if i < dirs {
            fs::create_dir(&dir).unwrap();
        }
        let name = name_of(&format!("{i:06}-"), MAX_COMPONENT_LEN);
        fs::write(dir.join(name), i.to_le_bytes()).unwrap();
    }

    let started = std::time::Instant::now();
    let (sent, received) = send_over_pipe(
        &root,
        &receiver(dst.path()),
        SendOptions::default().encrypt(false),
        CancellationToken::new(),
        Duration::from_secs(600),
    )
    .await;
    let sent = sent.unwrap();
    received.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(sent.files as usize, files + 1);
    assert_eq!(tree_hashes(&root), tree_hashes(&dst.path().join("limits")));
    assert!(leftovers(dst.path()).is_empty());
    eprintln!(
        "{} entries ({} files) in {secs:.1} s: {:.0} files/s",
        files + entries,
        sent.files,
        sent.files as f64 / secs
    );
}

/// A folder of the shape that stalled: small files with files of several chunks among them.
fn docs_like(root: &Path) {
    for dir in 0..10 {
        let prefix = format!("d{dir:02}");
        small_files(root, &prefix, 200);
        common::random_file(&root.join(&prefix).join("search-index.js"), 600 << 10, dir);
    }
}

/// Stops (SIGSTOP) or resumes (SIGCONT) a child: a peer that is there but moves nothing.
fn signal(child: &ChildProc, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.child.id()).unwrap()).unwrap();
    rustix::process::kill_process(pid, signal).unwrap();
}

/// A receiver that stops moving (the process frozen): the sender says what it waits for and
/// ends with `Stalled` after its bound, resumable; the receiver is then SIGKILLed, and the
/// same send to a new receiver process picks up what was kept and places every file whole.
#[test]
fn a_frozen_receiver_stalls_the_send_and_a_resend_after_sigkill_completes() {
    if is_child() {
        return;
    }
    let src = fast_tempdir();
    let dst = fast_tempdir();
    let share = src.path().join("docs");
    docs_like(&share);
    let receiver_setup = Setup {
        checkpoint_ms: Some(40),
        progress_ms: Some(5),
        ..Setup::default()
    };
    let sender_setup = Setup {
        rate: Some(4 << 20),
        stall_ms: Some(2_000),
        ..Setup::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (child, port) = start_receiver(dst.path(), &receiver_setup);
    let sending = runtime.spawn({
        let (share, setup) = (share.clone(), sender_setup.clone());
        async move { send_to(port, &share, &setup).await }
    });
    loop {
        match child.wait_for("progress", Duration::from_secs(30)) {
            Some(done) if done.parse::<u64>().unwrap() >= 4 << 20 => break,
            Some(_) => {}
            None => panic!("no progress"),
        }
    }
    signal(&child, rustix::process::Signal::STOP);
    let frozen = std::time::Instant::now();
    let sent = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), sending).await })
        .expect("the sender did not notice the stall")
        .unwrap();
    let after = frozen.elapsed();
    match &sent {
        Err(error @ TransferError::Stalled { waiting_for, idle }) => {
            assert!(error.is_resumable());
            // The socket buffers may have taken all that was asked before the freeze.
            assert!(
                matches!(waiting_for, Waiting::ReceiverReading | Waiting::Requests),
                "{error}"
            );
            assert!(*idle >= Duration::from_secs(2), "{idle:?}");
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    assert!(after < Duration::from_secs(20), "{after:?}");
    child.kill();

    let (child, port) = start_receiver(dst.path(), &receiver_setup);
    let sent = runtime
        .block_on(send_to(port, &share, &Setup::default()))
        .unwrap();
    let received = child.outcome(Duration::from_secs(120)).unwrap();
    child.wait();
    assert!(sent.bytes_resumed > 0, "nothing was kept: {sent:?}");
    assert_eq!(received.bytes_resumed, sent.bytes_resumed);
    assert_eq!(tree_hashes(&share), tree_hashes(&dst.path().join("docs")));
    assert!(leftovers(dst.path()).is_empty());
}

/// A sender that stops moving: the receiver ends with `Stalled` waiting for data, resumable.
#[test]
fn a_frozen_sender_stalls_the_receive() {
    if is_child() {
        return;
    }
    let src = fast_tempdir();
    let dst = fast_tempdir();
    let share = src.path().join("docs");
    docs_like(&share);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (listener, port) = runtime.block_on(common::listen());
    let (progress_tx, progress_rx) = std::sync::mpsc::channel();
    let setup = Setup {
        progress_ms: Some(5),
        stall_ms: Some(2_000),
        ..Setup::default()
    };
    let receiving = runtime.spawn(common::serve_one(
        listener,
        receiver_with(dst.path(), &setup),
        setup,
        std::sync::Arc::new(move |done| {
            let _ = progress_tx.send(done);
        }),
    ));
    let sender = ChildProc::start(
        "child",
        "send",
        &[
            ("TETHER_T_SRC", share.display().to_string()),
            ("TETHER_T_PORT", port.to_string()),
        ],
        &Setup {
            rate: Some(4 << 20),
            ..Setup::default()
        },
    );
    while progress_rx.recv_timeout(Duration::from_secs(30)).unwrap() < 4 << 20 {}
    signal(&sender, rustix::process::Signal::STOP);
    let received = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), receiving).await })
        .expect("the receiver did not notice the stall")
        .unwrap();
    match &received {
        Err(error @ TransferError::Stalled { waiting_for, .. }) => {
            assert!(error.is_resumable());
            assert_eq!(*waiting_for, Waiting::Data, "{error}");
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    sender.kill();
}

fn receiver_with(dest: &Path, setup: &Setup) -> Receiver {
    Receiver::new(setup.receiver_config(dest).check_free_space(false))
}
