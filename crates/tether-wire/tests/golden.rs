//! Golden files: the exact bytes of one message of every kind, so that an accidental change to
//! the wire format fails here.
//!
//! After an *intended* change, regenerate them and review the diff:
//!
//! ```sh
//! TETHER_BLESS=1 cargo test -p tether-wire --test golden
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::path::PathBuf;

use tether_wire::{
    ControlMessage, DataChunk, Encoding, Frame, FrameDecoder, FrameEncoder, MessageKind,
};

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1")
}

/// Compares `actual` with the golden file `name`, or rewrites it when blessing.
fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if bless() {
        fs::write(&path, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "{}: {err}; run with TETHER_BLESS=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "{} differs from the encoding; if the change is intended, run with TETHER_BLESS=1",
        path.display()
    );
}

#[test]
fn every_message_kind_matches_its_golden_file() {
    for kind in MessageKind::ALL {
        let message = common::sample(kind);
        let json = String::from_utf8(message.encode().unwrap()).unwrap();
        check(
            &format!("{}.json", common::snake_name(kind)),
            &format!("{json}\n"),
        );

        // And the file decodes to the message: the format is readable, not just writable.
        let file =
            fs::read(golden_dir().join(format!("{}.json", common::snake_name(kind)))).unwrap();
        assert_eq!(
            ControlMessage::decode(file.trim_ascii_end()).unwrap(),
            message
        );
    }
}

/// The binary encoding of the same samples, as hex (one payload a file).
#[test]
fn every_message_kind_matches_its_binary_golden_file() {
    for kind in MessageKind::ALL {
        let message = common::sample(kind);
        let bytes = message.encode_with(Encoding::Binary).unwrap();
        let name = format!("{}.bin.hex", common::snake_name(kind));
        check(&name, &format!("{}\n", hex::encode(&bytes)));

        let file = fs::read_to_string(golden_dir().join(&name)).unwrap();
        let file = hex::decode(file.trim_ascii_end()).unwrap();
        assert_eq!(
            ControlMessage::decode_with(Encoding::Binary, &file).unwrap(),
            message
        );
    }
}

#[test]
fn golden_directory_holds_exactly_the_known_files() {
    let mut expected: Vec<String> = MessageKind::ALL
        .into_iter()
        .flat_map(|kind| {
            let name = common::snake_name(kind);
            [format!("{name}.json"), format!("{name}.bin.hex")]
        })
        .chain(["frames.hex".to_owned(), "sealed_frames.hex".to_owned()])
        .collect();
    expected.sort();
    let mut found: Vec<String> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    found.sort();
    assert_eq!(found, expected, "a golden file is missing or stale");
}

/// The binary framing: a control frame and a data frame, as hex, one frame a line.
#[test]
fn frame_bytes_match_golden_file() {
    let frames = [
        Frame::control(&common::sample(MessageKind::Ping)).unwrap(),
        DataChunk::new(common::ENTRY, 262_144, true, b"tether")
            .unwrap()
            .into_frame(),
    ];
    let mut text = String::new();
    let mut all = FrameEncoder::new();
    for frame in &frames {
        let mut one = FrameEncoder::new();
        one.push(frame);
        all.push(frame);
        text.push_str(&hex::encode(one.bytes()));
        text.push('\n');
    }
    check("frames.hex", &text);

    let bytes = all.take();
    let mut input = &bytes[..];
    let mut decoder = FrameDecoder::new();
    for frame in &frames {
        assert_eq!(decoder.decode(&mut input).unwrap().as_ref(), Some(frame));
    }
    decoder.finish().unwrap();
}

/// The envelope: the same two frames sealed with the fixed test keys (counters 0 and 1). This
/// pins the sealed layout, the associated data and the nonce use, not just the framing.
#[test]
fn sealed_frame_bytes_match_golden_file() {
    let (mut initiator, mut responder) = common::session_pair();
    let plain = [
        Frame::control(&common::sample(MessageKind::Ping)).unwrap(),
        DataChunk::new(common::ENTRY, 262_144, true, b"tether")
            .unwrap()
            .into_frame(),
    ];
    let mut text = String::new();
    for frame in &plain {
        let sealed = frame.clone().seal(&mut initiator).unwrap();
        let mut one = FrameEncoder::new();
        one.push(&sealed);
        text.push_str(&hex::encode(one.bytes()));
        text.push('\n');
    }
    check("sealed_frames.hex", &text);

    let file = fs::read_to_string(golden_dir().join("sealed_frames.hex")).unwrap();
    for (line, expected) in file.lines().zip(&plain) {
        let bytes = hex::decode(line).unwrap();
        let mut input = &bytes[..];
        let sealed = FrameDecoder::new().decode(&mut input).unwrap().unwrap();
        assert_eq!(&sealed.open(&mut responder).unwrap(), expected);
    }
}
