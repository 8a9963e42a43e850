//! Two sessions on a virtual clock: requests and answers, timeouts, keep-alive, idle
//! accounting and protocol errors, over a wire with latency, loss, reordering and cuts.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod harness;

use std::time::Duration;

use harness::{End, Pair, WireConfig};
use tether_session::{
    CloseReason, Config, Event, MAX_ANSWERING, RequestError, RequestKey, SendError, Side,
};
use tether_wire::{
    ErrorCode, ErrorReply, LibraryAnnounce, NetworkMessage, Ping, RequestId, SyncRequest,
    SyncResponse, Text,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn config() -> Config {
    Config {
        keepalive_interval: None,
        probe_timeout: TIMEOUT,
        busy_probe_after: None,
        busy_probe_timeout: Duration::from_secs(3),
        idle_timeout: None,
        max_text_len: tether_wire::limits::MAX_TEXT_LEN,
    }
}

/// The service's timers: keep-alive after 30 s of silence, and while the link is in use a
/// ping after 1.5 s of silence that must be answered within 3 s.
fn busy_config() -> Config {
    Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        busy_probe_after: Some(Duration::from_millis(1500)),
        busy_probe_timeout: Duration::from_secs(3),
        ..config()
    }
}

fn pair() -> Pair {
    Pair::new(1, config(), WireConfig::default())
}

fn sync_request(n: u8) -> NetworkMessage {
    NetworkMessage::SyncRequest(SyncRequest {
        library_id: uuid(n),
        after: tether_wire::Hlc::ZERO,
    })
}

fn sync_response(n: u8) -> NetworkMessage {
    NetworkMessage::SyncResponse(SyncResponse {
        library_id: uuid(n),
        entries: Vec::new(),
        has_more: false,
    })
}

fn uuid(n: u8) -> uuid::Uuid {
    uuid::Uuid::from_bytes([n; 16])
}

/// The requests `end`'s application was asked to answer.
fn requests(events: &[Event]) -> Vec<(RequestId, NetworkMessage)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Request { id, message, .. } => Some((*id, message.clone())),
            _ => None,
        })
        .collect()
}

fn answers(events: &[Event]) -> Vec<(RequestId, Result<NetworkMessage, RequestError>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Answered { id, result } => Some((*id, result.clone())),
            _ => None,
        })
        .collect()
}

/// The acceptor's application answers every request it was asked with `reply(request)`.
fn answer_all(pair: &mut Pair, reply: impl Fn(&NetworkMessage) -> NetworkMessage) {
    let now = pair.now;
    for (id, request) in requests(&pair.events(End::Acceptor)) {
        let answer = reply(&request);
        pair.session(End::Acceptor).answer(now, id, answer).unwrap();
    }
}

#[test]
fn a_request_gets_its_answer() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    assert_eq!(id, RequestId(1), "the dialler's ids are odd, from 1");
    pair.run_for(Duration::from_millis(25));
    let asked = requests(&pair.events(End::Acceptor));
    assert_eq!(asked, vec![(id, sync_request(1))]);
    let now = pair.now;
    pair.session(End::Acceptor)
        .answer(now, id, sync_response(1))
        .unwrap();
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(id, Ok(sync_response(1)))]
    );
}

proptest::proptest! {
    #[test]
    fn a_key_survives_either_side_and_keeps_the_sides_parity(random in proptest::prelude::any::<u64>()) {
        let key = RequestKey::from_random(random);
        let dialled = key.id_on(Side::Dialler);
        let accepted = key.id_on(Side::Acceptor);
        proptest::prop_assert_eq!(dialled.0 % 2, 1);
        proptest::prop_assert_eq!(accepted.0 % 2, 0);
        proptest::prop_assert_eq!(RequestKey::of(dialled), key);
        proptest::prop_assert_eq!(RequestKey::of(accepted), key);
        proptest::prop_assert_eq!(key.bits(), random >> 1);
    }
}

