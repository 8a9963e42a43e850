//! A device's name follows its renames: the devices it is paired with are told in a signed
//! update, at once when connected and on the next connection when away; a name the person
//! gave a device here wins over the device's own later renames.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::time::Duration;

use common::{Lab, event_within};
use tether::{DeviceName, NetworkEvent, NetworkMessage, NetworkingService, NodeId, Ping};

fn name_of(service: &NetworkingService, node: NodeId) -> String {
    let device = service
        .paired_devices()
        .into_iter()
        .find(|d| d.node_id == node);
    device.unwrap().info.device_name.as_str().to_owned()
}

fn renamed(node: NodeId, to: &'static str) -> impl Fn(&NetworkEvent) -> bool {
    move |event| {
        matches!(event, NetworkEvent::DeviceRenamed { node_id, name }
            if *node_id == node && name.as_str() == to)
    }
}

async fn ping(from: &NetworkingService, to: NodeId) {
    from.send_message(to, NetworkMessage::Ping(Ping { timestamp_ms: 1 }))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_reaches_connected_devices_at_once_and_away_ones_when_they_connect() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let phone = lab.start("phone").await;
    let tablet = lab.start("tablet").await;
    common::pair(&laptop, &phone).await;
    common::pair(&laptop, &tablet).await;
    let me = laptop.node_id();
    ping(&phone, me).await;
    tablet.shutdown().await;

    // The phone is connected: it hears at once.
    let mut phone_events = phone.subscribe();
    laptop
        .rename_self(&DeviceName::new("studio").unwrap())
        .unwrap();
    let heard = event_within(
        &mut phone_events,
        Duration::from_secs(5),
        renamed(me, "studio"),
    )
    .await;
    assert!(heard.is_some(), "the connected phone was not told");
    assert_eq!(name_of(&phone, me), "studio");

    // The tablet was away: it hears on its next connection, and keeps it across a restart.
    let tablet = NetworkingService::start(lab.config("tablet"))
        .await
        .unwrap();
    assert_eq!(name_of(&tablet, me), "laptop", "the name it paired with");
    let mut tablet_events = tablet.subscribe();
    ping(&tablet, me).await;
    let heard = event_within(
        &mut tablet_events,
        Duration::from_secs(5),
        renamed(me, "studio"),
    )
    .await;
    assert!(heard.is_some(), "the tablet was not told when it connected");
    tablet.shutdown().await;
    let tablet = NetworkingService::start(lab.config("tablet"))
        .await
        .unwrap();
    assert_eq!(name_of(&tablet, me), "studio");
    ping(&tablet, me).await;

    // The phone's person names the laptop their way: the laptop's next rename is taken (its
    // stamp) but does not change what the phone shows.
    phone
        .rename_device(me, DeviceName::new("work laptop").unwrap())
        .unwrap();
    laptop
        .rename_self(&DeviceName::new("office").unwrap())
        .unwrap();
    let phone_id = phone.node_id();
    let acked = async {
        loop {
            let told = laptop
                .paired_devices()
                .into_iter()
                .find(|d| d.node_id == phone_id)
                .unwrap()
                .names
                .told_ms;
            if told > 0 && name_of(&tablet, me) == "office" {
                // Both were told; the tablet shows it (it did not rename the laptop).
                return told;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), acked)
        .await
        .expect("the rename was not acknowledged");
    assert_eq!(name_of(&phone, me), "work laptop");
    let stored = phone
        .paired_devices()
        .into_iter()
        .find(|d| d.node_id == me)
        .unwrap();
    assert!(stored.names.named_here);
    assert!(stored.names.changed_ms > 0);
    tablet.shutdown().await;
    phone.shutdown().await;
    laptop.shutdown().await;
}
