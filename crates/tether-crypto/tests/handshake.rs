//! The session handshake: success, every way it must fail, and hostile bytes.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::handshake::{
    AwaitingFinish, AwaitingResponse, FinishMessage, INITIATOR_SIGNING_CONTEXT, InitMessage,
    Initiator, Responder, ResponseMessage,
};
use tether_crypto::{
    CryptoError, EphemeralKeyPair, EphemeralPublicKey, PairingSecret, SessionKeys, SessionSecrets,
    Transcript, TransferCipher,
};
use tether_identity::NetworkIdentity;

struct Devices {
    rng: ChaCha20Rng,
    alice: NetworkIdentity,
    bob: NetworkIdentity,
    secret: PairingSecret,
}

fn devices(seed: u64) -> Devices {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    Devices {
        alice: NetworkIdentity::generate(&mut rng),
        bob: NetworkIdentity::generate(&mut rng),
        secret: PairingSecret::from_bytes([seed as u8; 32]),
        rng,
    }
}

/// Alice starts, Bob answers; messages go through their byte encodings.
fn first_half(d: &mut Devices) -> (AwaitingResponse<'_>, AwaitingFinish, ResponseMessage) {
    let (alice, init) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
    let init = InitMessage::from_bytes(&init.to_bytes()).unwrap();
    let (bob, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).unwrap();
    let response = ResponseMessage::from_bytes(&response.to_bytes()).unwrap();
    (alice, bob, response)
}

fn full_handshake(d: &mut Devices) -> (SessionKeys, SessionKeys) {
    let (alice, bob, response) = first_half(d);
    let (alice_keys, finish) = alice.receive(&response).unwrap();
    let finish = FinishMessage::from_bytes(&finish.to_bytes()).unwrap();
    (alice_keys, bob.receive(&finish).unwrap())
}

fn assert_keys_match(alice: &mut SessionKeys, bob: &mut SessionKeys) {
    let mut buf = b"to bob".to_vec();
    let counter = alice.seal_in_place(b"h", &mut buf).unwrap();
    bob.open_in_place(counter, b"h", &mut buf).unwrap();
    assert_eq!(buf, b"to bob");
    let mut buf = b"to alice".to_vec();
    let counter = bob.seal_in_place(b"h", &mut buf).unwrap();
    alice.open_in_place(counter, b"h", &mut buf).unwrap();
    assert_eq!(buf, b"to alice");
}

#[test]
fn both_sides_end_with_matching_keys() {
    let mut d = devices(1);
    let (mut alice, mut bob) = full_handshake(&mut d);
    assert_keys_match(&mut alice, &mut bob);
    for (id, cipher) in [
        (9, TransferCipher::ChaCha20Poly1305),
        (10, TransferCipher::Aes256Gcm),
    ] {
        let mut alice_transfer = alice.transfer_keys(&[id; 16], cipher).unwrap();
        let mut bob_transfer = bob.transfer_keys(&[id; 16], cipher).unwrap();
        assert_keys_match(&mut alice_transfer, &mut bob_transfer);
    }
}

#[test]
fn every_session_has_fresh_keys() {
    let mut d = devices(2);
    let (mut alice_1, _bob_1) = full_handshake(&mut d);
    let (_alice_2, mut bob_2) = full_handshake(&mut d);
    let mut buf = b"old session".to_vec();
    let counter = alice_1.seal_in_place(b"", &mut buf).unwrap();
    assert_eq!(
        bob_2.open_in_place(counter, b"", &mut buf),
        Err(CryptoError::Authentication)
    );
}

#[test]
fn different_pairing_secrets_fail() {
    let mut d = devices(3);
    let (alice, init) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
    let other_secret = PairingSecret::from_bytes([0xee; 32]);
    let (_, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &other_secret, &init).unwrap();
    assert_eq!(
        alice.receive(&response).err(),
        Some(CryptoError::KeyConfirmation)
    );
}

/// What a hand-built last message would need: Alice's ephemeral secret (so the test can run
/// the key schedule itself) and Bob's state.
struct HandBuilt {
    devices: Devices,
    transcript: Transcript,
    confirm_initiator: [u8; 32],
}

/// Alice's side built by hand from a known ephemeral secret, with keys derived from
/// `alice_secret_for_keys`; Bob is honest, holds the real pairing secret and expects Alice.
fn hand_built(seed: u64, alice_secret_for_keys: &PairingSecret) -> (HandBuilt, AwaitingFinish) {
    let mut d = devices(seed);
    let ephemeral = EphemeralKeyPair::danger_from_secret_bytes([seed as u8 ^ 0x5a; 32]);
    let mut init_bytes = [0u8; InitMessage::LEN];
    init_bytes[0] = 0x01;
    init_bytes[1..].copy_from_slice(ephemeral.public_key().as_bytes());
    let init = InitMessage::from_bytes(&init_bytes).unwrap();
    let (bob, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).unwrap();
    let response_bytes = response.to_bytes();
    let transcript = Transcript {
        initiator_id: *d.alice.node_id().as_bytes(),
        responder_id: *d.bob.node_id().as_bytes(),
        initiator_ephemeral: ephemeral.public_key(),
        responder_ephemeral: EphemeralPublicKey::from_bytes(
            response_bytes[1..33].try_into().unwrap(),
        ),
    };
    let shared = ephemeral
        .diffie_hellman(&transcript.responder_ephemeral)
        .unwrap();
    let secrets = SessionSecrets::derive(alice_secret_for_keys, shared, &transcript);
    let confirm_initiator = secrets
        .danger_to_named_bytes()
        .into_iter()
        .find(|(name, _)| *name == "confirm_initiator")
        .unwrap()
        .1;
    let built = HandBuilt {
        devices: d,
        transcript,
        confirm_initiator,
    };
    (built, bob)
}

