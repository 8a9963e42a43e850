//! The pairing message framing: `u16` big-endian length + message, at most `MAX_MESSAGE_LEN`.
//!
//! Also keeps the seed corpus of the `pairing_framing` fuzz target (`fuzz/seeds/pairing_framing`)
//! current: run with `TETHER_BLESS=1` to rewrite it.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;

use proptest::prelude::*;
use tether_pairing::{
    FramingError, LENGTH_PREFIX_LEN, MAX_MESSAGE_LEN, MessageDecoder, StreamError, encode_message,
    encode_message_into, read_message, write_message,
};

/// Feeds `stream` in pieces of `piece` bytes; returns the messages and the decoder.
fn decode_in_pieces(
    stream: &[u8],
    piece: usize,
) -> (Vec<Vec<u8>>, MessageDecoder, Option<FramingError>) {
    let mut decoder = MessageDecoder::new();
    let mut messages = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        let mut input = chunk;
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => return (messages, decoder, Some(error)),
            }
        }
        assert!(input.is_empty(), "the decoder takes every byte it is given");
    }
    (messages, decoder, None)
}

#[test]
fn a_message_is_its_length_then_its_bytes() {
    assert_eq!(encode_message(b"").unwrap(), [0, 0]);
    assert_eq!(encode_message(b"abc").unwrap(), [0, 3, b'a', b'b', b'c']);
    let long = vec![7; MAX_MESSAGE_LEN];
    let framed = encode_message(&long).unwrap();
    assert_eq!(framed[..LENGTH_PREFIX_LEN], [0x05, 0x00]);
    assert_eq!(framed.len(), LENGTH_PREFIX_LEN + MAX_MESSAGE_LEN);
}

#[test]
fn a_message_over_the_cap_is_not_encoded() {
    let mut out = b"kept".to_vec();
    assert_eq!(
        encode_message_into(&vec![0; MAX_MESSAGE_LEN + 1], &mut out),
        Err(FramingError::TooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    assert_eq!(out, b"kept");
    assert!(encode_message(&vec![0; 70_000]).is_err());
}

#[test]
fn a_length_over_the_cap_is_refused_from_the_prefix_and_poisons() {
    let len = u16::try_from(MAX_MESSAGE_LEN + 1).unwrap();
    let mut decoder = MessageDecoder::new();
    let mut input: &[u8] = &len.to_be_bytes();
    let error = decoder.decode(&mut input).unwrap_err();
    assert_eq!(
        error,
        FramingError::TooLong {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        }
    );
    // The facade's violation reason keeps its wording.
    assert_eq!(
        error.to_string(),
        "pairing message of 1281 bytes (at most 1280)"
    );
    let mut input: &[u8] = &[0, 1, 2];
    assert_eq!(decoder.decode(&mut input), Err(FramingError::Poisoned));
    assert_eq!(decoder.finish(), Err(FramingError::Poisoned));
    assert_eq!(decoder.needed(), 0);
}

#[test]
fn the_decoder_takes_no_byte_past_a_message() {
    let mut stream = encode_message(b"first").unwrap();
    stream.extend(encode_message(b"second").unwrap());
    let mut decoder = MessageDecoder::new();
    let mut input = stream.as_slice();
    assert_eq!(decoder.decode(&mut input).unwrap().unwrap(), b"first");
    assert_eq!(input, &stream[7..]);
    assert!(decoder.is_idle());
    assert_eq!(decoder.needed(), LENGTH_PREFIX_LEN);
    assert_eq!(decoder.decode(&mut input).unwrap().unwrap(), b"second");
    assert!(input.is_empty());
    decoder.finish().unwrap();
}

#[test]
fn needed_counts_down_through_prefix_and_body() {
    let stream = encode_message(b"abcd").unwrap();
    let mut decoder = MessageDecoder::new();
    let mut seen = Vec::new();
    for byte in &stream {
        seen.push((decoder.needed(), decoder.buffered_len()));
        let mut input: &[u8] = std::slice::from_ref(byte);
        decoder.decode(&mut input).unwrap();
    }
    assert_eq!(seen, [(2, 0), (1, 1), (4, 2), (3, 3), (2, 4), (1, 5)]);
    assert!(decoder.is_idle());
}

#[test]
fn a_stream_that_ends_inside_a_message_is_truncated() {
    let stream = encode_message(b"abcdef").unwrap();
    for cut in 1..stream.len() {
        let (messages, decoder, error) = decode_in_pieces(&stream[..cut], 1);
        assert!(messages.is_empty() && error.is_none());
        assert_eq!(
            decoder.finish(),
            Err(FramingError::Truncated { received: cut })
        );
    }
    let (_, decoder, _) = decode_in_pieces(&stream, 1);
    decoder.finish().unwrap();
}

fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), MAX_MESSAGE_LEN - 4..=MAX_MESSAGE_LEN),
        ],
        0..6,
    )
}

