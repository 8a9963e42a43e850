//! Tampering with the session handshake between two paired devices (tether-crypto).
//!
//! An honest initiator and responder (fixed identities, fixed pairing secret, seeded RNG) run
//! the three-message handshake; the input replaces one message on its way. `data[0] % 3` picks
//! the message (hello, init, response), `data[1]` the mode: even XORs the rest of the input
//! onto the honest encoding (so an all-zero input is the honest message and short or long
//! inputs truncate or extend it), odd replaces the message with the rest of the input.
//!
//! X25519, Ed25519 signatures and key generation run on cheap stand-ins
//! (`tether_identity::danger_fuzzing`), so the fuzzer spends its time in the handshake's
//! decoders and state; `pairing_handshake_real` is the target that keeps the real primitives.
//!
//! The responder offers two encodings in its hello and the initiator chooses one, as two
//! current builds do, so the offer and the `0x07` init are under the fuzzer too.
//!
//! Checks: no panic; the handshake completes on both sides exactly when the delivered message
//! equals the honest one, or when the hello arrived without its offer (what an older acceptor
//! sends) and the initiator then chose nothing; and then both sides hold matching keys (the
//! initiator's first frame, sealed before the response as the link sends it, opens on the
//! responder's side).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_crypto::PairingSecret;
use tether_crypto::handshake::{
    EncodingOffer, HelloMessage, InitMessage, Initiator, Responder, ResponseMessage,
};
use tether_identity::NetworkIdentity;

fuzz_target!(|data: &[u8]| {
    tether_identity::danger_fuzzing::use_stand_ins();
    let [which, mode, rest @ ..] = data else {
        return;
    };
    let which = which % 3;
    let tamper = |honest: &[u8]| -> Vec<u8> {
        if mode % 2 == 1 {
            return rest.to_vec();
        }
        let mut out = honest.to_vec();
        out.resize(rest.len(), 0);
        for (byte, mask) in out.iter_mut().zip(rest) {
            *byte ^= mask;
        }
        out
    };

    let mut rng = ChaCha20Rng::seed_from_u64(0x7e7e);
    let alice = NetworkIdentity::from_secret_bytes(&[0xa1; 32]);
    let bob = NetworkIdentity::from_secret_bytes(&[0xb0; 32]);
    let secret = PairingSecret::from_bytes([0x5e; 32]);
    let mut changed = false;

    let (bob_state, hello) = Responder::hello_offering(&mut rng, EncodingOffer::new(&[2, 1]));
    let honest_hello = hello.to_bytes();
    let hello_bytes = deliver(which == 0, &honest_hello, &tamper, &mut changed);
    let Ok(hello) = HelloMessage::from_bytes(&hello_bytes) else {
        assert!(changed, "the honest hello must decode");
        return;
    };
    let offer_cut = hello_bytes.get(..) == honest_hello.get(..HelloMessage::LEN);
    let started =
        Initiator::start_choosing(&mut rng, &alice, bob.node_id(), &secret, &hello, &[2, 1]);
    let Ok((alice_state, init)) = started else {
        assert!(changed, "the honest hello must be answered");
        return;
    };
    // The link seals its first request before the response arrives.
    let (mut alice_keys, check) = alice_state.into_early_keys();
    let mut frame = b"probe".to_vec();
    let counter = alice_keys.seal_in_place(b"aad", &mut frame).unwrap();

    let init_bytes = deliver(which == 1, &init.to_bytes(), &tamper, &mut changed);
    let Ok(init) = InitMessage::from_bytes(&init_bytes) else {
        assert!(changed, "the honest init must decode");
        return;
    };
    let Ok((mut bob_keys, response)) = bob_state.receive(&bob, alice.node_id(), &secret, &init)
    else {
        assert!(changed, "the honest init must be accepted");
        return;
    };

    let response_bytes = deliver(which == 2, &response.to_bytes(), &tamper, &mut changed);
    let Ok(response) = ResponseMessage::from_bytes(&response_bytes) else {
        assert!(changed, "the honest response must decode");
        return;
    };
    if check.verify(&response).is_err() {
        assert!(changed, "the honest response must be accepted");
        return;
    }

    assert!(
        !changed || (offer_cut && init.encoding().is_none()),
        "a tampered handshake completed on both sides"
    );
    bob_keys.open_in_place(counter, b"aad", &mut frame).unwrap();
    assert_eq!(frame, b"probe");
});

/// The bytes that arrive: the honest encoding, or the tampered one when `tampered` is set.
fn deliver(
    tampered: bool,
    honest: &[u8],
    tamper: &dyn Fn(&[u8]) -> Vec<u8>,
    changed: &mut bool,
) -> Vec<u8> {
    if !tampered {
        return honest.to_vec();
    }
    let delivered = tamper(honest);
    *changed = delivered != honest;
    delivered
}
