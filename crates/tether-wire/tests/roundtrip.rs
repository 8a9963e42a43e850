//! Property tests: every message kind round-trips through JSON, the binary encoding and frames, encoded
//! lengths are what they claim, and the decoder yields the same frames for any split of a stream.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use proptest::prelude::*;
use tether_wire::{
    ContentHash, ControlMessage, DataChunk, Encoding, ErrorCode, ErrorReply, FileRequest,
    FileResponse, Frame, FrameDecoder, FrameEncoder, FrameKind, Hlc, LibraryAnnounce, LibraryInfo,
    LibraryRequest, NameUpdate, NetworkMessage, Ping, Pong, RequestId, SyncEntry, SyncRequest,
    SyncResponse, Text, limits::MAX_CHUNK_LEN,
};
use uuid::Uuid;

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn hlc() -> impl Strategy<Value = Hlc> {
    (any::<u64>(), any::<u32>(), any::<u64>()).prop_map(|(physical_ms, logical, node)| Hlc {
        physical_ms,
        logical,
        node,
    })
}

/// Any Unicode, control characters and quotes included, up to `max` chars (and within the
/// byte limits, since a char is at most 4 bytes).
fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..max).prop_map(String::from_iter)
}

fn hash() -> impl Strategy<Value = ContentHash> {
    any::<[u8; 32]>().prop_map(ContentHash)
}

fn library_info() -> impl Strategy<Value = LibraryInfo> {
    (uuid(), text(64), any::<u64>(), hlc()).prop_map(|(id, name, entry_count, updated)| {
        LibraryInfo {
            id,
            name,
            entry_count,
            updated,
        }
    })
}

fn sync_entry() -> impl Strategy<Value = SyncEntry> {
    (
        uuid(),
        text(100),
        any::<u64>(),
        prop::option::of(hash()),
        hlc(),
        any::<bool>(),
    )
        .prop_map(|(entry_id, path, size, hash, hlc, deleted)| SyncEntry {
            entry_id,
            path,
            size,
            hash,
            hlc,
            deleted,
        })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(vec![
        ErrorCode::UnknownMessage,
        ErrorCode::Malformed,
        ErrorCode::LimitExceeded,
        ErrorCode::Unsupported,
        ErrorCode::NotFound,
        ErrorCode::Denied,
        ErrorCode::Busy,
        ErrorCode::Internal,
        ErrorCode::Other,
    ])
}

fn library_announce() -> impl Strategy<Value = NetworkMessage> {
    prop::collection::vec(library_info(), 0..8)
        .prop_map(|libraries| LibraryAnnounce { libraries }.into())
}
fn library_request() -> impl Strategy<Value = NetworkMessage> {
    uuid().prop_map(|library_id| LibraryRequest { library_id }.into())
}
fn sync_request() -> impl Strategy<Value = NetworkMessage> {
    (uuid(), hlc()).prop_map(|(library_id, after)| SyncRequest { library_id, after }.into())
}
fn sync_response() -> impl Strategy<Value = NetworkMessage> {
    (
        uuid(),
        prop::collection::vec(sync_entry(), 0..16),
        any::<bool>(),
    )
        .prop_map(|(library_id, entries, has_more)| {
            SyncResponse {
                library_id,
                entries,
                has_more,
            }
            .into()
        })
}
fn file_request() -> impl Strategy<Value = NetworkMessage> {
    (uuid(), any::<u64>()).prop_map(|(entry_id, resume_from)| {
        FileRequest {
            entry_id,
            resume_from,
        }
        .into()
    })
}
fn file_response() -> impl Strategy<Value = NetworkMessage> {
    (
        uuid(),
        any::<u64>(),
        hash(),
        1..=MAX_CHUNK_LEN as u32,
        any::<u64>(),
    )
        .prop_map(|(entry_id, size, hash, chunk_size, offset)| {
            FileResponse {
                entry_id,
                size,
                hash,
                chunk_size,
                offset,
            }
            .into()
        })
}
fn ping() -> impl Strategy<Value = NetworkMessage> {
    any::<u64>().prop_map(|timestamp_ms| Ping { timestamp_ms }.into())
}
fn pong() -> impl Strategy<Value = NetworkMessage> {
    any::<u64>().prop_map(|timestamp_ms| Pong { timestamp_ms }.into())
}
fn name_update() -> impl Strategy<Value = NetworkMessage> {
    (
        text(64),
        any::<u64>(),
        prop::array::uniform32(any::<u8>()),
        prop::array::uniform32(any::<u8>()),
    )
        .prop_map(|(name, changed_ms, low, high)| {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(&low);
            signature[32..].copy_from_slice(&high);
            NameUpdate {
                name,
                changed_ms,
                signature,
            }
            .into()
        })
}
fn text_message() -> impl Strategy<Value = NetworkMessage> {
    text(2000).prop_map(|text| Text { text }.into())
}
fn ack() -> impl Strategy<Value = NetworkMessage> {
    Just(NetworkMessage::Ack)
}
fn error() -> impl Strategy<Value = NetworkMessage> {
    (error_code(), text(200)).prop_map(|(code, message)| ErrorReply { code, message }.into())
}

fn any_message() -> impl Strategy<Value = NetworkMessage> {
    prop_oneof![
        library_announce(),
        library_request(),
        sync_request(),
        sync_response(),
        file_request(),
        file_response(),
        ping(),
        pong(),
        name_update(),
        text_message(),
        ack(),
        error(),
    ]
}

