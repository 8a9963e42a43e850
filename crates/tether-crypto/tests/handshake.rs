//! The session handshake: success, every way it must fail, and hostile bytes.
//!
//! The order is hello (responder) → init (initiator) → response (responder); the initiator may
//! seal its first frames before the response.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::handshake::{
    AwaitingInit, AwaitingResponse, HelloMessage, INITIATOR_SIGNING_CONTEXT, InitMessage,
    Initiator, RESPONDER_SIGNING_CONTEXT, Responder, ResponseMessage,
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

/// Bob (who accepted) says hello, Alice answers with her init; messages go through their
/// byte encodings.
fn first_half(d: &mut Devices) -> (AwaitingResponse, AwaitingInit, InitMessage) {
    let (bob, hello) = Responder::hello(&mut d.rng);
    let hello = HelloMessage::from_bytes(&hello.to_bytes()).unwrap();
    let (alice, init) =
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello).unwrap();
    let init = InitMessage::from_bytes(&init.to_bytes()).unwrap();
    (alice, bob, init)
}

/// Bob's answer to an init.
fn respond(
    d: &Devices,
    bob: AwaitingInit,
    init: &InitMessage,
) -> Result<ResponseMessage, CryptoError> {
    bob.receive(&d.bob, d.alice.node_id(), &d.secret, init)
        .map(|(_, response)| response)
}

fn full_handshake(d: &mut Devices) -> (SessionKeys, SessionKeys) {
    let (alice, bob, init) = first_half(d);
    let (bob_keys, response) = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &init)
        .unwrap();
    let response = ResponseMessage::from_bytes(&response.to_bytes()).unwrap();
    (alice.receive(&response).unwrap(), bob_keys)
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
fn the_first_frame_is_sealed_before_the_response_and_opened_after_the_init() {
    // The order the link runs: hello → init + first frame → response.
    let mut d = devices(14);
    let (alice, bob, init) = first_half(&mut d);
    let (mut alice_keys, check) = alice.into_early_keys();
    let mut frame = b"first request".to_vec();
    let counter = alice_keys.seal_in_place(b"h", &mut frame).unwrap();
    let (mut bob_keys, response) = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &init)
        .unwrap();
    bob_keys.open_in_place(counter, b"h", &mut frame).unwrap();
    assert_eq!(frame, b"first request");
    check
        .verify(&ResponseMessage::from_bytes(&response.to_bytes()).unwrap())
        .unwrap();
    assert_keys_match(&mut alice_keys, &mut bob_keys);
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
fn an_initiator_with_another_pairing_secret_is_refused_at_its_init() {
    let mut d = devices(3);
    let (bob, hello) = Responder::hello(&mut d.rng);
    let other_secret = PairingSecret::from_bytes([0xee; 32]);
    let (_, init) =
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &other_secret, &hello).unwrap();
    assert_eq!(
        respond(&d, bob, &init).err(),
        Some(CryptoError::KeyConfirmation)
    );
}

/// Signs and encodes a response by hand for a transcript: what a responder holding `signer`'s
/// key and `secret` would send.
fn hand_built_response(
    signer: &NetworkIdentity,
    secret: &PairingSecret,
    responder: EphemeralKeyPair,
    transcript: &Transcript,
) -> ResponseMessage {
    let shared = responder
        .diffie_hellman(&transcript.initiator_ephemeral)
        .unwrap();
    let secrets = SessionSecrets::derive(secret, shared, transcript);
    let confirmation = secrets
        .danger_to_named_bytes()
        .into_iter()
        .find(|(name, _)| *name == "confirm_responder")
        .unwrap()
        .1;
    let signature = signer.sign(RESPONDER_SIGNING_CONTEXT, &transcript.hash());
    let mut bytes = vec![0x06];
    bytes.extend_from_slice(&confirmation);
    bytes.extend_from_slice(&signature.to_bytes());
    ResponseMessage::from_bytes(&bytes).unwrap()
}

/// Alice answers a hello made from a known ephemeral secret; returns her state and the
/// transcript both sides would hold.
fn alice_against_known_hello(
    d: &mut Devices,
    seed: u8,
) -> (AwaitingResponse, EphemeralKeyPair, Transcript) {
    let bob_ephemeral = EphemeralKeyPair::danger_from_secret_bytes([seed ^ 0x5a; 32]);
    let mut hello = [0u8; HelloMessage::LEN];
    hello[0] = 0x04;
    hello[1..].copy_from_slice(bob_ephemeral.public_key().as_bytes());
    let hello = HelloMessage::from_bytes(&hello).unwrap();
    let (alice, init) =
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello).unwrap();
    let transcript = Transcript {
        initiator_id: *d.alice.node_id().as_bytes(),
        responder_id: *d.bob.node_id().as_bytes(),
        initiator_ephemeral: EphemeralPublicKey::from_bytes(
            init.to_bytes()[1..33].try_into().unwrap(),
        ),
        responder_ephemeral: bob_ephemeral.public_key(),
    };
    let again = EphemeralKeyPair::danger_from_secret_bytes([seed ^ 0x5a; 32]);
    (alice, again, transcript)
}

