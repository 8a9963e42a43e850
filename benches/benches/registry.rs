//! tether-registry with 1000 paired devices: start-up (open `secrets.redb`, verify it, decrypt
//! every record), lookups, the connection gate, one durable write, and loading the keys.
//!
//! `cargo bench -p tether-benches --bench registry`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_crypto::PairingSecret;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, NodeId};
use tether_registry::{
    DeviceRegistry, KeyManager, KeyOptions, KeychainPolicy, NewPairing, PairingSessionId,
};
use zeroize::Zeroizing;

const DEVICES: usize = 1000;

fn pairing(rng: &mut ChaCha20Rng, index: usize) -> NewPairing {
    let peer = NetworkIdentity::generate(rng);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name: DeviceName::new(format!("device number {index}")).unwrap(),
        device_type: DeviceType::Laptop,
        public_key: peer.node_id(),
    };
    NewPairing::new(
        info,
        peer.node_id(),
        PairingSecret::from_bytes(secret),
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    )
    .with_addresses([
        "192.0.2.10:41641".parse().unwrap(),
        "[2001:db8::10]:41641".parse().unwrap(),
    ])
    .with_relay_url("https://relay.example.net/")
}

fn pair(registry: &DeviceRegistry, pairing: NewPairing) {
    let session = PairingSessionId(1);
    registry.begin_pairing(pairing.node_id, session).unwrap();
    registry.complete_pairing(session, pairing).unwrap();
}

/// A data directory with an unprotected key file and `DEVICES` paired devices.
fn populated(dir: &Path) -> (KeyManager, Vec<NodeId>, Vec<DeviceId>) {
    let options = KeyOptions::default()
        .keychain(KeychainPolicy::Never)
        .insecure_key_file();
    let keys = KeyManager::open_or_create(dir, &options).unwrap();
    let registry = DeviceRegistry::open(dir, keys.storage_key()).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut nodes = Vec::new();
    let mut ids = Vec::new();
    for index in 0..DEVICES {
        let pairing = pairing(&mut rng, index);
        nodes.push(pairing.node_id);
        ids.push(pairing.info.device_id);
        pair(&registry, pairing);
    }
    (keys, nodes, ids)
}

fn registry(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let (keys, nodes, ids) = populated(&dir);
    let size = std::fs::metadata(dir.join(tether_registry::SECRETS_FILE))
        .unwrap()
        .len();
    eprintln!("secrets.redb with {DEVICES} devices: {size} bytes");

    let mut group = c.benchmark_group("registry");
    group.sample_size(20);
    group.bench_function("open_and_load/1000", |b| {
        b.iter(|| {
            let registry = DeviceRegistry::open(&dir, keys.storage_key()).unwrap();
            assert_eq!(registry.paired_devices().len(), DEVICES);
            // Dropping closes the file and releases the lock for the next iteration.
            drop(black_box(registry));
        });
    });
    group.finish();

    let registry = DeviceRegistry::open(&dir, keys.storage_key()).unwrap();
    let mut group = c.benchmark_group("registry");
    let mut next = 0usize;
    group.bench_function("device_by_node_id/1000", |b| {
        b.iter(|| {
            next = (next + 1) % DEVICES;
            black_box(registry.device(black_box(&nodes[next])).unwrap())
        });
    });
    group.bench_function("device_by_device_id/1000", |b| {
        b.iter(|| {
            next = (next + 1) % DEVICES;
            black_box(registry.device_by_id(black_box(&ids[next])).unwrap())
        });
    });
    group.bench_function("check_connection/1000", |b| {
        b.iter(|| {
            next = (next + 1) % DEVICES;
            black_box(registry.check_connection(black_box(&nodes[next])).unwrap())
        });
    });
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut index = DEVICES;
    group.sample_size(20);
    group.bench_function("pair_one_fsync/1000+", |b| {
        b.iter(|| {
            index += 1;
            pair(&registry, pairing(&mut rng, index));
        });
    });
    group.finish();
}

fn keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_manager_open");
    group.sample_size(10);
    let unprotected = tempfile::tempdir().unwrap();
    let never = KeyOptions::default()
        .keychain(KeychainPolicy::Never)
        .insecure_key_file();
    KeyManager::open_or_create(unprotected.path(), &never).unwrap();
    group.bench_function("unprotected_file", |b| {
        b.iter(|| black_box(KeyManager::open(unprotected.path(), &never).unwrap()));
    });
    let protected = tempfile::tempdir().unwrap();
    let with_passphrase = KeyOptions::with_passphrase(Zeroizing::new("bench".to_owned()))
        .keychain(KeychainPolicy::Never);
    KeyManager::open_or_create(protected.path(), &with_passphrase).unwrap();
    group.bench_function("passphrase_file_argon2id_64MiB_t3_p4", |b| {
        b.iter(|| black_box(KeyManager::open(protected.path(), &with_passphrase).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, registry, keys);
criterion_main!(benches);
