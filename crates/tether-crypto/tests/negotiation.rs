//! The encoding negotiation inside the session handshake: the responder's offer and the
//! initiator's choice are bound into the transcript, and an older build on either side still
//! completes the handshake without one.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::handshake::{
    AwaitingInit, AwaitingResponse, EncodingOffer, HelloMessage, InitMessage, Initiator, Responder,
    ResponseMessage,
};
use tether_crypto::{CryptoError, PairingSecret, SessionKeys};
use tether_identity::NetworkIdentity;

struct Devices {
    rng: ChaCha20Rng,
    alice: NetworkIdentity,
    bob: NetworkIdentity,
    secret: PairingSecret,
}

fn devices() -> Devices {
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    Devices {
        alice: NetworkIdentity::generate(&mut rng),
        bob: NetworkIdentity::generate(&mut rng),
        secret: PairingSecret::from_bytes([22; 32]),
        rng,
    }
}

/// Bob offers `offer`; the hello reaches Alice as `deliver` makes it; Alice chooses from
/// `reads`.
fn first_half(
    d: &mut Devices,
    offer: Option<&[u8]>,
    deliver: impl FnOnce(Vec<u8>) -> Vec<u8>,
    reads: &[u8],
) -> (AwaitingResponse, AwaitingInit, InitMessage) {
    let offer = offer.map(|ids| EncodingOffer::new(ids).unwrap());
    let (bob, hello) = Responder::hello_offering(&mut d.rng, offer);
    let hello = HelloMessage::from_bytes(&deliver(hello.to_bytes())).unwrap();
    let (alice, init) = Initiator::start_choosing(
        &mut d.rng,
        &d.alice,
        d.bob.node_id(),
        &d.secret,
        &hello,
        reads,
    )
    .unwrap();
    let init = InitMessage::from_bytes(&init.to_bytes()).unwrap();
    (alice, bob, init)
}

fn finish(
    d: &Devices,
    alice: AwaitingResponse,
    bob: AwaitingInit,
    init: &InitMessage,
) -> Result<(SessionKeys, SessionKeys), CryptoError> {
    let (bob_keys, response) = bob.receive(&d.bob, d.alice.node_id(), &d.secret, init)?;
    let response = ResponseMessage::from_bytes(&response.to_bytes()).unwrap();
    Ok((alice.receive(&response)?, bob_keys))
}

fn assert_keys_match(alice: &mut SessionKeys, bob: &mut SessionKeys) {
    let mut buf = b"to bob".to_vec();
    let counter = alice.seal_in_place(b"h", &mut buf).unwrap();
    bob.open_in_place(counter, b"h", &mut buf).unwrap();
    assert_eq!(buf, b"to bob");
}

#[test]
fn the_initiator_chooses_its_first_preference_the_responder_offers() {
    let mut d = devices();
    let (alice, bob, init) = first_half(&mut d, Some(&[1, 2]), |b| b, &[3, 2, 1]);
    assert_eq!(init.encoding(), Some(2));
    assert_eq!(init.to_bytes()[0], 0x07);
    let (mut a, mut b) = finish(&d, alice, bob, &init).unwrap();
    assert_keys_match(&mut a, &mut b);
}

#[test]
fn older_builds_on_either_side_negotiate_nothing_and_still_connect() {
    // An older responder: no offer, so the initiator chooses nothing and sends a 0x05 init.
    let mut d = devices();
    let (alice, bob, init) = first_half(&mut d, None, |b| b, &[2, 1]);
    assert_eq!(init.encoding(), None);
    assert_eq!(init.to_bytes().len(), InitMessage::LEN);
    let (mut a, mut b) = finish(&d, alice, bob, &init).unwrap();
    assert_keys_match(&mut a, &mut b);

    // An older initiator reads 33 bytes of the hello and chooses nothing.
    let (alice, bob, init) = first_half(&mut d, Some(&[1, 2]), |b| b[..33].to_vec(), &[2, 1]);
    assert_eq!(init.encoding(), None);
    let (mut a, mut b) = finish(&d, alice, bob, &init).unwrap();
    assert_keys_match(&mut a, &mut b);

    // Nothing in common: no choice either, but the offer seen is bound (a 0x07 init).
    let (alice, bob, init) = first_half(&mut d, Some(&[9]), |b| b, &[2, 1]);
    assert_eq!(init.encoding(), None);
    assert_eq!(init.to_bytes().len(), InitMessage::CHOOSING_LEN);
    assert!(finish(&d, alice, bob, &init).is_ok());
}

#[test]
fn an_offer_changed_to_share_nothing_fails_the_signature() {
    // Found by the session_handshake fuzz target: the offer's ids changed on the way so that
    // the initiator reads none of them. It chooses none, but binds the offer it saw.
    let mut d = devices();
    let (_alice, bob, init) = first_half(
        &mut d,
        Some(&[2, 1]),
        |mut b| {
            b[34] ^= 0x7a;
            b[35] ^= 0x05;
            b
        },
        &[2, 1],
    );
    assert_eq!(init.encoding(), None);
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &init)
        .unwrap_err();
    assert_eq!(err, CryptoError::Signature);
}

#[test]
fn a_changed_offer_fails_the_signature() {
    // The offer reaches Alice with Bob's first preference removed: she chooses from what she
    // saw, signs it, and Bob, who bound what he sent, refuses her init.
    let mut d = devices();
    let (_alice, bob, init) = first_half(
        &mut d,
        Some(&[2, 1]),
        |mut b| {
            b.truncate(33);
            b.extend_from_slice(&[1, 1]);
            b
        },
        &[2, 1],
    );
    assert_eq!(init.encoding(), Some(1));
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &init)
        .unwrap_err();
    assert_eq!(err, CryptoError::Signature);
}

#[test]
fn a_changed_choice_fails_the_signature_and_an_unoffered_one_is_refused() {
    let mut d = devices();
    let (_alice, bob, init) = first_half(&mut d, Some(&[2, 1]), |b| b, &[2, 1]);
    let mut bytes = init.to_bytes();
    bytes[129] = 1;
    let changed = InitMessage::from_bytes(&bytes).unwrap();
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &changed)
        .unwrap_err();
    assert_eq!(err, CryptoError::Signature);

    let (_alice, bob, init) = first_half(&mut d, Some(&[2, 1]), |b| b, &[2, 1]);
    let mut bytes = init.to_bytes();
    bytes[129] = 7;
    let unoffered = InitMessage::from_bytes(&bytes).unwrap();
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &unoffered)
        .unwrap_err();
    assert_eq!(err, CryptoError::UnofferedEncoding { chosen: 7 });

    // A choice sent to a responder that offered nothing.
    let (_alice, bob, _init) = first_half(&mut d, None, |b| b, &[2, 1]);
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &init)
        .unwrap_err();
    assert_eq!(err, CryptoError::UnofferedEncoding { chosen: 2 });
}

#[test]
fn dropping_the_choice_fails_the_key_confirmation_or_signature() {
    // Alice chose and signed with the negotiation bound in; an init rewritten as 0x05 (the
    // choice dropped) does not verify against the plain transcript.
    let mut d = devices();
    let (_alice, bob, init) = first_half(&mut d, Some(&[2, 1]), |b| b, &[2, 1]);
    let mut bytes = init.to_bytes();
    bytes.truncate(InitMessage::LEN);
    bytes[0] = 0x05;
    let dropped = InitMessage::from_bytes(&bytes).unwrap();
    let err = bob
        .receive(&d.bob, d.alice.node_id(), &d.secret, &dropped)
        .unwrap_err();
    assert_eq!(err, CryptoError::Signature);
}