#[test]
fn hand_built_response_is_accepted_when_right() {
    // The control for the two tests below: with the right secret and signer Alice accepts.
    let mut d = devices(20);
    let (alice, bob_ephemeral, transcript) = alice_against_known_hello(&mut d, 20);
    let response = hand_built_response(&d.bob, &d.secret, bob_ephemeral, &transcript);
    alice.receive(&response).unwrap();
}

#[test]
fn initiator_refuses_a_responder_with_another_pairing_secret() {
    // Bob signs honestly but derived his keys from another pairing secret.
    let mut d = devices(21);
    let (alice, bob_ephemeral, transcript) = alice_against_known_hello(&mut d, 21);
    let other = PairingSecret::from_bytes([0xee; 32]);
    let response = hand_built_response(&d.bob, &other, bob_ephemeral, &transcript);
    assert_eq!(
        alice.receive(&response).err(),
        Some(CryptoError::KeyConfirmation)
    );
}

#[test]
fn a_response_from_another_identity_is_refused() {
    // Mallory knows the pairing secret and runs the key schedule right, but Alice expects Bob
    // and Mallory cannot sign as Bob.
    let mut d = devices(22);
    let (alice, bob_ephemeral, transcript) = alice_against_known_hello(&mut d, 22);
    let mallory = NetworkIdentity::generate(&mut d.rng);
    let response = hand_built_response(&mallory, &d.secret, bob_ephemeral, &transcript);
    assert_eq!(alice.receive(&response).err(), Some(CryptoError::Signature));
}

#[test]
fn an_impostor_responder_fails() {
    // Mallory says hello and answers honestly, with her own key, as if she were Bob.
    let mut d = devices(5);
    let mallory = NetworkIdentity::generate(&mut d.rng);
    let (mallory_state, hello) = Responder::hello(&mut d.rng);
    let (alice, init) =
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello).unwrap();
    // Mallory expects Alice, but Alice's transcript names Bob: her signature fails there.
    assert_eq!(
        mallory_state
            .receive(&mallory, d.alice.node_id(), &d.secret, &init)
            .err(),
        Some(CryptoError::Signature)
    );
    // And a response Mallory signs over the transcript naming herself fails at Alice.
    let (mallory_state, hello) = Responder::hello(&mut d.rng);
    let (_, init_to_mallory) =
        Initiator::start(&mut d.rng, &d.alice, mallory.node_id(), &d.secret, &hello).unwrap();
    let (_, response) = mallory_state
        .receive(&mallory, d.alice.node_id(), &d.secret, &init_to_mallory)
        .unwrap();
    assert_eq!(alice.receive(&response).err(), Some(CryptoError::Signature));
}

#[test]
fn an_initiator_the_responder_does_not_expect_fails() {
    let mut d = devices(6);
    let mallory = NetworkIdentity::generate(&mut d.rng);
    // Mallory connects; Bob is told the peer is Alice. Mallory signs a transcript naming
    // herself, which is not the transcript Bob checks.
    let (bob, hello) = Responder::hello(&mut d.rng);
    let (_, init) =
        Initiator::start(&mut d.rng, &mallory, d.bob.node_id(), &d.secret, &hello).unwrap();
    assert_eq!(respond(&d, bob, &init).err(), Some(CryptoError::Signature));
}

#[test]
fn the_wrong_expected_peer_fails() {
    let mut d = devices(7);
    let carol = NetworkIdentity::generate(&mut d.rng);
    let (bob, hello) = Responder::hello(&mut d.rng);
    // Alice thinks she dialled Carol: her transcript names Carol, Bob's names himself.
    let (_, init) =
        Initiator::start(&mut d.rng, &d.alice, carol.node_id(), &d.secret, &hello).unwrap();
    assert_eq!(respond(&d, bob, &init).err(), Some(CryptoError::Signature));
}

