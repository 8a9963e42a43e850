//! Unpairing: the live connection closes at once (the time it takes is printed with
//! `--nocapture`), and the revoked device stays refused, also
//! after the revoking service restarts.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::print_stdout)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Lab, connected_to, disconnected_from, event_within, next_event, pair};
use tether::{NetworkError, NetworkEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpairing_closes_the_live_connection_within_a_second() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    pair(&laptop, &phone).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();
    phone
        .device(laptop.node_id())
        .unwrap()
        .ping()
        .await
        .unwrap();
    next_event(&mut laptop_events, connected_to(phone.node_id())).await;
    assert!(laptop.connection_info(phone.node_id()).is_some());

    // Measured, not asserted (a loaded machine must not fail the test): the time from
    // `unpair` on the laptop to the phone seeing its connection closed. The issue asks for
    // under a second; the figure is printed for the notes.
    let started = Instant::now();
    laptop.unpair(phone.node_id()).unwrap();
    let closed = event_within(
        &mut phone_events,
        Duration::from_secs(10),
        disconnected_from(laptop.node_id()),
    )
    .await;
    let took = started.elapsed();
    assert!(closed.is_some(), "the phone still thinks it is connected");
    println!("figures: revocation closed the peer's live connection after {took:?}");
    next_event(
        &mut laptop_events,
        |e| matches!(e, NetworkEvent::Unpaired { node_id } if *node_id == phone.node_id()),
    )
    .await;
    assert!(laptop.connection_info(phone.node_id()).is_none());
    assert!(laptop.paired_devices().is_empty());
    let not_paired = laptop.device(phone.node_id());
    assert!(
        matches!(not_paired, Err(NetworkError::DeviceNotPaired(_))),
        "{not_paired:?}"
    );
    common::checked_chain(not_paired.as_ref().unwrap_err());

    // The phone still holds its side of the pairing; the laptop refuses it.
    let refused = phone.device(laptop.node_id()).unwrap().ping().await;
    assert!(
        matches!(refused, Err(NetworkError::Refused { .. })),
        "{refused:?}"
    );
    common::checked_chain(refused.as_ref().unwrap_err());
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_stays_refused_after_a_restart() {
    let lab = Lab::new();
    let phone = lab.start("phone").await;
    let laptop_id = {
        let laptop = lab.start("laptop").await;
        pair(&laptop, &phone).await;
        phone
            .device(laptop.node_id())
            .unwrap()
            .ping()
            .await
            .unwrap();
        laptop.unpair(phone.node_id()).unwrap();
        let id = laptop.node_id();
        laptop.shutdown().await;
        id
    };
    let laptop = lab.start("laptop").await;
    assert_eq!(laptop.node_id(), laptop_id);
    assert!(laptop.paired_devices().is_empty());
    let mut laptop_events = laptop.subscribe();

    // The phone learns the restarted laptop's new port through discovery (within a
    // heartbeat or two) and dials again; until then the dial may find nobody at the old port.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match phone.device(laptop_id).unwrap().ping().await {
            Err(NetworkError::DeviceOffline(_) | NetworkError::ConnectionFailed { .. })
                if tokio::time::Instant::now() < deadline => {}
            other => break other,
        }
    };
    if let Err(error) = &refused {
        common::checked_chain(error);
    }
    match refused {
        Err(NetworkError::Refused { code, .. }) => assert_eq!(code, tether::gate::CLOSE_REVOKED),
        other => panic!("the revoked phone was not refused: {other:?}"),
    }
    let connected = event_within(
        &mut laptop_events,
        Duration::from_millis(200),
        connected_to(phone.node_id()),
    )
    .await;
    assert!(connected.is_none(), "{connected:?}");
    laptop.shutdown().await;
    phone.shutdown().await;
}
