//! One handle per paired device: found by node id or by device id, and everything done to
//! the device through it (rename, block and unblock, unpair, send files).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::time::Duration;

use common::Lab;
use tether::{DeviceName, NetworkError, TransferOptions, TrustLevel};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_found_by_its_device_id_and_renamed_through_its_handle() {
    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    common::pair_by_ticket(&laptop, &phone).await;

    let phone_id = phone.device_info().device_id;
    let handle = laptop.device_by_id(phone_id).unwrap();
    assert_eq!(handle.node_id(), phone.node_id());
    assert_eq!(handle.device_id(), Some(phone_id));
    handle.rename(DeviceName::new("pocket").unwrap()).unwrap();
    assert_eq!(handle.info().unwrap().info.device_name.as_str(), "pocket");

    let stranger: tether::DeviceId = "00000000-0000-4000-8000-000000000002".parse().unwrap();
    assert!(matches!(
        laptop.device_by_id(stranger),
        Err(NetworkError::UnknownDevice(_))
    ));
    // Its own id is not a paired device either.
    assert!(laptop.device_by_id(laptop.device_info().device_id).is_err());
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_device_is_cut_off_both_ways_until_unblocked() {
    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    common::pair_by_ticket(&laptop, &phone).await;
    let on_laptop = laptop.device(phone.node_id()).unwrap();
    let on_phone = phone.device(laptop.node_id()).unwrap();
    on_phone.ping().await.unwrap();

    on_laptop.block().unwrap();
    assert_eq!(on_laptop.info().unwrap().trust, TrustLevel::Blocked);
    // The live link is closed and no new one is let in, in either direction.
    assert!(
        on_phone.ping().await.is_err(),
        "the phone still reaches the laptop"
    );
    assert!(
        on_laptop.ping().await.is_err(),
        "the laptop still reaches the phone"
    );

    // Still paired: the handle works to unblock it, and then the phone gets through again.
    let again = laptop.device(phone.node_id()).unwrap();
    again.unblock().unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while on_phone.ping().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the phone did not get through after the unblock");
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_through_the_handle_and_unpairing_through_it_ends_it() {
    let lab = Lab::new();
    let inbox = lab.data_dir("inbox");
    let (laptop, phone) = lab.sender_and_receiver(&inbox).await;
    let source = lab.data_dir("note.txt");
    std::fs::write(&source, b"through the handle").unwrap();

    let handle = laptop.device(phone.node_id()).unwrap();
    let report = handle
        .send_files(std::slice::from_ref(&source), TransferOptions::default())
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(
        std::fs::read(inbox.join("note.txt")).unwrap(),
        b"through the handle"
    );

    handle.unpair().unwrap();
    assert!(handle.info().is_none());
    assert!(matches!(
        laptop.device(phone.node_id()),
        Err(NetworkError::DeviceNotPaired(_))
    ));
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_connected_device_reports_its_connection_closed() {
    use tether::{ConnectionState, NetworkEvent, StreamExt};

    let lab = Lab::new();
    let laptop = lab.start_undiscovered("laptop").await;
    let phone = lab.start_undiscovered("phone").await;
    common::pair_by_ticket(&laptop, &phone).await;
    let on_laptop = laptop.device(phone.node_id()).unwrap();
    on_laptop.ping().await.unwrap();
    let mut events = laptop.events();

    on_laptop.block().unwrap();
    let (mut disconnected, mut closed) = (false, false);
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            match event {
                NetworkEvent::Disconnected { node_id, .. } if node_id == phone.node_id() => {
                    disconnected = true;
                }
                NetworkEvent::ConnectionStateChanged {
                    node_id,
                    state: ConnectionState::Closed,
                } if node_id == phone.node_id() => closed = true,
                _ => {}
            }
            if disconnected && closed {
                break;
            }
        }
    })
    .await;
    assert!(disconnected, "no Disconnected after the block");
    assert!(
        closed,
        "no ConnectionStateChanged {{ Closed }} after the block"
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}