#[test]
fn an_init_replayed_against_a_fresh_hello_fails() {
    // An init recorded from one connection, sent on a new one: the new hello's ephemeral key
    // is in the transcript, so the recorded signature no longer covers it.
    let mut d = devices(23);
    let (_, first_bob, init) = first_half(&mut d);
    let first = respond(&d, first_bob, &init);
    assert!(
        first.is_ok(),
        "the control: the init is good on its own connection"
    );
    let (fresh_bob, _fresh_hello) = Responder::hello(&mut d.rng);
    assert_eq!(
        respond(&d, fresh_bob, &init).err(),
        Some(CryptoError::Signature)
    );
}

#[test]
fn a_response_from_another_session_is_refused() {
    let mut d = devices(24);
    let (alice, _, _) = first_half(&mut d);
    let mut e = devices(25);
    e.alice = d.alice.clone();
    e.bob = d.bob.clone();
    e.secret = d.secret.clone();
    let (_, bob_e, init_e) = first_half(&mut e);
    let response_e = respond(&e, bob_e, &init_e).unwrap();
    assert_eq!(
        alice.receive(&response_e).err(),
        Some(CryptoError::Signature)
    );
}

#[test]
fn every_flipped_bit_in_hello_fails_the_handshake() {
    for bit in 8..HelloMessage::LEN * 8 {
        let mut d = devices(8);
        let (bob, hello) = Responder::hello(&mut d.rng);
        let mut bytes = hello.to_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let hello = HelloMessage::from_bytes(&bytes).unwrap();
        match Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello) {
            // Alice's transcript holds the flipped key, Bob's the one he sent.
            Ok((_, init)) => assert_eq!(
                respond(&d, bob, &init).err(),
                Some(CryptoError::Signature),
                "bit {bit}"
            ),
            Err(error) => assert_eq!(error, CryptoError::NonContributory, "bit {bit}"),
        }
    }
}

/// The error Bob gives for each flipped bit of an honest init: which field the bit is in.
#[test]
fn every_flipped_bit_in_init_fails_with_its_fields_error() {
    let honest = {
        let mut d = devices(9);
        first_half(&mut d).2.to_bytes()
    };
    for bit in 0..InitMessage::LEN * 8 {
        let mut d = devices(9);
        let (_, bob, _) = first_half(&mut d);
        let mut bytes = honest.clone();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let byte = bit / 8;
        match InitMessage::from_bytes(&bytes) {
            Ok(init) => {
                let expected = match byte {
                    // The ephemeral key and the signature: the signature no longer verifies.
                    1..=32 | 65.. => CryptoError::Signature,
                    _ => CryptoError::KeyConfirmation,
                };
                assert_eq!(respond(&d, bob, &init).err(), Some(expected), "bit {bit}");
            }
            Err(error) => {
                assert_eq!(byte, 0, "bit {bit}: {error}");
                // Another type byte, or 0x07 (the init that chooses an encoding), one byte
                // longer than this one.
                assert!(
                    matches!(
                        error,
                        CryptoError::MessageType { .. } | CryptoError::MessageLength { .. }
                    ),
                    "bit {bit}"
                );
            }
        }
    }
    // The unmodified message works with the same state, so the failures above are the flips.
    let mut d = devices(9);
    let (_, bob, _) = first_half(&mut d);
    respond(&d, bob, &InitMessage::from_bytes(&honest).unwrap()).unwrap();
}

#[test]
fn every_flipped_bit_in_response_fails_with_its_fields_error() {
    let honest = {
        let mut d = devices(10);
        let (_, bob, init) = first_half(&mut d);
        respond(&d, bob, &init).unwrap().to_bytes()
    };
    for bit in 0..ResponseMessage::LEN * 8 {
        let mut d = devices(10);
        let (alice, _, _) = first_half(&mut d);
        let mut bytes = honest;
        bytes[bit / 8] ^= 1 << (bit % 8);
        let byte = bit / 8;
        match ResponseMessage::from_bytes(&bytes) {
            Ok(response) => {
                // The signature is checked first: a flipped confirmation is a failed
                // confirmation, a flipped signature a failed signature.
                let expected = match byte {
                    1..=32 => CryptoError::KeyConfirmation,
                    _ => CryptoError::Signature,
                };
                assert_eq!(alice.receive(&response).err(), Some(expected), "bit {bit}");
            }
            Err(error) => {
                assert_eq!(byte, 0, "bit {bit}: {error}");
                assert!(
                    matches!(error, CryptoError::MessageType { .. }),
                    "bit {bit}"
                );
            }
        }
    }
    let mut d = devices(10);
    let (alice, _, _) = first_half(&mut d);
    alice
        .receive(&ResponseMessage::from_bytes(&honest).unwrap())
        .unwrap();
}

