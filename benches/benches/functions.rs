//! The function benches issue 9 lists that the crate benches did not have, and the
//! alternatives to two seed-design choices, measured beside them:
//!
//! - `verify/blake3_chunk_256KiB`: what the receiver computes per 256 KiB chunk before
//!   accepting it (tether-transfer's `tree::chunk_hash`: BLAKE3 with the chunk's input offset,
//!   `finalize_non_root`, the same five lines as the engine's crate-private function);
//! - `pairing/handshake_full`: the five-message SPAKE2 pairing, both sides, one core;
//! - `aead/*`: the per-chunk AEAD Tether adds (`chacha20poly1305`) against AES-256-GCM
//!   (RustCrypto `aes-gcm`, AES-NI and CLMUL detected at run time) and against `ring`'s
//!   AES-256-GCM and ChaCha20-Poly1305, which is what QUIC's TLS layer below uses;
//! - `ping_codec/*`: the Ping as Tether's JSON control message against an 11-byte binary
//!   encoding (type, request id, timestamp) with the same checks on decode.
//!
//! `cargo bench -p tether-benches --bench functions`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;

use aes_gcm::Aes256Gcm;
use blake3::hazmat::HasherExt;
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity};
use tether_pairing::{
    Initiator, InitiatorConfig, InitiatorStep, Joiner, LocalDevice, PairingCode, Timestamp,
};
use tether_wire::{ControlMessage, Ping, RequestId};

const CHUNK: usize = 256 * 1024;

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Bytes(CHUNK as u64));
    let data = vec![0x5au8; CHUNK];
    // Chunk 3 of a larger file: a non-root subtree at offset 3 × 256 KiB.
    group.bench_function("blake3_chunk_256KiB", |b| {
        b.iter(|| {
            let mut hasher = blake3::Hasher::new();
            hasher.set_input_offset(3 * CHUNK as u64);
            hasher.update(black_box(&data));
            black_box(hasher.finalize_non_root())
        });
    });
    group.bench_function("blake3_hash_256KiB (plain, for reference)", |b| {
        b.iter(|| black_box(blake3::hash(black_box(&data))));
    });
    group.finish();
}

fn device(rng: &mut ChaCha20Rng, name: &str) -> LocalDevice {
    let identity = NetworkIdentity::generate(rng);
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Laptop,
        public_key: identity.node_id(),
    };
    LocalDevice::new(identity, info).unwrap()
}

fn pairing(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let laptop = device(&mut rng, "laptop");
    let phone = device(&mut rng, "phone");
    let (laptop_id, phone_id) = (laptop.node_id(), phone.node_id());
    let code = PairingCode::generate(&mut rng);
    let now = Timestamp::ZERO;
    c.bench_function("pairing/handshake_full (both sides, 5 messages)", |b| {
        b.iter(|| {
            let mut initiator =
                Initiator::new(&code, laptop.clone(), now, InitiatorConfig::default()).unwrap();
            let (joiner, hello) = Joiner::start(&code, phone.clone(), laptop_id, &mut rng).unwrap();
            let InitiatorStep::Send(reply) =
                initiator.handle(phone_id, &hello, now, &mut rng).unwrap()
            else {
                panic!("no reply")
            };
            let (joiner, confirm) = joiner.handle_reply(&reply).unwrap();
            let InitiatorStep::Send(back) =
                initiator.handle(phone_id, &confirm, now, &mut rng).unwrap()
            else {
                panic!("no confirmation")
            };
            let (phone_view, signature) = joiner.handle_confirm(&back).unwrap();
            let InitiatorStep::Paired(laptop_view) = initiator
                .handle(phone_id, &signature, now, &mut rng)
                .unwrap()
            else {
                panic!("not paired")
            };
            black_box((phone_view, laptop_view))
        });
    });
}

fn aead(c: &mut Criterion) {
    let mut group = c.benchmark_group("aead");
    for (name, size) in [("64B", 64usize), ("256KiB", CHUNK)] {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];

        let chacha = ChaCha20Poly1305::new(&[9u8; 32].into());
        let nonce = chacha20poly1305::Nonce::from([0u8; 12]);
        group.bench_function(
            format!("seal/chacha20poly1305 (Tether's layer)/{name}"),
            |b| {
                b.iter(|| {
                    black_box(
                        chacha
                            .encrypt_inout_detached(
                                &nonce,
                                b"aad",
                                black_box(buf.as_mut_slice()).into(),
                            )
                            .unwrap(),
                    )
                });
            },
        );

        let aes = Aes256Gcm::new(&[9u8; 32].into());
        let aes_nonce = aes_gcm::Nonce::from([0u8; 12]);
        group.bench_function(format!("seal/aes-256-gcm (RustCrypto)/{name}"), |b| {
            b.iter(|| {
                black_box(
                    aes.encrypt_inout_detached(
                        &aes_nonce,
                        b"aad",
                        black_box(buf.as_mut_slice()).into(),
                    )
                    .unwrap(),
                )
            });
        });

        for (label, algorithm) in [
            ("aes-256-gcm (ring, QUIC's TLS)", &ring::aead::AES_256_GCM),
            ("chacha20poly1305 (ring)", &ring::aead::CHACHA20_POLY1305),
        ] {
            let key = ring::aead::LessSafeKey::new(
                ring::aead::UnboundKey::new(algorithm, &[9u8; 32]).unwrap(),
            );
            group.bench_function(format!("seal/{label}/{name}"), |b| {
                b.iter(|| {
                    let nonce = ring::aead::Nonce::assume_unique_for_key([0u8; 12]);
                    black_box(
                        key.seal_in_place_separate_tag(
                            nonce,
                            ring::aead::Aad::from(b"aad"),
                            black_box(buf.as_mut_slice()),
                        )
                        .unwrap(),
                    )
                });
            });
        }
    }
    group.finish();
}

/// The binary Ping a hot-message codec would send: type byte, request id, timestamp.
fn encode_binary_ping(id: u16, timestamp_ms: u64, out: &mut Vec<u8>) {
    out.push(0x01);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&timestamp_ms.to_be_bytes());
}

fn decode_binary_ping(bytes: &[u8]) -> Option<(u16, u64)> {
    let (&kind, rest) = bytes.split_first()?;
    if kind != 0x01 || rest.len() != 10 {
        return None;
    }
    let (id, ts) = rest.split_at(2);
    Some((
        u16::from_be_bytes(id.try_into().ok()?),
        u64::from_be_bytes(ts.try_into().ok()?),
    ))
}

fn ping_codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("ping_codec");
    group.throughput(Throughput::Elements(1));
    let message = ControlMessage::with_id(
        RequestId(7),
        Ping {
            timestamp_ms: 1_780_000_000_123,
        },
    );
    let json = message.encode().unwrap();
    group.bench_function("json_encode_decode (Tether)", |b| {
        let mut out = Vec::with_capacity(json.len());
        b.iter(|| {
            out.clear();
            black_box(&message).encode_into(&mut out).unwrap();
            ControlMessage::decode(black_box(&out)).unwrap()
        });
    });
    group.bench_function("binary_encode_decode (11 bytes)", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            out.clear();
            encode_binary_ping(black_box(7), black_box(1_780_000_000_123), &mut out);
            decode_binary_ping(black_box(&out)).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, verify, pairing, aead, ping_codec);
criterion_main!(benches);
