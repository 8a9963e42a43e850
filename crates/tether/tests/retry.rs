//! Requests outlive their link: a request whose connection dies before its answer is sent
//! again on a new connection within its budget, and the receiver answers the repeat once, from
//! its answer cache, without running the app's handler again. A device that stays down fails
//! the request when the budget is over, not sooner.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{Lab, pair_by_ticket};
use tether::{
    ErrorReply, Hlc, NetworkError, NetworkMessage, NetworkingService, PairedPeer, RequestHandler,
    SyncRequest, SyncResponse, Uuid,
};
use tokio::sync::mpsc;

const LIBRARY: Uuid = Uuid::from_u128(0x21);

/// Answers a `SyncRequest`, and the first time cuts the link after computing its answer and
/// before the answer goes out. A second run would answer `has_more: true`.
#[derive(Debug, Clone, Default)]
struct CutAfterAnswer {
    calls: Arc<AtomicUsize>,
    /// The receiving service itself, to close the link with.
    service: Arc<OnceLock<NetworkingService>>,
}

impl RequestHandler for CutAfterAnswer {
    async fn answer(
        &self,
        peer: PairedPeer,
        request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        let calls = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let NetworkMessage::SyncRequest(request) = request else {
            panic!("the service passed on {request:?}")
        };
        let reply = NetworkMessage::SyncResponse(SyncResponse {
            library_id: request.library_id,
            entries: Vec::new(),
            has_more: calls > 1,
        });
        if calls == 1 {
            let service = self.service.get().expect("the service is set");
            assert!(service.disconnect(peer.node_id), "no link to cut");
        }
        Ok(reply)
    }
}

/// Says it was asked, then never answers.
#[derive(Debug)]
struct Stuck(mpsc::UnboundedSender<()>);

impl RequestHandler for Stuck {
    async fn answer(
        &self,
        _peer: PairedPeer,
        _request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        let _ = self.0.send(());
        std::future::pending().await
    }
}

async fn two(lab: &Lab, request_timeout: Duration) -> (NetworkingService, NetworkingService) {
    let start = |name: &'static str| {
        let mut config = lab.config(name);
        config.loopback_discovery = None;
        config.request_timeout = request_timeout;
        config.connect_timeout = Duration::from_millis(500);
        NetworkingService::start(config)
    };
    let laptop = start("laptop").await.unwrap();
    let phone = start("phone").await.unwrap();
    pair_by_ticket(&laptop, &phone).await;
    (laptop, phone)
}

fn sync_request() -> NetworkMessage {
    NetworkMessage::SyncRequest(SyncRequest {
        library_id: LIBRARY,
        after: Hlc::ZERO,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_link_is_cut_before_the_answer_is_answered_once() {
    let lab = Lab::new();
    let (laptop, phone) = two(&lab, Duration::from_secs(10)).await;
    let handler = CutAfterAnswer::default();
    handler.service.set(laptop.clone()).unwrap();
    laptop.set_request_handler(handler.clone());
    let device = phone.device(laptop.node_id()).unwrap();

    let answer = device.send_message(sync_request()).await;
    let answer = answer.unwrap_or_else(|error| panic!("the send failed: {error}"));
    assert_eq!(
        answer,
        NetworkMessage::SyncResponse(SyncResponse {
            library_id: LIBRARY,
            entries: Vec::new(),
            has_more: false,
        }),
        "not the first run's answer"
    );
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        1,
        "the handler ran twice"
    );
    // The repeat was answered from the receiver's cache.
    assert_eq!(laptop.diagnostics().repeats_answered, 1);
    // A new request is a new request: the handler runs for it.
    device.send_message(sync_request()).await.unwrap();
    assert_eq!(handler.calls.load(Ordering::SeqCst), 2);
    assert_eq!(laptop.diagnostics().repeats_answered, 1);

    phone.shutdown().await;
    laptop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_to_a_device_that_stays_down_fails_after_the_budget() {
    let lab = Lab::new();
    let budget = Duration::from_secs(2);
    let (laptop, phone) = two(&lab, budget).await;
    let (asked, mut was_asked) = mpsc::unbounded_channel();
    laptop.set_request_handler(Stuck(asked));
    let device = phone.device(laptop.node_id()).unwrap();
    device.ping().await.unwrap();

    let started = Instant::now();
    let send = tokio::spawn(async move { device.send_message(sync_request()).await });
    was_asked.recv().await.unwrap();
    // The device goes away with the request on it, and does not come back.
    laptop.shutdown().await;
    let failed = send.await.unwrap();
    let took = started.elapsed();
    assert!(
        matches!(failed, Err(NetworkError::ConnectionFailed { .. })),
        "{failed:?}"
    );
    assert!(took >= budget, "gave up after {took:?}, before the budget");
    assert!(took < budget + Duration::from_secs(2), "took {took:?}");
    phone.shutdown().await;
}