#[test]
fn low_order_ephemeral_keys_are_refused() {
    let mut d = devices(11);
    // In the hello: Alice refuses before she signs anything.
    let mut bytes = [0u8; HelloMessage::LEN];
    bytes[0] = 0x04; // type byte, then an all-zero public key
    let hello = HelloMessage::from_bytes(&bytes).unwrap();
    assert_eq!(
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello).err(),
        Some(CryptoError::NonContributory)
    );
    // In an init Alice really signed (she holds her key, so the signature verifies).
    let (bob, hello) = Responder::hello(&mut d.rng);
    let transcript = Transcript {
        initiator_id: *d.alice.node_id().as_bytes(),
        responder_id: *d.bob.node_id().as_bytes(),
        initiator_ephemeral: EphemeralPublicKey::from_bytes([0; 32]),
        responder_ephemeral: EphemeralPublicKey::from_bytes(
            hello.to_bytes()[1..].try_into().unwrap(),
        ),
    };
    let mut bytes = vec![0x05];
    bytes.extend_from_slice(&[0; 64]);
    bytes.extend_from_slice(
        &d.alice
            .sign(INITIATOR_SIGNING_CONTEXT, &transcript.hash())
            .to_bytes(),
    );
    let init = InitMessage::from_bytes(&bytes).unwrap();
    assert_eq!(
        respond(&d, bob, &init).err(),
        Some(CryptoError::NonContributory)
    );
}

#[test]
fn messages_are_not_interchangeable() {
    let mut d = devices(12);
    let (bob, hello) = Responder::hello(&mut d.rng);
    let (_, init) =
        Initiator::start(&mut d.rng, &d.alice, d.bob.node_id(), &d.secret, &hello).unwrap();
    let response = respond(&d, bob, &init).unwrap();
    assert_eq!(
        InitMessage::from_bytes(&response.to_bytes()).err(),
        Some(CryptoError::MessageType {
            expected: 0x05,
            found: 0x06
        })
    );
    assert!(HelloMessage::from_bytes(&init.to_bytes()).is_err());
    assert!(ResponseMessage::from_bytes(&hello.to_bytes()).is_err());
    assert!(ResponseMessage::from_bytes(&init.to_bytes()).is_err());
}

#[test]
fn debug_output_shows_no_secret() {
    let mut d = devices(13);
    let secret_hex = hex::encode(d.secret.as_bytes());
    let alice_secret_hex = hex::encode(*d.alice.to_secret_bytes());
    let (alice, bob, init) = first_half(&mut d);
    let (keys, check) = alice.into_early_keys();
    for text in [
        format!("{keys:?}"),
        format!("{check:?}"),
        format!("{bob:?}"),
        format!("{init:?}"),
    ] {
        assert!(!text.contains(&secret_hex), "{text}");
        assert!(!text.contains(&alice_secret_hex), "{text}");
    }
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let hello = HelloMessage::from_bytes(&bytes);
        let init = InitMessage::from_bytes(&bytes);
        let response = ResponseMessage::from_bytes(&bytes);
        prop_assert_eq!(hello.is_ok(), bytes.len() == HelloMessage::LEN && bytes[0] == 4);
        prop_assert_eq!(init.is_ok(), bytes.len() == InitMessage::LEN && bytes[0] == 5);
        prop_assert_eq!(response.is_ok(), bytes.len() == ResponseMessage::LEN && bytes[0] == 6);
        if let Ok(message) = hello {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
        if let Ok(message) = init {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
        if let Ok(message) = response {
            prop_assert_eq!(&message.to_bytes()[..], &bytes[..]);
        }
    }

    #[test]
    fn random_responses_never_complete(seed in any::<u64>(), body in proptest::array::uniform32(any::<u8>())) {
        let mut d = devices(seed);
        let (alice, _, _) = first_half(&mut d);
        let mut bytes = [0u8; ResponseMessage::LEN];
        bytes[0] = 0x06;
        for (i, byte) in bytes.iter_mut().enumerate().skip(1) {
            *byte = body[i % 32].wrapping_add(i as u8);
        }
        let response = ResponseMessage::from_bytes(&bytes).unwrap();
        prop_assert!(alice.receive(&response).is_err());
    }

    #[test]
    fn random_inits_never_complete(seed in any::<u64>(), body in proptest::array::uniform32(any::<u8>())) {
        let mut d = devices(seed);
        let (bob, _) = Responder::hello(&mut d.rng);
        let mut bytes = [0u8; InitMessage::LEN];
        bytes[0] = 0x05;
        for (i, byte) in bytes.iter_mut().enumerate().skip(1) {
            *byte = body[i % 32].wrapping_add(i as u8);
        }
        let init = InitMessage::from_bytes(&bytes).unwrap();
        prop_assert!(respond(&d, bob, &init).is_err());
    }
}