fn control(
    message: impl Strategy<Value = NetworkMessage>,
) -> impl Strategy<Value = ControlMessage> {
    (
        prop::option::of(any::<u64>().prop_map(RequestId)),
        any::<bool>(),
        message,
    )
        .prop_map(|(id, once, message)| ControlMessage { id, once, message })
}

/// JSON round trip, `encoded_len`, and the same through a control frame.
fn check_round_trip(message: &ControlMessage) -> Result<(), TestCaseError> {
    let json = message.encode().unwrap();
    prop_assert_eq!(message.encoded_len().unwrap(), json.len());
    prop_assert_eq!(&ControlMessage::decode(&json).unwrap(), message);

    let frame = Frame::control(message).unwrap();
    prop_assert_eq!(frame.encoded_len(), 5 + json.len());
    let mut encoder = FrameEncoder::new();
    encoder.push_control(message).unwrap();
    prop_assert_eq!(encoder.bytes().len(), frame.encoded_len());
    let bytes = encoder.take();
    let mut input = &bytes[..];
    let decoded = FrameDecoder::new().decode(&mut input).unwrap().unwrap();
    prop_assert!(input.is_empty());
    prop_assert_eq!(&ControlMessage::decode(decoded.payload()).unwrap(), message);

    for encoding in Encoding::ALL {
        let bytes = message.encode_with(encoding).unwrap();
        prop_assert_eq!(message.encoded_len_with(encoding).unwrap(), bytes.len());
        prop_assert_eq!(
            &ControlMessage::decode_with(encoding, &bytes).unwrap(),
            message
        );
        prop_assert_eq!(RequestId::of_payload_with(encoding, &bytes), message.id);
        let mut encoder = FrameEncoder::new();
        encoder.push_control_with(message, encoding).unwrap();
        prop_assert_eq!(encoder.bytes().len(), 5 + bytes.len());
        let frame = message.to_frame_with(encoding).unwrap();
        prop_assert_eq!(frame.payload(), &bytes[..]);
    }
    // The binary form is never the longer one.
    prop_assert!(message.encoded_len_with(Encoding::Binary).unwrap() <= json.len());
    Ok(())
}

/// A stream of frames: control messages and data chunks.
fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        control(any_message()).prop_map(|message| Frame::control(&message).unwrap()),
        control(any_message()).prop_map(|message| message.to_frame_with(Encoding::Binary).unwrap()),
        (
            uuid(),
            any::<u64>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..600)
        )
            .prop_map(
                |(id, offset, last, bytes)| DataChunk::new(id, offset, last, &bytes)
                    .unwrap()
                    .into_frame()
            ),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|bytes| Frame::new(
            FrameKind::SealedData,
            bytes
        )
        .unwrap()),
    ]
}

proptest! {
    #[test]
    fn library_announce_round_trips(m in control(library_announce())) { check_round_trip(&m)?; }
    #[test]
    fn library_request_round_trips(m in control(library_request())) { check_round_trip(&m)?; }
    #[test]
    fn sync_request_round_trips(m in control(sync_request())) { check_round_trip(&m)?; }
    #[test]
    fn sync_response_round_trips(m in control(sync_response())) { check_round_trip(&m)?; }
    #[test]
    fn file_request_round_trips(m in control(file_request())) { check_round_trip(&m)?; }
    #[test]
    fn file_response_round_trips(m in control(file_response())) { check_round_trip(&m)?; }
    #[test]
    fn ping_round_trips(m in control(ping())) { check_round_trip(&m)?; }
    #[test]
    fn pong_round_trips(m in control(pong())) { check_round_trip(&m)?; }
    #[test]
    fn name_update_round_trips(m in control(name_update())) { check_round_trip(&m)?; }
    #[test]
    fn text_round_trips(m in control(text_message())) { check_round_trip(&m)?; }
    #[test]
    fn ack_round_trips(m in control(ack())) { check_round_trip(&m)?; }
    #[test]
    fn error_round_trips(m in control(error())) { check_round_trip(&m)?; }

    #[test]
    fn data_chunk_round_trips(
        id in uuid(),
        offset in any::<u64>(),
        last in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let frame = DataChunk::new(id, offset, last, &bytes).unwrap().into_frame();
        prop_assert_eq!(frame.encoded_len(), 5 + tether_wire::DATA_HEADER_LEN + bytes.len());
        let chunk = DataChunk::decode(frame).unwrap();
        prop_assert_eq!(
            (chunk.entry_id(), chunk.offset(), chunk.is_last(), chunk.bytes()),
            (id, offset, last, &bytes[..])
        );
    }

    #[test]
    fn any_split_gives_the_same_frames(
        frames in prop::collection::vec(frame(), 0..12),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
    ) {
        let mut encoder = FrameEncoder::new();
        frames.iter().for_each(|frame| encoder.push(frame));
        let bytes = encoder.take();

        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
        points.push(0);
        points.push(bytes.len());
        points.sort_unstable();

        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        for pair in points.windows(2) {
            let mut input = &bytes[pair[0]..pair[1]];
            while let Some(frame) = decoder.decode(&mut input).unwrap() {
                got.push(frame);
            }
            prop_assert!(input.is_empty());
        }
        decoder.finish().unwrap();
        prop_assert_eq!(got, frames);
    }
}