/// A request named across links keeps its key on either side of a link: the dialler sends it
/// under an odd id, the acceptor under an even one, and the peer sees the same key; an
/// unnamed request has none. The same key twice on one link is refused.
#[test]
fn a_named_request_keeps_its_key_on_either_side() {
    let mut pair = pair();
    let key = RequestKey::from_random(0x5eed_0000_0000_0042);
    let now = pair.now;
    let sent = [End::Dialler, End::Acceptor].map(|end| {
        pair.session(end)
            .request_once(now, key, sync_request(1), TIMEOUT)
            .unwrap()
    });
    assert_eq!(sent[0].0 % 2, 1);
    assert_eq!(sent[1], RequestId(sent[0].0 - 1));
    let again = pair
        .session(End::Dialler)
        .request_once(now, key, sync_request(1), TIMEOUT);
    assert!(matches!(again, Err(SendError::InFlight)), "{again:?}");
    let plain = pair.request(End::Dialler, sync_request(2), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    for (end, id) in [(End::Acceptor, sent[0]), (End::Dialler, sent[1])] {
        let keys: Vec<(RequestId, Option<RequestKey>)> = pair
            .events(end)
            .into_iter()
            .filter_map(|event| match event {
                Event::Request { id, key, .. } => Some((id, key)),
                _ => None,
            })
            .collect();
        if end == End::Acceptor {
            assert_eq!(keys, vec![(id, Some(key)), (plain, None)]);
        } else {
            assert_eq!(keys, vec![(id, Some(key))]);
        }
    }
    // The answer finds its request as any other's does.
    let now = pair.now;
    pair.session(End::Acceptor)
        .answer(now, sent[0], sync_response(1))
        .unwrap();
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(sent[0], Ok(sync_response(1)))]
    );
}

#[test]
fn both_sides_ask_at_once_with_ids_of_their_own_parity() {
    let mut pair = pair();
    let ours = [
        pair.request(End::Dialler, sync_request(1), TIMEOUT),
        pair.request(End::Dialler, sync_request(3), TIMEOUT),
    ];
    let theirs = [
        pair.request(End::Acceptor, sync_request(2), TIMEOUT),
        pair.request(End::Acceptor, sync_request(4), TIMEOUT),
    ];
    assert_eq!(ours, [RequestId(1), RequestId(3)]);
    assert_eq!(theirs, [RequestId(2), RequestId(4)]);
    pair.run_for(Duration::from_millis(25));
    let now = pair.now;
    for end in [End::Dialler, End::Acceptor] {
        for (id, request) in requests(&pair.events(end)) {
            let NetworkMessage::SyncRequest(request) = request else {
                panic!("{request:?}")
            };
            let reply = sync_response(request.library_id.as_bytes()[0]);
            pair.session(end).answer(now, id, reply).unwrap();
        }
    }
    pair.run_for(Duration::from_millis(25));
    for (end, ids) in [(End::Dialler, ours), (End::Acceptor, theirs)] {
        let got = answers(&pair.events(end));
        assert_eq!(got.len(), 2, "{got:?}");
        for (id, result) in got {
            assert!(ids.contains(&id));
            assert_eq!(result, Ok(sync_response(id.0 as u8)));
        }
    }
}

#[test]
fn an_answer_of_the_wrong_kind_is_a_protocol_violation() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    answer_all(&mut pair, |_| NetworkMessage::Ack);
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(
            id,
            Err(RequestError::Mismatch {
                request: tether_wire::MessageKind::SyncRequest,
                answer: tether_wire::MessageKind::Ack,
            })
        )]
    );
}

#[test]
fn an_error_reply_is_a_rejection() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    answer_all(&mut pair, |_| {
        NetworkMessage::Error(ErrorReply {
            code: ErrorCode::NotFound,
            message: "no such library".to_owned(),
        })
    });
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(
            id,
            Err(RequestError::Rejected {
                code: ErrorCode::NotFound,
                message: "no such library".to_owned(),
            })
        )]
    );
}

