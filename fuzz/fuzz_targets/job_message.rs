//! Arbitrary bytes into the job protocol's message decoder (`tether-jobs`'s `wire.rs`,
//! compiled here from its own file so the fuzz build does not need the facade and iroh).
//!
//! Input: one message body (what follows the `u32` length on a job connection's control
//! stream). Checks: no panic; whatever decodes is within its caps, and re-encodes to bytes that
//! decode to the same message.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unreachable_pub)]
#[path = "../../crates/tether-jobs/src/wire.rs"]
mod wire;

use wire::{MAX_MESSAGE_LEN, decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    let Ok(message) = decode_message(data) else {
        return;
    };
    let framed = encode_message(&message).expect("a decoded message must encode");
    let (prefix, body) = framed.split_at(4);
    assert_eq!(
        u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize,
        body.len()
    );
    assert!(body.len() <= MAX_MESSAGE_LEN);
    let again = decode_message(body).expect("an encoded message must decode");
    assert_eq!(again, message);
});
