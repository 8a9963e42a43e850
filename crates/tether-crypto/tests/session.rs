//! `SessionKeys`: round trips, tampering, replay window, rekeying, transfer keys.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod common;

use common::{
    Frame, SMALL_EPOCH, SMALL_REKEY_LOG2, open, seal, seal_many, session_pair, transfer_pair,
};
use proptest::prelude::*;
use tether_crypto::{
    CryptoError, MAX_EPOCH_LOOKAHEAD, REPLAY_WINDOW, Role, SessionKeys, TAG_LEN, TransferCipher,
};

fn any_cipher() -> impl Strategy<Value = TransferCipher> {
    prop::sample::select(TransferCipher::ALL.to_vec())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn transfer_keys_round_trip_under_each_cipher(
        seed in any::<u64>(),
        cipher in any_cipher(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (mut alice, mut bob) = transfer_pair(seed, cipher);
        prop_assert_eq!(alice.cipher(), cipher);
        let frame = seal(&mut alice, &aad, &plaintext);
        prop_assert_eq!(frame.sealed.len(), plaintext.len() + TAG_LEN);
        prop_assert_eq!(open(&mut bob, &frame).unwrap(), plaintext.clone());
        let back = seal(&mut bob, &aad, &plaintext);
        prop_assert_eq!(open(&mut alice, &back).unwrap(), plaintext);
    }

    #[test]
    fn transfer_frames_with_any_flipped_bit_fail_under_each_cipher(
        seed in any::<u64>(),
        cipher in any_cipher(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        bit in any::<prop::sample::Index>(),
    ) {
        let (mut alice, mut bob) = transfer_pair(seed, cipher);
        let frame = seal(&mut alice, b"header", &plaintext);
        let mut forged = frame.clone();
        let at = bit.index(forged.sealed.len() * 8);
        forged.sealed[at / 8] ^= 1 << (at % 8);
        prop_assert_eq!(open(&mut bob, &forged), Err(CryptoError::Authentication));
        prop_assert_eq!(open(&mut bob, &frame).unwrap(), plaintext);
    }

    #[test]
    fn a_frame_sealed_under_one_cipher_never_opens_under_the_other(
        seed in any::<u64>(),
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (mut aes, _) = transfer_pair(seed, TransferCipher::Aes256Gcm);
        let (mut chacha_alice, mut chacha_bob) = transfer_pair(seed, TransferCipher::ChaCha20Poly1305);
        let (_, mut aes_bob) = transfer_pair(seed, TransferCipher::Aes256Gcm);
        let frame = seal(&mut aes, b"", &plaintext);
        prop_assert_eq!(open(&mut chacha_bob, &frame), Err(CryptoError::Authentication));
        let frame = seal(&mut chacha_alice, b"", &plaintext);
        prop_assert_eq!(open(&mut aes_bob, &frame), Err(CryptoError::Authentication));
    }

    #[test]
    fn seal_open_round_trip(
        seed in any::<u64>(),
        aad in proptest::collection::vec(any::<u8>(), 0..64),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let (mut alice, mut bob) = session_pair(seed, None);
        // Both directions, both APIs.
        let frame = seal(&mut alice, &aad, &plaintext);
        prop_assert_eq!(frame.sealed.len(), plaintext.len() + TAG_LEN);
        if !plaintext.is_empty() {
            prop_assert_ne!(&frame.sealed[..plaintext.len()], &plaintext[..]);
        }
        prop_assert_eq!(open(&mut bob, &frame).unwrap(), plaintext.clone());

        let mut buf = plaintext.clone();
        let (counter, tag) = bob.seal_in_place_detached(&aad, &mut buf).unwrap();
        alice.open_in_place_detached(counter, &aad, &mut buf, &tag).unwrap();
        prop_assert_eq!(buf, plaintext);
    }

    #[test]
    fn any_flipped_bit_is_rejected_and_moves_nothing(
        seed in any::<u64>(),
        aad in proptest::collection::vec(any::<u8>(), 0..32),
        plaintext in proptest::collection::vec(any::<u8>(), 0..256),
        target in 0usize..4,
        bit in any::<prop::sample::Index>(),
    ) {
        let (mut alice, mut bob) = session_pair(seed, None);
        let _warm_up = seal(&mut alice, b"", b"");
        let frame = seal(&mut alice, &aad, &plaintext);
        let mut forged = frame.clone();
        match target {
            // Ciphertext and tag (the tag is the last 16 bytes of `sealed`).
            0 | 1 => {
                let bits = forged.sealed.len() * 8;
                let at = if target == 0 && !plaintext.is_empty() {
                    bit.index(plaintext.len() * 8)
                } else {
                    plaintext.len() * 8 + bit.index(TAG_LEN * 8)
                };
                prop_assert!(at < bits);
                forged.sealed[at / 8] ^= 1 << (at % 8);
            }
            2 => forged.counter ^= 1 << bit.index(64),
            _ => {
                if forged.aad.is_empty() {
                    forged.aad.push(0);
                } else {
                    let at = bit.index(forged.aad.len() * 8);
                    forged.aad[at / 8] ^= 1 << (at % 8);
                }
            }
        }
        prop_assert!(open(&mut bob, &forged).is_err());
        // The forgery moved neither the window nor the keys: the genuine frame still opens,
        // and so does the one before it.
        prop_assert_eq!(open(&mut bob, &frame).unwrap(), plaintext);
        prop_assert!(open(&mut bob, &_warm_up).is_ok());
    }

    #[test]
    fn replays_are_rejected(seed in any::<u64>(), n in 1u64..50, pick in any::<prop::sample::Index>()) {
        let (mut alice, mut bob) = session_pair(seed, None);
        let frames = seal_many(&mut alice, n);
        for frame in &frames {
            open(&mut bob, frame).unwrap();
        }
        let replayed = &frames[pick.index(frames.len())];
        prop_assert_eq!(
            open(&mut bob, replayed),
            Err(CryptoError::Replayed { counter: replayed.counter })
        );
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn any_order_inside_the_window_is_accepted(
        seed in any::<u64>(),
        order in (1usize..=REPLAY_WINDOW as usize)
            .prop_flat_map(|n| Just((0..n).collect::<Vec<_>>()).prop_shuffle()),
    ) {
        let (mut alice, mut bob) = session_pair(seed, None);
        let frames = seal_many(&mut alice, order.len() as u64);
        for &i in &order {
            prop_assert_eq!(open(&mut bob, &frames[i]).unwrap(), (i as u64).to_le_bytes());
        }
        for &i in order.iter().take(20) {
            let replayed = open(&mut bob, &frames[i]);
            prop_assert_eq!(replayed, Err(CryptoError::Replayed { counter: i as u64 }));
        }
    }

    #[test]
    fn frames_behind_the_window_are_rejected(
        seed in any::<u64>(),
        high in 0u64..3000,
        low in 0u64..3000,
    ) {
        prop_assume!(low < high);
        let (mut alice, mut bob) = session_pair(seed, None);
        let frames = seal_many(&mut alice, 3000);
        open(&mut bob, &frames[high as usize]).unwrap();
        let result = open(&mut bob, &frames[low as usize]);
        if high - low < REPLAY_WINDOW {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(CryptoError::TooOld { counter: low }));
        }
    }

    #[test]
    fn rekey_across_epochs_with_reordering(
        seed in any::<u64>(),
        // Where the shuffled stretch starts, relative to the first epoch boundary.
        start_before_boundary in 1u64..1000,
        len in 2u64..REPLAY_WINDOW,
    ) {
        let (mut alice, mut bob) = session_pair(seed, Some(SMALL_REKEY_LOG2));
        let total = 2 * SMALL_EPOCH + 10;
        let frames = seal_many(&mut alice, total);
        let start = SMALL_EPOCH - start_before_boundary;
        let end = (start + len).min(total);
        for frame in &frames[..start as usize] {
            open(&mut bob, frame).unwrap();
        }
        // Deliver the stretch newest first: the window jumps into the next epoch, then the
        // old epoch's frames arrive late.
        for frame in frames[start as usize..end as usize].iter().rev() {
            prop_assert_eq!(open(&mut bob, frame).unwrap(), frame.counter.to_le_bytes());
        }
        for frame in &frames[end as usize..] {
            prop_assert_eq!(open(&mut bob, frame).unwrap(), frame.counter.to_le_bytes());
        }
    }
}

#[test]
fn rekeying_really_changes_the_key() {
    let (mut rekeying, _) = session_pair(7, Some(SMALL_REKEY_LOG2));
    let (mut steady, _) = session_pair(7, None);
    for counter in 0..=SMALL_EPOCH {
        let a = seal(&mut rekeying, b"", b"same plaintext");
        let b = seal(&mut steady, b"", b"same plaintext");
        assert_eq!(a.counter, counter);
        // Same key in epoch 0, another key from the first frame of epoch 1 on.
        assert_eq!(a == b, counter < SMALL_EPOCH, "counter {counter}");
    }
}

#[test]
fn rekey_in_order_over_several_epochs() {
    let (mut alice, mut bob) = session_pair(8, Some(SMALL_REKEY_LOG2));
    for frame in seal_many(&mut alice, 4 * SMALL_EPOCH + 3) {
        assert_eq!(open(&mut bob, &frame).unwrap(), frame.counter.to_le_bytes());
    }
}

#[test]
fn receiver_catches_up_over_lost_epochs_but_not_too_far() {
    let (mut alice, mut bob) = session_pair(9, Some(SMALL_REKEY_LOG2));
    let frames = seal_many(&mut alice, (MAX_EPOCH_LOOKAHEAD + 2) * SMALL_EPOCH + 1);
    open(&mut bob, &frames[0]).unwrap();
    // Two whole epochs lost: frame 0 of epoch 3 still opens, and a late frame of epoch 2
    // inside the window too.
    let first_of_epoch_3 = &frames[3 * SMALL_EPOCH as usize];
    open(&mut bob, first_of_epoch_3).unwrap();
    open(&mut bob, &frames[3 * SMALL_EPOCH as usize - 1]).unwrap();
    open(&mut bob, &frames[3 * SMALL_EPOCH as usize + 1]).unwrap();

    let (mut alice, mut bob) = session_pair(9, Some(SMALL_REKEY_LOG2));
    let frames = seal_many(&mut alice, (MAX_EPOCH_LOOKAHEAD + 2) * SMALL_EPOCH);
    let too_far = &frames[((MAX_EPOCH_LOOKAHEAD + 1) * SMALL_EPOCH) as usize];
    assert_eq!(
        open(&mut bob, too_far),
        Err(CryptoError::TooFarAhead {
            counter: too_far.counter
        })
    );
    let far_enough = &frames[(MAX_EPOCH_LOOKAHEAD * SMALL_EPOCH) as usize];
    open(&mut bob, far_enough).unwrap();
}

#[test]
fn forged_frame_in_a_later_epoch_changes_nothing() {
    let (mut alice, mut bob) = session_pair(10, Some(SMALL_REKEY_LOG2));
    let frames = seal_many(&mut alice, 3);
    open(&mut bob, &frames[0]).unwrap();
    let forged = Frame {
        counter: SMALL_EPOCH + 5,
        aad: b"aad".to_vec(),
        sealed: vec![0xab; 40],
    };
    assert_eq!(open(&mut bob, &forged), Err(CryptoError::Authentication));
    open(&mut bob, &frames[2]).unwrap();
    open(&mut bob, &frames[1]).unwrap();
}

#[test]
fn forged_frame_far_ahead_does_not_move_the_window() {
    let (mut alice, mut bob) = session_pair(11, None);
    let frames = seal_many(&mut alice, 3);
    let forged = Frame {
        counter: 1_000_000,
        aad: b"aad".to_vec(),
        sealed: frames[2].sealed.clone(),
    };
    assert_eq!(open(&mut bob, &forged), Err(CryptoError::Authentication));
    for frame in &frames {
        open(&mut bob, frame).unwrap();
    }
}

#[test]
fn directions_use_different_keys() {
    let (mut alice, mut bob) = session_pair(12, None);
    assert_eq!(
        (alice.role(), bob.role()),
        (Role::Initiator, Role::Responder)
    );
    let from_alice = seal(&mut alice, b"", b"hello");
    // Alice cannot open her own frame: her receive key is Bob's send key.
    assert_eq!(
        open(&mut alice, &from_alice),
        Err(CryptoError::Authentication)
    );
    let from_bob = seal(&mut bob, b"", b"hello");
    assert_eq!(from_alice.counter, from_bob.counter);
    assert_ne!(from_alice.sealed, from_bob.sealed);
}

#[test]
fn other_sessions_cannot_open() {
    let (mut alice, _) = session_pair(13, None);
    let (_, mut stranger) = session_pair(14, None);
    let frame = seal(&mut alice, b"", b"hello");
    assert_eq!(
        open(&mut stranger, &frame),
        Err(CryptoError::Authentication)
    );
}

#[test]
fn truncated_frames_are_errors() {
    let (_, mut bob) = session_pair(15, None);
    for len in 0..TAG_LEN {
        let mut buf = vec![0u8; len];
        assert_eq!(
            bob.open_in_place(0, b"", &mut buf),
            Err(CryptoError::Truncated { len })
        );
    }
}

#[test]
fn empty_plaintext_is_just_a_tag() {
    let (mut alice, mut bob) = session_pair(16, None);
    let frame = seal(&mut alice, b"header", b"");
    assert_eq!(frame.sealed.len(), TAG_LEN);
    assert_eq!(open(&mut bob, &frame).unwrap(), b"");
}

#[test]
fn counters_never_reach_u64_max() {
    let (mut alice, mut bob) = session_pair(17, None);
    alice.danger_set_next_send_counter(u64::MAX - 1);
    assert_eq!(seal(&mut alice, b"", b"last").counter, u64::MAX - 1);
    let mut buf = b"one too many".to_vec();
    assert_eq!(
        alice.seal_in_place(b"", &mut buf),
        Err(CryptoError::CounterExhausted)
    );
    assert_eq!(
        buf, b"one too many",
        "a refused seal leaves the buffer alone"
    );
    assert_eq!(
        alice.seal_in_place(b"", &mut buf),
        Err(CryptoError::CounterExhausted)
    );
    let mut forged = vec![0u8; 32];
    assert_eq!(
        bob.open_in_place(u64::MAX, b"", &mut forged),
        Err(CryptoError::TooFarAhead { counter: u64::MAX })
    );
}

#[test]
fn transfer_keys_pair_up_per_transfer_id() {
    let (mut alice, mut bob) = session_pair(18, None);
    let chacha = TransferCipher::ChaCha20Poly1305;
    let mut alice_transfer = alice.transfer_keys(&[1; 16], chacha).unwrap();
    let mut bob_transfer = bob.transfer_keys(&[1; 16], chacha).unwrap();
    let mut bob_other = bob.transfer_keys(&[2; 16], chacha).unwrap();

    let frame = seal(&mut alice_transfer, b"chunk 0", b"file bytes");
    assert_eq!(
        open(&mut bob_other, &frame),
        Err(CryptoError::Authentication)
    );
    assert_eq!(open(&mut bob, &frame), Err(CryptoError::Authentication));
    assert_eq!(open(&mut bob_transfer, &frame).unwrap(), b"file bytes");
    let back = seal(&mut bob_transfer, b"ack", b"");
    open(&mut alice_transfer, &back).unwrap();

    // An id is used once, whatever the cipher: a second derivation would restart counters.
    for cipher in TransferCipher::ALL {
        assert_eq!(
            alice.transfer_keys(&[1; 16], cipher).err(),
            Some(CryptoError::TransferIdReused)
        );
    }
    assert_eq!(
        alice.transfer_secret(&[1; 16]).err(),
        Some(CryptoError::TransferIdReused)
    );
    // Transfers nest.
    let mut alice_nested = alice_transfer.transfer_keys(&[3; 16], chacha).unwrap();
    let mut bob_nested = bob_transfer.transfer_keys(&[3; 16], chacha).unwrap();
    let frame = seal(&mut alice_nested, b"", b"nested");
    assert_eq!(open(&mut bob_nested, &frame).unwrap(), b"nested");
}

#[test]
fn debug_shows_no_key_material() {
    let [initiator, _] = common::session_secrets(19);
    let named = initiator.danger_to_named_bytes();
    let mut keys: SessionKeys = initiator.into_session_keys(Role::Initiator);
    let transfer = keys
        .transfer_keys(&[0; 16], TransferCipher::Aes256Gcm)
        .unwrap();
    let secret = keys.transfer_secret(&[1; 16]).unwrap();
    let secret_bytes = hex::encode(secret.danger_to_bytes());
    assert!(!format!("{secret:?}").contains(&secret_bytes));
    assert!(format!("{secret:?}").starts_with("TransferSecret"));
    for text in [
        format!("{keys:?}"),
        format!("{keys:#?}"),
        format!("{transfer:?}"),
    ] {
        for (name, bytes) in &named {
            if *name == "transcript_hash" {
                continue;
            }
            assert!(!text.contains(&hex::encode(bytes)), "{name} in {text}");
            assert!(
                !text.contains(&format!("{:?}", &bytes[..4])),
                "{name} in {text}"
            );
        }
        assert!(text.starts_with("SessionKeys"), "{text}");
    }
}

#[test]
fn secrets_zeroize_on_drop() {
    fn assert_zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    assert_zeroize_on_drop::<SessionKeys>();
    assert_zeroize_on_drop::<tether_crypto::TransferSecret>();
    assert_zeroize_on_drop::<tether_crypto::SessionSecrets>();
    assert_zeroize_on_drop::<tether_crypto::PairingSecret>();
    assert_zeroize_on_drop::<tether_crypto::EphemeralKeyPair>();
    assert_zeroize_on_drop::<tether_crypto::SharedSecret>();
    assert_zeroize_on_drop::<tether_crypto::Prk>();
}

#[test]
fn the_same_transfer_under_two_ciphers_has_unrelated_keys() {
    let (mut alice, _) = session_pair(30, None);
    let (mut alice_again, _) = session_pair(30, None);
    // The same session twice (a test hook), so the same transfer id can be derived twice.
    let secret_a = alice.transfer_secret(&[5; 16]).unwrap();
    let secret_b = alice_again.transfer_secret(&[5; 16]).unwrap();
    assert_eq!(secret_a.danger_to_bytes(), secret_b.danger_to_bytes());
    let mut aes = secret_a.into_keys(TransferCipher::Aes256Gcm);
    let mut chacha = secret_b.into_keys(TransferCipher::ChaCha20Poly1305);
    // Same counter, same plaintext: unrelated keys give unrelated ciphertexts and tags.
    let a = seal(&mut aes, b"", &[0u8; 64]);
    let c = seal(&mut chacha, b"", &[0u8; 64]);
    assert_eq!(a.counter, c.counter);
    assert_ne!(a.sealed, c.sealed);
}

#[test]
fn messages_longer_than_the_cipher_allows_are_refused() {
    for cipher in TransferCipher::ALL {
        let (mut alice, mut bob) = transfer_pair(31, cipher);
        let max = cipher.max_message_len();
        // Plaintext plus associated data at the limit seals and opens.
        let frame = seal(&mut alice, b"12345", &vec![7u8; max - 5]);
        assert_eq!(open(&mut bob, &frame).unwrap().len(), max - 5);
        // One byte more: refused before any counter is spent.
        let mut buf = vec![7u8; max - 4];
        assert_eq!(
            alice.seal_in_place(b"12345", &mut buf),
            Err(CryptoError::MessageTooLong)
        );
        let next = seal(&mut alice, b"", b"after");
        assert_eq!(next.counter, frame.counter + 1);
        let mut long = vec![0u8; max + 1 + TAG_LEN];
        assert_eq!(
            bob.open_in_place(next.counter, b"", &mut long),
            Err(CryptoError::MessageTooLong)
        );
        assert_eq!(open(&mut bob, &next).unwrap(), b"after");
    }
    // Session keys are ChaCha20-Poly1305's.
    let (alice, _) = session_pair(32, None);
    assert_eq!(alice.cipher(), TransferCipher::ChaCha20Poly1305);
}
