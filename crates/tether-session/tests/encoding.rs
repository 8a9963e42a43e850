//! A session in the binary encoding: requests and answers cross a stream cut at any points,
//! replies to what does not decode carry the request's id, and every payload it seals is
//! binary.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod harness;

use std::time::{Duration, Instant};

use proptest::prelude::*;
use rand_core::SeedableRng;
use tether_crypto::SessionKeys;
use tether_session::{Config, Event, Session, Side};
use tether_wire::{
    ControlMessage, Encoding, ErrorCode, ErrorReply, Frame, FrameDecoder, FrameKind, Hlc,
    NetworkMessage, Ping, Pong, RequestId, SyncEntry, SyncRequest, SyncResponse, Text,
};

const TIMEOUT: Duration = Duration::from_secs(10);

fn sessions(seed: u64, encoding: Encoding) -> (Session, Session, Instant) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let (dialler, acceptor, _) = harness::handshake(&mut rng);
    let now = Instant::now();
    let config = Config::default();
    (
        Session::new(dialler, Side::Dialler, config, now).with_encoding(encoding),
        Session::new(acceptor, Side::Acceptor, config, now).with_encoding(encoding),
        now,
    )
}

fn uuid(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u64_pair(n, n)
}

fn request(n: u64) -> NetworkMessage {
    match n % 3 {
        0 => NetworkMessage::SyncRequest(SyncRequest {
            library_id: uuid(n),
            after: Hlc::ZERO,
        }),
        1 => NetworkMessage::Text(Text {
            text: format!("note {n} \u{1F4DD}"),
        }),
        _ => NetworkMessage::SyncRequest(SyncRequest {
            library_id: uuid(n),
            after: Hlc {
                physical_ms: n,
                logical: 1,
                node: 2,
            },
        }),
    }
}

fn answer(message: &NetworkMessage) -> NetworkMessage {
    match message {
        NetworkMessage::SyncRequest(request) => NetworkMessage::SyncResponse(SyncResponse {
            library_id: request.library_id,
            entries: vec![SyncEntry {
                entry_id: request.library_id,
                path: "a/b.txt".into(),
                size: 3,
                hash: None,
                hlc: request.after,
                deleted: false,
            }],
            has_more: false,
        }),
        _ => NetworkMessage::Ack,
    }
}

/// Feeds `bytes` to `to` in the pieces that `cuts` make.
fn deliver(to: &mut Session, now: Instant, bytes: &[u8], cuts: &[prop::sample::Index]) {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    points.extend([0, bytes.len()]);
    points.sort_unstable();
    for pair in points.windows(2) {
        to.handle_input(now, &bytes[pair[0]..pair[1]]).unwrap();
    }
}

fn events(session: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| session.poll_event()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn binary_requests_and_answers_cross_any_split(
        count in 1u64..12,
        there in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        back in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
    ) {
        let (mut dialler, mut acceptor, now) = sessions(count, Encoding::Binary);
        let sent: Vec<(RequestId, NetworkMessage)> = (0..count)
            .map(|n| (dialler.request(now, request(n), TIMEOUT).unwrap(), request(n)))
            .collect();
        // And one ping, which the acceptor's session answers itself.
        prop_assert!(dialler.start_probe(now, 77, TIMEOUT));
        let wire = dialler.poll_transmit().unwrap();
        deliver(&mut acceptor, now, &wire, &there);

        let mut asked = Vec::new();
        for event in events(&mut acceptor) {
            match event {
                Event::Request { id, message, .. } => {
                    acceptor.answer(now, id, answer(&message)).unwrap();
                    asked.push((id, message));
                }
                // A text is a message for the app, acknowledged once delivered.
                Event::Message { id: Some(id), message, .. } => {
                    acceptor.acknowledge(Some(id), true);
                    asked.push((id, message));
                }
                other => panic!("{other:?}"),
            }
        }
        prop_assert_eq!(&asked, &sent);

        let wire = acceptor.poll_transmit().unwrap();
        deliver(&mut dialler, now, &wire, &back);
        let answered: Vec<_> = events(&mut dialler)
            .into_iter()
            .filter_map(|event| match event {
                Event::Answered { id, result } => Some((id, result.unwrap())),
                _ => None,
            })
            .collect();
        let expected: Vec<_> = sent.iter().map(|(id, m)| (*id, answer(m))).collect();
        prop_assert_eq!(answered, expected);
        prop_assert!(!dialler.probing(), "the ping was answered");
    }
}

/// Seals `payloads` with the raw dialler keys, hands them to a binary acceptor, and returns
/// its replies' payloads.
fn raw_exchange(payloads: &[Vec<u8>]) -> (Vec<Event>, Vec<Vec<u8>>) {
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let (mut dialler, acceptor, _): (SessionKeys, SessionKeys, _) = harness::handshake(&mut rng);
    let now = Instant::now();
    let mut acceptor = Session::new(acceptor, Side::Acceptor, Config::default(), now)
        .with_encoding(Encoding::Binary);
    let mut wire = Vec::new();
    for payload in payloads {
        let frame = Frame::new(FrameKind::Control, payload.clone()).unwrap();
        frame.seal(&mut dialler).unwrap().encode_into(&mut wire);
    }
    acceptor.handle_input(now, &wire).unwrap();
    let events = events(&mut acceptor);
    let replies = acceptor.poll_transmit().unwrap_or_default();
    let mut decoder = FrameDecoder::new();
    let mut input = &replies[..];
    let mut got = Vec::new();
    while let Some(frame) = decoder.decode(&mut input).unwrap() {
        got.push(frame.open(&mut dialler).unwrap().payload().to_vec());
    }
    (events, got)
}

#[test]
fn a_binary_session_reads_and_writes_binary_only() {
    let ping = ControlMessage::with_id(RequestId(1), Ping { timestamp_ms: 5 });
    let json = ping.encode_with(Encoding::Json).unwrap();
    let binary = ping.encode_with(Encoding::Binary).unwrap();
    // An unknown kind number with an id, then JSON (not what this connection chose), then a
    // binary ping.
    let unknown = vec![0x01, 0x03, 0x63];
    let (events, replies) = raw_exchange(&[unknown, json, binary]);
    assert_eq!(events, vec![]);
    let replies: Vec<ControlMessage> = replies
        .iter()
        .map(|payload| {
            assert!(ControlMessage::decode_with(Encoding::Json, payload).is_err());
            ControlMessage::decode_with(Encoding::Binary, payload).unwrap()
        })
        .collect();
    let codes: Vec<_> = replies
        .iter()
        .map(|reply| match &reply.message {
            NetworkMessage::Error(ErrorReply { code, .. }) => Some((reply.id, *code)),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            Some((Some(RequestId(3)), ErrorCode::UnknownMessage)),
            Some((None, ErrorCode::Malformed)),
            None,
        ]
    );
    assert_eq!(
        replies[2],
        ControlMessage::with_id(RequestId(1), Pong { timestamp_ms: 5 })
    );
}
