//! Arbitrary bytes into the frame decoder and the message parsers.
//!
//! Input: one control byte, then the stream. The control byte's low seven bits (+1) are the
//! size of the pieces the stream is fed in, so every split is explored; its high bit sends the
//! stream straight to the JSON parser instead, to reach it without building a frame header.
//!
//! Checks: no panic, no frame over its cap, and whatever message decodes re-encodes to bytes
//! that decode to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_wire::{ControlMessage, DataChunk, Frame, FrameDecoder, FrameKind};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    if control & 0x80 != 0 {
        check_control(stream);
        return;
    }
    let piece_len = usize::from(control & 0x7f) + 1;
    let mut decoder = FrameDecoder::new();
    for piece in stream.chunks(piece_len) {
        let mut input = piece;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(frame)) => check_frame(frame),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(input.is_empty());
    }
    let _ = decoder.finish();
});

fn check_frame(frame: Frame) {
    assert!(frame.payload().len() <= frame.kind().max_payload_len());
    match frame.kind() {
        FrameKind::Control => check_control(frame.payload()),
        FrameKind::Data => {
            if let Ok(chunk) = DataChunk::decode(frame.clone()) {
                assert_eq!(chunk.into_frame(), frame);
            }
        }
        _ => {}
    }
}

fn check_control(json: &[u8]) {
    if let Ok(message) = ControlMessage::decode(json) {
        let bytes = message.encode().expect("a decoded message must encode");
        let again = ControlMessage::decode(&bytes).expect("an encoded message must decode");
        assert_eq!(again, message);
    }
}
