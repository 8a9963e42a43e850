//! One hub paired with a hundred spokes, every spoke its own service (own key, registry,
//! endpoint on 127.0.0.1) in this one process; all spokes ping the hub at once. The timings
//! are printed with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::print_stdout)]

use crate::common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Lab, pair_by_ticket};
use tether::NetworkEvent;

const SPOKES: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_serves_a_hundred_paired_spokes_at_once() {
    let lab = Lab::new();
    let hub = lab.start_undiscovered("hub").await;

    let started = Instant::now();
    let mut spokes = Vec::new();
    for i in 0..SPOKES {
        spokes.push(lab.start_undiscovered(&format!("spoke{i:03}")).await);
    }
    let start_time = started.elapsed();

    let started = Instant::now();
    for spoke in &spokes {
        pair_by_ticket(&hub, spoke).await;
    }
    let pairing_time = started.elapsed();
    assert_eq!(hub.paired_devices().len(), SPOKES);

    let mut events = hub.subscribe();
    let started = Instant::now();
    let mut pings = tokio::task::JoinSet::new();
    for spoke in &spokes {
        let device = spoke.device(hub.node_id()).unwrap();
        pings.spawn(async move { device.ping().await });
    }
    let mut answered = 0;
    while let Some(ping) = pings.join_next().await {
        ping.unwrap().unwrap();
        answered += 1;
    }
    let first_round = started.elapsed();
    assert_eq!(answered, SPOKES);

    // The hub holds one live connection per spoke.
    let mut connected = HashSet::new();
    while connected.len() < SPOKES {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(NetworkEvent::Connected { node_id, .. })) => {
                assert!(
                    connected.insert(node_id),
                    "a second Connected for {node_id}"
                );
            }
            Ok(Ok(_)) => {}
            other => panic!("{} of {SPOKES} connected: {other:?}", connected.len()),
        }
    }
    for spoke in &spokes {
        assert!(hub.connection_info(spoke.node_id()).is_some());
    }

    // Again, over the pooled connections.
    let started = Instant::now();
    let mut pings = tokio::task::JoinSet::new();
    for spoke in &spokes {
        let device = spoke.device(hub.node_id()).unwrap();
        pings.spawn(async move { device.ping().await });
    }
    while let Some(ping) = pings.join_next().await {
        ping.unwrap().unwrap();
    }
    let second_round = started.elapsed();

    println!(
        "{SPOKES} spokes: started in {start_time:?}, paired one by one (ticket) in \
         {pairing_time:?} ({:?} each); all pinged the hub at once: {first_round:?} with \
         connect and session handshake, {second_round:?} over the pooled connections",
        pairing_time / u32::try_from(SPOKES).unwrap()
    );

    let mut stops = tokio::task::JoinSet::new();
    for spoke in spokes {
        stops.spawn(async move { spoke.shutdown().await });
    }
    while stops.join_next().await.is_some() {}
    hub.shutdown().await;
}
