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

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{leftovers, node_id, tree_hashes};
use tether_transfer::{
    AcceptAll, CancellationToken, Hello, OutgoingTransfer, Receiver, ReceiverConfig, RunContext,
    SendOptions, TransferError, TransferReport,
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