#[test]
fn a_request_nobody_answers_times_out_and_its_late_answer_is_dropped() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    pair.run_for(TIMEOUT - Duration::from_millis(1));
    assert!(answers(&pair.events(End::Dialler)).is_empty());
    let now = pair.now;
    assert_eq!(pair.session(End::Dialler).idle_for(now), None, "in use");
    pair.run_for(Duration::from_millis(1));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(id, Err(RequestError::TimedOut { after: TIMEOUT }))]
    );
    let now = pair.now;
    assert_eq!(
        pair.session(End::Dialler).idle_for(now),
        Some(Duration::ZERO)
    );
    // The app answers after all: nobody waits for it.
    answer_all(&mut pair, sync_response_for);
    pair.run_for(Duration::from_millis(25));
    assert!(pair.events(End::Dialler).is_empty());
}

fn sync_response_for(_: &NetworkMessage) -> NetworkMessage {
    sync_response(1)
}

#[test]
fn a_cancelled_request_ends_without_an_event() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    let now = pair.now;
    pair.session(End::Dialler).cancel(now, id);
    assert_eq!(
        pair.session(End::Dialler).idle_for(now),
        Some(Duration::ZERO)
    );
    pair.run_for(Duration::from_millis(25));
    answer_all(&mut pair, sync_response_for);
    pair.run_for(TIMEOUT * 2);
    assert!(answers(&pair.events(End::Dialler)).is_empty());
}

#[test]
fn a_ping_is_answered_by_the_session_and_is_not_application_traffic() {
    let mut pair = pair();
    pair.run_for(Duration::from_secs(60));
    let ping = NetworkMessage::Ping(Ping { timestamp_ms: 42 });
    let now = pair.now;
    let id = pair
        .session(End::Dialler)
        .request(now, ping, TIMEOUT)
        .unwrap();
    pair.run_for(Duration::from_millis(50));
    let got = answers(&pair.events(End::Dialler));
    assert_eq!(
        got,
        vec![(
            id,
            Ok(NetworkMessage::Pong(tether_wire::Pong { timestamp_ms: 42 }))
        )]
    );
    assert!(
        pair.events(End::Acceptor).is_empty(),
        "the app never sees a ping"
    );
    let now = pair.now;
    assert!(
        pair.session(End::Acceptor).idle_for(now).unwrap() >= Duration::from_secs(60),
        "a ping does not count as use on the side that answers it"
    );
}

#[test]
fn the_request_over_the_busy_limit_is_answered_busy() {
    let mut pair = pair();
    let ids: Vec<RequestId> = (0..=MAX_ANSWERING)
        .map(|n| pair.request(End::Dialler, sync_request(n as u8), TIMEOUT))
        .collect();
    assert_eq!(ids.len(), 65);
    pair.run_for(Duration::from_millis(50));
    let asked = requests(&pair.events(End::Acceptor));
    assert_eq!(asked.len(), MAX_ANSWERING, "64 go to the app");
    let busy = answers(&pair.events(End::Dialler));
    assert_eq!(
        busy,
        vec![(
            ids[MAX_ANSWERING],
            Err(RequestError::Rejected {
                code: ErrorCode::Busy,
                message: "too many requests at once".to_owned(),
            })
        )]
    );
    // One answered: there is room for one more.
    let now = pair.now;
    pair.session(End::Acceptor)
        .answer(now, asked[0].0, sync_response(0))
        .unwrap();
    pair.request(End::Dialler, sync_request(99), TIMEOUT);
    pair.run_for(Duration::from_millis(50));
    assert_eq!(requests(&pair.events(End::Acceptor)).len(), 1);
}

