//! Helpers shared by the integration tests: sample pairings, options, file snapshots.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_crypto::PairingSecret;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, NodeId};
use tether_registry::{
    DeviceRegistry, KeyManager, KeyOptions, KeychainPolicy, NewPairing, PairedDevice,
    PairingSessionId,
};

/// Options that never touch the OS keychain (tests must not write to the user's keychain) and
/// keep a new key unprotected, by name, so that most tests need no Argon2id.
pub fn file_only() -> KeyOptions {
    KeyOptions::default()
        .keychain(KeychainPolicy::Never)
        .insecure_key_file()
}

/// A seeded generator for sample data.
pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A pairing with a new random peer, named `name`.
pub fn sample_pairing(rng: &mut ChaCha20Rng, name: &str) -> NewPairing {
    let peer = NetworkIdentity::generate(rng);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Laptop,
        public_key: peer.node_id(),
    };
    let port = 1024 + (rng.next_u32() % 60_000) as u16;
    NewPairing::new(
        info,
        peer.node_id(),
        PairingSecret::from_bytes(secret),
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + u64::from(rng.next_u32())),
    )
    .with_addresses([format!("192.0.2.7:{port}").parse().unwrap()])
    .with_relay_url("https://relay.example.net/")
}

/// Runs the registry's pairing steps for `pairing` (begin, then complete).
pub fn pair(registry: &DeviceRegistry, pairing: NewPairing) -> PairedDevice {
    let session = PairingSessionId(u64::from_le_bytes(
        pairing.node_id.as_bytes()[..8].try_into().unwrap(),
    ));
    registry.begin_pairing(pairing.node_id, session).unwrap();
    registry.complete_pairing(session, pairing).unwrap()
}

/// A new data directory inside a temporary directory, with its keys and registry.
pub struct Device {
    pub root: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Device {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        Self { root, dir }
    }

    pub fn keys(&self) -> KeyManager {
        KeyManager::open_or_create(&self.dir, &file_only()).unwrap()
    }

    pub fn registry(&self) -> DeviceRegistry {
        DeviceRegistry::open(&self.dir, self.keys().storage_key()).unwrap()
    }

    pub fn store_path(&self) -> PathBuf {
        self.dir.join(tether_registry::SECRETS_FILE)
    }

    pub fn key_path(&self) -> PathBuf {
        self.dir.join(tether_registry::KEY_FILE)
    }
}

/// Every file in `dir` with its bytes, to prove nothing changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

pub fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// A random node id that no test paired with.
pub fn stranger(seed: u64) -> NodeId {
    NetworkIdentity::generate(&mut rng(seed)).node_id()
}

pub fn now() -> SystemTime {
    SystemTime::now()
}

/// Runs `f` with a subscriber that records every log event as (level, all fields as text).
pub fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, Vec<(tracing::Level, String)>) {
    use std::sync::{Arc, Mutex};

    struct Capture(Arc<Mutex<Vec<(tracing::Level, String)>>>);
    struct Text(String);
    impl tracing::field::Visit for Text {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.push_str(&format!("{}={:?} ", field.name(), value));
        }
    }
    impl tracing::Subscriber for Capture {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut text = Text(String::new());
            event.record(&mut text);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), text.0));
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    let logs = Arc::new(Mutex::new(Vec::new()));
    let result = tracing::subscriber::with_default(Capture(logs.clone()), f);
    let logs = logs.lock().unwrap().clone();
    (result, logs)
}

/// Lowercase hex, to look for key bytes in logs.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
