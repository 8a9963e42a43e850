//! Hostile peers, speaking raw frames over TCP on 127.0.0.1: traversal and device names, absurd
//! sizes, a million entries (memory measured in a separate process), lying chunk hashes,
//! unsolicited, corrupt and bomb chunks, symlinks in the destination, and a receiver asking for
//! files it was never offered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs,
    clippy::panic,
    clippy::needless_pass_by_value
)]

use crate::common;

use std::collections::HashMap;
use std::fs;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{ChildProc, Setup, leftovers, listen, node_id, random_file, serve_one};
use serde_json::{Value, json};
use tether_transfer::{
    CHUNK_SIZE, Hello, LocalError, ManifestError, OutgoingTransfer, PeerError, Receiver,
    RunContext, SendOptions, TransferError, read_hello,
};
use tether_wire::{DataChunk, Frame, FrameKind, read_frame, write_frame};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use uuid::Uuid;

fn control(value: &Value) -> Frame {
    Frame::new(FrameKind::Control, serde_json::to_vec(value).unwrap()).unwrap()
}

fn offer(entries: u64, total_bytes: u64) -> Frame {
    control(&json!({"type": "Offer", "body": {
        "version": 3, "transfer_id": Uuid::from_u128(99), "entries": entries,
        "total_bytes": total_bytes, "chunk_size": CHUNK_SIZE, "compression": "zstd",
        "encrypted": false, "lanes": 1
    }}))
}

fn file_entry(id: u128, path: &str, size: u64, hash: [u8; 32]) -> Value {
    json!({"id": Uuid::from_u128(id), "path": path, "kind": "file", "size": size,
        "mtime_ns": 1, "hash": hex::encode(hash)})
}

fn manifest(entries: Vec<Value>) -> Frame {
    control(&json!({"type": "Manifest", "body": {"entries": entries}}))
}

/// Runs a receiver into a fresh destination while `script` plays the sender; returns the
/// receiver's result, the destination, and every control message the script read back.
async fn against_receiver<F, Fut>(
    prepare: impl FnOnce(&std::path::Path),
    script: F,
) -> (
    Result<tether_transfer::TransferReport, TransferError>,
    tempfile::TempDir,
    Vec<Value>,
)
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: Future<Output = TcpStream>,
{
    let dest = tempfile::tempdir().unwrap();
    prepare(dest.path());
    let setup = Setup::default();
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let server = tokio::spawn(serve_one(listener, receiver, setup, Arc::new(|_| {})));
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut stream = script(stream).await;
    let mut replies = Vec::new();
    while let Ok(Ok(Some(frame))) =
        tokio::time::timeout(Duration::from_secs(5), read_frame(&mut stream)).await
    {
        if frame.kind() == FrameKind::Control {
            replies.push(serde_json::from_slice(frame.payload()).unwrap());
        }
    }
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("receiver hung")
        .unwrap();
    (result, dest, replies)
}

async fn send_frames(mut stream: TcpStream, frames: Vec<Frame>) -> TcpStream {
    for frame in &frames {
        if write_frame(&mut stream, frame).await.is_err() {
            break;
        }
    }
    let _ = stream.flush().await;
    stream
}

