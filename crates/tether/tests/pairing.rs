//! Pairing two real services on loopback: by word code (found through discovery), by
//! ticket, with a wrong code, and across restarts.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::time::Duration;

use common::{Lab, iroh_addr, next_event, pair, raw_client};
use tether::{InitiatorConfig, NetworkError, NetworkEvent, NetworkMessage, Ping};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_word_code_then_message_both_ways() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;

    let (on_laptop, on_phone) = pair(&laptop, &phone).await;
    assert_eq!(on_laptop.device.public_key, phone.node_id());
    assert_eq!(on_phone.device.public_key, laptop.node_id());
    assert_eq!(on_laptop.device.device_name.as_str(), "phone");
    assert_eq!(on_laptop.verification_code, on_phone.verification_code);
    assert_eq!(laptop.paired_devices().len(), 1);
    assert_eq!(phone.paired_devices().len(), 1);

    let rtt = phone
        .device(laptop.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(rtt < Duration::from_secs(5));
    let back = laptop
        .device(phone.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(back < Duration::from_secs(5));
    let info = laptop.connection_info(phone.node_id()).unwrap();
    assert_eq!(info.path, tether::PathKind::Direct);

    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_ticket_needs_no_discovery() {
    let lab = Lab::new();
    let mut desk_config = lab.config("desk");
    desk_config.loopback_discovery = None;
    let desk = tether::NetworkingService::start(desk_config).await.unwrap();
    let mut tab_config = lab.config("tablet");
    tab_config.loopback_discovery = None;
    let tablet = tether::NetworkingService::start(tab_config).await.unwrap();

    let mut invite = desk.start_pairing_with_ticket().unwrap();
    assert!(invite.code.starts_with("tether1"));
    let joined = tablet.join_pairing(&invite.code).await.unwrap();
    let accepted = invite.paired().await.unwrap();
    assert_eq!(joined.verification_code, accepted.verification_code);
    tablet.device(desk.node_id()).unwrap().ping().await.unwrap();
    desk.shutdown().await;
    tablet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_code_fails_on_both_sides_and_pairs_nothing() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    let mut invite = a.start_pairing_as_initiator().unwrap();
    // Same public word (so discovery finds `a`), different secret words.
    let mut words: Vec<String> = invite.code.split('-').map(str::to_owned).collect();
    for word in words.iter_mut().skip(1) {
        *word = if word == "abandon" {
            "ability".to_owned()
        } else {
            "abandon".to_owned()
        };
    }
    let wrong = words.join("-");

    let joined = b.join_pairing(&wrong).await;
    assert!(
        matches!(
            joined,
            Err(NetworkError::Pairing(tether::PairingError::WrongCode))
        ),
        "{joined:?}"
    );
    common::checked_chain(joined.as_ref().unwrap_err());
    let accepted = tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap();
    assert!(accepted.is_err(), "{accepted:?}");
    assert!(a.paired_devices().is_empty());
    assert!(b.paired_devices().is_empty());
    // The code is burned: even the right one no longer works.
    let again = b.join_pairing(&invite.code).await;
    assert!(again.is_err(), "{again:?}");
    common::checked_chain(again.as_ref().unwrap_err());
    assert!(a.paired_devices().is_empty());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_word_is_caught_before_anything_is_sent() {
    let lab = Lab::new();
    let b = lab.start("b").await;
    let error = b
        .join_pairing("harbor-brave-lionn-sunset")
        .await
        .unwrap_err();
    let text = common::checked_chain(&error);
    assert!(matches!(error, NetworkError::Code(_)), "{error:?}");
    assert!(text.contains("lion"), "{text}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_device_with_the_slot_is_a_clear_error() {
    let lab = Lab::new();
    let b = lab.start("b").await;
    let error = b
        .join_pairing("harbor-brave-lion-sunset")
        .await
        .unwrap_err();
    common::checked_chain(&error);
    assert!(
        matches!(error, NetworkError::NoPairingPeer { .. }),
        "{error:?}"
    );
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_without_a_deadline_waits_rather_than_panics() {
    let lab = Lab::new();
    let mut config = lab.config("b");
    // No deadline: the search lasts until the caller stops it.
    config.discovery_timeout = Duration::MAX;
    let b = tether::NetworkingService::start(config).await.unwrap();
    let search = tokio::time::timeout(
        Duration::from_millis(500),
        b.join_pairing("harbor-brave-lion-sunset"),
    )
    .await;
    assert!(search.is_err(), "{search:?}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_both_are_still_paired_and_reconnect() {
    let lab = Lab::new();
    let (laptop_id, phone_id) = {
        let laptop = lab.start("laptop").await;
        let phone = lab.start("phone").await;
        pair(&laptop, &phone).await;
        let ids = (laptop.node_id(), phone.node_id());
        laptop.shutdown().await;
        phone.shutdown().await;
        ids
    };
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    assert_eq!(
        laptop.node_id(),
        laptop_id,
        "the identity survives a restart"
    );
    assert_eq!(phone.node_id(), phone_id);
    assert_eq!(laptop.paired_devices().len(), 1);
    let reply = phone
        .device(laptop_id)
        .unwrap()
        .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 7 }))
        .await
        .unwrap();
    assert_eq!(
        reply,
        NetworkMessage::Pong(tether::Pong { timestamp_ms: 7 })
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_makes_no_guess_leaves_the_code_open() {
    let lab = Lab::new();
    let a = lab.start_undiscovered("a").await;
    let b = lab.start_undiscovered("b").await;
    let mut events = a.subscribe();
    let mut invite = a.start_pairing_with_ticket().unwrap();

    // A stranger knocks on the pairing ALPN (open to anyone), starts a message and hangs up.
    let stranger = raw_client().await;
    let connection = stranger
        .connect(iroh_addr(&a), tether::PAIRING_ALPN)
        .await
        .unwrap();
    let (mut send, _recv) = connection.open_bi().await.unwrap();
    send.write_all(&[0, 200]).await.unwrap();
    connection.close(0u32.into(), b"bye");
    next_event(&mut events, |e| {
        matches!(e, NetworkEvent::PairingFailed { .. })
    })
    .await;
    // The service has dealt with it (the event comes after the code's fate is decided), and
    // the invite heard nothing: the code still works.
    let early = tokio::time::timeout(Duration::from_millis(1), invite.paired()).await;
    assert!(early.is_err(), "{early:?}");
    b.join_pairing(&invite.code).await.unwrap();
    invite.paired().await.unwrap();
    stranger.close().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_shown_one_after_another_each_end_on_their_own() {
    let lab = Lab::new();
    let hub = lab.start_undiscovered("hub").await;
    let b = lab.start_undiscovered("b").await;
    let c = lab.start_undiscovered("c").await;

    let mut first = hub.start_pairing_with_ticket().unwrap();
    let mut second = hub.start_pairing_with_ticket().unwrap();
    let replaced = tokio::time::timeout(Duration::from_secs(5), first.paired())
        .await
        .unwrap();
    assert!(replaced.is_err(), "{replaced:?}");

    b.join_pairing(&second.code).await.unwrap();
    second.paired().await.unwrap();
    // At once the next code: the connection that paired `b` must not withdraw it.
    let mut third = hub.start_pairing_with_ticket().unwrap();
    c.join_pairing(&third.code).await.unwrap();
    third.paired().await.unwrap();
    assert_eq!(hub.paired_devices().len(), 2);
    hub.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_ends_its_invite() {
    let lab = Lab::new();
    let mut config = lab.config("a");
    config.pairing = InitiatorConfig::default().with_lifetime(Duration::from_millis(500));
    let a = tether::NetworkingService::start(config).await.unwrap();
    let mut invite = a.start_pairing_as_initiator().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), invite.paired())
        .await
        .expect("the invite still waits after its code expired");
    match ended {
        Err(error) => assert!(
            matches!(error, NetworkError::CodeEnded(tether::CodeEnded::Expired)),
            "{error:?}"
        ),
        Ok(device) => panic!("paired with {device:?}"),
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_pending_pairing_stores_nothing_on_either_side() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    let mut invite = laptop.start_pairing_as_initiator().unwrap();
    let code = invite.code.clone();
    let joining = tokio::spawn({
        let phone = phone.clone();
        async move { phone.join_pairing(&code).await }
    });
    let pending = tokio::time::timeout(Duration::from_secs(20), invite.pending())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pending.device.device_name.as_str(), "phone");
    assert_eq!(pending.verification_code.len(), 7);
    // Nothing is stored while the person looks at the screen.
    assert!(laptop.paired_devices().is_empty());
    assert!(phone.paired_devices().is_empty());
    pending.reject();
    let error = tokio::time::timeout(Duration::from_secs(20), joining)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(
            &error,
            NetworkError::Refused { code, .. } if *code == tether::gate::CLOSE_PAIRING_DECLINED
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("declined"), "{error}");
    assert!(laptop.paired_devices().is_empty());
    assert!(phone.paired_devices().is_empty());
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initiator_that_stops_right_after_accepting_leaves_both_sides_paired() {
    // `tether pair` exits as soon as `accept` returns: by then the joiner must have its
    // answer, or it stores nothing while the initiator has stored the pairing.
    let lab = Lab::new();
    for round in 0..5 {
        let laptop = lab.start(&format!("laptop-{round}")).await;
        let phone = lab.start(&format!("phone-{round}")).await;
        let mut invite = laptop.start_pairing_as_initiator().unwrap();
        let code = invite.code.clone();
        let joining = tokio::spawn({
            let phone = phone.clone();
            async move { phone.join_pairing(&code).await }
        });
        let pending = tokio::time::timeout(Duration::from_secs(20), invite.pending())
            .await
            .unwrap()
            .unwrap();
        pending.accept().await.unwrap();
        laptop.shutdown().await;
        let joined = tokio::time::timeout(Duration::from_secs(20), joining)
            .await
            .unwrap()
            .unwrap();
        assert!(joined.is_ok(), "round {round}: {joined:?}");
        assert_eq!(phone.paired_devices().len(), 1, "round {round}");
        phone.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_pending_pairing_stores_on_both_sides() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    let mut invite = laptop.start_pairing_as_initiator().unwrap();
    let code = invite.code.clone();
    let joining = tokio::spawn({
        let phone = phone.clone();
        async move { phone.join_pairing(&code).await }
    });
    let pending = tokio::time::timeout(Duration::from_secs(20), invite.pending())
        .await
        .unwrap()
        .unwrap();
    assert!(laptop.paired_devices().is_empty());
    let shown = pending.verification_code.clone();
    let accepted = pending.accept().await.unwrap();
    let joined = tokio::time::timeout(Duration::from_secs(20), joining)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(accepted.verification_code, shown);
    assert_eq!(joined.verification_code, shown);
    assert_eq!(laptop.paired_devices().len(), 1);
    assert_eq!(phone.paired_devices().len(), 1);
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_that_ends_unused_says_how_not_a_protocol_violation() {
    let lab = Lab::new();
    let mut config = lab.config("a");
    config.pairing = InitiatorConfig::default().with_lifetime(Duration::from_millis(500));
    let a = tether::NetworkingService::start(config).await.unwrap();

    let mut expired = a.start_pairing_as_initiator().unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(5), expired.paired())
        .await
        .unwrap();
    assert!(
        matches!(
            ended,
            Err(NetworkError::CodeEnded(tether::CodeEnded::Expired))
        ),
        "{ended:?}"
    );
    common::checked_chain(ended.as_ref().unwrap_err());

    let mut cancelled = a.start_pairing_with_ticket().unwrap();
    a.cancel_pairing();
    let ended = cancelled.paired().await;
    assert!(
        matches!(
            ended,
            Err(NetworkError::CodeEnded(tether::CodeEnded::Cancelled))
        ),
        "{ended:?}"
    );
    let text = common::checked_chain(&ended.unwrap_err());
    assert!(!text.contains("protocol violation"), "{text}");

    let mut replaced = a.start_pairing_with_ticket().unwrap();
    let _next = a.start_pairing_with_ticket().unwrap();
    let ended = replaced.pending().await;
    assert!(
        matches!(
            ended,
            Err(NetworkError::CodeEnded(tether::CodeEnded::Replaced))
        ),
        "{ended:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_hears_its_end_however_many_codes_ended_since() {
    let lab = Lab::new();
    let a = lab.start_undiscovered("a").await;
    // The first code is replaced, then many more codes come and go before its invite looks.
    let mut first = a.start_pairing_with_ticket().unwrap();
    for _ in 0..40 {
        let _ = a.start_pairing_with_ticket().unwrap();
        a.cancel_pairing();
    }
    let ended = tokio::time::timeout(Duration::from_secs(5), first.paired())
        .await
        .expect("the invite never heard that its code was replaced");
    assert!(
        matches!(
            ended,
            Err(NetworkError::CodeEnded(tether::CodeEnded::Replaced))
        ),
        "{ended:?}"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_report_the_pairing_under_way_before_it_ends() {
    use n0_future::StreamExt;
    use tether::{NetworkEvent, PairingStage};

    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    let mut laptop_events = laptop.events();
    let mut phone_events = phone.events();
    common::pair_by_ticket(&laptop, &phone).await;

    // Each side's pairing events, in order, up to and including `Paired`.
    async fn until_paired(events: &mut tether::EventStream) -> Vec<NetworkEvent> {
        let mut seen = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(event) = events.next().await {
                let end = matches!(event, NetworkEvent::Paired { .. });
                if matches!(
                    event,
                    NetworkEvent::PairingProgress { .. } | NetworkEvent::Paired { .. }
                ) {
                    seen.push(event);
                }
                if end {
                    break;
                }
            }
        })
        .await
        .expect("no Paired event");
        seen
    }
    let on_laptop = until_paired(&mut laptop_events).await;
    let on_phone = until_paired(&mut phone_events).await;
    match on_laptop.as_slice() {
        [
            NetworkEvent::PairingProgress {
                peer,
                stage:
                    PairingStage::Proved {
                        device,
                        verification_code,
                    },
            },
            NetworkEvent::Paired {
                verification_code: paired_code,
                ..
            },
        ] => {
            assert_eq!(*peer, phone.node_id());
            assert_eq!(device.device_id, phone.device_info().device_id);
            assert_eq!(verification_code, paired_code);
        }
        other => panic!("the laptop's events: {other:?}"),
    }
    assert!(
        matches!(
            on_phone.as_slice(),
            [
                NetworkEvent::PairingProgress {
                    stage: PairingStage::Connected,
                    ..
                },
                NetworkEvent::Paired { .. },
            ]
        ),
        "the phone's events: {on_phone:?}"
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}
