//! The builder: the device id the app gives, protocols served from the first packet, and
//! events from before the service starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Lab;
use common::protocols::{Echo, Idle};
use n0_future::StreamExt;
use tether::{Builder, DeviceId, NetworkError, NetworkEvent, NetworkingService};

fn builder(lab: &Lab, name: &str) -> Builder {
    let mut config = lab.config(name);
    config.loopback_discovery = None;
    Builder::from_config(config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_given_to_the_builder_is_served_and_hears_the_shutdown() {
    let lab = Lab::new();
    let echo = Echo::default();
    let shutdowns = Arc::clone(&echo.shutdowns);
    let boxed: Box<dyn tether::NetworkProtocol> = Box::new(echo);
    let server = builder(&lab, "server")
        .protocol(boxed)
        .spawn()
        .await
        .unwrap();
    let client = builder(&lab, "client").spawn().await.unwrap();
    common::pair_by_ticket(&server, &client).await;

    let connection = client
        .connect_protocol(server.node_id(), b"test/echo/1")
        .await
        .unwrap();
    common::protocols::echo_hello(&connection).await;
    assert_eq!(shutdowns.load(Ordering::SeqCst), 0);
    server.shutdown().await;
    assert_eq!(shutdowns.load(Ordering::SeqCst), 1);
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_and_repeated_alpns_are_refused_before_anything_opens() {
    let lab = Lab::new();
    let reserved = builder(&lab, "a")
        .protocol(Idle(b"tether/sync/1"))
        .spawn()
        .await;
    assert!(
        matches!(&reserved, Err(NetworkError::Usage(m)) if m.contains("reserved")),
        "{reserved:?}"
    );
    let twice = builder(&lab, "b")
        .protocol(Idle(b"app/x/1"))
        .protocol(Idle(b"app/x/1"))
        .spawn()
        .await;
    assert!(
        matches!(&twice, Err(NetworkError::Usage(m)) if m.contains("two protocols")),
        "{twice:?}"
    );
    assert!(
        !lab.data_dir("a").exists() && !lab.data_dir("b").exists(),
        "nothing was written for a refused builder"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_device_id_is_taken_kept_and_a_different_one_refused() {
    let lab = Lab::new();
    let id: DeviceId = "7f0c2a4e-1b9d-4c3e-8a6f-5d2e9b1c0a47".parse().unwrap();
    let service = builder(&lab, "laptop").device_id(id).spawn().await.unwrap();
    assert_eq!(service.device_info().device_id, id);
    service.shutdown().await;

    // The same id opens it again; no id keeps the stored one.
    let again = builder(&lab, "laptop").device_id(id).spawn().await.unwrap();
    assert_eq!(again.device_info().device_id, id);
    again.shutdown().await;
    let again = builder(&lab, "laptop").spawn().await.unwrap();
    assert_eq!(again.device_info().device_id, id);
    again.shutdown().await;

    let other: DeviceId = "00000000-0000-4000-8000-000000000001".parse().unwrap();
    let refused = builder(&lab, "laptop").device_id(other).spawn().await;
    match refused {
        Err(NetworkError::DeviceIdMismatch { stored, given }) => {
            assert_eq!((stored, given), (id, other));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_taken_from_the_builder_include_what_happened_while_it_started() {
    let lab = Lab::new();
    // The laptop announces itself in the discovery directory before the phone exists, so the
    // phone finds it while it starts, before `spawn` returns.
    let laptop = lab.start("laptop").await;
    let builder = Builder::from_config(lab.config("phone"));
    let mut events = builder.events();
    let phone = builder.spawn().await.unwrap();
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let NetworkEvent::DeviceDiscovered { node_id, .. } = event
                && node_id == laptop.node_id()
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "the phone's events never said it found the laptop"
    );
    phone.shutdown().await;
    laptop.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_local_only_keeps_what_was_set_before() {
    let lab = Lab::new();
    let name = tether::DeviceName::new("kept").unwrap();
    let builder = NetworkingService::builder(lab.data_dir("x"))
        .device_name(name.clone())
        .receive_dir(lab.data_dir("inbox"))
        .local_only();
    let config = builder.config();
    assert_eq!(config.device_name.as_ref(), Some(&name));
    assert_eq!(
        config.receive_dir.as_deref(),
        Some(lab.data_dir("inbox").as_path())
    );
    assert!(config.loopback_discovery.is_some());
}
