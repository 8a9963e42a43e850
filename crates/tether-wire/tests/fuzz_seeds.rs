//! The fuzz targets' seed corpora, built from real encodings, so the fuzzers start from inputs
//! that reach deep into the parsers and the opener.
//!
//! This test fails when a committed seed no longer matches what the encoders produce. Regenerate
//! (and review) with:
//!
//! ```sh
//! TETHER_BLESS=1 cargo test -p tether-wire --test fuzz_seeds
//! ```
//!
//! Input formats are documented in `fuzz/fuzz_targets/*.rs`: `wire_decode` takes a control byte
//! (low 7 bits + 1 = piece size; high bit = raw JSON) then a stream; `wire_decode_binary` takes a
//! binary control payload; `envelope_open` takes a stream
//! of frames sealed by the initiator of the fixed test session.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use tether_wire::{
    ControlMessage, DataChunk, Encoding, Frame, FrameEncoder, FrameKind, MessageKind, RequestId,
};

fn seeds_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds")
        .join(target)
}

/// Writes (when blessing) or compares the whole seed directory of `target`.
fn check(target: &str, seeds: &BTreeMap<String, Vec<u8>>) {
    let dir = seeds_dir(target);
    let bless = std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1");
    if bless {
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            fs::remove_file(entry.unwrap().path()).unwrap();
        }
        for (name, bytes) in seeds {
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
        found == *seeds,
        "{} is stale; regenerate with TETHER_BLESS=1 cargo test -p tether-wire --test fuzz_seeds",
        dir.display()
    );
}

fn stream(frames: &[Frame]) -> Vec<u8> {
    let mut encoder = FrameEncoder::new();
    frames.iter().for_each(|frame| encoder.push(frame));
    encoder.take()
}

fn data_frame() -> Frame {
    DataChunk::new(common::ENTRY, 0, true, b"the quick brown fox")
        .unwrap()
        .into_frame()
}

#[test]
fn wire_decode_binary_seeds_are_current() {
    let mut seeds = BTreeMap::new();
    for kind in MessageKind::ALL {
        let message = common::sample(kind);
        seeds.insert(
            format!("binary-{}", common::snake_name(kind)),
            message.encode_with(Encoding::Binary).unwrap(),
        );
    }
    let once = ControlMessage::once(
        RequestId(0xb3c5_19e2_7a40_0d11),
        common::sample(MessageKind::SyncRequest).message,
    );
    seeds.insert(
        "binary-once-sync_request".into(),
        once.encode_with(Encoding::Binary).unwrap(),
    );
    check("wire_decode_binary", &seeds);
}

#[test]
fn wire_decode_seeds_are_current() {
    const WHOLE: u8 = 0x7f; // pieces of 128 bytes
    const RAW_JSON: u8 = 0x80;
    let mut seeds = BTreeMap::new();
    let mut all = Vec::new();
    for kind in MessageKind::ALL {
        let message = common::sample(kind);
        let frame = Frame::control(&message).unwrap();
        let name = common::snake_name(kind);
        seeds.insert(
            format!("frame-{name}"),
            [&[WHOLE][..], &stream(std::slice::from_ref(&frame))].concat(),
        );
        seeds.insert(
            format!("json-{name}"),
            [&[RAW_JSON][..], &message.encode().unwrap()].concat(),
        );
        all.push(frame);
    }
    // A request named across connections (`"once"`), with a key-sized id.
    let once = ControlMessage::once(
        RequestId(0xb3c5_19e2_7a40_0d11),
        common::sample(MessageKind::SyncRequest).message,
    );
    seeds.insert(
        "json-once-sync_request".into(),
        [&[RAW_JSON][..], &once.encode().unwrap()].concat(),
    );
    all.push(data_frame());
    seeds.insert(
        "stream-all-kinds".into(),
        [&[WHOLE][..], &stream(&all)].concat(),
    );
    seeds.insert(
        "stream-byte-by-byte".into(),
        [&[0][..], &stream(&all[..3])].concat(),
    );
    seeds.insert(
        "frame-data".into(),
        [&[WHOLE][..], &stream(&[data_frame()])].concat(),
    );
    seeds.insert(
        "frame-sealed".into(),
        [
            &[WHOLE][..],
            &stream(&[Frame::new(FrameKind::SealedControl, vec![7; 40]).unwrap()]),
        ]
        .concat(),
    );
    seeds.insert(
        "huge-length".into(),
        vec![WHOLE, 0xff, 0xff, 0xff, 0xff, 0x01],
    );
    check("wire_decode", &seeds);
}

#[test]
fn envelope_open_seeds_are_current() {
    let (mut initiator, _) = common::session_pair();
    let mut seal = |frame: Frame| frame.seal(&mut initiator).unwrap();
    let mut seeds = BTreeMap::new();

    let ping = seal(Frame::control(&common::sample(MessageKind::Ping)).unwrap());
    seeds.insert("sealed-ping".into(), stream(std::slice::from_ref(&ping)));
    let data = seal(data_frame());
    seeds.insert("sealed-data".into(), stream(&[data]));
    let all: Vec<Frame> = MessageKind::ALL
        .into_iter()
        .map(|kind| seal(Frame::control(&common::sample(kind)).unwrap()))
        .collect();
    seeds.insert("sealed-all-kinds".into(), stream(&all));
    // The first frame (counter 0) twice: the second is a replay.
    seeds.insert("replayed".into(), stream(&[ping.clone(), ping]));
    check("envelope_open", &seeds);
}
