//! Two or more real services on 127.0.0.1, each in its own temporary data directory, finding
//! each other through a loopback discovery directory of the test's own.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub(crate) mod dns;
pub(crate) mod netns;
pub(crate) mod protocols;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether::{DeviceName, NetworkEvent, NetworkingConfig, NetworkingService, NodeId, PairedDevice};

pub(crate) struct Lab {
    pub(crate) root: tempfile::TempDir,
}

impl Lab {
    pub(crate) fn new() -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub(crate) fn discovery_dir(&self) -> PathBuf {
        self.root.path().join("discovery")
    }

    pub(crate) fn config(&self, name: &str) -> NetworkingConfig {
        let mut config = NetworkingConfig::local_only(self.root.path().join(name))
            .with_device_name(DeviceName::new(name).unwrap())
            .with_loopback_discovery(self.discovery_dir())
            .with_insecure_key_file();
        config.discovery_timeout = Duration::from_secs(5);
        config
    }

    pub(crate) async fn start(&self, name: &str) -> NetworkingService {
        NetworkingService::start(self.config(name)).await.unwrap()
    }

    /// A service found by ticket only: it neither announces nor scans the discovery directory.
    pub(crate) async fn start_undiscovered(&self, name: &str) -> NetworkingService {
        let mut config = self.config(name);
        config.loopback_discovery = None;
        NetworkingService::start(config).await.unwrap()
    }

    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    /// A sender ("laptop") and a receiver ("phone") that keeps what it receives in `inbox`
    /// (created if missing), paired by word code; the receiver marked the sender auto-accept.
    pub(crate) async fn sender_and_receiver(
        &self,
        inbox: &Path,
    ) -> (NetworkingService, NetworkingService) {
        let (sender, receiver) = self.unmarked_sender_and_receiver(inbox).await;
        receiver.set_auto_accept(sender.node_id(), true).unwrap();
        (sender, receiver)
    }

    /// Like [`Self::sender_and_receiver`], without the auto-accept mark.
    pub(crate) async fn unmarked_sender_and_receiver(
        &self,
        inbox: &Path,
    ) -> (NetworkingService, NetworkingService) {
        std::fs::create_dir_all(inbox).unwrap();
        let sender = self.start("laptop").await;
        let receiver = NetworkingService::start(self.config("phone").with_receive_dir(inbox))
            .await
            .unwrap();
        pair(&sender, &receiver).await;
        (sender, receiver)
    }
}

/// Pairs `joiner` with `initiator` by word code; returns both sides' view.
pub(crate) async fn pair(
    initiator: &NetworkingService,
    joiner: &NetworkingService,
) -> (PairedDevice, PairedDevice) {
    let mut invite = initiator.start_pairing_as_initiator().unwrap();
    let joined = joiner.join_pairing(&invite.code).await.unwrap();
    let accepted = tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap()
        .unwrap();
    (accepted, joined)
}

/// Pairs `joiner` with `initiator` by ticket (no discovery needed).
pub(crate) async fn pair_by_ticket(initiator: &NetworkingService, joiner: &NetworkingService) {
    let mut invite = initiator.start_pairing_with_ticket().unwrap();
    joiner.join_pairing(&invite.code).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap()
        .unwrap();
}

/// Waits (at most 10 s) for the first event `want` accepts.
pub(crate) async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    want: impl Fn(&NetworkEvent) -> bool,
) -> NetworkEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.recv().await.unwrap();
            if want(&event) {
                return event;
            }
        }
    })
    .await
    .expect("the event did not come within 10 s")
}

/// Waits (at most `within`) for the first event `want` accepts; `None` if none came.
pub(crate) async fn event_within(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    within: Duration,
    want: impl Fn(&NetworkEvent) -> bool,
) -> Option<NetworkEvent> {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await {
                Ok(event) if want(&event) => return event,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    panic!("the event stream closed")
                }
            }
        }
    })
    .await
    .ok()
}

/// Whether `event` is a `Disconnected` for `node`.
pub(crate) fn disconnected_from(node: NodeId) -> impl Fn(&NetworkEvent) -> bool {
    move |event| matches!(event, NetworkEvent::Disconnected { node_id, .. } if *node_id == node)
}

/// Whether `event` is a `Connected` for `node`.
pub(crate) fn connected_to(node: NodeId) -> impl Fn(&NetworkEvent) -> bool {
    move |event| matches!(event, NetworkEvent::Connected { node_id, .. } if *node_id == node)
}

/// A plain iroh endpoint on 127.0.0.1 with a fresh key: a device nobody paired with.
pub(crate) async fn raw_client() -> iroh::Endpoint {
    iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap()
}

/// Where a raw iroh endpoint reaches `service`.
pub(crate) fn iroh_addr(service: &NetworkingService) -> iroh::EndpointAddr {
    let addr = service.addr();
    let id = iroh::EndpointId::from_bytes(addr.node_id.as_bytes()).unwrap();
    let direct = *addr
        .direct
        .first()
        .expect("the service has a loopback address");
    assert!(direct.ip().is_loopback(), "{direct}");
    iroh::EndpointAddr::new(id).with_ip_addr(direct)
}

pub(crate) fn exists(path: &Path) -> bool {
    path.exists()
}

/// `error` and its sources as one line, after checking that no layer of the chain repeats the
/// next one (each message describes its own layer only; see `tether::error_chain`).
#[track_caller]
pub(crate) fn checked_chain(error: &(dyn std::error::Error + 'static)) -> String {
    tether::assert_no_repeated_layer(error);
    let text = tether::error_chain(error);
    tether::assert_no_repeated_segment(&text);
    text
}
