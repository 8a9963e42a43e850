//! Arbitrary bytes into `tether-stream/1`'s request and response decoders.
//!
//! Input: one control byte, then the message. The control byte's low bit picks the decoder
//! (0: request, as the owner reads it; 1: response, as the reader reads it).
//!
//! Checks: no panic, no chunk or hash page over its cap, and whatever decodes re-encodes to the
//! same bytes (the format has one encoding per message).

#![no_main]

use libfuzzer_sys::fuzz_target;

/// `tether_stream::wire`, built here by path: it depends on no other part of the crate.
#[allow(dead_code)]
#[path = "../../crates/tether-stream/src/wire.rs"]
mod wire;

use wire::{MAX_CHUNK_LEN, MAX_HASHES_PER_PAGE, Request, Response};

fuzz_target!(|data: &[u8]| {
    let Some((&control, message)) = data.split_first() else {
        return;
    };
    if control & 1 == 0 {
        if let Ok(request) = Request::decode(message) {
            assert_eq!(request.encode(), message);
        }
        return;
    }
    let bytes = bytes::Bytes::copy_from_slice(message);
    if let Ok(response) = Response::decode(&bytes) {
        match &response {
            Response::Chunk { data, .. } => assert!(data.len() <= MAX_CHUNK_LEN as usize),
            Response::Hashes { hashes, .. } => {
                assert!(hashes.len() <= MAX_HASHES_PER_PAGE as usize);
            }
            _ => {}
        }
        assert_eq!(response.encode(), message);
    }
});