#[test]
fn a_silent_peer_is_pinged_and_a_dead_one_reported() {
    let interval = Duration::from_secs(15);
    let config = Config {
        keepalive_interval: Some(interval),
        ..config()
    };
    let mut pair = Pair::new(2, config, WireConfig::default());
    // Both answer each other's pings: nobody is reported dead, however long it runs.
    pair.run_for(Duration::from_secs(120));
    for end in [End::Dialler, End::Acceptor] {
        let events = pair.events(end);
        assert!(events.contains(&Event::ProbeAnswered), "{events:?}");
        assert!(!events.contains(&Event::Close(CloseReason::PeerDead)));
    }
    // The acceptor hangs: the dialler pings once the acceptor has been silent for the
    // interval, and reports it dead when the ping's timeout passes.
    pair.party(End::Acceptor).stopped = true;
    let hung = pair.now;
    pair.run_for(interval + TIMEOUT + Duration::from_millis(100));
    let events = pair.events(End::Dialler);
    assert_eq!(events, vec![Event::Close(CloseReason::PeerDead)]);
    let now = pair.now;
    let silent = pair.session(End::Dialler).silent_for(now);
    assert!(silent >= pair.now - hung - Duration::from_millis(100));
}

#[test]
fn a_peer_that_dies_while_the_link_is_in_use_is_reported_within_five_seconds() {
    let mut pair = Pair::new(7, busy_config(), WireConfig::default());
    // A transfer on the link (its data goes on streams of its own; the session stream is
    // silent but for pings).
    pair.session(End::Dialler).begin_use();
    pair.run_for(Duration::from_secs(60));
    let events = pair.events(End::Dialler);
    assert!(events.contains(&Event::ProbeAnswered), "{events:?}");
    assert!(!events.contains(&Event::Close(CloseReason::PeerDead)));
    // About one ping per 1.5 s of silence, each answered: a few dozen small frames a minute.
    let pings = events
        .iter()
        .filter(|event| **event == Event::ProbeAnswered)
        .count();
    assert!((30..=45).contains(&pings), "{pings} pings in 60 s");
    assert!(pair.events(End::Acceptor).is_empty());

    // The acceptor is killed: no close, no answer.
    pair.party(End::Acceptor).stopped = true;
    let died = pair.now;
    let mut reported = None;
    while reported.is_none() && pair.now < died + Duration::from_secs(30) {
        pair.run_for(Duration::from_millis(10));
        if pair
            .events(End::Dialler)
            .contains(&Event::Close(CloseReason::PeerDead))
        {
            reported = Some(pair.now - died);
        }
    }
    let reported = reported.expect("the dead peer was reported");
    // Silent for up to 1.5 s before the ping, then 3 s for its answer.
    assert!(reported <= Duration::from_millis(4_520), "{reported:?}");
    assert!(reported >= Duration::from_secs(3), "{reported:?}");
}

#[test]
fn a_ping_stuck_behind_a_slow_link_is_no_dead_peer_while_the_transport_hears_it() {
    // A bloated queue holds the pong for 10 s; the transport keeps hearing the peer (its
    // acknowledgements of the transfer's data) until the peer dies.
    let wire = WireConfig {
        latency: Duration::from_secs(5),
        ..WireConfig::default()
    };
    let mut pair = Pair::new(10, busy_config(), wire);
    pair.session(End::Dialler).begin_use();
    for _ in 0..30 {
        pair.run_for(Duration::from_secs(1));
        let now = pair.now;
        pair.session(End::Dialler).transport_heard(now);
    }
    let events = pair.events(End::Dialler);
    assert!(events.contains(&Event::ProbeAnswered), "{events:?}");
    assert!(!events.contains(&Event::Close(CloseReason::PeerDead)));
    // Dead: nothing heard any more, by the transport or on the stream.
    pair.party(End::Acceptor).stopped = true;
    let died = pair.now;
    let mut reported = None;
    while reported.is_none() && pair.now < died + Duration::from_secs(30) {
        pair.run_for(Duration::from_millis(10));
        if pair
            .events(End::Dialler)
            .contains(&Event::Close(CloseReason::PeerDead))
        {
            reported = Some(pair.now);
        }
    }
    let reported = reported.expect("the dead peer was reported");
    // What the report says is the time since the peer was last heard at all, not the stream's
    // silence (the last pong left the queue long before the transport's last packet).
    let session = pair.session(End::Dialler);
    assert!(session.silent_for(reported) > Duration::from_secs(5));
    let unheard = session.unheard_for(reported);
    assert!(unheard <= Duration::from_millis(4_520), "{unheard:?}");
    assert!(unheard >= reported - died, "{unheard:?}");
}

