//! Arbitrary bytes as everything a paired device writes on a tether-channels link.
//!
//! Input: the stream itself, read frame by frame with `read_frame` (length cap before the
//! allocation, caps of what a frame carries after decoding) until it ends or fails; and the
//! same bytes handed to `Frame::decode` as one frame's body.
//!
//! Checks: no panic, no hang, and whatever decodes re-encodes to bytes that decode to the same
//! frame.

#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
// The decoder's own file, with the HLC it names at this crate's root (as in tether-channels):
// the fuzz build needs neither the facade nor iroh.
use tether_wire::Hlc;
#[path = "../../crates/tether-channels/src/wire.rs"]
#[allow(dead_code, unreachable_pub)]
mod wire;
use wire::{Frame, read_frame};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = Frame::decode(data) {
        check(&frame);
    }
    runtime().block_on(async {
        let mut stream = data;
        while let Ok(Some(frame)) = read_frame(&mut stream, Duration::from_secs(1)).await {
            check(&frame);
        }
    });
});

fn check(frame: &Frame) {
    let bytes = frame.encode();
    let again = Frame::decode(bytes.get(4..).expect("a length prefix")).expect("an encoded frame decodes");
    assert_eq!(&again, frame);
}
