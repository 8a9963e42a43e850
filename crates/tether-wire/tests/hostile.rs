//! Hostile input: what a malicious peer might send, each rejected with a typed error, bounded
//! memory and no panic.
//!
//! Memory is bounded by construction: the decoder allocates a payload only after its length has
//! passed the cap, and holds one frame at most. These tests check the observable side of that:
//! the error comes from the header alone, the decoder never holds more than one capped frame, and
//! JSON is parsed only from a payload that fit the cap.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::{Duration, Instant};

use tether_wire::{
    ControlMessage, FRAME_HEADER_LEN, FrameDecoder, FrameError, FrameKind, LimitError,
    MessageError, limits,
};

/// Feeds `bytes` to a fresh decoder, then ends the stream; returns the first error.
fn first_error(bytes: &[u8]) -> Option<FrameError> {
    let mut decoder = FrameDecoder::new();
    let mut input = bytes;
    loop {
        match decoder.decode(&mut input) {
            Ok(Some(_)) => {}
            Ok(None) => return decoder.finish().err(),
            Err(err) => return Some(err),
        }
    }
}

#[test]
fn four_gib_length_prefix_is_rejected_from_the_header_alone() {
    for kind in [
        FrameKind::Control,
        FrameKind::Data,
        FrameKind::SealedControl,
        FrameKind::SealedData,
    ] {
        let mut decoder = FrameDecoder::new();
        // The header, and a little of the "payload" that will never be read.
        let bytes = [0xff, 0xff, 0xff, 0xff, kind.to_byte(), 1, 2, 3];
        let mut input = &bytes[..];
        let err = decoder.decode(&mut input).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                kind,
                len: 0xffff_fffe,
                cap: kind.max_payload_len()
            }
        );
        // Nothing past the header was consumed, and nothing is held.
        assert_eq!(input, &[1, 2, 3]);
        assert_eq!(decoder.buffered_len(), 0);
    }
    // One byte over each cap is rejected just the same.
    for kind in [
        FrameKind::Control,
        FrameKind::Data,
        FrameKind::SealedControl,
        FrameKind::SealedData,
    ] {
        let len = u32::try_from(kind.max_payload_len() + 2).unwrap();
        let mut header = len.to_be_bytes().to_vec();
        header.push(kind.to_byte());
        assert!(matches!(
            first_error(&header),
            Some(FrameError::TooLarge { .. })
        ));
    }
}

#[test]
fn unknown_kind_and_empty_frames_are_rejected() {
    assert_eq!(
        first_error(&[0, 0, 0, 5, 0x7f]),
        Some(FrameError::UnknownKind(0x7f))
    );
    assert_eq!(first_error(&[0, 0, 0, 0, 0x01]), Some(FrameError::Empty));
    assert!(matches!(
        first_error(&[0, 0, 0, 9, 0x01, b'{']),
        Some(FrameError::Truncated { received: 6 })
    ));
}

