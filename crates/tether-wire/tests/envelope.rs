//! The encrypted envelope: round trips, and every way a sealed frame can be spoiled.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use tether_crypto::{CryptoError, REPLAY_WINDOW};
use tether_wire::{
    ControlMessage, DataChunk, Frame, FrameDecoder, FrameEncoder, FrameKind, MessageKind,
    OpenError, SEAL_OVERHEAD, SealError, limits::MAX_CHUNK_LEN,
};

fn control_frame() -> Frame {
    Frame::control(&common::sample(MessageKind::SyncRequest)).unwrap()
}

#[test]
fn control_and_full_data_frames_round_trip() {
    let (mut alice, mut bob) = common::session_pair();
    let control = control_frame();
    let sealed = control.clone().seal(&mut alice).unwrap();
    assert_eq!(sealed.kind(), FrameKind::SealedControl);
    assert_eq!(
        sealed.payload().len(),
        control.payload().len() + SEAL_OVERHEAD
    );
    assert_ne!(
        &sealed.payload()[..control.payload().len()],
        control.payload()
    );
    assert_eq!(sealed.open(&mut bob).unwrap(), control);

    let bytes: Vec<u8> = (0..MAX_CHUNK_LEN).map(|i| i as u8).collect();
    let data = DataChunk::new(common::ENTRY, 0, true, &bytes)
        .unwrap()
        .into_frame();
    let sealed = data.clone().seal(&mut bob).unwrap();
    assert_eq!(sealed.kind(), FrameKind::SealedData);
    assert_eq!(
        sealed.payload().len(),
        FrameKind::SealedData.max_payload_len()
    );
    let opened = sealed.open(&mut alice).unwrap();
    assert_eq!(DataChunk::decode(opened).unwrap().bytes(), &bytes[..]);
}

#[test]
fn sealed_frames_survive_the_decoder() {
    let (mut alice, mut bob) = common::session_pair();
    let mut encoder = FrameEncoder::new();
    for _ in 0..3 {
        encoder.push(&control_frame().seal(&mut alice).unwrap());
    }
    let bytes = encoder.take();
    let mut decoder = FrameDecoder::new();
    let mut input = &bytes[..];
    let mut opened = 0;
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        assert_eq!(frame.open(&mut bob).unwrap(), control_frame());
        opened += 1;
    }
    assert_eq!(opened, 3);
}

#[test]
fn every_flipped_bit_fails_and_leaves_the_keys_usable() {
    let (mut alice, mut bob) = common::session_pair();
    let sealed = control_frame().seal(&mut alice).unwrap();
    for i in 0..sealed.payload().len() {
        for bit in [0x01u8, 0x80] {
            let mut payload = sealed.payload().to_vec();
            payload[i] ^= bit;
            let tampered = Frame::new(sealed.kind(), payload).unwrap();
            let err = tampered.open(&mut bob).unwrap_err();
            assert!(matches!(err, OpenError::Crypto(_)), "byte {i}: {err}");
        }
    }
    // Nothing above moved the replay window: the genuine frame still opens.
    assert_eq!(sealed.open(&mut bob).unwrap(), control_frame());
}

#[test]
fn relabelled_truncated_or_padded_frames_fail_authentication() {
    let (mut alice, mut bob) = common::session_pair();
    let sealed = control_frame().seal(&mut alice).unwrap();

    // Control relabelled as data: the kind byte is in the associated data.
    let relabelled = Frame::new(FrameKind::SealedData, sealed.payload().to_vec()).unwrap();
    assert!(matches!(
        relabelled.open(&mut bob),
        Err(OpenError::Crypto(CryptoError::Authentication))
    ));

    // Ciphertext cut short but the counter kept: the length is in the associated data.
    let mut cut = sealed.payload().to_vec();
    cut.remove(0);
    let cut = Frame::new(FrameKind::SealedControl, cut).unwrap();
    assert!(matches!(
        cut.open(&mut bob),
        Err(OpenError::Crypto(CryptoError::Authentication))
    ));

    // Shorter than tag + counter.
    let stub = Frame::new(FrameKind::SealedControl, vec![0; SEAL_OVERHEAD - 1]).unwrap();
    assert!(matches!(
        stub.open(&mut bob),
        Err(OpenError::Truncated { len: 23 })
    ));

    // Extra bytes inserted before the tag.
    let mut padded = sealed.payload().to_vec();
    padded.insert(3, 0);
    let padded = Frame::new(FrameKind::SealedControl, padded).unwrap();
    assert!(matches!(padded.open(&mut bob), Err(OpenError::Crypto(_))));

    assert!(sealed.open(&mut bob).is_ok());
}

#[test]
fn replayed_frame_is_rejected() {
    let (mut alice, mut bob) = common::session_pair();
    let sealed = control_frame().seal(&mut alice).unwrap();
    sealed.clone().open(&mut bob).unwrap();
    assert!(matches!(
        sealed.open(&mut bob),
        Err(OpenError::Crypto(CryptoError::Replayed { counter: 0 }))
    ));
}

#[test]
fn reordering_inside_the_window_is_fine_beyond_it_is_rejected() {
    let (mut alice, mut bob) = common::session_pair();
    let count = REPLAY_WINDOW as usize + 10;
    let frames: Vec<Frame> = (0..count)
        .map(|_| {
            Frame::control(&ControlMessage::new(tether_wire::NetworkMessage::Ack))
                .unwrap()
                .seal(&mut alice)
                .unwrap()
        })
        .collect();
    let mut frames = frames.into_iter();
    let first = frames.next().unwrap();
    let second = frames.next().unwrap();
    // Inside the window: the second before the first.
    second.open(&mut bob).unwrap();
    first.clone().open(&mut bob).unwrap();
    // Skip ahead by more than the window, then deliver an old frame.
    let old = frames.next().unwrap();
    let newest = frames.last().unwrap();
    newest.open(&mut bob).unwrap();
    assert!(matches!(
        old.open(&mut bob),
        Err(OpenError::Crypto(CryptoError::TooOld { counter: 2 }))
    ));
}

#[test]
fn wrong_direction_or_session_fails() {
    let (mut alice, _bob) = common::session_pair();
    let sealed = control_frame().seal(&mut alice).unwrap();
    // Alice's own frame does not open with her receive key.
    assert!(matches!(
        sealed.clone().open(&mut alice),
        Err(OpenError::Crypto(CryptoError::Authentication))
    ));
}

#[test]
fn misuse_is_typed() {
    let (mut alice, mut bob) = common::session_pair();
    let sealed = control_frame().seal(&mut alice).unwrap();
    assert!(matches!(
        sealed.seal(&mut alice),
        Err(SealError::AlreadySealed(FrameKind::SealedControl))
    ));
    assert!(matches!(
        control_frame().open(&mut bob),
        Err(OpenError::NotSealed(FrameKind::Control))
    ));
    alice.danger_set_next_send_counter(u64::MAX);
    assert!(matches!(
        control_frame().seal(&mut alice),
        Err(SealError::Crypto(CryptoError::CounterExhausted))
    ));
}