#[test]
fn an_idle_link_gets_only_the_keepalive_ping() {
    let mut pair = Pair::new(8, busy_config(), WireConfig::default());
    pair.run_for(Duration::from_millis(29_900));
    assert_eq!(pair.segments_sent(End::Dialler), 0);
    assert_eq!(pair.segments_sent(End::Acceptor), 0);
    // The keep-alive after 30 s of silence: one ping each way and its pong at most.
    pair.run_for(Duration::from_millis(200));
    let frames = pair.segments_sent(End::Dialler) + pair.segments_sent(End::Acceptor);
    assert!((2..=4).contains(&frames), "{frames}");
    // A use that ended starts no busy pings either.
    let now = pair.now;
    pair.session(End::Dialler).begin_use();
    pair.session(End::Dialler).end_use(now);
    let before = pair.segments_sent(End::Dialler);
    pair.run_for(Duration::from_secs(20));
    assert_eq!(pair.segments_sent(End::Dialler), before);
}

#[test]
fn a_slow_probe_in_flight_when_a_use_begins_gets_the_busy_timeout() {
    let mut pair = Pair::new(9, busy_config(), WireConfig::default());
    pair.cut = true;
    let now = pair.now;
    assert!(pair.session(End::Dialler).start_probe(now, 1, TIMEOUT));
    pair.run_for(Duration::from_secs(1));
    pair.session(End::Dialler).begin_use();
    pair.run_for(Duration::from_millis(1_990));
    assert!(pair.events(End::Dialler).is_empty());
    pair.run_for(Duration::from_millis(20));
    assert_eq!(
        pair.events(End::Dialler),
        vec![Event::Close(CloseReason::PeerDead)]
    );
}

#[test]
fn a_cut_wire_times_requests_out_and_the_probe_reports_the_peer_dead() {
    let mut pair = pair();
    pair.cut = true;
    let id = pair.request(End::Dialler, sync_request(1), TIMEOUT);
    let now = pair.now;
    assert!(pair.session(End::Dialler).start_probe(now, 1, TIMEOUT));
    assert!(
        !pair.session(End::Dialler).start_probe(now, 2, TIMEOUT),
        "one probe at a time"
    );
    pair.run_for(TIMEOUT);
    let events = pair.events(End::Dialler);
    assert!(events.contains(&Event::Answered {
        id,
        result: Err(RequestError::TimedOut { after: TIMEOUT })
    }));
    assert!(events.contains(&Event::Close(CloseReason::PeerDead)));
    assert!(!pair.session(End::Dialler).probing());
}

#[test]
fn an_idle_link_is_reported_after_the_idle_timeout_but_not_while_in_use() {
    let idle = Duration::from_secs(30);
    let config = Config {
        idle_timeout: Some(idle),
        ..config()
    };
    let mut pair = Pair::new(3, config, WireConfig::default());
    // A transfer keeps the link in use far past the timeout.
    pair.session(End::Dialler).begin_use();
    pair.run_for(idle * 3);
    assert!(pair.events(End::Dialler).is_empty());
    let now = pair.now;
    pair.session(End::Dialler).end_use(now);
    pair.run_for(idle - Duration::from_millis(1));
    assert!(pair.events(End::Dialler).is_empty());
    pair.run_for(Duration::from_millis(1));
    assert_eq!(
        pair.events(End::Dialler),
        vec![Event::Close(CloseReason::Idle)]
    );
    // Reported once; traffic starts the count again.
    pair.run_for(idle * 2);
    assert!(pair.events(End::Dialler).is_empty());
}

#[test]
fn pings_do_not_keep_a_link_from_going_idle() {
    let idle = Duration::from_secs(30);
    let config = Config {
        idle_timeout: Some(idle),
        keepalive_interval: Some(Duration::from_secs(5)),
        ..config()
    };
    let mut pair = Pair::new(4, config, WireConfig::default());
    pair.run_for(idle + Duration::from_millis(10));
    for end in [End::Dialler, End::Acceptor] {
        let events = pair.events(end);
        assert!(events.contains(&Event::ProbeAnswered));
        assert!(
            events.contains(&Event::Close(CloseReason::Idle)),
            "{events:?}"
        );
    }
}

