//! The message encoding each connection's session handshake chose: binary when both devices
//! speak it, JSON when one of them is forced to JSON only (as a build without the binary
//! encoding), whichever side dials. Pings and sync pages cross either way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use crate::common;

use std::time::Duration;

use common::{Lab, pair_by_ticket};
use tether::{
    Encoding, ErrorReply, Hlc, NetworkMessage, NetworkingService, PairedPeer, RequestHandler,
    SyncEntry, SyncRequest, SyncResponse, Uuid,
};

/// Answers every `SyncRequest` with a page of 100 entries.
#[derive(Debug)]
struct Pages;

fn page(library_id: Uuid) -> SyncResponse {
    SyncResponse {
        library_id,
        entries: (0..100u64)
            .map(|n| SyncEntry {
                entry_id: Uuid::from_u128(u128::from(n) + 1),
                path: format!("photos/2026/img_{n:04}.jpg"),
                size: n * 1000,
                hash: Some(tether::ContentHash([n as u8; 32])),
                hlc: Hlc {
                    physical_ms: 1_780_000_000_000 + n,
                    logical: 0,
                    node: 7,
                },
                deleted: n % 10 == 0,
            })
            .collect(),
        has_more: false,
    }
}

impl RequestHandler for Pages {
    async fn answer(
        &self,
        _peer: PairedPeer,
        request: NetworkMessage,
    ) -> Result<NetworkMessage, ErrorReply> {
        match request {
            NetworkMessage::SyncRequest(SyncRequest { library_id, .. }) => {
                Ok(NetworkMessage::SyncResponse(page(library_id)))
            }
            other => panic!("the service passed on {other:?}"),
        }
    }
}

async fn start(lab: &Lab, name: &str, binary: bool) -> NetworkingService {
    let mut config = lab.config(name);
    config.loopback_discovery = None;
    config.binary_messages = binary;
    let service = NetworkingService::start(config).await.unwrap();
    service.set_request_handler(Pages);
    service
}

/// `from` pings and asks `to` for a sync page, then both report the connection's encoding.
async fn exchange(from: &NetworkingService, to: &NetworkingService) -> [Option<Encoding>; 2] {
    let device = from.device(to.node_id()).unwrap();
    device.ping().await.unwrap();
    let library = Uuid::from_u128(22);
    let answer = device
        .send_message(NetworkMessage::SyncRequest(SyncRequest {
            library_id: library,
            after: Hlc::ZERO,
        }))
        .await
        .unwrap();
    assert_eq!(answer, NetworkMessage::SyncResponse(page(library)));
    // The other side pools the link once it answered; give it a moment to be there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while to.message_encoding(from.node_id()).is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no link on the far side"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    [
        from.message_encoding(to.node_id()),
        to.message_encoding(from.node_id()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_choose_binary_when_both_can() {
    let lab = Lab::new();
    let laptop = start(&lab, "laptop", true).await;
    let phone = start(&lab, "phone", true).await;
    pair_by_ticket(&laptop, &phone).await;
    let both = Some(Encoding::Binary);
    assert_eq!(exchange(&laptop, &phone).await, [both, both]);
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_only_device_still_talks_to_a_binary_one_whichever_dials() {
    let lab = Lab::new();
    let laptop = start(&lab, "laptop", true).await;
    let old = start(&lab, "old-phone", false).await;
    pair_by_ticket(&laptop, &old).await;
    let json = Some(Encoding::Json);
    // The JSON-only device accepts: its hello offers nothing, as an older build's.
    assert_eq!(exchange(&laptop, &old).await, [json, json]);

    // And dials: it chooses nothing from the binary device's offer.
    assert!(laptop.disconnect(old.node_id()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while old.message_encoding(laptop.node_id()).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the link stayed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(exchange(&old, &laptop).await, [json, json]);
    laptop.shutdown().await;
    old.shutdown().await;
}
