//! A service's life: what it leaves behind when it shuts down.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Lab;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_service_stops_announcing_itself() {
    let lab = Lab::new();
    let service = lab.start("gone").await;
    let record = lab
        .discovery_dir()
        .join(format!("{}.json", service.node_id()));
    assert!(record.exists(), "the running service announces itself");
    service.shutdown().await;
    // The announcement goes with the service (a stale one would send other devices to a dead
    // address); the discovery's heartbeat is 250 ms.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while record.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} is still announced after shutdown",
            record.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shut_down_service_lets_its_data_directory_open_again_while_handles_live() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    common::pair(&laptop, &phone).await;
    // An app keeps a clone and a device handle around across the restart.
    let kept = laptop.clone();
    let handle = laptop.device(phone.node_id()).unwrap();
    laptop.shutdown().await;

    let again = tether::NetworkingService::start(lab.config("laptop"))
        .await
        .expect("the data directory opens again after shutdown");
    assert_eq!(again.node_id(), kept.node_id());
    assert_eq!(again.paired_devices().len(), 1, "still paired");
    drop(handle);
    again.shutdown().await;
    phone.shutdown().await;
}

/// A protocol whose handler shuts its own service down, then says so.
#[derive(Debug, Default, Clone)]
struct ShutsDown {
    service: Arc<Mutex<Option<tether::NetworkingService>>>,
    done: Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>,
}

#[tether::async_trait]
impl tether::NetworkProtocol for ShutsDown {
    fn alpn(&self) -> &'static [u8] {
        b"test/shutdown/1"
    }

    async fn accept(
        &self,
        _connection: tether::Connection,
        _peer: tether::PairedPeer,
    ) -> Result<(), tether::ProtocolError> {
        // Taken, not cloned: the service must not keep itself alive through its protocol.
        let service = self.service.lock().unwrap().take();
        if let Some(service) = service {
            service.shutdown().await;
        }
        if let Some(done) = self.done.lock().unwrap().take() {
            let _ = done.send(());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_may_shut_its_own_service_down() {
    let lab = Lab::new();
    let server = lab.start_undiscovered("server").await;
    let client = lab.start_undiscovered("client").await;
    common::pair_by_ticket(&server, &client).await;
    let protocol = ShutsDown::default();
    let (done, stopped) = tokio::sync::oneshot::channel();
    *protocol.service.lock().unwrap() = Some(server.clone());
    *protocol.done.lock().unwrap() = Some(done);
    server.register_protocol(protocol.clone()).unwrap();

    let connection = client
        .connect_protocol(server.node_id(), b"test/shutdown/1")
        .await
        .unwrap();
    // The handler's own task is neither cancelled nor waited for by the shutdown it calls.
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the handler's shutdown did not return")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), connection.closed())
        .await
        .expect("the server's endpoint is still open");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_protocol_serves_and_hears_the_shutdown_once() {
    let lab = Lab::new();
    let server = lab.start_undiscovered("server").await;
    let client = lab.start_undiscovered("client").await;
    common::pair_by_ticket(&server, &client).await;
    let echo = common::protocols::Echo::default();
    let shutdowns = Arc::clone(&echo.shutdowns);
    // The seed's own line: handlers of any type, boxed.
    let boxed: Box<dyn tether::NetworkProtocol> = Box::new(echo);
    server.register_protocol(boxed).unwrap();

    let connection = client
        .connect_protocol(server.node_id(), b"test/echo/1")
        .await
        .unwrap();
    common::protocols::echo_hello(&connection).await;
    assert_eq!(shutdowns.load(std::sync::atomic::Ordering::SeqCst), 0);

    server.shutdown().await;
    assert_eq!(shutdowns.load(std::sync::atomic::Ordering::SeqCst), 1);
    server.shutdown().await;
    assert_eq!(
        shutdowns.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a second shutdown calls the hook again"
    );
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_announcing_itself_is_reported_lost() {
    use n0_future::StreamExt;

    let lab = Lab::new();
    let phone = lab.start("phone").await;
    let mut events = phone.events();
    let laptop = lab.start("laptop").await;
    let laptop_id = laptop.node_id();
    let mut laptop = Some(laptop);
    let mut found = false;
    let lost = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(event) = events.next().await {
            match event {
                tether::NetworkEvent::DeviceDiscovered { node_id, .. } if node_id == laptop_id => {
                    found = true;
                    if let Some(laptop) = laptop.take() {
                        laptop.shutdown().await;
                    }
                }
                tether::NetworkEvent::DeviceLost { node_id } if node_id == laptop_id => {
                    return true;
                }
                _ => {}
            }
        }
        false
    })
    .await;
    assert!(found, "the laptop was never found");
    assert_eq!(lost, Ok(true), "the laptop was never reported lost");
    phone.shutdown().await;
}

/// Dropping every handle of a running service, without `shutdown`, stops it: its endpoint
/// closes (a paired peer's connection to it ends at once, not at its next keep-alive), and its
/// tasks let go of the data directory, so a new service opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_service_stops_without_shutdown() {
    let lab = Lab::new();
    let server = lab.start_undiscovered("server").await;
    let client = lab.start_undiscovered("client").await;
    common::pair_by_ticket(&server, &client).await;
    let server_id = server.node_id();
    let mut events = client.subscribe();
    client.device(server_id).unwrap().ping().await.unwrap();
    drop(server);

    let ended = common::event_within(
        &mut events,
        Duration::from_secs(10),
        common::disconnected_from(server_id),
    )
    .await;
    assert!(
        ended.is_some(),
        "the dropped service's connection stays open"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        match tether::NetworkingService::start(lab.config("server")).await {
            Ok(again) => break again,
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the dropped service still holds its data directory: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(again.node_id(), server_id);
    again.shutdown().await;
    client.shutdown().await;
}