fn declined(replies: &[Value]) -> bool {
    replies.iter().any(|r| r["type"] == "Decline")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_is_written() {
    for bad in [
        "../evil",
        "a/../../evil",
        "/tmp/evil",
        "CON",
        "nul.txt",
        "dir/COM1.log",
        "a\\..\\evil",
        "C:evil",
        "trailing. ",
        ".x.tether-partial",
        "",
    ] {
        let frames = vec![offer(1, 5), manifest(vec![file_entry(1, bad, 5, [0; 32])])];
        let (result, dest, replies) = against_receiver(|_| {}, |s| send_frames(s, frames)).await;
        assert!(
            matches!(
                result,
                Err(TransferError::Peer(PeerError::Manifest(
                    ManifestError::Path { .. }
                )))
            ),
            "{bad:?}: {result:?}"
        );
        assert!(declined(&replies), "{bad:?}");
        assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0, "{bad:?}");
    }
    assert!(!std::path::Path::new("/tmp/evil").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_destination_are_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_path_buf();
    let data = b"hello";
    let hash = *blake3::hash(data).as_bytes();
    let frames = vec![
        offer(1, 5),
        manifest(vec![file_entry(1, "link/f.txt", 5, hash)]),
    ];
    let (result, dest, replies) = against_receiver(
        |dest| std::os::unix::fs::symlink(&target, dest.join("link")).unwrap(),
        |s| send_frames(s, frames),
    )
    .await;
    assert!(
        matches!(
            result,
            Err(TransferError::Local(
                LocalError::TargetExists(_) | LocalError::NotADirectory(_)
            ))
        ),
        "{result:?}"
    );
    assert!(declined(&replies));
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    drop(dest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_sizes_are_refused_before_anything_is_allocated() {
    let cases: Vec<(Frame, Vec<Frame>)> = vec![
        (offer(1, u64::MAX), vec![]),
        (
            offer(1, 1 << 60),
            vec![manifest(vec![file_entry(1, "huge", 1 << 60, [0; 32])])],
        ),
        (
            offer(2, 10),
            vec![manifest(vec![
                file_entry(1, "a", u64::MAX, [0; 32]),
                file_entry(2, "b", 11, [0; 32]),
            ])],
        ),
        // More bytes than announced.
        (
            offer(1, 10),
            vec![manifest(vec![file_entry(1, "a", 11, [0; 32])])],
        ),
    ];
    for (offer, rest) in cases {
        let mut frames = vec![offer];
        frames.extend(rest);
        let (result, _dest, replies) = against_receiver(|_| {}, |s| send_frames(s, frames)).await;
        assert!(
            matches!(result, Err(TransferError::Peer(PeerError::Manifest(_)))),
            "{result:?}"
        );
        assert!(declined(&replies));
    }
    // A size the disk cannot hold is refused by the free-space check.
    let frames = vec![
        offer(1, 1 << 39),
        manifest(vec![file_entry(1, "big", 1 << 39, [0; 32])]),
    ];
    let (result, dest, _) = against_receiver(|_| {}, |s| send_frames(s, frames)).await;
    assert!(
        matches!(
            result,
            Err(TransferError::Local(LocalError::DiskFull { .. }))
        ),
        "{result:?}"
    );
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
}

/// Manifest pages holding `count` empty files in all, 2000 per page.
fn pages(count: u64) -> Vec<Frame> {
    let empty = *blake3::hash(b"").as_bytes();
    (0..count)
        .collect::<Vec<_>>()
        .chunks(2000)
        .map(|ids| {
            manifest(
                ids.iter()
                    .map(|&i| file_entry(u128::from(i) + 1, &format!("f{i:07}"), 0, empty))
                    .collect(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_entries_are_refused() {
    // Announced: refused on the offer alone.
    let (result, _d, replies) =
        against_receiver(|_| {}, |s| send_frames(s, vec![offer(1_000_000, 0)])).await;
    assert!(matches!(
        result,
        Err(TransferError::Peer(PeerError::Manifest(
            ManifestError::Limit {
                what: "entries",
                ..
            }
        )))
    ));
    assert!(declined(&replies));
    // Under-announced: refused at the first entry past the announcement.
    let mut frames = vec![offer(10, 0)];
    frames.extend(pages(20_000));
    let (result, _d, _) = against_receiver(|_| {}, |s| send_frames(s, frames)).await;
    assert!(
        matches!(
            result,
            Err(TransferError::Peer(PeerError::Manifest(
                ManifestError::Inconsistent(_)
            )))
        ),
        "{result:?}"
    );
}

/// Runs a child receiver, floods it with `flood` entries after `offer` (the entry at `dup_at` a
/// duplicate), returns its outcome and peak RSS.
fn flood_child(offer: Frame, flood: u64, dup_at: Option<u64>) -> (String, u64) {
    let dest = tempfile::tempdir().unwrap();
    let child = ChildProc::start(
        "child",
        "receive",
        &[("TETHER_T_DEST", dest.path().display().to_string())],
        &Setup::default(),
    );
    let port: u16 = child
        .wait_for("port", Duration::from_secs(30))
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        write_frame(&mut stream, &offer).await.unwrap();
        // Pages made as they are sent; the flood stops when the receiver hangs up.
        let empty = *blake3::hash(b"").as_bytes();
        for first in (0..flood).step_by(2000) {
            let page = manifest(
                (first..(first + 2000).min(flood))
                    .map(|i| {
                        let id = if Some(i) == dup_at {
                            1
                        } else {
                            u128::from(i) + 1
                        };
                        file_entry(id, &format!("f{i:07}"), 0, empty)
                    })
                    .collect(),
            );
            if write_frame(&mut stream, &page).await.is_err() {
                break;
            }
        }
    });
    let outcome = child.outcome(Duration::from_secs(60)).unwrap_err();
    let rss: u64 = child
        .wait_for("rss", Duration::from_secs(10))
        .unwrap()
        .parse()
        .unwrap();
    child.wait();
    assert_eq!(fs::read_dir(dest.path()).unwrap().count(), 0);
    (outcome, rss)
}

#[test]
fn a_million_entry_flood_stays_in_bounded_memory() {
    if std::env::var(common::ROLE).is_ok() {
        return;
    }
    // Announced as a million: refused at the offer, the flood is never read.
    let (outcome, rss) = flood_child(offer(1_000_000, 0), 1_000_000, None);
    assert!(outcome.contains("entries"), "{outcome}");
    assert!(rss < 64 << 10, "peak RSS {rss} KiB");
    // Announced at the limit (100 000) and a million sent, the last of the first 100 000 a
    // duplicate: the receiver holds a whole manifest at the limit, then refuses it.
    let (outcome, rss_at_limit) = flood_child(offer(100_000, 0), 1_000_000, Some(99_999));
    assert!(outcome.contains("Conflict"), "{outcome}");
    assert!(rss_at_limit < 128 << 10, "peak RSS {rss_at_limit} KiB");
    eprintln!(
        "peak RSS of the receiving process: {} MiB (1e6 announced), {} MiB (a full 1e5-entry manifest held, then refused)",
        rss >> 10,
        rss_at_limit >> 10
    );
}

/// A one-file transfer of `data` up to the point the receiver asks for chunks.
async fn accepted_session(stream: &mut TcpStream, data: &[u8], hashes: Option<Vec<[u8; 32]>>) {
    let size = data.len() as u64;
    let root = *blake3::hash(data).as_bytes();
    write_frame(stream, &offer(1, size)).await.unwrap();
    write_frame(stream, &manifest(vec![file_entry(1, "f.bin", size, root)]))
        .await
        .unwrap();
    let reply = read_frame(stream).await.unwrap().unwrap();
    assert_eq!(
        reply.payload(),
        br#"{"type":"Accept","body":{"batches":true}}"#
    );
    if let Some(hashes) = hashes {
        let hex: String = hashes.iter().map(hex::encode).collect();
        let page = json!({"type": "ChunkHashes", "body": {"entry_id": Uuid::from_u128(1), "first": 0, "hashes": hex}});
        write_frame(stream, &control(&page)).await.unwrap();
    }
}

fn one_chunk_file() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_hashes_bad_chunks_and_bombs_are_refused() {
    // Chunk hashes that do not add up to the file hash.
    let two_chunks = vec![7u8; 300_000];
    let (result, dest, _) = against_receiver(
        |_| {},
        |mut s| {
            let data = two_chunks.clone();
            async move {
                accepted_session(&mut s, &data, Some(vec![[1; 32], [2; 32]])).await;
                s
            }
        },
    )
    .await;
    assert!(
        matches!(
            result,
            Err(TransferError::Peer(PeerError::BadHashes { .. }))
        ),
        "{result:?}"
    );
    assert!(!dest.path().join("f.bin").exists());

    let data = one_chunk_file();
    let chunk_cases: Vec<(&str, DataChunk)> = vec![
        ("corrupt", {
            let mut bad = data.clone();
            bad[500] ^= 1;
            DataChunk::new(Uuid::from_u128(1), 0, true, &bad).unwrap()
        }),
        (
            "unknown entry",
            DataChunk::new(Uuid::from_u128(2), 0, true, &data).unwrap(),
        ),
        (
            "bad offset",
            DataChunk::new(Uuid::from_u128(1), 4096, true, &data).unwrap(),
        ),
        (
            "bomb",
            DataChunk::new(
                Uuid::from_u128(1),
                0,
                true,
                &zstd::bulk::compress(&vec![0u8; 256 << 10], 3).unwrap(),
            )
            .unwrap(),
        ),
        (
            "short",
            DataChunk::new(Uuid::from_u128(1), 0, true, b"garbage").unwrap(),
        ),
    ];
    for (name, chunk) in chunk_cases {
        let data = data.clone();
        let (result, dest, replies) = against_receiver(
            |_| {},
            |mut s| async move {
                accepted_session(&mut s, &data, None).await;
                // A one-chunk file is asked for with a `Want` of its only chunk.
                let want = read_frame(&mut s).await.unwrap().unwrap();
                let want: Value = serde_json::from_slice(want.payload()).unwrap();
                assert_eq!(want["type"], "Want", "{want}");
                assert_eq!(want["body"]["ranges"], json!([[0, 1]]), "{want}");
                write_frame(&mut s, &chunk.into_frame()).await.unwrap();
                s
            },
        )
        .await;
        let expected = match name {
            "corrupt" => matches!(
                result,
                Err(TransferError::Peer(PeerError::ChunkMismatch { .. }))
            ),
            "unknown entry" | "bad offset" => {
                matches!(
                    result,
                    Err(TransferError::Peer(PeerError::Unsolicited { .. }))
                )
            }
            _ => matches!(
                result,
                Err(TransferError::Peer(PeerError::ChunkEncoding { .. }))
            ),
        };
        assert!(expected, "{name}: {result:?}");
        assert!(replies.iter().any(|r| r["type"] == "Abort"), "{name}");
        assert!(!dest.path().join("f.bin").exists(), "{name}");
    }

    // A duplicate of a chunk already written.
    let (result, dest, _) = against_receiver(
        |_| {},
        |mut s| async move {
            let big: Vec<u8> = vec![3u8; 300_000];
            let size = big.len() as u64;
            let h0 = {
                use blake3::hazmat::HasherExt;
                let mut h = blake3::Hasher::new();
                h.update(&big[..256 << 10]);
                h.finalize_non_root()
            };
            let h1 = {
                use blake3::hazmat::HasherExt;
                let mut h = blake3::Hasher::new();
                h.set_input_offset(256 << 10);
                h.update(&big[256 << 10..]);
                h.finalize_non_root()
            };
            accepted_session(&mut s, &big, Some(vec![h0, h1])).await;
            let _want = read_frame(&mut s).await.unwrap().unwrap();
            let first = DataChunk::new(Uuid::from_u128(1), 0, false, &big[..256 << 10]).unwrap();
            write_frame(&mut s, &first.clone().into_frame())
                .await
                .unwrap();
            write_frame(&mut s, &first.into_frame()).await.unwrap();
            let _ = size;
            s
        },
    )
    .await;
    assert!(
        matches!(
            result,
            Err(TransferError::Peer(PeerError::Unsolicited { .. }))
        ),
        "{result:?}"
    );
    assert!(!dest.path().join("f.bin").exists());
}

/// A batch frame (see `src/batch.rs`): a data frame for the nil entry at offset `u64::MAX`
/// whose bytes are pieces `entry id | len u32 BE | bytes`.
fn batch_frame(pieces: &[(u128, &[u8])], cut: usize) -> Frame {
    let mut bytes = Vec::new();
    for (id, piece) in pieces {
        bytes.extend_from_slice(Uuid::from_u128(*id).as_bytes());
        bytes.extend_from_slice(&(piece.len() as u32).to_be_bytes());
        bytes.extend_from_slice(piece);
    }
    bytes.truncate(bytes.len() - cut);
    DataChunk::new(Uuid::nil(), u64::MAX, false, &bytes)
        .unwrap()
        .into_frame()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_batch_frames_are_typed_errors() {
    let data = one_chunk_file();
    let mut bad = data.clone();
    bad[7] ^= 1;
    let cases: Vec<(&str, Frame)> = vec![
        ("cut short", batch_frame(&[(1, &data)], 1)),
        ("header cut", batch_frame(&[(1, &data), (1, b"")], 1)),
        ("empty", batch_frame(&[], 0)),
        ("unknown entry", batch_frame(&[(2, &data)], 0)),
        ("twice", batch_frame(&[(1, &data), (1, &data)], 0)),
        ("corrupt", batch_frame(&[(1, &bad)], 0)),
    ];
    for (name, frame) in cases {
        let data = data.clone();
        let (result, dest, replies) = against_receiver(
            |_| {},
            |mut s| async move {
                accepted_session(&mut s, &data, None).await;
                let _want = read_frame(&mut s).await.unwrap().unwrap();
                write_frame(&mut s, &frame).await.unwrap();
                s
            },
        )
        .await;
        let expected = match name {
            "cut short" | "header cut" | "empty" => {
                matches!(result, Err(TransferError::Peer(PeerError::Frame(_))))
            }
            "unknown entry" | "twice" => matches!(
                result,
                Err(TransferError::Peer(PeerError::Unsolicited { .. }))
            ),
            _ => matches!(
                result,
                Err(TransferError::Peer(PeerError::ChunkMismatch { .. }))
            ),
        };
        assert!(expected, "{name}: {result:?}");
        assert!(replies.iter().any(|r| r["type"] == "Abort"), "{name}");
        // The first copy of "twice" is the whole verified file, and may be in place already.
        if name != "twice" {
            assert!(!dest.path().join("f.bin").exists(), "{name}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_cannot_read_what_was_not_offered() {
    let src = tempfile::tempdir().unwrap();
    let shared = src.path().join("shared.bin");
    let secret = src.path().join("secret.bin");
    random_file(&shared, 1000, 1);
    fs::write(&secret, b"do not send").unwrap();
    let id = Uuid::from_u128(5);
    let resolver: HashMap<Uuid, PathBuf> = [(id, shared)].into();
    for request in [
        json!({"type": "FileRequest", "body": {"entry_id": Uuid::from_u128(6), "resume_from": 0}}),
        json!({"type": "Want", "body": {"entry_id": id, "ranges": [[0, 99]]}}),
        json!({"type": "FileRequest", "body": {"entry_id": id, "resume_from": 5000}}),
    ] {
        let outgoing =
            OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default().encrypt(false))
                .await
                .unwrap();
        let (listener, port) = listen().await;
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            outgoing.send(stream, Vec::new(), RunContext::new()).await
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let _offer = read_frame(&mut stream).await.unwrap().unwrap();
        let _manifest = read_frame(&mut stream).await.unwrap().unwrap();
        write_frame(
            &mut stream,
            &control(&json!({"type": "Accept", "body": {}})),
        )
        .await
        .unwrap();
        write_frame(&mut stream, &control(&request)).await.unwrap();
        let result = sender.await.unwrap();
        assert!(
            matches!(result, Err(TransferError::Peer(PeerError::UnknownEntry(_)))),
            "{result:?}"
        );
        let mut data_frames = 0;
        while let Ok(Some(frame)) = read_frame(&mut stream).await {
            if frame.kind() != FrameKind::Control {
                data_frames += 1;
            }
        }
        assert_eq!(data_frames, 0);
    }
    // The resolver is the only way in: an unknown id cannot even be prepared.
    assert!(matches!(
        OutgoingTransfer::prepare(&resolver, &[Uuid::from_u128(6)], SendOptions::default()).await,
        Err(TransferError::Usage(_))
    ));
}

/// A `Wants` naming several files is checked whole before anything is sent: an unknown entry
/// among known ones, too many files, too many ranges in all each stop the sender with a typed
/// error and no data frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_wants_is_refused_before_any_data() {
    let src = tempfile::tempdir().unwrap();
    let shared = src.path().join("shared.bin");
    random_file(&shared, 1000, 1);
    let id = Uuid::from_u128(5);
    let resolver: HashMap<Uuid, PathBuf> = [(id, shared)].into();
    let one = json!({"entry_id": id, "ranges": [[0, 1]]});
    let stranger = json!({"entry_id": Uuid::from_u128(6), "ranges": [[0, 1]]});
    let many_files: Vec<Value> = (0..1025).map(|_| one.clone()).collect();
    let many_ranges = json!({"entry_id": id, "ranges": vec![[0, 1]; 2049]});
    type Expected = fn(&TransferError) -> bool;
    let cases: [(Value, Expected); 4] = [
        (json!([one.clone(), stranger]), |e| {
            matches!(e, TransferError::Peer(PeerError::UnknownEntry(_)))
        }),
        (
            json!([one.clone(), {"entry_id": id, "ranges": [[1, 2]]}]),
            |e| matches!(e, TransferError::Peer(PeerError::UnknownEntry(_))),
        ),
        (json!(many_files), |e| {
            matches!(e, TransferError::Peer(PeerError::Protocol(_)))
        }),
        (json!([many_ranges.clone(), many_ranges]), |e| {
            matches!(e, TransferError::Peer(PeerError::Protocol(_)))
        }),
    ];
    for (files, expected) in cases {
        let outgoing =
            OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default().encrypt(false))
                .await
                .unwrap();
        let (listener, port) = listen().await;
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            outgoing.send(stream, Vec::new(), RunContext::new()).await
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let offer = read_frame(&mut stream).await.unwrap().unwrap();
        let offer: Value = serde_json::from_slice(offer.payload()).unwrap();
        assert_eq!(offer["body"]["wants"], json!(true), "{offer}");
        let _manifest = read_frame(&mut stream).await.unwrap().unwrap();
        write_frame(
            &mut stream,
            &control(&json!({"type": "Accept", "body": {}})),
        )
        .await
        .unwrap();
        let request = json!({"type": "Wants", "body": {"files": files}});
        write_frame(&mut stream, &control(&request)).await.unwrap();
        let result = sender.await.unwrap();
        assert!(result.as_ref().is_err_and(expected), "{result:?}");
        let mut data_frames = 0;
        while let Ok(Some(frame)) = read_frame(&mut stream).await {
            if frame.kind() != FrameKind::Control {
                data_frames += 1;
            }
        }
        assert_eq!(data_frames, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_frames_are_refused_in_an_encrypted_transfer() {
    let data = one_chunk_file();
    let dest = tempfile::tempdir().unwrap();
    let setup = Setup {
        key_seed: Some(3),
        ..Setup::default()
    };
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let server = tokio::spawn(serve_one(listener, receiver, setup, Arc::new(|_| {})));
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let size = data.len() as u64;
    let mut encrypted_offer: Value = serde_json::from_slice(offer(1, size).payload()).unwrap();
    encrypted_offer["body"]["encrypted"] = json!(true);
    encrypted_offer["body"]["ciphers"] = json!([2, 1]);
    write_frame(&mut s, &control(&encrypted_offer))
        .await
        .unwrap();
    let root = *blake3::hash(&data).as_bytes();
    write_frame(&mut s, &manifest(vec![file_entry(1, "f.bin", size, root)]))
        .await
        .unwrap();
    let _accept = read_frame(&mut s).await.unwrap().unwrap();
    let _want = read_frame(&mut s).await.unwrap().unwrap();
    let chunk = DataChunk::new(Uuid::from_u128(1), 0, true, &data).unwrap();
    write_frame(&mut s, &chunk.into_frame()).await.unwrap();
    let result = server.await.unwrap();
    assert!(
        matches!(result, Err(TransferError::Peer(PeerError::Seal(_)))),
        "{result:?}"
    );
    assert!(!dest.path().join("f.bin").exists());
    assert!(
        leftovers(dest.path())
            .iter()
            .all(|n| n.starts_with(".f.bin.tether-"))
    );
}

/// A receiver's `Decline` or `Abort` carries text for people; a hostile one sends a megabyte of
/// it, terminal escapes included. The sender keeps at most 1024 bytes of it (the limit it
/// applies to its own messages), so the text it reports stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_decline_or_abort_message_is_cut_on_receipt() {
    let src = tempfile::tempdir().unwrap();
    let shared = src.path().join("shared.bin");
    random_file(&shared, 1000, 1);
    let id = Uuid::from_u128(5);
    let resolver: HashMap<Uuid, PathBuf> = [(id, shared)].into();
    let huge = "\u{1b}[2J\u{1b}]0;owned\u{7}é".repeat(30_000);
    for kind in ["Decline", "Abort"] {
        let outgoing =
            OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default().encrypt(false))
                .await
                .unwrap();
        let (listener, port) = listen().await;
        let sender = tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            outgoing.send(stream, Vec::new(), RunContext::new()).await
        });
        let (mut stream, _) = listener.accept().await.unwrap();
        let _offer = read_frame(&mut stream).await.unwrap().unwrap();
        let _manifest = read_frame(&mut stream).await.unwrap().unwrap();
        let answer = json!({"type": kind, "body": {"code": "refused", "message": huge}});
        write_frame(&mut stream, &control(&answer)).await.unwrap();
        let result = sender.await.unwrap();
        let message = match result {
            Err(TransferError::Peer(
                PeerError::Declined { message, .. } | PeerError::Aborted { message, .. },
            )) => message,
            other => panic!("{kind}: {other:?}"),
        };
        assert!(
            message.len() <= 1024,
            "{kind}: kept {} bytes of the peer's text",
            message.len()
        );
        assert!(huge.starts_with(&message), "{kind}: cut, not changed");
    }
}

/// A receiver that stops says why, and the sender reports that rather than the broken stream
/// the stop caused first. Here the receiver drops lane 1, then 300 ms later sends its `Abort` on
/// the control stream: the order a reset on one stream and a message on another can arrive in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receivers_abort_is_reported_even_when_a_lane_broke_first() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("big.bin");
    random_file(&file, 16 << 20, 3);
    let id = Uuid::from_u128(5);
    let resolver: HashMap<Uuid, PathBuf> = [(id, file)].into();
    let outgoing =
        OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default().encrypt(false))
            .await
            .unwrap();
    let (control_stream, mut peer) = tokio::io::duplex(64 << 10);
    let (lane, mut peer_lane) = tokio::io::duplex(64 << 10);
    let sender = tokio::spawn(outgoing.send(control_stream, vec![lane], RunContext::new()));
    let offer = read_frame(&mut peer).await.unwrap().unwrap();
    let offer: Value = serde_json::from_slice(offer.payload()).unwrap();
    assert_eq!(offer["body"]["lanes"], json!(2), "{offer}");
    let _manifest = read_frame(&mut peer).await.unwrap().unwrap();
    write_frame(&mut peer, &control(&json!({"type": "Accept", "body": {}})))
        .await
        .unwrap();
    let request = json!({"type": "FileRequest", "body": {"entry_id": id, "resume_from": 0}});
    write_frame(&mut peer, &control(&request)).await.unwrap();
    // Data flows on lane 1 (its hello first); then the receiver drops it.
    let _hello = read_frame(&mut peer_lane).await.unwrap().unwrap();
    let _data = read_frame(&mut peer_lane).await.unwrap().unwrap();
    drop(peer_lane);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let abort =
        json!({"type": "Abort", "body": {"code": "cancelled", "message": "stopped by the user"}});
    // (Without the wait for the peer's reason the sender is gone by now, and this fails.)
    let _ = write_frame(&mut peer, &control(&abort)).await;
    let result = tokio::time::timeout(Duration::from_secs(10), sender)
        .await
        .expect("sender hung")
        .unwrap();
    assert!(
        matches!(
            &result,
            Err(TransferError::Peer(PeerError::Aborted {
                code: tether_transfer::AbortCode::Cancelled,
                message,
            })) if message == "stopped by the user"
        ),
        "{result:?}"
    );
    drop(peer);
}

/// The same from the other side: a sender that stops drops lane 1, then sends its `Abort`;
/// the receiver reports the sender's reason, not the lane's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_senders_abort_is_reported_even_when_a_lane_broke_first() {
    let dest = tempfile::tempdir().unwrap();
    let setup = Setup::default();
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let (control_stream, mut peer) = tokio::io::duplex(64 << 10);
    let (lane, mut peer_lane) = tokio::io::duplex(64 << 10);
    let data = one_chunk_file();
    let size = data.len() as u64;
    let transfer_id = Uuid::from_u128(99);
    let receiving = tokio::spawn({
        let receiver = receiver.clone();
        async move {
            let Ok(Hello::Offer(offer)) = read_hello(control_stream).await else {
                panic!("no offer");
            };
            receiver.receive(offer, node_id(1), RunContext::new()).await
        }
    });
    let offer = control(&json!({"type": "Offer", "body": {
        "version": 3, "transfer_id": transfer_id, "entries": 1, "total_bytes": size,
        "chunk_size": CHUNK_SIZE, "compression": "none", "encrypted": false, "lanes": 2
    }}));
    write_frame(&mut peer, &offer).await.unwrap();
    let entry = file_entry(1, "f.bin", size, *blake3::hash(&data).as_bytes());
    write_frame(&mut peer, &manifest(vec![entry]))
        .await
        .unwrap();
    let reply = read_frame(&mut peer).await.unwrap().unwrap();
    assert_eq!(
        reply.payload(),
        br#"{"type":"Accept","body":{"batches":true}}"#
    );
    let hello = json!({"type": "Lane", "body": {"transfer_id": transfer_id, "index": 1}});
    write_frame(&mut peer_lane, &control(&hello)).await.unwrap();
    let Ok(Hello::Lane(lane)) = read_hello(lane).await else {
        panic!("no lane hello");
    };
    receiver.attach(lane, node_id(1)).unwrap();
    // The receiver asks for the file; then the sender drops lane 1.
    let _request = read_frame(&mut peer).await.unwrap().unwrap();
    drop(peer_lane);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let abort =
        json!({"type": "Abort", "body": {"code": "source_changed", "message": "f.bin changed"}});
    let _ = write_frame(&mut peer, &control(&abort)).await;
    let result = tokio::time::timeout(Duration::from_secs(10), receiving)
        .await
        .expect("receiver hung")
        .unwrap();
    assert!(
        matches!(
            &result,
            Err(TransferError::Peer(PeerError::Aborted {
                code: tether_transfer::AbortCode::SourceChanged,
                ..
            }))
        ),
        "{result:?}"
    );
    assert!(!dest.path().join("f.bin").exists());
    drop(peer);
}
