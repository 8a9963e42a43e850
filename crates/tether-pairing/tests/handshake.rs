//! The pairing handshake end to end, through the in-memory harness: what succeeds, and every
//! way it must fail.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod harness;

use std::time::Duration;

use harness::{Run, Scene, Views, code_with_slot, device, drive, lying_device};
use tether_pairing::{
    AbortReason, CodeStatus, Credential, Initiator, InitiatorConfig, InitiatorStep, Joiner,
    MessageKind, Misbehavior, PairingCode, PairingError, PairingMessage, PairingTicket, Refusal,
};

fn assert_paired(run: &Run, scene: &Scene) {
    let initiator = run
        .initiator
        .as_ref()
        .and_then(|e| e.paired())
        .expect("initiator paired");
    let joiner = run
        .joiner
        .as_ref()
        .and_then(|e| e.paired())
        .expect("joiner paired");
    assert_eq!(initiator.peer(), scene.joiner_id());
    assert_eq!(joiner.peer(), scene.initiator_id());
    assert_eq!(initiator.peer_info(), scene.joiner_device.info());
    assert_eq!(joiner.peer_info(), scene.initiator_device.info());
    assert_eq!(
        initiator.pairing_secret().as_bytes(),
        joiner.pairing_secret().as_bytes()
    );
    assert_eq!(initiator.verification_code(), joiner.verification_code());
}

#[test]
fn a_code_pairs_two_devices() {
    let mut scene = Scene::new(1);
    let run = scene.run();
    assert_paired(&run, &scene);
    assert_eq!(run.messages.len(), 5);
    assert!(run.aborts.is_empty());
    assert_eq!(scene.initiator.status(), CodeStatus::Paired);
    assert_eq!(scene.initiator.pending_sessions(), 0);
}

#[test]
fn a_ticket_pairs_two_devices() {
    let mut scene = Scene::new(2);
    let ticket = PairingTicket::new(
        scene.initiator_id(),
        Some("https://relay.example.net".into()),
        vec!["192.0.2.7:4433".parse().unwrap()],
        &mut scene.rng,
    )
    .unwrap();
    scene.initiator = Initiator::new(
        &ticket,
        scene.initiator_device.clone(),
        scene.now,
        InitiatorConfig::default(),
    )
    .unwrap();
    // The joiner only has the text.
    let pasted: PairingTicket = ticket.to_qr_string().parse().unwrap();
    assert_eq!(pasted.initiator(), scene.initiator_id());
    let run = scene.run_with(Credential::from(&pasted), |_, bytes| bytes);
    assert_paired(&run, &scene);

    // A code with the same slot does not open a ticket's session, and vice versa.
    let mut scene = Scene::new(2);
    let other = PairingTicket::new(scene.initiator_id(), None, vec![], &mut scene.rng).unwrap();
    let run = scene.run_with(Credential::from(&other), |_, bytes| bytes);
    assert_eq!(
        run.initiator_error(),
        Some(&PairingError::PeerMisbehaved(Misbehavior::WrongRendezvous))
    );
    assert_eq!(
        run.joiner_error(),
        Some(&PairingError::PeerAborted(AbortReason::WrongRendezvous))
    );
    assert_eq!(
        scene.initiator.status(),
        CodeStatus::Open,
        "a wrong slot is not a guess"
    );
}

#[test]
fn a_wrong_code_fails_both_sides_and_burns_the_code() {
    let mut scene = Scene::new(3);
    let wrong = code_with_slot(&mut scene.rng, &scene.code);
    assert_ne!(wrong, scene.code);
    let run = scene.run_with(Credential::from(&wrong), |_, bytes| bytes);
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::WrongCode));
    assert_eq!(run.joiner_error(), Some(&PairingError::WrongCode));
    assert_eq!(
        run.messages.len(),
        3,
        "it ends at the joiner's key confirmation"
    );
    assert_eq!(scene.initiator.status(), CodeStatus::Burned);
    assert_eq!(scene.initiator.pending_sessions(), 0);

    // The right code is now useless too: one guess per code.
    let run = scene.run();
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::CodeBurned));
    assert_eq!(run.joiner_error(), Some(&PairingError::CodeBurned));
}