proptest! {
    /// Any messages, framed back to back and cut anywhere, decode to themselves.
    #[test]
    fn framing_round_trips_across_any_split(messages in messages(), piece in 1usize..200) {
        let mut stream = Vec::new();
        for message in &messages {
            encode_message_into(message, &mut stream).unwrap();
        }
        let (decoded, decoder, error) = decode_in_pieces(&stream, piece);
        prop_assert_eq!(error, None);
        prop_assert_eq!(decoded, messages);
        prop_assert!(decoder.finish().is_ok());
    }

    /// Arbitrary bytes never panic the decoder, and whatever it yields re-encodes to the
    /// bytes it consumed.
    #[test]
    fn arbitrary_bytes_decode_or_fail_cleanly(stream in prop::collection::vec(any::<u8>(), 0..3000), piece in 1usize..64) {
        let (decoded, decoder, error) = decode_in_pieces(&stream, piece);
        let mut again = Vec::new();
        for message in &decoded {
            prop_assert!(message.len() <= MAX_MESSAGE_LEN);
            encode_message_into(message, &mut again).unwrap();
        }
        prop_assert_eq!(&stream[..again.len()], again.as_slice());
        if error.is_none() {
            prop_assert_eq!(again.len() + decoder.buffered_len(), stream.len());
        }
    }
}

#[tokio::test]
async fn the_async_helpers_carry_messages_and_read_no_further() {
    let (mut a, mut b) = tokio::io::duplex(64);
    let big = vec![9; MAX_MESSAGE_LEN];
    let writer = tokio::spawn(async move {
        write_message(&mut a, b"hello").await.unwrap();
        write_message(&mut a, &big).await.unwrap();
        write_message(&mut a, b"").await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut a, b"tail")
            .await
            .unwrap();
    });
    assert_eq!(read_message(&mut b).await.unwrap(), b"hello");
    assert_eq!(
        read_message(&mut b).await.unwrap(),
        vec![9; MAX_MESSAGE_LEN]
    );
    assert_eq!(read_message(&mut b).await.unwrap(), b"");
    writer.await.unwrap();
    // What follows the last message is still in the stream.
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut b, &mut rest)
        .await
        .unwrap();
    assert_eq!(rest, b"tail");
}

#[tokio::test]
async fn the_async_reader_reports_an_early_end_and_an_oversized_length() {
    let mut ended: &[u8] = &[0, 5, b'a', b'b'];
    assert!(matches!(
        read_message(&mut ended).await,
        Err(StreamError::Framing(FramingError::Truncated {
            received: 4
        }))
    ));
    let mut empty: &[u8] = &[];
    assert!(matches!(
        read_message(&mut empty).await,
        Err(StreamError::Framing(FramingError::Truncated {
            received: 0
        }))
    ));
    let mut huge: &[u8] = &[0xff, 0xff, 1, 2, 3];
    assert!(matches!(
        read_message(&mut huge).await,
        Err(StreamError::Framing(FramingError::TooLong {
            len: 0xffff,
            ..
        }))
    ));
    let mut sink = Vec::new();
    assert!(matches!(
        write_message(&mut sink, &vec![0; MAX_MESSAGE_LEN + 1]).await,
        Err(StreamError::Framing(FramingError::TooLong { .. }))
    ));
    assert!(sink.is_empty());
}

/// The seeds of the `pairing_framing` fuzz target: a control byte (low seven bits + 1: the
/// piece size the stream is fed in), then the stream.
fn fuzz_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut two = vec![0x00];
    two.extend(encode_message(b"hello").unwrap());
    two.extend(encode_message(&[0xab; 40]).unwrap());
    let mut full = vec![0x7f];
    full.extend(encode_message(&vec![1; MAX_MESSAGE_LEN]).unwrap());
    full.extend(encode_message(b"").unwrap());
    let mut too_long = vec![0x02];
    too_long.extend((u16::try_from(MAX_MESSAGE_LEN).unwrap() + 1).to_be_bytes());
    too_long.extend([0; 8]);
    let mut truncated = vec![0x03];
    truncated.extend(&encode_message(b"cut short").unwrap()[..6]);
    vec![
        ("two-messages", two),
        ("longest-then-empty", full),
        ("too-long", too_long),
        ("truncated", truncated),
    ]
}

#[test]
fn fuzz_seeds_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/pairing_framing");
    let seeds = fuzz_seeds();
    if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    for (name, bytes) in &seeds {
        let committed = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("pairing_framing/{name}: {e}; run with TETHER_BLESS=1"));
        assert_eq!(
            &committed, bytes,
            "seed pairing_framing/{name} is stale; run with TETHER_BLESS=1"
        );
    }
    // The seeds reach what they are named for.
    let run = |name: &str| {
        let seed = &seeds.iter().find(|(n, _)| *n == name).unwrap().1;
        let piece = usize::from(seed[0] & 0x7f) + 1;
        decode_in_pieces(&seed[1..], piece)
    };
    assert_eq!(run("two-messages").0.len(), 2);
    assert_eq!(run("longest-then-empty").0.len(), 2);
    assert!(matches!(
        run("too-long").2,
        Some(FramingError::TooLong { .. })
    ));
    let (_, decoder, error) = run("truncated");
    assert!(error.is_none());
    assert_eq!(
        decoder.finish(),
        Err(FramingError::Truncated { received: 6 })
    );
}
