//! The binary control payload under hostile input: the same rules as JSON (bounded memory and
//! time, a typed error, never a panic), plus the binary layout's own strictness.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Instant;

use tether_wire::{
    ControlMessage, Encoding, ErrorCode, LimitError, MessageError, MessageKind, NetworkMessage,
    RequestId, Text, limits::MAX_TEXT_LEN,
};

fn decode(bytes: &[u8]) -> Result<ControlMessage, MessageError> {
    ControlMessage::decode_with(Encoding::Binary, bytes)
}

#[test]
fn an_unknown_kind_number_is_typed_and_keeps_the_request_id() {
    // flags: id | id 9 | kind 200 (varint c8 01) | a body this version cannot read.
    let payload = [0x01, 0x09, 0xc8, 0x01, 0xde, 0xad];
    let err = decode(&payload).unwrap_err();
    assert!(
        matches!(err, MessageError::UnknownMessageNumber { number: 200 }),
        "{err:?}"
    );
    assert_eq!(err.code(), ErrorCode::UnknownMessage);
    assert_eq!(
        RequestId::of_payload_with(Encoding::Binary, &payload),
        Some(RequestId(9))
    );
    assert!(matches!(
        decode(&[0x00, 0x00]).unwrap_err(),
        MessageError::UnknownMessageNumber { number: 0 }
    ));
}

#[test]
fn a_huge_length_field_is_refused_without_allocating_it() {
    // SyncResponse, library id, then an entry count of u64::MAX-ish: the input ends long
    // before, and serde preallocates at most 1 MiB whatever the count says.
    let mut payload = vec![0x00, 0x04, 0x10];
    payload.extend_from_slice(&[7; 16]);
    payload.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
    let started = Instant::now();
    assert!(matches!(decode(&payload), Err(MessageError::Binary(_))));
    // A string whose length says 4 GiB: refused from the length alone.
    let text = [0x00, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, b'a'];
    assert!(matches!(decode(&text), Err(MessageError::Binary(_))));
    assert!(started.elapsed().as_secs() < 2);
}

#[test]
fn limits_apply_as_in_json() {
    let long = ControlMessage::new(Text {
        text: "x".repeat(MAX_TEXT_LEN + 1),
    });
    assert!(matches!(
        long.encode_with(Encoding::Binary),
        Err(tether_wire::EncodeError::Limit(LimitError::TooLong { .. }))
    ));
    // Built by hand, as a peer could: kind Text, length MAX_TEXT_LEN + 1 as a varint.
    let mut payload = vec![0x00, 0x0a];
    let mut len = MAX_TEXT_LEN + 1;
    while len >= 0x80 {
        payload.push((len as u8) | 0x80);
        len >>= 7;
    }
    payload.push(len as u8);
    payload.extend(std::iter::repeat_n(b'x', MAX_TEXT_LEN + 1));
    let err = decode(&payload).unwrap_err();
    assert!(matches!(err, MessageError::Limit(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::LimitExceeded);
}

#[test]
fn the_layout_does_not_grow() {
    let ping = common::sample(MessageKind::Ping)
        .encode_with(Encoding::Binary)
        .unwrap();
    let mut trailing = ping.clone();
    trailing.push(0);
    assert!(matches!(
        decode(&trailing),
        Err(MessageError::MalformedBinary {
            reason: "bytes after the body"
        })
    ));
    let mut flags = ping.clone();
    flags[0] |= 0x80;
    assert!(matches!(
        decode(&flags),
        Err(MessageError::MalformedBinary {
            reason: "unknown flag bits"
        })
    ));
    // Ack has no body, and takes none.
    assert_eq!(decode(&[0x00, 0x0b]).unwrap().message, NetworkMessage::Ack);
    assert!(decode(&[0x00, 0x0b, 0x00]).is_err());
    // A bool is 0 or 1 (SyncResponse's has_more is its last byte).
    let mut response = common::sample(MessageKind::SyncResponse)
        .encode_with(Encoding::Binary)
        .unwrap();
    *response.last_mut().unwrap() = 2;
    assert!(matches!(decode(&response), Err(MessageError::Binary(_))));
    assert!(matches!(
        decode(&[]),
        Err(MessageError::MalformedBinary { .. })
    ));
}

#[test]
fn an_unknown_error_code_decodes_as_other() {
    // Error, code index 40, message "x".
    let payload = [0x00, 0x0c, 40, 0x01, b'x'];
    let message = decode(&payload).unwrap().message;
    let NetworkMessage::Error(reply) = message else {
        panic!("{message:?}");
    };
    assert_eq!(reply.code, ErrorCode::Other);
}

#[test]
fn every_cut_and_every_flipped_byte_of_every_sample_is_an_error_or_a_message() {
    for kind in MessageKind::ALL {
        let bytes = common::sample(kind).encode_with(Encoding::Binary).unwrap();
        for end in 0..bytes.len() {
            assert!(decode(&bytes[..end]).is_err(), "{kind:?} cut at {end}");
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                if let Ok(message) = decode(&flipped) {
                    // Whatever decodes encodes, and decodes back to itself (not always to
                    // the same bytes: a varint may be padded, an unknown code is `Other`).
                    let again = message.encode_with(Encoding::Binary).unwrap();
                    assert_eq!(decode(&again).unwrap(), message);
                }
            }
        }
    }
}

#[test]
fn invalid_utf8_is_refused() {
    // Text of two bytes, not UTF-8.
    assert!(matches!(
        decode(&[0x00, 0x0a, 0x02, 0xc3, 0x28]),
        Err(MessageError::Binary(_))
    ));
}