#[test]
fn a_mistyped_word_is_caught_before_any_attempt() {
    let mut scene = Scene::new(4);
    let mut words = scene.code.words().map(str::to_owned);
    words[2] = format!("{}x", words[2]);
    let typed = words.join(" ");
    let error = typed.parse::<PairingCode>().unwrap_err();
    assert!(
        matches!(&error, tether_pairing::CodeError::UnknownWord { position: 3, suggestions } if suggestions.contains(&scene.code.words()[2])),
        "{error}"
    );
    // Nothing was sent, so the code still works.
    assert_eq!(scene.initiator.status(), CodeStatus::Open);
    let run = scene.run();
    assert_paired(&run, &scene);
}

#[test]
fn an_expired_code_is_refused() {
    let mut scene = Scene::new(5);
    scene.advance(Duration::from_secs(5 * 60));
    let run = scene.run();
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::Expired));
    assert_eq!(run.joiner_error(), Some(&PairingError::Expired));
    assert_eq!(scene.initiator.status(), CodeStatus::Expired);

    // One millisecond earlier it works; a configured lifetime is honoured.
    let config = InitiatorConfig::default().with_lifetime(Duration::from_secs(60));
    let mut scene = Scene::with_config(5, config);
    scene.advance(Duration::from_millis(59_999));
    assert_paired(&scene.run(), &scene);
}

#[test]
fn a_code_that_expires_mid_handshake_fails() {
    let mut scene = Scene::new(6);
    let views = scene.honest_views();
    let code = scene.code.clone();
    let (joiner, hello) = Joiner::start(
        &code,
        scene.joiner_device.clone(),
        views.initiator_as_seen_by_joiner,
        &mut scene.rng,
    )
    .unwrap();
    let InitiatorStep::Send(reply) = scene
        .initiator
        .handle(scene.joiner_id(), &hello, scene.now, &mut scene.rng)
        .unwrap()
    else {
        panic!()
    };
    let (_joiner, confirm) = joiner.handle_reply(&reply).unwrap();
    scene.advance(Duration::from_secs(300));
    let failure = scene
        .initiator
        .handle(scene.joiner_id(), &confirm, scene.now, &mut scene.rng)
        .unwrap_err();
    assert_eq!(failure.error(), &PairingError::Expired);
    let abort = PairingMessage::from_bytes(failure.message_for_peer().unwrap()).unwrap();
    assert_eq!(abort.abort_reason(), Some(AbortReason::Expired));
}

#[test]
fn a_code_is_single_use() {
    let mut scene = Scene::new(7);
    assert_paired(&scene.run(), &scene);
    // Again, by the same joiner and by another device that knows the code.
    let run = scene.run();
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::CodeUsed));
    assert_eq!(run.joiner_error(), Some(&PairingError::CodeUsed));
    scene.joiner_device = device(&mut scene.rng, "another");
    let run = scene.run();
    assert_eq!(run.initiator_error(), Some(&PairingError::CodeUsed));
    assert_eq!(run.joiner_error(), Some(&PairingError::CodeUsed));
}

