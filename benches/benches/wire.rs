//! tether-wire: control messages encoded and decoded per second (Ping and a 100-entry
//! SyncResponse), as JSON and in the binary encoding side by side, frame decoding, and the
//! envelope sealing and opening a 256 KiB data frame.
//!
//! `cargo bench -p tether-benches --bench wire`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tether_crypto::{
    EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, Transcript,
};
use tether_wire::{
    ContentHash, ControlMessage, DataChunk, Encoding, FrameDecoder, FrameEncoder, Hlc, Ping,
    RequestId, SyncEntry, SyncResponse, limits::MAX_CHUNK_LEN,
};
use uuid::Uuid;

fn ping() -> ControlMessage {
    ControlMessage::with_id(
        RequestId(7),
        Ping {
            timestamp_ms: 1_780_000_000_123,
        },
    )
}

fn sync_response(entries: u64) -> ControlMessage {
    let entries = (0..entries)
        .map(|i| SyncEntry {
            entry_id: Uuid::from_u128(u128::from(i) << 64 | 0x4000_8000_0000_0000),
            path: format!("photos/2026/holiday/img_{i:04}.jpg"),
            size: 3_000_000 + i,
            hash: Some(ContentHash([i as u8; 32])),
            hlc: Hlc {
                physical_ms: 1_780_000_000_000 + i,
                logical: 0,
                node: 0xc0ffee,
            },
            deleted: false,
        })
        .collect();
    ControlMessage::with_id(
        RequestId(9),
        SyncResponse {
            library_id: Uuid::from_u128(1),
            entries,
            has_more: false,
        },
    )
}

/// Both ends of a fixed session: `(initiator, responder)`.
fn session_pair() -> (SessionKeys, SessionKeys) {
    let keys = |role: Role| {
        let initiator = EphemeralKeyPair::danger_from_secret_bytes([0x11; 32]);
        let responder = EphemeralKeyPair::danger_from_secret_bytes([0x22; 32]);
        let transcript = Transcript {
            initiator_id: [0x33; 32],
            responder_id: [0x44; 32],
            initiator_ephemeral: initiator.public_key(),
            responder_ephemeral: responder.public_key(),
        };
        let shared = initiator
            .diffie_hellman(&transcript.responder_ephemeral)
            .unwrap();
        SessionSecrets::derive(&PairingSecret::from_bytes([0x55; 32]), shared, &transcript)
            .into_session_keys(role)
    };
    (keys(Role::Initiator), keys(Role::Responder))
}

fn messages(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/message");
    group.throughput(Throughput::Elements(1));
    for (name, message) in [("ping", ping()), ("sync_response_100", sync_response(100))] {
        let json = message.encode().unwrap();
        eprintln!("{name}: {} bytes of JSON", json.len());
        group.bench_function(format!("encode/{name}"), |b| {
            let mut out = Vec::with_capacity(json.len());
            b.iter(|| {
                out.clear();
                black_box(&message).encode_into(&mut out).unwrap();
                black_box(out.len())
            });
        });
        group.bench_function(format!("decode/{name}"), |b| {
            b.iter(|| ControlMessage::decode(black_box(&json)).unwrap());
        });
        // The whole path: JSON into a frame, through the decoder, parsed back.
        group.bench_function(format!("framed_round_trip/{name}"), |b| {
            let mut encoder = FrameEncoder::new();
            let mut decoder = FrameDecoder::new();
            b.iter(|| {
                encoder.push_control(black_box(&message)).unwrap();
                let bytes = encoder.take();
                let mut input = &bytes[..];
                let frame = decoder.decode(&mut input).unwrap().unwrap();
                ControlMessage::decode(frame.payload()).unwrap()
            });
        });
    }
    group.finish();
}

/// The same messages in both encodings, in one group so each binary row has its JSON row
/// beside it from the same run: encode, decode, and encode + decode (what one hop costs).
fn encodings(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/encoding");
    group.throughput(Throughput::Elements(1));
    for (name, message) in [("ping", ping()), ("sync_response_100", sync_response(100))] {
        for encoding in [Encoding::Json, Encoding::Binary] {
            let bytes = message.encode_with(encoding).unwrap();
            let label = encoding.as_str();
            eprintln!("{name}: {} bytes as {label}", bytes.len());
            group.bench_function(format!("encode/{label}/{name}"), |b| {
                let mut out = Vec::with_capacity(bytes.len());
                b.iter(|| {
                    out.clear();
                    black_box(&message)
                        .encode_into_with(encoding, &mut out)
                        .unwrap();
                    black_box(out.len())
                });
            });
            group.bench_function(format!("decode/{label}/{name}"), |b| {
                b.iter(|| ControlMessage::decode_with(encoding, black_box(&bytes)).unwrap());
            });
            group.bench_function(format!("encode_decode/{label}/{name}"), |b| {
                let mut out = Vec::with_capacity(bytes.len());
                b.iter(|| {
                    out.clear();
                    black_box(&message)
                        .encode_into_with(encoding, &mut out)
                        .unwrap();
                    ControlMessage::decode_with(encoding, &out).unwrap()
                });
            });
        }
    }
    group.finish();
}

fn data_and_envelope(c: &mut Criterion) {
    let mut group = c.benchmark_group("wire/data_256KiB");
    group.throughput(Throughput::Bytes(MAX_CHUNK_LEN as u64));
    let bytes = vec![0x5a; MAX_CHUNK_LEN];
    // `DataChunk::new` leaves room for the seal's tag and counter, as the transfer engine's
    // frames will have; a plain `clone()` would not, and sealing would reallocate and copy.
    let chunk = || {
        DataChunk::new(Uuid::from_u128(2), 0, false, &bytes)
            .unwrap()
            .into_frame()
    };
    let plain = chunk();

    group.bench_function("frame_decode", |b| {
        let mut encoder = FrameEncoder::new();
        encoder.push(&plain);
        let wire = encoder.take();
        let mut decoder = FrameDecoder::new();
        b.iter(|| {
            let mut input = &wire[..];
            DataChunk::decode(decoder.decode(&mut input).unwrap().unwrap()).unwrap()
        });
    });

    let (mut sender, mut receiver) = session_pair();
    group.bench_function("seal", |b| {
        b.iter_batched(
            chunk,
            |frame| frame.seal(&mut sender).unwrap(),
            BatchSize::LargeInput,
        );
    });

    let (mut sender, mut receiver_only) = session_pair();
    group.bench_function("open", |b| {
        b.iter_batched(
            || chunk().seal(&mut sender).unwrap(),
            |sealed| sealed.open(&mut receiver_only).unwrap(),
            BatchSize::LargeInput,
        );
    });

    let (mut sender, _) = session_pair();
    group.bench_function("seal_then_open", |b| {
        b.iter_batched(
            chunk,
            |frame| {
                frame
                    .seal(&mut sender)
                    .unwrap()
                    .open(&mut receiver)
                    .unwrap()
            },
            BatchSize::LargeInput,
        );
    });
    group.finish();
}

criterion_group!(benches, messages, encodings, data_and_envelope);
criterion_main!(benches);