#[test]
fn a_million_tiny_frames_decode_fast_in_constant_memory() {
    // Each frame: length 1 (just the kind byte), an empty sealed-data payload.
    const COUNT: usize = 1_000_000;
    let one = [0, 0, 0, 1, FrameKind::SealedData.to_byte()];
    let bytes = one.repeat(COUNT);
    let start = Instant::now();
    let mut decoder = FrameDecoder::new();
    let mut frames = 0usize;
    let mut max_buffered = 0;
    // Fed in odd-sized pieces so headers straddle the cuts.
    for piece in bytes.chunks(4093) {
        let mut input = piece;
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            assert!(frame.payload().is_empty());
            frames += 1;
        }
        max_buffered = max_buffered.max(decoder.buffered_len());
    }
    decoder.finish().unwrap();
    assert_eq!(frames, COUNT);
    assert!(
        max_buffered < FRAME_HEADER_LEN,
        "held {max_buffered} bytes between pieces"
    );
    // Generous for a debug build on a busy machine; it takes well under a second.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_stream_of_capped_frames_never_holds_more_than_one() {
    let cap = FrameKind::Control.max_payload_len();
    let mut frame = u32::try_from(cap + 1).unwrap().to_be_bytes().to_vec();
    frame.push(FrameKind::Control.to_byte());
    frame.resize(FRAME_HEADER_LEN + cap, b' ');
    let bytes = frame.repeat(3);
    let mut decoder = FrameDecoder::new();
    let mut seen = 0;
    for piece in bytes.chunks(65_536) {
        let mut input = piece;
        while decoder.decode(&mut input).unwrap().is_some() {
            seen += 1;
        }
        assert!(decoder.buffered_len() <= FRAME_HEADER_LEN + cap);
    }
    assert_eq!(seen, 3);
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    // Where a known field is parsed: serde_json's recursion limit (128) stops it.
    for depth in [129, 10_000, 200_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let json = format!(r#"{{"type":"Ping","body":{{"timestamp_ms":{body}}}}}"#);
        assert!(matches!(
            ControlMessage::decode(json.as_bytes()),
            Err(MessageError::Json(_))
        ));
        let json = format!(r#"{{"type":"Ping","body":{body}}}"#);
        assert!(matches!(
            ControlMessage::decode(json.as_bytes()),
            Err(MessageError::Json(_))
        ));
    }
    // In the envelope itself.
    let json = format!("{}{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    assert!(ControlMessage::decode(json.as_bytes()).is_err());
    // In an unknown field, which is skipped: serde_json skips without recursion, so this is no
    // danger either; it is ignored like any unknown field (and bounded by the frame cap).
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let json =
        format!(r#"{{"type":"Ping","junk":{deep},"body":{{"timestamp_ms":1,"more":{deep}}}}}"#);
    assert!(json.len() < limits::MAX_CONTROL_LEN);
    let message = ControlMessage::decode(json.as_bytes()).unwrap();
    assert_eq!(
        message.message,
        tether_wire::Ping { timestamp_ms: 1 }.into()
    );
}

#[test]
fn invalid_utf8_is_rejected() {
    let cases: [&[u8]; 4] = [
        b"{\"type\":\"Pi\xffng\",\"body\":{\"timestamp_ms\":1}}",
        b"{\"type\":\"Error\",\"body\":{\"code\":\"internal\",\"message\":\"\xc3\x28\"}}",
        b"{\"type\":\"Ping\",\"body\":{\"timestamp_ms\":1,\"x\":\"\xed\xa0\x80\"}}",
        b"\xef\xbb\xbf{\"type\":\"Ack\"}",
    ];
    for case in cases {
        assert!(
            matches!(ControlMessage::decode(case), Err(MessageError::Json(_))),
            "{}",
            String::from_utf8_lossy(case)
        );
    }
    // A lone surrogate escape is not a valid string either.
    let escaped = br#"{"type":"Error","body":{"code":"internal","message":"\ud800"}}"#;
    assert!(ControlMessage::decode(escaped).is_err());
}

#[test]
fn huge_vectors_in_json_are_rejected_by_the_limits() {
    // As many libraries as fit in one capped frame: more than the protocol allows.
    let library = r#"{"id":"6f1e2c3d-4b5a-4978-8a6b-5c4d3e2f1a0b","name":"","entry_count":0,"updated":{"physical_ms":0,"logical":0,"node":0}},"#;
    let count = limits::MAX_CONTROL_LEN / library.len();
    assert!(count > limits::MAX_LIBRARIES);
    let list = library.repeat(count);
    let json = format!(
        r#"{{"type":"LibraryAnnounce","body":{{"libraries":[{}]}}}}"#,
        list.trim_end_matches(',')
    );
    let err = ControlMessage::decode(json.as_bytes()).unwrap_err();
    assert!(matches!(
        err,
        MessageError::Limit(LimitError::TooMany { field: "libraries", len, max: limits::MAX_LIBRARIES })
            if len == count
    ));

    // Too many sync entries.
    let entry = r#"{"entry_id":"01234567-89ab-4cde-8f01-23456789abcd","path":"a","size":0,"hash":null,"hlc":{"physical_ms":0,"logical":0,"node":0},"deleted":true},"#;
    let entries = entry.repeat(limits::MAX_SYNC_ENTRIES + 1);
    let json = format!(
        r#"{{"type":"SyncResponse","body":{{"library_id":"6f1e2c3d-4b5a-4978-8a6b-5c4d3e2f1a0b","entries":[{}],"has_more":false}}}}"#,
        entries.trim_end_matches(',')
    );
    assert!(json.len() < limits::MAX_CONTROL_LEN);
    assert!(matches!(
        ControlMessage::decode(json.as_bytes()),
        Err(MessageError::Limit(LimitError::TooMany {
            field: "entries",
            ..
        }))
    ));

    // An over-long string.
    let json = format!(
        r#"{{"type":"Error","body":{{"code":"busy","message":"{}"}}}}"#,
        "x".repeat(limits::MAX_ERROR_MESSAGE_LEN + 1)
    );
    assert!(matches!(
        ControlMessage::decode(json.as_bytes()),
        Err(MessageError::Limit(LimitError::TooLong { .. }))
    ));

    // A text over its cap, however it is escaped: the cap counts the decoded bytes.
    let json = format!(
        r#"{{"id":3,"type":"Text","body":{{"text":"{}"}}}}"#,
        r"\u0007".repeat(limits::MAX_TEXT_LEN + 1)
    );
    assert!(json.len() < limits::MAX_CONTROL_LEN);
    assert!(matches!(
        ControlMessage::decode(json.as_bytes()),
        Err(MessageError::Limit(LimitError::TooLong { field: "text", len, max: limits::MAX_TEXT_LEN }))
            if len == limits::MAX_TEXT_LEN + 1
    ));
    let at_cap = format!(
        r#"{{"type":"Text","body":{{"text":"{}"}}}}"#,
        "é".repeat(limits::MAX_TEXT_LEN / 2)
    );
    assert!(ControlMessage::decode(at_cap.as_bytes()).is_ok());

    // Out-of-range numbers.
    for chunk_size in ["0", "262145", "4294967296", "-1", "1e9"] {
        let json = format!(
            r#"{{"type":"FileResponse","body":{{"entry_id":"01234567-89ab-4cde-8f01-23456789abcd","size":1,"hash":"{}","chunk_size":{chunk_size},"offset":0}}}}"#,
            "00".repeat(32)
        );
        assert!(
            ControlMessage::decode(json.as_bytes()).is_err(),
            "chunk_size {chunk_size}"
        );
    }
}

#[test]
fn garbage_never_panics() {
    // A cheap sweep; the fuzz targets do this properly.
    let seeds: [&[u8]; 6] = [
        b"",
        b"{",
        b"null",
        br#"{"type":null}"#,
        br#"{"type":"Ping","body":"x"}"#,
        br#"{"id":18446744073709551616,"type":"Ack"}"#,
    ];
    for seed in seeds {
        assert!(
            ControlMessage::decode(seed).is_err(),
            "{}",
            String::from_utf8_lossy(seed)
        );
    }
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..20_000 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        let _ = ControlMessage::decode(&bytes);
        let _ = first_error(&bytes);
    }
}