#[test]
fn messages_replayed_from_an_earlier_session_fail() {
    // Record a complete session.
    let mut earlier = Scene::new(8);
    let old = earlier.run();
    assert_paired(&old, &earlier);

    // Same two devices, a new code that happens to share the slot word.
    let mut scene = Scene::new(8);
    let code = code_with_slot(&mut scene.rng, &earlier.code);
    scene.initiator = Initiator::new(
        &code,
        scene.initiator_device.clone(),
        scene.now,
        InitiatorConfig::default(),
    )
    .unwrap();
    scene.code = code;

    // The joiner refuses an old Reply: wrong session.
    let run = scene.run_with(Credential::from(&scene.code.clone()), |index, bytes| {
        if index == 1 {
            old.messages[1].clone()
        } else {
            bytes
        }
    });
    assert!(run.nobody_paired());
    assert_eq!(
        run.joiner_error(),
        Some(&PairingError::PeerMisbehaved(Misbehavior::UnknownSession))
    );
    assert_eq!(
        scene.initiator.status(),
        CodeStatus::Open,
        "no guess was spent"
    );

    // The initiator refuses an old JoinerConfirm or JoinerSignature: no such session.
    for index in [2, 4] {
        let failure = scene
            .initiator
            .handle(
                scene.joiner_id(),
                &old.messages[index],
                scene.now,
                &mut scene.rng,
            )
            .unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::PeerMisbehaved(Misbehavior::UnknownSession)
        );
        assert_eq!(scene.initiator.status(), CodeStatus::Open);
    }

    // An old Reply passed off under the current session id: the transcript still differs, so
    // key confirmation fails.
    let run = scene.run_with(Credential::from(&scene.code.clone()), |index, bytes| {
        if index == 1 {
            let mut replayed = old.messages[1].clone();
            replayed[2..18].copy_from_slice(&bytes[2..18]);
            replayed
        } else {
            bytes
        }
    });
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::WrongCode));
    assert_eq!(run.joiner_error(), Some(&PairingError::WrongCode));
}

#[test]
fn a_relay_in_the_middle_with_its_own_identity_fails() {
    // Mallory relays every byte unchanged, but the transports authenticate her own endpoint id
    // to both sides: the joiner dialled her, and she dialled the initiator.
    let mut scene = Scene::new(9);
    let mallory = device(&mut scene.rng, "mallory").node_id();
    let views = Views {
        joiner_as_seen_by_initiator: mallory,
        initiator_as_seen_by_joiner: mallory,
    };
    let code = scene.code.clone();
    let run = drive(
        &mut scene.initiator,
        scene.joiner_device.clone(),
        Credential::from(&code),
        &views,
        scene.now,
        &mut scene.rng,
        |_, bytes| bytes,
    );
    assert!(run.nobody_paired());
    assert_eq!(run.initiator_error(), Some(&PairingError::WrongCode));
    assert_eq!(run.joiner_error(), Some(&PairingError::WrongCode));
    assert_eq!(scene.initiator.status(), CodeStatus::Burned);
}

#[test]
fn a_relay_that_knows_the_code_shows_up_in_the_verification_code() {
    // If Mallory saw the code over the user's shoulder she can pair with each side on her own;
    // the two honest screens then show different verification codes.
    let mut scene = Scene::new(10);
    let mallory = device(&mut scene.rng, "mallory");
    let code = scene.code.clone();
    let to_initiator = drive(
        &mut scene.initiator,
        mallory.clone(),
        Credential::from(&code),
        &Views {
            joiner_as_seen_by_initiator: mallory.node_id(),
            initiator_as_seen_by_joiner: scene.initiator_device.node_id(),
        },
        scene.now,
        &mut scene.rng,
        |_, bytes| bytes,
    );
    let mut mallory_initiator = Initiator::new(
        &code,
        mallory.clone(),
        scene.now,
        InitiatorConfig::default(),
    )
    .unwrap();
    let to_joiner = drive(
        &mut mallory_initiator,
        scene.joiner_device.clone(),
        Credential::from(&code),
        &Views {
            joiner_as_seen_by_initiator: scene.joiner_device.node_id(),
            initiator_as_seen_by_joiner: mallory.node_id(),
        },
        scene.now,
        &mut scene.rng,
        |_, bytes| bytes,
    );
    let initiator_screen = to_initiator
        .initiator
        .unwrap()
        .paired()
        .unwrap()
        .verification_code();
    let joiner_view = to_joiner.joiner.unwrap();
    let joiner_paired = joiner_view.paired().unwrap();
    assert_eq!(
        joiner_paired.peer(),
        mallory.node_id(),
        "the joiner knows whom it paired with"
    );
    assert_ne!(initiator_screen, joiner_paired.verification_code());
}