#[test]
fn requests_and_announcements_are_application_traffic() {
    let idle = Duration::from_secs(30);
    let config = Config {
        idle_timeout: Some(idle),
        ..config()
    };
    let mut pair = Pair::new(5, config, WireConfig::default());
    pair.run_for(idle / 2);
    let announce = NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: Vec::new(),
    });
    let id = pair.request(End::Dialler, announce.clone(), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    let events = pair.events(End::Acceptor);
    assert_eq!(
        events,
        vec![Event::Message {
            id: Some(id),
            key: None,
            message: announce
        }]
    );
    pair.session(End::Acceptor).acknowledge(Some(id), true);
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(id, Ok(NetworkMessage::Ack))]
    );
    // The acceptor's idle count began again when the announcement came.
    pair.run_for(idle / 2 + Duration::from_secs(1));
    assert!(pair.events(End::Acceptor).is_empty());
    pair.run_for(idle / 2);
    assert_eq!(
        pair.events(End::Acceptor),
        vec![Event::Close(CloseReason::Idle)]
    );
}

#[test]
fn an_answer_kind_sent_as_a_request_is_unsupported() {
    let mut pair = pair();
    let id = pair.request(End::Dialler, NetworkMessage::Ack, TIMEOUT);
    pair.run_for(Duration::from_millis(50));
    let got = answers(&pair.events(End::Dialler));
    assert!(
        matches!(&got[..], [(got_id, Err(RequestError::Rejected { code: ErrorCode::Unsupported, message }))]
            if *got_id == id && message == "Ack answers a request; it is not one"),
        "{got:?}"
    );
}

#[test]
fn a_frame_that_does_not_open_asks_for_a_protocol_close() {
    let mut pair = pair();
    // Flip a bit in the sealed payload of everything the dialler sends.
    pair.tamper(End::Dialler, |bytes| {
        if let Some(last) = bytes.last_mut() {
            *last ^= 1;
        }
    });
    pair.request(End::Dialler, sync_request(1), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        pair.events(End::Acceptor),
        vec![Event::Close(CloseReason::Protocol)]
    );
    assert_eq!(CloseReason::Protocol.as_str(), "frame did not authenticate");
    // Nothing after it is read.
    let now = pair.now;
    assert!(pair.session(End::Acceptor).handle_input(now, &[0]).is_err());
}

#[test]
fn latency_loss_and_reordering_still_answer_every_request() {
    let wire = WireConfig {
        latency: Duration::from_millis(40),
        jitter: Duration::from_millis(30),
        loss: 0.2,
        retransmit: Duration::from_millis(250),
    };
    let mut pair = Pair::new(6, config(), wire);
    let mut ids = Vec::new();
    for round in 0..20u8 {
        ids.push(pair.request(End::Dialler, sync_request(round), TIMEOUT));
        pair.run_for(Duration::from_millis(5));
        answer_all(&mut pair, |request| {
            let NetworkMessage::SyncRequest(request) = request else {
                panic!("{request:?}")
            };
            sync_response(request.library_id.as_bytes()[0])
        });
    }
    for _ in 0..100 {
        pair.run_for(Duration::from_millis(50));
        answer_all(&mut pair, |request| {
            let NetworkMessage::SyncRequest(request) = request else {
                panic!("{request:?}")
            };
            sync_response(request.library_id.as_bytes()[0])
        });
    }
    let got = answers(&pair.events(End::Dialler));
    assert_eq!(got.len(), 20, "{got:?}");
    for (id, result) in got {
        let round = ids.iter().position(|sent| *sent == id).unwrap();
        assert_eq!(result, Ok(sync_response(round as u8)));
    }
}

