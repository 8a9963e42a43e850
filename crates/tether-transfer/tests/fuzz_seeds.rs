//! The seed corpus of the `transfer_manifest` fuzz target, recorded from a real sender, so the
//! fuzzer starts from streams that reach the receiver's data phase.
//!
//! Each seed is the fuzz target's mode byte followed by every byte a real `OutgoingTransfer`
//! wrote on its control stream while a scripted receiver accepted and asked for every file. The
//! test fails when a committed seed no longer matches what the sender writes; regenerate (and
//! review) with:
//!
//! ```sh
//! TETHER_BLESS=1 cargo test -p tether-transfer --test integration fuzz_seeds::
//! ```
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use tether_crypto::{Role, SessionSecrets};
use tether_transfer::{CHUNK_SIZE, OutgoingTransfer, RunContext, SendOptions, TransferCipher};
use tether_wire::{DataChunk, Frame, FrameKind, read_frame, write_frame};
use uuid::Uuid;

const TARGET: &str = "transfer_manifest";

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(TARGET)
}

fn control(value: &Value) -> Frame {
    Frame::new(FrameKind::Control, serde_json::to_vec(value).unwrap()).unwrap()
}

/// Sets a fixed modification time on every file under `root`, so recordings are reproducible.
fn pin_mtimes(root: &Path) {
    let time = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    if root.is_dir() {
        for entry in fs::read_dir(root).unwrap() {
            pin_mtimes(&entry.unwrap().path());
        }
    } else {
        fs::File::options()
            .write(true)
            .open(root)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }
}

/// The fuzz target's session (its `SESSION_SEED`): with keys from it the target can open the
/// sealed chunks of the encrypted seeds.
const SESSION_SEED: u64 = 0xf022;

/// Everything the sender writes for `source`, with a scripted receiver asking for every file.
/// An encrypted recording is sealed with the initiator's side of the fuzz target's session.
async fn record(source: &Path, options: SendOptions) -> Vec<u8> {
    let encrypted = options.encrypt;
    let first_cipher = options.ciphers.first().copied();
    pin_mtimes(source);
    let id = Uuid::from_u128(0x5eed);
    let resolver: HashMap<Uuid, PathBuf> = [(id, source.to_path_buf())].into();
    let outgoing = OutgoingTransfer::prepare(&resolver, &[id], options)
        .await
        .unwrap()
        .with_transfer_id(Uuid::from_u128(0x7a5f));
    let files: Vec<(Uuid, u64)> = outgoing
        .manifest()
        .iter()
        .filter(|e| e.hash.is_some())
        .map(|e| (e.id, e.size))
        .collect();
    let chunks: u64 = files
        .iter()
        .map(|(_, size)| size.div_ceil(u64::from(CHUNK_SIZE)))
        .sum();
    let entries = outgoing.manifest().len();
    let (sender_side, mut receiver_side) = tokio::io::duplex(1 << 20);
    let mut ctx = RunContext::new();
    let mut answer = json!({});
    if encrypted {
        let [initiator, _] = SessionSecrets::danger_pair_from_seed(SESSION_SEED).unwrap();
        let mut keys = initiator.into_session_keys(Role::Initiator);
        ctx = ctx.keys(
            keys.transfer_secret(outgoing.transfer_id().as_bytes())
                .unwrap(),
        );
        answer = json!({"cipher": first_cipher.unwrap().wire_id()});
    }
    let sending = tokio::spawn(outgoing.send(sender_side, Vec::new(), ctx));
    let mut recorded = Vec::new();
    let (mut seen_entries, mut seen_chunks) = (0, 0);
    while let Some(frame) = read_frame(&mut receiver_side).await.unwrap() {
        frame.encode_into(&mut recorded);
        if frame.kind() != FrameKind::Control {
            seen_chunks += 1;
            if seen_chunks == chunks {
                let complete = json!({"type": "Complete", "body": {"files": files.len(), "bytes_verified": 0}});
                write_frame(&mut receiver_side, &control(&complete))
                    .await
                    .unwrap();
            }
            continue;
        }
        let message: Value = serde_json::from_slice(frame.payload()).unwrap();
        if message["type"] == "Manifest" {
            seen_entries += message["body"]["entries"].as_array().unwrap().len();
            if seen_entries == entries {
                write_frame(
                    &mut receiver_side,
                    &control(&json!({"type": "Accept", "body": answer})),
                )
                .await
                .unwrap();
                for (id, size) in &files {
                    if *size > 0 {
                        let request = json!({"type": "FileRequest", "body": {"entry_id": id, "resume_from": 0}});
                        write_frame(&mut receiver_side, &control(&request))
                            .await
                            .unwrap();
                    }
                }
                if chunks == 0 {
                    let complete = json!({"type": "Complete", "body": {"files": files.len(), "bytes_verified": 0}});
                    write_frame(&mut receiver_side, &control(&complete))
                        .await
                        .unwrap();
                }
            }
        }
    }
    sending.await.unwrap().unwrap();
    recorded
}