fn finish_message(
    confirmation: &[u8; 32],
    signer: &NetworkIdentity,
    transcript: &Transcript,
) -> FinishMessage {
    let signature = signer.sign(INITIATOR_SIGNING_CONTEXT, &transcript.hash());
    let mut bytes = vec![0x03];
    bytes.extend_from_slice(confirmation);
    bytes.extend_from_slice(&signature.to_bytes());
    FinishMessage::from_bytes(&bytes).unwrap()
}

#[test]
fn hand_built_finish_is_accepted_when_right() {
    // The control for the two tests below: with the right secret and signer Bob accepts.
    let secret = devices(20).secret;
    let (built, bob) = hand_built(20, &secret);
    let finish = finish_message(
        &built.confirm_initiator,
        &built.devices.alice,
        &built.transcript,
    );
    bob.receive(&finish).unwrap();
}

#[test]
fn responder_refuses_an_initiator_with_another_pairing_secret() {
    // Alice signs honestly but derived her keys from another pairing secret.
    let (built, bob) = hand_built(21, &PairingSecret::from_bytes([0xee; 32]));
    let finish = finish_message(
        &built.confirm_initiator,
        &built.devices.alice,
        &built.transcript,
    );
    assert_eq!(
        bob.receive(&finish).err(),
        Some(CryptoError::KeyConfirmation)
    );
}

#[test]
fn responder_refuses_an_initiator_that_is_not_the_expected_peer() {
    // Mallory knows the pairing secret and runs the key schedule right, but Bob expects Alice
    // (the id his transport authenticated) and Mallory cannot sign as Alice.
    let secret = devices(22).secret;
    let (mut built, bob) = hand_built(22, &secret);
    let mallory = NetworkIdentity::generate(&mut built.devices.rng);
    let finish = finish_message(&built.confirm_initiator, &mallory, &built.transcript);
    assert_eq!(bob.receive(&finish).err(), Some(CryptoError::Signature));
}

#[test]
fn a_finish_from_another_session_is_refused() {
    let mut d = devices(23);
    let (_, bob, _) = first_half(&mut d);
    let mut e = devices(24);
    e.alice = d.alice.clone();
    e.bob = d.bob.clone();
    let (alice_e, _, response_e) = first_half(&mut e);
    let (_, finish_e) = alice_e.receive(&response_e).unwrap();
    assert_eq!(bob.receive(&finish_e).err(), Some(CryptoError::Signature));
}

#[test]
fn an_impostor_responder_fails() {
    let mut d = devices(5);
    let mallory = NetworkIdentity::generate(&mut d.rng);
    let (alice, init) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
    // Mallory knows the pairing secret but not Bob's key.
    let (_, response) =
        Responder::respond(&mut d.rng, &mallory, d.alice.node_id(), &d.secret, &init).unwrap();
    assert_eq!(alice.receive(&response).err(), Some(CryptoError::Signature));
}

#[test]
fn an_initiator_the_responder_does_not_expect_fails() {
    let mut d = devices(6);
    let mallory = NetworkIdentity::generate(&mut d.rng);
    // Mallory connects; Bob is told the peer is Alice. Bob signs a transcript naming Alice,
    // which is not the transcript Mallory has.
    let (mallory_state, init) = Initiator::start(&mut d.rng, &mallory, d.bob.node_id(), &d.secret);
    let (_, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).unwrap();
    assert_eq!(
        mallory_state.receive(&response).err(),
        Some(CryptoError::Signature)
    );
}

#[test]
fn the_wrong_expected_peer_fails() {
    let mut d = devices(7);
    let carol = NetworkIdentity::generate(&mut d.rng);
    let (alice, init) = Initiator::start(&mut d.rng, &d.alice, carol.node_id(), &d.secret);
    let (_, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).unwrap();
    assert_eq!(alice.receive(&response).err(), Some(CryptoError::Signature));
}

#[test]
fn every_flipped_bit_in_init_fails_the_handshake() {
    for bit in 8..InitMessage::LEN * 8 {
        let mut d = devices(8);
        let (alice, init) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
        let mut bytes = init.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let init = InitMessage::from_bytes(&bytes).unwrap();
        match Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init) {
            Ok((_, response)) => assert!(alice.receive(&response).is_err(), "bit {bit}"),
            Err(error) => assert_eq!(error, CryptoError::NonContributory, "bit {bit}"),
        }
    }
}

