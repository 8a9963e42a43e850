//! A service's life: what it leaves behind when it shuts down.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

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