/// `stream` with its data frames (plain, one whole small file each) replaced by one batch frame
/// where the first of them was: what a sender writes to a receiver that reads batches, built
/// here so the seed does not depend on how the sender's lanes happened to group the files.
fn batched(stream: &[u8]) -> Vec<u8> {
    let mut rest = stream;
    let mut out = Vec::new();
    let mut pieces = Vec::new();
    let mut at = None;
    while !rest.is_empty() {
        // Header: the length of kind and payload (u32 BE), then the kind.
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        let (frame, tail) = rest.split_at(4 + len);
        rest = tail;
        if frame[4] == FrameKind::Data.to_byte() {
            let chunk =
                DataChunk::decode(Frame::new(FrameKind::Data, frame[5..].to_vec()).unwrap())
                    .unwrap();
            assert_eq!(chunk.offset(), 0, "one-chunk files only");
            pieces.extend_from_slice(chunk.entry_id().as_bytes());
            pieces.extend_from_slice(&(chunk.bytes().len() as u32).to_be_bytes());
            pieces.extend_from_slice(chunk.bytes());
            at.get_or_insert(out.len());
        } else {
            out.extend_from_slice(frame);
        }
    }
    let mut batch = Vec::new();
    DataChunk::new(Uuid::nil(), u64::MAX, false, &pieces)
        .unwrap()
        .into_frame()
        .encode_into(&mut batch);
    let at = at.expect("data frames");
    out.splice(at..at, batch);
    out
}

fn with_mode(mode: u8, stream: &[u8]) -> Vec<u8> {
    let mut seed = vec![mode];
    seed.extend_from_slice(stream);
    seed
}

async fn seeds() -> BTreeMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("album");
    fs::create_dir_all(tree.join("2026/empty")).unwrap();
    fs::write(tree.join("notes.txt"), b"hello from the fuzz seed").unwrap();
    fs::write(tree.join("2026/zero.bin"), b"").unwrap();
    let big = dir.path().join("two-chunks.txt");
    fs::write(&big, "compressible text, again and again\n".repeat(9_000)).unwrap();

    let plain = SendOptions::default().encrypt(false);
    let tree_stream = record(&tree, plain.clone()).await;
    let big_stream = record(&big, plain.clone().compress(true)).await;
    let sealed = |cipher| SendOptions::default().encrypt(true).ciphers([cipher]);
    let aes_stream = record(&big, sealed(TransferCipher::Aes256Gcm).compress(true)).await;
    let chacha_stream = record(&tree, sealed(TransferCipher::ChaCha20Poly1305)).await;
    let small = dir.path().join("small");
    fs::create_dir_all(&small).unwrap();
    for i in 0..5u8 {
        fs::write(
            small.join(format!("{i}.txt")),
            vec![b'a' + i; 100 + usize::from(i)],
        )
        .unwrap();
    }
    let batch_stream = batched(&record(&small, plain.clone()).await);
    let mut seeds = BTreeMap::new();
    seeds.insert("declined_tree.bin".to_owned(), with_mode(0, &tree_stream));
    seeds.insert("accepted_tree.bin".to_owned(), with_mode(1, &tree_stream));
    seeds.insert(
        "accepted_zstd_two_chunks.bin".to_owned(),
        with_mode(1, &big_stream),
    );
    seeds.insert(
        "accepted_aes_256_gcm_zstd_two_chunks.bin".to_owned(),
        with_mode(1, &aes_stream),
    );
    seeds.insert(
        "accepted_chacha20_poly1305_tree.bin".to_owned(),
        with_mode(1, &chacha_stream),
    );
    seeds.insert(
        "accepted_small_files_batched.bin".to_owned(),
        with_mode(1, &batch_stream),
    );
    let lane = control(
        &json!({"type": "Lane", "body": {"transfer_id": Uuid::from_u128(0x7a5f), "index": 1}}),
    );
    let mut lane_bytes = Vec::new();
    lane.encode_into(&mut lane_bytes);
    seeds.insert("lane_hello.bin".to_owned(), with_mode(0, &lane_bytes));
    seeds
}

#[tokio::test]
async fn seeds_are_current() {
    let seeds = seeds().await;
    let dir = seeds_dir();
    if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for (name, bytes) in &seeds {
            fs::write(dir.join(name), bytes).unwrap();
        }
        return;
    }
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(&dir).unwrap_or_else(|err| panic!("{}: {err}", dir.display())) {
        let entry = entry.unwrap();
        found.insert(
            entry.file_name().into_string().unwrap(),
            fs::read(entry.path()).unwrap(),
        );
    }
    assert!(
        found == seeds,
        "{} is stale; regenerate with TETHER_BLESS=1 cargo test -p tether-transfer --test integration fuzz_seeds::",
        dir.display()
    );
}