#[test]
fn sides_number_their_requests_by_parity() {
    let pair = pair();
    assert_eq!(pair.parties[0].session.side(), Side::Dialler);
    assert_eq!(pair.parties[1].session.side(), Side::Acceptor);
}

#[test]
fn a_probe_is_answered_while_the_app_is_still_answering() {
    let mut pair = pair();
    let slow = pair.request(End::Dialler, sync_request(1), Duration::from_millis(400));
    pair.run_for(Duration::from_millis(400));
    assert_eq!(
        answers(&pair.events(End::Dialler)),
        vec![(
            slow,
            Err(RequestError::TimedOut {
                after: Duration::from_millis(400)
            })
        )]
    );
    // The acceptor's app still holds the request; the timeout makes the dialler probe.
    assert_eq!(requests(&pair.events(End::Acceptor)).len(), 1);
    let now = pair.now;
    assert!(pair.session(End::Dialler).start_probe(now, 7, TIMEOUT));
    pair.run_for(TIMEOUT * 2);
    assert_eq!(pair.events(End::Dialler), vec![Event::ProbeAnswered]);
    let now = pair.now;
    assert_eq!(
        pair.session(End::Acceptor).idle_for(now),
        None,
        "still answering"
    );
}

#[test]
fn an_abandoned_request_frees_its_slot_and_the_requester_times_out() {
    let mut pair = pair();
    let ids: Vec<RequestId> = (0..MAX_ANSWERING)
        .map(|n| pair.request(End::Dialler, sync_request(n as u8), TIMEOUT))
        .collect();
    pair.run_for(Duration::from_millis(50));
    let asked = requests(&pair.events(End::Acceptor));
    assert_eq!(asked.len(), MAX_ANSWERING);
    // The handler of the first one fails without an answer.
    let now = pair.now;
    pair.session(End::Acceptor).abandon(now, asked[0].0);
    pair.request(End::Dialler, sync_request(200), TIMEOUT);
    pair.run_for(Duration::from_millis(50));
    assert_eq!(
        requests(&pair.events(End::Acceptor)).len(),
        1,
        "room for one more"
    );
    pair.run_for(TIMEOUT);
    let timed_out = answers(&pair.events(End::Dialler));
    assert!(timed_out.contains(&(ids[0], Err(RequestError::TimedOut { after: TIMEOUT }))));
}

#[test]
fn a_message_that_does_not_decode_gets_an_error_reply_and_the_session_goes_on() {
    use rand_core::SeedableRng;
    use tether_wire::{ControlMessage, Frame, FrameDecoder, FrameKind};

    // The dialler's side is raw keys here, so it can seal what no session would send.
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
    let (mut dialler, acceptor, _) = harness::handshake(&mut rng);
    let now = std::time::Instant::now();
    let mut acceptor = tether_session::Session::new(acceptor, Side::Acceptor, config(), now);
    let mut wire = Vec::new();
    for payload in [
        &b"{not json"[..],
        br#"{"id":1,"type":"Ping","body":{"timestamp_ms":5}}"#,
    ] {
        let frame = Frame::new(FrameKind::Control, payload.to_vec()).unwrap();
        frame.seal(&mut dialler).unwrap().encode_into(&mut wire);
    }
    acceptor.handle_input(now, &wire).unwrap();
    assert_eq!(acceptor.poll_event(), None);
    let mut replies = acceptor.poll_transmit().unwrap();
    let mut decoder = FrameDecoder::new();
    let mut input = &replies[..];
    let mut got = Vec::new();
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        let plain = frame.open(&mut dialler).unwrap();
        got.push(ControlMessage::decode(plain.payload()).unwrap());
    }
    replies.clear();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        matches!(
            &got[0],
            ControlMessage {
                id: None,
                message: NetworkMessage::Error(ErrorReply {
                    code: ErrorCode::Malformed,
                    ..
                }),
                ..
            }
        ),
        "{got:?}"
    );
    assert_eq!(
        got[1],
        ControlMessage::with_id(
            RequestId(1),
            NetworkMessage::Pong(tether_wire::Pong { timestamp_ms: 5 })
        ),
        "the next message is answered as usual"
    );
}

