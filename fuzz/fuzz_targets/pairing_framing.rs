//! Arbitrary bytes into the pairing message decoder (`u16` length + message).
//!
//! Input: one control byte, then the stream. The control byte's low seven bits (+1) are the
//! size of the pieces the stream is fed in, so every split is explored.
//!
//! Checks: no panic, no message over `MAX_MESSAGE_LEN`, the decoder takes every byte it is
//! given, `needed` never asks past the current message, and the messages re-encode to exactly
//! the bytes they were decoded from.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_pairing::{MAX_MESSAGE_LEN, MessageDecoder, encode_message_into};

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let piece_len = usize::from(control & 0x7f) + 1;
    let mut decoder = MessageDecoder::new();
    let mut again = Vec::new();
    for piece in stream.chunks(piece_len) {
        let mut input = piece;
        loop {
            assert!(decoder.needed() <= MAX_MESSAGE_LEN + 2);
            match decoder.decode(&mut input) {
                Ok(Some(message)) => {
                    assert!(message.len() <= MAX_MESSAGE_LEN);
                    encode_message_into(&message, &mut again).expect("a decoded message encodes");
                }
                Ok(None) => break,
                Err(_) => {
                    assert_eq!(decoder.needed(), 0);
                    assert!(stream.starts_with(&again));
                    return;
                }
            }
        }
        assert!(input.is_empty());
    }
    assert!(stream.starts_with(&again));
    assert_eq!(again.len() + decoder.buffered_len(), stream.len());
    let _ = decoder.finish();
});