#[test]
fn claimed_keys_must_match_the_authenticated_endpoint_ids() {
    // The joiner's info claims the initiator's key (or anyone else's).
    let mut scene = Scene::new(11);
    let claimed = scene.initiator_id();
    scene.joiner_device = lying_device(&mut scene.rng, "liar", claimed);
    let run = scene.run();
    assert!(run.nobody_paired());
    assert_eq!(
        run.initiator_error(),
        Some(&PairingError::PeerMisbehaved(
            Misbehavior::ClaimedKeyMismatch
        ))
    );
    assert_eq!(
        run.joiner_error(),
        Some(&PairingError::PeerAborted(AbortReason::ProtocolError))
    );
    assert_eq!(scene.initiator.status(), CodeStatus::Spent);

    // The initiator's info lies.
    let mut scene = Scene::new(12);
    let someone = device(&mut scene.rng, "someone").node_id();
    scene.initiator_device = lying_device(&mut scene.rng, "liar", someone);
    scene.initiator = Initiator::new(
        &scene.code,
        scene.initiator_device.clone(),
        scene.now,
        InitiatorConfig::default(),
    )
    .unwrap();
    let run = scene.run();
    assert!(run.nobody_paired());
    assert_eq!(
        run.joiner_error(),
        Some(&PairingError::PeerMisbehaved(
            Misbehavior::ClaimedKeyMismatch
        ))
    );
    assert_eq!(
        run.initiator_error(),
        Some(&PairingError::PeerAborted(AbortReason::ProtocolError))
    );
}

#[test]
fn messages_out_of_order_are_refused_without_spending_the_code() {
    let mut scene = Scene::new(13);
    let mut reference = Scene::new(13);
    let messages = reference.run().messages;
    let peer = scene.joiner_id();

    // Confirm or signature before any hello; the initiator's own messages sent back to it.
    for index in [2, 4] {
        let failure = scene
            .initiator
            .handle(peer, &messages[index], scene.now, &mut scene.rng)
            .unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::PeerMisbehaved(Misbehavior::UnknownSession)
        );
    }
    for (index, kind) in [(1, MessageKind::Reply), (3, MessageKind::InitiatorConfirm)] {
        let failure = scene
            .initiator
            .handle(peer, &messages[index], scene.now, &mut scene.rng)
            .unwrap_err();
        assert!(
            matches!(failure.error(), PairingError::PeerMisbehaved(Misbehavior::UnexpectedMessage { received, .. }) if *received == kind),
            "{failure:?}"
        );
    }
    assert_eq!(scene.initiator.status(), CodeStatus::Open);

    // A signature straight after the hello.
    let code = scene.code.clone();
    let (joiner, hello) = Joiner::start(
        &code,
        scene.joiner_device.clone(),
        scene.initiator_id(),
        &mut scene.rng,
    )
    .unwrap();
    let InitiatorStep::Send(reply) = scene
        .initiator
        .handle(peer, &hello, scene.now, &mut scene.rng)
        .unwrap()
    else {
        panic!()
    };
    let mut early_signature = messages[4].clone();
    early_signature[2..18].copy_from_slice(joiner.session_id().as_bytes());
    let failure = scene
        .initiator
        .handle(peer, &early_signature, scene.now, &mut scene.rng)
        .unwrap_err();
    assert!(matches!(
        failure.error(),
        PairingError::PeerMisbehaved(Misbehavior::UnexpectedMessage { .. })
    ));
    assert_eq!(scene.initiator.status(), CodeStatus::Open);

    // The joiner given its own hello, or the initiator's second message, instead of a reply;
    // and, one step later, a reply instead of the initiator's confirmation.
    let with_session = |bytes: &[u8], session: &tether_pairing::SessionId| {
        let mut bytes = bytes.to_vec();
        bytes[2..18].copy_from_slice(session.as_bytes());
        bytes
    };
    for wrong in [&hello, &messages[3]] {
        let (joiner, _) = Joiner::start(
            &code,
            scene.joiner_device.clone(),
            scene.initiator_id(),
            &mut scene.rng,
        )
        .unwrap();
        let wrong = with_session(wrong, &joiner.session_id());
        let failure = joiner.handle_reply(&wrong).unwrap_err();
        assert!(
            matches!(
                failure.error(),
                PairingError::PeerMisbehaved(Misbehavior::UnexpectedMessage { .. })
            ),
            "{failure:?}"
        );
    }
    let (confirming, _) = joiner.handle_reply(&reply).unwrap();
    let failure = confirming.handle_confirm(&reply).unwrap_err();
    assert!(
        matches!(
            failure.error(),
            PairingError::PeerMisbehaved(Misbehavior::UnexpectedMessage { .. })
        ),
        "{failure:?}"
    );

    // After all that, the code still works.
    assert_paired(&scene.run(), &scene);
}

