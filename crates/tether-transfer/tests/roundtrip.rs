//! Round trips over TCP on 127.0.0.1: a directory tree in one process pair, a 64 MiB file
//! between two processes (1 GiB in an ignored test), repeat runs, and existing targets.
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

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use common::{
    ChildProc, Setup, hash_file, leftovers, listen, random_file, send_to, serve_one, transfer,
    tree_hashes,
};
use tether_transfer::{LocalError, PeerError, Receiver, TransferError};

/// A tree with nested and empty directories, empty, tiny, one-chunk and many-chunk files.
fn sample_tree(root: &std::path::Path) {
    fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    fs::create_dir_all(root.join("empty dir")).unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join("docs/hello.txt"), b"hello, tether").unwrap();
    fs::write(
        root.join("docs/deep/er/text.log"),
        "line of text\n".repeat(60_000),
    )
    .unwrap();
    random_file(
        &root.join("docs/deep/blob.bin"),
        3 * (256 << 10) + 12_345,
        7,
    );
    random_file(&root.join("one-chunk.bin"), 256 << 10, 8);
}

async fn round_trip(setup: Setup) {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let root = src.path().join("share");
    sample_tree(&root);
    let (sent, received) = transfer(&root, dest.path(), &setup).await;
    let sent = sent.unwrap();
    let received = received.unwrap();
    assert_eq!(tree_hashes(&root), tree_hashes(&dest.path().join("share")));
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
    let total = sent.bytes_total;
    assert_eq!(received.bytes_total, total);
    assert_eq!(received.bytes_transferred, total);
    assert_eq!(received.bytes_verified, total);
    assert_eq!(sent.bytes_transferred, total);
    assert_eq!(sent.bytes_verified, total);
    assert_eq!((sent.files, received.files), (5, 5));
    if setup.compress {
        assert!(
            received.wire_bytes < total,
            "text should compress: {received:?}"
        );
    }

    // Again: everything is in place, nothing moves.
    let (sent, received) = transfer(&root, dest.path(), &setup).await;
    let sent = sent.unwrap();
    let received = received.unwrap();
    assert_eq!(received.bytes_transferred, 0);
    assert_eq!(received.bytes_resumed, total);
    assert_eq!(sent.bytes_resumed, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_round_trip_plain() {
    round_trip(Setup::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_round_trip_encrypted_compressed_three_lanes() {
    round_trip(Setup {
        key_seed: Some(5),
        compress: true,
        lanes: 3,
        ..Setup::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_different_target_is_refused_before_any_data() {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("a.bin");
    random_file(&file, 100_000, 1);
    fs::write(dest.path().join("a.bin"), b"mine, not yours").unwrap();
    let setup = Setup::default();
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let server = tokio::spawn(serve_one(
        listener,
        receiver,
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sent = send_to(port, &file, &setup).await;
    assert!(
        matches!(sent, Err(TransferError::Peer(PeerError::Declined { .. }))),
        "{sent:?}"
    );
    let received = server.await.unwrap();
    assert!(matches!(
        received,
        Err(TransferError::Local(LocalError::TargetExists(_)))
    ));
    assert_eq!(
        fs::read(dest.path().join("a.bin")).unwrap(),
        b"mine, not yours"
    );
    assert!(leftovers(dest.path()).is_empty());

    let setup = Setup {
        overwrite: true,
        ..Setup::default()
    };
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let server = tokio::spawn(serve_one(
        listener,
        receiver,
        setup.clone(),
        Arc::new(|_| {}),
    ));
    send_to(port, &file, &setup).await.unwrap();
    server.await.unwrap().unwrap();
    assert_eq!(hash_file(&dest.path().join("a.bin")), hash_file(&file));
}

fn cross_process(size: u64, setup: &Setup, timeout: Duration) {
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    random_file(&file, size, 42);
    let child = ChildProc::start(
        "child",
        "receive",
        &[("TETHER_T_DEST", dest.path().display().to_string())],
        setup,
    );
    let port: u16 = child
        .wait_for("port", Duration::from_secs(30))
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = runtime.block_on(send_to(port, &file, setup)).unwrap();
    let received = child.outcome(timeout).unwrap();
    let rss_kib: u64 = child
        .wait_for("rss", Duration::from_secs(10))
        .unwrap()
        .parse()
        .unwrap();
    child.wait();
    assert_eq!(hash_file(&dest.path().join("big.bin")), hash_file(&file));
    assert!(leftovers(dest.path()).is_empty());
    assert_eq!(received.bytes_transferred, size);
    assert_eq!(sent.bytes_verified, size);
    eprintln!(
        "{} MiB between processes: sender {:.0} MiB/s, receiver {:.0} MiB/s, receiver peak RSS {} MiB",
        size >> 20,
        sent.rate() / 1048576.0,
        received.rate() / 1048576.0,
        rss_kib >> 10
    );
    // The receiver holds a few chunks per lane, not the file.
    assert!(rss_kib < 64 << 10, "receiver peak RSS {rss_kib} KiB");
}

#[test]
fn file_64mib_between_processes_encrypted() {
    if std::env::var(common::ROLE).is_ok() {
        return;
    }
    cross_process(
        64 << 20,
        &Setup {
            key_seed: Some(9),
            ..Setup::default()
        },
        Duration::from_secs(120),
    );
}

#[test]
#[ignore = "1 GiB: run with --ignored (about a minute in a debug build)"]
fn file_1gib_between_processes() {
    if std::env::var(common::ROLE).is_ok() {
        return;
    }
    cross_process(
        1 << 30,
        &Setup {
            key_seed: Some(9),
            lanes: 2,
            ..Setup::default()
        },
        Duration::from_secs(900),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_progress_and_every_file() {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use tether_transfer::{
        Hello, OutgoingTransfer, RunContext, SendOptions, TransferEvent, read_hello,
    };
    use uuid::Uuid;

    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let root = src.path().join("share");
    sample_tree(&root);
    random_file(&root.join("slow.bin"), 3 << 20, 9);
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, root.clone())].into();
    let options = SendOptions::default()
        .encrypt(false)
        .rate_limit(Some(8 << 20))
        .progress_interval(Duration::from_millis(20));
    let outgoing = OutgoingTransfer::prepare(&resolver, &[id], options)
        .await
        .unwrap();
    let (listener, port) = listen().await;
    let config = Setup::default()
        .receiver_config(dest.path())
        .progress_interval(Duration::from_millis(20));
    let receiver = Receiver::new(config);
    let (send_events, mut sent_rx) = tokio::sync::mpsc::channel(4096);
    let (receive_events, mut received_rx) = tokio::sync::mpsc::channel(4096);
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let Ok(Hello::Offer(offer)) = read_hello(stream).await else {
            panic!("no offer")
        };
        let ctx = RunContext::new().events(receive_events);
        receiver.receive(offer, common::node_id(1), ctx).await
    });
    let stream = common::connect(port, 1).await.unwrap().remove(0);
    let sent = outgoing
        .send(stream, Vec::new(), RunContext::new().events(send_events))
        .await
        .unwrap();
    let received = server.await.unwrap().unwrap();
    for (events, report) in [(&mut sent_rx, &sent), (&mut received_rx, &received)] {
        let mut last = 0;
        let (mut started, mut progress, mut files_done, mut with_eta) = (0, 0, 0, 0);
        while let Ok(event) = events.try_recv() {
            match event {
                TransferEvent::Started { bytes_total, .. } => {
                    started += 1;
                    assert_eq!(bytes_total, report.bytes_total);
                }
                TransferEvent::Progress(p) => {
                    progress += 1;
                    assert!(
                        p.bytes_done >= last && p.bytes_done <= p.bytes_total,
                        "{p:?}"
                    );
                    last = p.bytes_done;
                    with_eta += usize::from(p.eta.is_some() && p.rate > 0.0);
                    let file = p.file.expect("the file of the latest chunk");
                    assert!(file.bytes_done <= file.size);
                }
                TransferEvent::FileDone { .. } => files_done += 1,
                _ => {}
            }
        }
        assert_eq!(started, 1, "{:?}", report.direction);
        assert!(progress >= 5, "{progress} progress events");
        assert!(with_eta > 0);
        if report.direction == tether_transfer::Direction::Receive {
            assert_eq!(files_done, 6);
        }
    }
}
