//! Arbitrary bytes into the binary control payload's decoder (`Encoding::Binary`), under the
//! same rules as the JSON one (`wire_decode`): a typed error or a message, never a panic, and
//! memory bounded by the input (no allocation sized by a length field).
//!
//! Input: the payload as it would sit in an opened control frame.
//!
//! Checks: no panic; whatever decodes re-encodes, to `encoded_len_with` bytes, that decode to
//! the same message (not always to the same bytes: a varint may be padded, an unknown error
//! code decodes as `Other`); its request id is what `RequestId::of_payload_with` finds; what
//! does not decode still gets an id from `of_payload_with` only if its header reads.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_wire::{ControlMessage, Encoding, RequestId};

fuzz_target!(|data: &[u8]| {
    let id = RequestId::of_payload_with(Encoding::Binary, data);
    let Ok(message) = ControlMessage::decode_with(Encoding::Binary, data) else {
        return;
    };
    assert_eq!(id, message.id);
    let bytes = message
        .encode_with(Encoding::Binary)
        .expect("a decoded message must encode");
    assert_eq!(
        message.encoded_len_with(Encoding::Binary).ok(),
        Some(bytes.len())
    );
    assert!(bytes.len() <= data.len(), "re-encoding never grows");
    let again = ControlMessage::decode_with(Encoding::Binary, &bytes)
        .expect("an encoded message must decode");
    assert_eq!(again, message);
    // The same message as JSON decodes to it too: the two encodings carry the same things.
    let json = message
        .encode_with(Encoding::Json)
        .expect("and encode as JSON");
    assert_eq!(ControlMessage::decode(&json).ok(), Some(message));
});