#[test]
fn a_flood_of_joiners_is_bounded_and_refused_with_a_typed_error() {
    let config = InitiatorConfig::default()
        .with_max_pending(4)
        .with_max_attempts_per_minute(10);
    let mut scene = Scene::with_config(14, config);
    let code = scene.code.clone();
    let hello_from = |scene: &mut Scene| {
        let device = device(&mut scene.rng, "flood");
        let id = device.node_id();
        let (joiner, hello) =
            Joiner::start(&code, device, scene.initiator_id(), &mut scene.rng).unwrap();
        (id, joiner, hello)
    };
    let mut joiners = Vec::new();
    for _ in 0..4 {
        let (id, joiner, hello) = hello_from(&mut scene);
        assert!(
            scene
                .initiator
                .handle(id, &hello, scene.now, &mut scene.rng)
                .is_ok()
        );
        joiners.push(joiner);
    }
    for _ in 0..20 {
        let (id, joiner, hello) = hello_from(&mut scene);
        let failure = scene
            .initiator
            .handle(id, &hello, scene.now, &mut scene.rng)
            .unwrap_err();
        assert_eq!(
            failure.error(),
            &PairingError::Refused(Refusal::TooManyPending { max: 4 })
        );
        assert_eq!(scene.initiator.pending_sessions(), 4);
        // The joiner hears "busy".
        let joiner_failure = joiner
            .handle_reply(failure.message_for_peer().unwrap())
            .unwrap_err();
        assert_eq!(
            joiner_failure.error(),
            &PairingError::Refused(Refusal::InitiatorBusy)
        );
    }
    assert_eq!(scene.initiator.status(), CodeStatus::Open);

    // Stale handshakes time out and free their slots, but the rate limit still holds.
    scene.advance(Duration::from_secs(30));
    scene.initiator.handle_timeout(scene.now);
    assert_eq!(scene.initiator.pending_sessions(), 0);
    let mut accepted = 0;
    for _ in 0..10 {
        let (id, _joiner, hello) = hello_from(&mut scene);
        match scene
            .initiator
            .handle(id, &hello, scene.now, &mut scene.rng)
        {
            Ok(_) => accepted += 1,
            Err(failure) => assert_eq!(
                failure.error(),
                &PairingError::Refused(Refusal::RateLimited { max_per_minute: 10 })
            ),
        }
        scene
            .initiator
            .handle_timeout(scene.now.saturating_add(Duration::from_secs(31)));
    }
    // Four were admitted in the first minute already; six more fit.
    assert_eq!(accepted, 6);

    // A minute later the real joiner gets through and pairs.
    scene.advance(Duration::from_secs(61));
    scene.initiator.handle_timeout(scene.now);
    assert_paired(&scene.run(), &scene);
}

