//! tether-crypto: sealing and opening frames, and the session handshake.
//!
//! The raw `chacha20poly1305` seal of the same sizes, in the same run, shows what the
//! `SessionKeys` wrapper (counters, replay window, epochs) costs on top. `transfer-<cipher>`
//! seals and opens with per-transfer keys under each cipher a transfer can agree on (what
//! tether-transfer's chunk layer does for every 256 KiB chunk).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::handshake::{HelloMessage, InitMessage, Initiator, Responder, ResponseMessage};
use tether_crypto::{
    EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, TAG_LEN, Transcript,
    TransferCipher,
};
use tether_identity::NetworkIdentity;

const SIZES: [(&str, usize); 2] = [("64B", 64), ("256KiB", 256 * 1024)];

/// Both ends of a session from fixed inputs: `(initiator, responder)`.
fn session_pair() -> (SessionKeys, SessionKeys) {
    let pairing = PairingSecret::from_bytes([7; 32]);
    let keys = |role: Role| {
        let initiator = EphemeralKeyPair::danger_from_secret_bytes([1; 32]);
        let responder = EphemeralKeyPair::danger_from_secret_bytes([2; 32]);
        let transcript = Transcript {
            initiator_id: [3; 32],
            responder_id: [4; 32],
            initiator_ephemeral: initiator.public_key(),
            responder_ephemeral: responder.public_key(),
        };
        let shared = match role {
            Role::Initiator => initiator.diffie_hellman(&transcript.responder_ephemeral),
            Role::Responder => responder.diffie_hellman(&transcript.initiator_ephemeral),
        }
        .unwrap();
        SessionSecrets::derive(&pairing, shared, &transcript).into_session_keys(role)
    };
    (keys(Role::Initiator), keys(Role::Responder))
}

/// Both ends of one transfer under `cipher`.
fn transfer_pair(cipher: TransferCipher) -> (SessionKeys, SessionKeys) {
    let (mut initiator, mut responder) = session_pair();
    (
        initiator.transfer_keys(&[5; 16], cipher).unwrap(),
        responder.transfer_keys(&[5; 16], cipher).unwrap(),
    )
}

fn seal(c: &mut Criterion) {
    let mut group = c.benchmark_group("seal");
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let (mut sender, _) = session_pair();
        let mut buf = vec![0x5a; size];
        for cipher in TransferCipher::ALL {
            let (mut transfer, _) = transfer_pair(cipher);
            group.bench_function(format!("transfer-{}/{name}", cipher.name()), |b| {
                b.iter(|| {
                    black_box(
                        transfer
                            .seal_in_place_detached(b"aad", black_box(&mut buf))
                            .unwrap(),
                    )
                });
            });
        }
        group.bench_function(format!("session/{name}"), |b| {
            b.iter(|| {
                black_box(
                    sender
                        .seal_in_place_detached(b"aad", black_box(&mut buf))
                        .unwrap(),
                )
            });
        });
        let cipher = ChaCha20Poly1305::new(&[9u8; 32].into());
        let nonce = Nonce::from([0u8; 12]);
        group.bench_function(format!("raw-chacha20poly1305/{name}"), |b| {
            b.iter(|| {
                black_box(
                    cipher
                        .encrypt_inout_detached(
                            &nonce,
                            b"aad",
                            black_box(buf.as_mut_slice()).into(),
                        )
                        .unwrap(),
                )
            });
        });
    }
    group.finish();
}

fn open(c: &mut Criterion) {
    let mut group = c.benchmark_group("open");
    for (name, size) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let (mut sender, mut receiver) = session_pair();
        let plaintext = vec![0x5a; size];
        let batch = if size > 4096 {
            BatchSize::LargeInput
        } else {
            BatchSize::SmallInput
        };
        for cipher in TransferCipher::ALL {
            let (mut sender, mut receiver) = transfer_pair(cipher);
            group.bench_function(format!("transfer-{}/{name}", cipher.name()), |b| {
                b.iter_batched_ref(
                    || {
                        let mut buf = plaintext.clone();
                        let sealed = sender.seal_in_place_detached(b"aad", &mut buf).unwrap();
                        (sealed.0, buf, sealed.1)
                    },
                    |(counter, buf, tag): &mut (u64, Vec<u8>, [u8; TAG_LEN])| {
                        receiver
                            .open_in_place_detached(*counter, b"aad", buf, tag)
                            .unwrap();
                    },
                    batch,
                );
            });
        }
        // Sealing a fresh frame for each open is setup, not measured: the receiver's replay
        // window accepts each counter once.
        group.bench_function(format!("session/{name}"), |b| {
            b.iter_batched_ref(
                || {
                    let mut buf = plaintext.clone();
                    let (counter, tag) = sender.seal_in_place_detached(b"aad", &mut buf).unwrap();
                    (counter, buf, tag)
                },
                |(counter, buf, tag): &mut (u64, Vec<u8>, [u8; TAG_LEN])| {
                    receiver
                        .open_in_place_detached(*counter, b"aad", buf, tag)
                        .unwrap();
                },
                batch,
            );
        });
    }
    group.finish();
}

fn handshake(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let alice = NetworkIdentity::generate(&mut rng);
    let bob = NetworkIdentity::generate(&mut rng);
    let (alice_id, bob_id) = (alice.node_id(), bob.node_id());
    let secret = PairingSecret::from_bytes([7; 32]);
    c.bench_function("handshake/full (both sides, 3 messages)", |b| {
        b.iter(|| {
            let (bob_state, hello) = Responder::hello(&mut rng);
            let hello = HelloMessage::from_bytes(&hello.to_bytes()).unwrap();
            let (alice_state, init) =
                Initiator::start(&mut rng, &alice, bob_id, &secret, &hello).unwrap();
            let init = InitMessage::from_bytes(&init.to_bytes()).unwrap();
            let (bob_keys, response) = bob_state.receive(&bob, alice_id, &secret, &init).unwrap();
            let response = ResponseMessage::from_bytes(&response.to_bytes()).unwrap();
            let alice_keys = alice_state.receive(&response).unwrap();
            black_box((alice_keys, bob_keys))
        });
    });
}

criterion_group!(benches, seal, open, handshake);
criterion_main!(benches);
