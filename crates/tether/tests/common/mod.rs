//! Two or more real services on 127.0.0.1, each in its own temporary data directory, finding
//! each other through a loopback discovery directory of the test's own.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether::{DeviceName, NetworkEvent, NetworkingConfig, NetworkingService, PairedDevice};

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
            .with_loopback_discovery(self.discovery_dir());
        config.discovery_timeout = Duration::from_secs(5);
        config
    }

    pub(crate) async fn start(&self, name: &str) -> NetworkingService {
        NetworkingService::start(self.config(name)).await.unwrap()
    }

    pub(crate) fn data_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
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

pub(crate) fn exists(path: &Path) -> bool {
    path.exists()
}
