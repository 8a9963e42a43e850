//! An app's own discovery, with no built-in one: an in-memory notice board the test writes.
//! Pairing by word code finds the initiator's slot through it, and paired devices reach each
//! other through the addresses it carries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::{Lab, next_event};
use n0_future::StreamExt;
use tether::{
    DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream, NetworkEvent, NetworkingService,
    NodeId,
};
use tokio::sync::broadcast;

/// What the devices of one test announce, shared in memory.
#[derive(Debug, Clone)]
struct Board {
    news: broadcast::Sender<DiscoveredDevice>,
    posted: Arc<Mutex<HashMap<NodeId, DiscoveredDevice>>>,
}

impl Board {
    fn new() -> Self {
        Self {
            news: broadcast::channel(64).0,
            posted: Arc::default(),
        }
    }

    /// One device's view of the board: it hears everyone but itself.
    fn discovery(&self) -> BoardDiscovery {
        BoardDiscovery {
            board: self.clone(),
            me: Arc::default(),
        }
    }
}

#[derive(Debug)]
struct BoardDiscovery {
    board: Board,
    me: Arc<Mutex<Option<NodeId>>>,
}

impl Discovery for BoardDiscovery {
    fn name(&self) -> &'static str {
        "board"
    }

    fn announce(&self, device: DiscoveredDevice) {
        *self.me.lock().unwrap() = Some(device.node_id);
        self.board
            .posted
            .lock()
            .unwrap()
            .insert(device.node_id, device.clone());
        let _ = self.board.news.send(device);
    }

    fn subscribe(&self) -> DiscoveryStream {
        let posted: Vec<_> = self
            .board
            .posted
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        let news = self.board.news.subscribe();
        let me = Arc::clone(&self.me);
        let later = n0_future::stream::unfold(news, |mut news| async move {
            loop {
                match news.recv().await {
                    Ok(device) => return Some((device, news)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Box::pin(
            n0_future::stream::iter(posted)
                .chain(later)
                .filter(move |device| Some(device.node_id) != *me.lock().unwrap())
                .map(DiscoveryEvent::Found),
        )
    }
}

async fn start(lab: &Lab, name: &str, board: &Board) -> NetworkingService {
    let mut config = lab.config(name).with_discovery(board.discovery());
    // No built-in discovery: the app's board is the only one (local-only has no mDNS).
    config.loopback_discovery = None;
    NetworkingService::start(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_own_discovery_alone_finds_the_code_and_the_device() {
    let lab = Lab::new();
    let board = Board::new();
    // The phone listens before the laptop announces itself: a device found while the
    // service was starting is not announced again, so the other order would race.
    let phone = start(&lab, "phone", &board).await;
    let mut events = phone.subscribe();
    let laptop = start(&lab, "laptop", &board).await;
    let found = next_event(&mut events, |e| {
        matches!(e, NetworkEvent::DeviceDiscovered { node_id, .. } if *node_id == laptop.node_id())
    })
    .await;
    assert!(
        matches!(&found, NetworkEvent::DeviceDiscovered { source, .. } if *source == "board"),
        "{found:?}"
    );

    // The word code's slot is found on the board, nowhere else.
    let (on_laptop, on_phone) = common::pair(&laptop, &phone).await;
    assert_eq!(on_laptop.device.public_key, phone.node_id());
    assert_eq!(on_phone.device.public_key, laptop.node_id());

    // Paired, they talk over the addresses the board carries.
    let rtt = phone
        .device(laptop.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    assert!(rtt < std::time::Duration::from_secs(5));
    laptop
        .device(phone.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    laptop.shutdown().await;
    phone.shutdown().await;
}
