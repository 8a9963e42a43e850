//! Application answers to requests: an app's `RequestHandler` answers `SyncRequest` with a
//! `SyncResponse` page and `LibraryRequest` with a `LibraryAnnounce`; without a handler, with a
//! handler that answers the wrong kind, or one too slow, the requester gets a typed error.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::common;

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, event_within, pair_by_ticket};
use tether::{
    ErrorCode, ErrorReply, Hlc, LibraryAnnounce, LibraryInfo, LibraryRequest, MessageRate,
    NetworkError, NetworkEvent, NetworkMessage, NetworkingService, NodeId, PairedPeer, Pong,
    RequestHandler, SyncEntry, SyncRequest, SyncResponse, Uuid,
};

const LIBRARY: Uuid = Uuid::from_u128(0x5eed);

/// A library of three entries, served in pages of two; it remembers who asked.
#[derive(Debug, Default, Clone)]
struct Library {
    askers: Arc<Mutex<Vec<NodeId>>>,
}

fn entry(n: u64) -> SyncEntry {
    SyncEntry {
        entry_id: Uuid::from_u128(u128::from(n)),
        path: format!("photos/{n}.jpg"),
        size: n * 1000,
        hash: None,
        hlc: Hlc {
            physical_ms: 1_700_000_000_000 + n,
            logical: 0,
            node: 1,
        },
        deleted: false,
    }
}

impl RequestHandler for Library {
    async fn answer(
        &self,
        peer: PairedPeer,
        request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        self.askers.lock().unwrap().push(peer.node_id);
        assert_eq!(peer.device.public_key, peer.node_id);
        let not_found = || ErrorReply {
            code: ErrorCode::NotFound,
            message: "no such library".to_owned(),
        };
        match request {
            NetworkMessage::SyncRequest(SyncRequest { library_id, after }) => {
                if library_id != LIBRARY {
                    return Err(not_found());
                }
                let entries: Vec<SyncEntry> = (1..=3)
                    .map(entry)
                    .filter(|e| e.hlc > after)
                    .take(2)
                    .collect();
                let has_more = entries.last().is_some_and(|last| last.hlc < entry(3).hlc);
                Ok(NetworkMessage::SyncResponse(SyncResponse {
                    library_id,
                    entries,
                    has_more,
                }))
            }
            NetworkMessage::LibraryRequest(LibraryRequest { library_id }) => {
                if library_id != LIBRARY {
                    return Err(not_found());
                }
                Ok(NetworkMessage::LibraryAnnounce(LibraryAnnounce {
                    libraries: vec![LibraryInfo {
                        id: LIBRARY,
                        name: "photos".to_owned(),
                        entry_count: 3,
                        updated: entry(3).hlc,
                    }],
                }))
            }
            other => panic!("the service passed on {other:?}"),
        }
    }
}

/// Answers every request with a `Pong`: a programming error the service must catch.
#[derive(Debug)]
struct WrongKind;

impl RequestHandler for WrongKind {
    async fn answer(
        &self,
        _peer: PairedPeer,
        _request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        Ok(NetworkMessage::Pong(Pong { timestamp_ms: 0 }))
    }
}

/// Never answers: far slower than the requester waits.
#[derive(Debug)]
struct Slow;

impl RequestHandler for Slow {
    async fn answer(
        &self,
        _peer: PairedPeer,
        _request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        std::future::pending().await
    }
}

async fn two(lab: &Lab, request_timeout: Duration) -> (NetworkingService, NetworkingService) {
    let start = |name: &'static str| {
        let mut config = lab.config(name);
        config.loopback_discovery = None;
        config.request_timeout = request_timeout;
        NetworkingService::start(config)
    };
    let laptop = start("laptop").await.unwrap();
    let phone = start("phone").await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    (laptop, phone)
}