/// Seals `payloads` as the raw dialler would and returns the acceptor's replies, decoded.
fn raw_exchange(
    acceptor_config: Config,
    payloads: &[Vec<u8>],
) -> (Vec<Event>, Vec<tether_wire::ControlMessage>) {
    use rand_core::SeedableRng;
    use tether_wire::{ControlMessage, Frame, FrameDecoder, FrameKind};

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let (mut dialler, acceptor, _) = harness::handshake(&mut rng);
    let now = std::time::Instant::now();
    let mut acceptor = tether_session::Session::new(acceptor, Side::Acceptor, acceptor_config, now);
    let mut wire = Vec::new();
    for payload in payloads {
        let frame = Frame::new(FrameKind::Control, payload.clone()).unwrap();
        frame.seal(&mut dialler).unwrap().encode_into(&mut wire);
    }
    acceptor.handle_input(now, &wire).unwrap();
    let events = std::iter::from_fn(|| acceptor.poll_event()).collect();
    let replies = acceptor.poll_transmit().unwrap_or_default();
    let mut decoder = FrameDecoder::new();
    let mut input = &replies[..];
    let mut got = Vec::new();
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        let plain = frame.open(&mut dialler).unwrap();
        got.push(ControlMessage::decode(plain.payload()).unwrap());
    }
    (events, got)
}

fn error_code(reply: &tether_wire::ControlMessage) -> Option<(Option<RequestId>, ErrorCode)> {
    match &reply.message {
        NetworkMessage::Error(ErrorReply { code, .. }) => Some((reply.id, *code)),
        _ => None,
    }
}

#[test]
fn a_request_that_does_not_decode_is_answered_with_its_own_id() {
    // What an older peer does with a kind it does not know, and any peer with a text over
    // the protocol's cap: the requester hears at once, not at its timeout.
    let too_long = "x".repeat(tether_wire::limits::MAX_TEXT_LEN + 1);
    let (events, replies) = raw_exchange(
        config(),
        &[
            br#"{"id":1,"type":"Teleport","body":{"to":"mars"}}"#.to_vec(),
            format!(r#"{{"id":3,"type":"Text","body":{{"text":"{too_long}"}}}}"#).into_bytes(),
            b"{not json".to_vec(),
        ],
    );
    assert_eq!(events, vec![]);
    let codes: Vec<_> = replies.iter().map(error_code).collect();
    assert_eq!(
        codes,
        vec![
            Some((Some(RequestId(1)), ErrorCode::UnknownMessage)),
            Some((Some(RequestId(3)), ErrorCode::LimitExceeded)),
            Some((None, ErrorCode::Malformed)),
        ]
    );
}

#[test]
fn a_text_is_delivered_as_a_message_and_one_over_the_limit_is_refused() {
    let config = Config {
        max_text_len: 8,
        ..config()
    };
    let mut pair = Pair::new(12, config, WireConfig::default());
    let text = |t: &str| NetworkMessage::Text(Text { text: t.to_owned() });
    // Eight bytes (two of them one character) pass; nine do not.
    let short = pair.request(End::Dialler, text("héllo!!"), TIMEOUT);
    let long = pair.request(End::Dialler, text("héllo!!!"), TIMEOUT);
    pair.run_for(Duration::from_millis(25));
    assert_eq!(
        pair.events(End::Acceptor),
        vec![Event::Message {
            id: Some(short),
            key: None,
            message: text("héllo!!")
        }]
    );
    pair.session(End::Acceptor).acknowledge(Some(short), true);
    pair.run_for(Duration::from_millis(25));
    let got = answers(&pair.events(End::Dialler));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.contains(&(short, Ok(NetworkMessage::Ack))), "{got:?}");
    assert!(
        got.iter().any(|(id, result)| *id == long
            && matches!(result, Err(RequestError::Rejected { code: ErrorCode::LimitExceeded, message })
                if message == "a text of 9 bytes; this device takes at most 8")),
        "{got:?}"
    );
}