#[test]
fn every_flipped_bit_in_response_fails_the_handshake() {
    let mut d = devices(9);
    let (alice, init) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
    let (_, response) =
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).unwrap();
    // One initiator state per attempt: rebuild it from the same seed each time.
    drop(alice);
    let honest = response.to_bytes();
    for bit in 0..ResponseMessage::LEN * 8 {
        let mut d = devices(9);
        let (alice, _) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
        let mut bytes = honest;
        bytes[bit / 8] ^= 1 << (bit % 8);
        match ResponseMessage::from_bytes(&bytes) {
            Ok(response) => assert!(alice.receive(&response).is_err(), "bit {bit}"),
            Err(error) => assert!(bit < 8, "bit {bit}: {error}"),
        }
    }
    // The unmodified message works with the same state, so the failures above are the flips.
    let mut d = devices(9);
    let (alice, _) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
    alice
        .receive(&ResponseMessage::from_bytes(&honest).unwrap())
        .unwrap();
}

#[test]
fn every_flipped_bit_in_finish_fails_the_handshake() {
    let honest = {
        let mut d = devices(10);
        let (alice, _, response) = first_half(&mut d);
        alice.receive(&response).unwrap().1.to_bytes()
    };
    for bit in 0..FinishMessage::LEN * 8 {
        let mut d = devices(10);
        let (_, bob, _) = first_half(&mut d);
        let mut bytes = honest;
        bytes[bit / 8] ^= 1 << (bit % 8);
        match FinishMessage::from_bytes(&bytes) {
            Ok(finish) => assert!(bob.receive(&finish).is_err(), "bit {bit}"),
            Err(error) => assert!(bit < 8, "bit {bit}: {error}"),
        }
    }
    let mut d = devices(10);
    let (_, bob, _) = first_half(&mut d);
    bob.receive(&FinishMessage::from_bytes(&honest).unwrap())
        .unwrap();
}

#[test]
fn low_order_ephemeral_keys_are_refused() {
    let mut d = devices(11);
    let mut bytes = [0u8; InitMessage::LEN];
    bytes[0] = 0x01; // type byte, then an all-zero public key
    let init = InitMessage::from_bytes(&bytes).unwrap();
    assert_eq!(
        Responder::respond(&mut d.rng, &d.bob, d.alice.node_id(), &d.secret, &init).err(),
        Some(CryptoError::NonContributory)
    );
}

#[test]
fn messages_are_not_interchangeable() {
    let mut d = devices(12);
    let (alice, _, response) = first_half(&mut d);
    let (_, finish) = alice.receive(&response).unwrap();
    assert_eq!(
        InitMessage::from_bytes(&finish.to_bytes()).err(),
        Some(CryptoError::MessageType {
            expected: 0x01,
            found: 0x03
        })
    );
    assert!(FinishMessage::from_bytes(&response.to_bytes()).is_err());
    assert!(ResponseMessage::from_bytes(&finish.to_bytes()).is_err());
}

#[test]
fn debug_output_shows_no_secret() {
    let mut d = devices(13);
    let secret_hex = hex::encode(d.secret.as_bytes());
    let alice_secret_hex = hex::encode(*d.alice.to_secret_bytes());
    let (alice, bob, response) = first_half(&mut d);
    for text in [
        format!("{alice:?}"),
        format!("{bob:?}"),
        format!("{response:?}"),
    ] {
        assert!(!text.contains(&secret_hex), "{text}");
        assert!(!text.contains(&alice_secret_hex), "{text}");
    }
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let init = InitMessage::from_bytes(&bytes);
        let response = ResponseMessage::from_bytes(&bytes);
        let finish = FinishMessage::from_bytes(&bytes);
        prop_assert_eq!(init.is_ok(), bytes.len() == InitMessage::LEN && bytes[0] == 1);
        prop_assert_eq!(response.is_ok(), bytes.len() == ResponseMessage::LEN && bytes[0] == 2);
        prop_assert_eq!(finish.is_ok(), bytes.len() == FinishMessage::LEN && bytes[0] == 3);
        if let Ok(message) = init {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
        if let Ok(message) = response {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
        if let Ok(message) = finish {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
    }

    #[test]
    fn random_responses_never_complete(seed in any::<u64>(), body in proptest::array::uniform32(any::<u8>())) {
        let mut d = devices(seed);
        let (alice, _) = Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret);
        let mut bytes = [0u8; ResponseMessage::LEN];
        bytes[0] = 0x02;
        for (i, byte) in bytes.iter_mut().enumerate().skip(1) {
            *byte = body[i % 32].wrapping_add(i as u8);
        }
        let response = ResponseMessage::from_bytes(&bytes).unwrap();
        prop_assert!(alice.receive(&response).is_err());
    }
}