fn sync_request(after: Hlc) -> NetworkMessage {
    NetworkMessage::SyncRequest(SyncRequest {
        library_id: LIBRARY,
        after,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_answers_sync_and_library_requests() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Duration::from_secs(10)).await;
    let library = Library::default();
    laptop.set_request_handler(library.clone());
    let mut laptop_events = laptop.subscribe();
    let device = phone.device(laptop.node_id()).unwrap();

    // Two pages: the second asks after the first page's last entry.
    let first = device.send_message(sync_request(Hlc::ZERO)).await.unwrap();
    let NetworkMessage::SyncResponse(first) = first else {
        panic!("{first:?}")
    };
    assert_eq!(first.library_id, LIBRARY);
    assert_eq!(first.entries, vec![entry(1), entry(2)]);
    assert!(first.has_more);
    let after = first.entries.last().unwrap().hlc;
    let second = device.send_message(sync_request(after)).await.unwrap();
    let NetworkMessage::SyncResponse(second) = second else {
        panic!("{second:?}")
    };
    assert_eq!(second.entries, vec![entry(3)]);
    assert!(!second.has_more);

    let info = device
        .send_message(NetworkMessage::LibraryRequest(LibraryRequest {
            library_id: LIBRARY,
        }))
        .await
        .unwrap();
    let NetworkMessage::LibraryAnnounce(info) = info else {
        panic!("{info:?}")
    };
    assert_eq!(info.libraries.len(), 1);
    assert_eq!(info.libraries[0].entry_count, 3);

    // The handler's own error reply reaches the requester as a typed error.
    let missing = device
        .send_message(NetworkMessage::LibraryRequest(LibraryRequest {
            library_id: Uuid::from_u128(1),
        }))
        .await;
    assert!(
        matches!(
            missing,
            Err(NetworkError::Rejected {
                code: ErrorCode::NotFound,
                ..
            })
        ),
        "{missing:?}"
    );

    // The handler was told who asked: the authenticated phone, each time.
    assert_eq!(*library.askers.lock().unwrap(), vec![phone.node_id(); 4]);
    // Requests the app answered are not also events.
    let event = event_within(&mut laptop_events, Duration::from_millis(200), |e| {
        matches!(e, NetworkEvent::MessageReceived { .. })
    })
    .await;
    assert!(event.is_none(), "{event:?}");

    // Both ways: the phone answers the laptop too once it has a handler.
    phone.set_request_handler(Library::default());
    let reply = laptop
        .device(phone.node_id())
        .unwrap()
        .send_message(sync_request(Hlc::ZERO))
        .await
        .unwrap();
    assert!(
        matches!(reply, NetworkMessage::SyncResponse(_)),
        "{reply:?}"
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_handler_a_request_is_unsupported_and_an_announcement_still_acked() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Duration::from_secs(10)).await;
    let device = phone.device(laptop.node_id()).unwrap();
    for request in [
        sync_request(Hlc::ZERO),
        NetworkMessage::LibraryRequest(LibraryRequest {
            library_id: LIBRARY,
        }),
    ] {
        let answer = device.send_message(request).await;
        match answer {
            Err(NetworkError::Rejected { code, message, .. }) => {
                assert_eq!(code, ErrorCode::Unsupported);
                assert!(message.contains("does not answer"), "{message}");
            }
            other => panic!("not a typed refusal: {other:?}"),
        }
    }
    let announce = NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: Vec::new(),
    });
    assert_eq!(
        device.send_message(announce).await.unwrap(),
        NetworkMessage::Ack
    );
    // An answer is not something to send as a request.
    let misuse = device.send_message(NetworkMessage::Ack).await;
    assert!(matches!(misuse, Err(NetworkError::Usage(_))), "{misuse:?}");

    // A handler answering with the wrong kind is caught on its own side.
    laptop.set_request_handler(WrongKind);
    let wrong = device.send_message(sync_request(Hlc::ZERO)).await;
    assert!(
        matches!(
            wrong,
            Err(NetworkError::Rejected {
                code: ErrorCode::Internal,
                ..
            })
        ),
        "{wrong:?}"
    );
    // And removing the handler makes requests unsupported again.
    laptop.clear_request_handler();
    let again = device.send_message(sync_request(Hlc::ZERO)).await;
    assert!(
        matches!(
            again,
            Err(NetworkError::Rejected {
                code: ErrorCode::Unsupported,
                ..
            })
        ),
        "{again:?}"
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_times_the_request_out_and_the_link_carries_on() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Duration::from_millis(400)).await;
    laptop.set_request_handler(Slow);
    let mut events = phone.subscribe();
    let device = phone.device(laptop.node_id()).unwrap();
    let answer = device.send_message(sync_request(Hlc::ZERO)).await;
    assert!(
        matches!(answer, Err(NetworkError::TimedOut { after, .. }) if after == Duration::from_millis(400)),
        "{answer:?}"
    );
    // The handler runs on its own task: the link still answers at once meanwhile.
    device.ping().await.unwrap();
    // The timeout made the requester probe the link; the peer answered, so the link stays
    // (a probe left unanswered would close it once its 400 ms are up).
    let closed = event_within(&mut events, Duration::from_millis(600), |event| {
        matches!(event, NetworkEvent::Disconnected { .. })
    })
    .await;
    assert!(
        closed.is_none(),
        "a slow answer is not a dead link: {closed:?}"
    );
    device.ping().await.unwrap();
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_over_its_message_rate_is_answered_busy_and_others_are_not_held_up() {
    let lab = Lab::new();
    let start = |name: &'static str, rate: Option<MessageRate>| {
        let mut config = lab.config(name);
        config.loopback_discovery = None;
        config.message_rate = rate;
        NetworkingService::start(config)
    };
    // The laptop takes 5 messages at once from each device, then 1 a second.
    let rate = MessageRate {
        per_second: NonZeroU32::MIN,
        burst: NonZeroU32::new(5).unwrap(),
    };
    let laptop = start("laptop", Some(rate)).await.unwrap();
    let phone = start("phone", None).await.unwrap();
    let tablet = start("tablet", None).await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    pair_by_ticket(&laptop, &tablet).await;
    laptop.set_request_handler(Library::default());
    let device = phone.device(laptop.node_id()).unwrap();

    let started = std::time::Instant::now();
    // All at once (futures_buffered's join_all, through n0-future).
    let answers =
        n0_future::join_all((0..20).map(|_| device.send_message(sync_request(Hlc::ZERO)))).await;
    let refilled = started.elapsed().as_secs() + 1;
    let answered = answers.iter().filter(|a| a.is_ok()).count();
    let busy = answers
        .iter()
        .filter(|a| {
            matches!(a, Err(NetworkError::Rejected { code: ErrorCode::Busy, message, .. })
                if message.contains("message rate"))
        })
        .count();
    assert_eq!(answered + busy, 20, "{answers:?}");
    // The burst, less what the link itself sent on connecting (a name update, say), and
    // what a second refills.
    assert!(
        (1..=5 + usize::try_from(refilled).unwrap()).contains(&answered),
        "{answered} answered in {:?}",
        started.elapsed()
    );
    // A text over the rate is refused the same way, not shown.
    let text = device.send_text("over the rate").await;
    assert!(
        matches!(
            text,
            Err(NetworkError::Rejected {
                code: ErrorCode::Busy,
                ..
            })
        ),
        "{text:?}"
    );
    // The tablet has a bucket of its own.
    let tablet_device = tablet.device(laptop.node_id()).unwrap();
    for _ in 0..3 {
        tablet_device
            .send_message(sync_request(Hlc::ZERO))
            .await
            .unwrap();
    }
    for service in [laptop, phone, tablet] {
        service.shutdown().await;
    }
}