#[test]
fn concurrent_attempts_still_get_one_guess() {
    // An attacker opens several sessions at once and answers each with a guessed code: only
    // the first confirmation is ever checked.
    let mut scene = Scene::new(15);
    let mut pending = Vec::new();
    for _ in 0..3 {
        let attacker = device(&mut scene.rng, "attacker");
        let id = attacker.node_id();
        let guess = code_with_slot(&mut scene.rng, &scene.code);
        let (joiner, hello) =
            Joiner::start(&guess, attacker, scene.initiator_id(), &mut scene.rng).unwrap();
        let InitiatorStep::Send(reply) = scene
            .initiator
            .handle(id, &hello, scene.now, &mut scene.rng)
            .unwrap()
        else {
            panic!()
        };
        let (_, confirm) = joiner.handle_reply(&reply).unwrap();
        pending.push((id, confirm));
    }
    let errors: Vec<PairingError> = pending
        .iter()
        .map(|(id, confirm)| {
            scene
                .initiator
                .handle(*id, confirm, scene.now, &mut scene.rng)
                .unwrap_err()
                .into_error()
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            PairingError::WrongCode,
            PairingError::CodeBurned,
            PairingError::CodeBurned
        ]
    );
    assert_eq!(scene.initiator.status(), CodeStatus::Burned);
}

#[test]
fn every_byte_of_every_message_tampered_fails_cleanly() {
    let mut reference = Scene::new(16);
    let messages = reference.run().messages;
    assert_eq!(messages.len(), 5);
    let mut cases = 0;
    for (index, message) in messages.iter().enumerate() {
        for position in 0..message.len() {
            for flip in [0x01u8, 0x80] {
                let mut scene = Scene::new(16);
                let run = scene.run_with(Credential::from(&scene.code.clone()), |i, mut bytes| {
                    if i == index {
                        // Same seed, same messages up to the tampered one.
                        assert_eq!(&bytes, message);
                        bytes[position] ^= flip;
                    }
                    bytes
                });
                cases += 1;
                let context = format!("message {index}, byte {position}, flip {flip:#04x}");
                // The initiator never pairs on tampered input.
                assert!(
                    run.initiator.as_ref().and_then(|e| e.paired()).is_none(),
                    "{context}"
                );
                assert!(run.initiator_error().is_some(), "{context}: {run:?}");
                if index < 4 {
                    // Before the last message, neither side pairs and both hear why.
                    assert!(run.nobody_paired(), "{context}");
                    assert!(run.joiner_error().is_some(), "{context}: {run:?}");
                }
                assert_ne!(scene.initiator.status(), CodeStatus::Paired, "{context}");
                assert_eq!(scene.initiator.pending_sessions(), 0, "{context}");
            }
        }
    }
    assert!(cases > 1000, "{cases}");
}

#[test]
fn a_wrong_slot_costs_budget_like_any_hello() {
    // Without the charge, a stranger could try every slot for free and learn the right one.
    let mut scene = Scene::new(41);
    let mut probes = 0;
    while probes < 10 {
        let other = PairingCode::generate(&mut scene.rng);
        if other.words()[0] == scene.code.words()[0] {
            continue;
        }
        let run = scene.run_with(Credential::from(&other), |_, bytes| bytes);
        assert_eq!(
            run.initiator_error(),
            Some(&PairingError::PeerMisbehaved(Misbehavior::WrongRendezvous))
        );
        probes += 1;
    }
    // The budget is spent: the right slot is refused like any other until the minute is over.
    let run = scene.run();
    assert_eq!(
        run.initiator_error(),
        Some(&PairingError::Refused(Refusal::RateLimited {
            max_per_minute: 10
        }))
    );
    assert_eq!(scene.initiator.status(), CodeStatus::Open);
    scene.advance(Duration::from_secs(61));
    assert_paired(&scene.run(), &scene);
}
