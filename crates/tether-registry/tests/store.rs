//! `secrets.redb`: what survives a restart, and what a damaged or foreign store does (a typed
//! error, and the file left byte for byte as it was).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use crate::common;

use std::fs;

use common::{Device, mode, pair, rng, sample_pairing, snapshot};
use redb::{ReadableDatabase, TableDefinition};
use tether_registry::{
    DeviceRegistry, DeviceState, KeyManager, SCHEMA_VERSION, StorageKey, StoreError, TrustLevel,
};
use zeroize::Zeroizing;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("tether_meta");
const DEVICES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("paired_devices");

/// A data directory with `count` paired devices, closed again.
fn with_devices(count: usize) -> (Device, Vec<tether_registry::PairedDevice>) {
    let device = Device::new();
    let registry = device.registry();
    let mut rng = rng(11);
    let paired = (0..count)
        .map(|i| pair(&registry, sample_pairing(&mut rng, &format!("device {i}"))))
        .collect();
    (device, paired)
}

#[test]
fn restart_restores_every_paired_device_and_secret() {
    let (device, paired) = with_devices(25);
    let mut rng = rng(11);
    let secrets: Vec<_> = (0..25)
        .map(|i| sample_pairing(&mut rng, &format!("device {i}")).secret)
        .collect();

    let registry = device.registry();
    let mut restored = registry.paired_devices();
    restored.sort_by_key(|d| d.node_id);
    let mut expected = paired.clone();
    expected.sort_by_key(|d| d.node_id);
    assert_eq!(restored, expected);
    for (device, secret) in paired.iter().zip(&secrets) {
        let view = registry.device(&device.node_id).unwrap();
        assert_eq!(view.state, DeviceState::Paired);
        assert_eq!(view.paired.as_ref().unwrap().trust, TrustLevel::Trusted);
        assert_eq!(
            registry
                .check_connection(&device.node_id)
                .unwrap()
                .as_bytes(),
            secret.as_bytes()
        );
        assert_eq!(
            registry
                .device_by_id(&device.info.device_id)
                .unwrap()
                .node_id,
            device.node_id
        );
    }
}

#[test]
fn files_are_private() {
    let (device, _) = with_devices(1);
    assert_eq!(mode(&device.dir), 0o700);
    assert_eq!(mode(&device.key_path()), 0o600);
    assert_eq!(mode(&device.store_path()), 0o600);
}

#[test]
fn nothing_readable_on_disk() {
    let (device, paired) = with_devices(3);
    let bytes = fs::read(device.store_path()).unwrap();
    for paired in &paired {
        let name = paired.info.device_name.as_str().as_bytes();
        assert!(!bytes.windows(name.len()).any(|w| w == name));
    }
    assert!(!bytes.windows(9).any(|w| w == b"192.0.2.7"));
    assert!(!bytes.windows(5).any(|w| w == b"relay"));
}

#[test]
fn garbage_store_is_refused_and_left_alone() {
    let device = Device::new();
    let keys = device.keys();
    for garbage in [
        b"not a database at all".to_vec(),
        vec![0u8; 10_000],
        vec![0xff; 4096],
    ] {
        fs::write(device.store_path(), &garbage).unwrap();
        let before = snapshot(&device.dir);
        let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        let text = error.to_string();
        assert!(text.contains("secrets.redb"), "{text}");
        assert!(text.contains("Nothing was changed"), "{text}");
        assert_eq!(snapshot(&device.dir), before);
    }
}

#[test]
fn truncated_store_is_refused_and_left_alone() {
    let (device, _) = with_devices(20);
    let keys = device.keys();
    let full = fs::read(device.store_path()).unwrap();
    for len in [1, 100, 511, 4096, full.len() / 2, full.len() - 1] {
        fs::write(device.store_path(), &full[..len]).unwrap();
        let before = snapshot(&device.dir);
        let result = DeviceRegistry::open(&device.dir, keys.storage_key());
        assert!(
            matches!(result, Err(StoreError::Corrupt { .. })),
            "truncated to {len}: {result:?}"
        );
        assert_eq!(snapshot(&device.dir), before, "truncated to {len}");
    }
}

#[test]
fn altered_record_is_refused_and_left_alone() {
    let (device, paired) = with_devices(5);
    let keys = device.keys();
    // Find one sealed record in the file and flip a bit in its ciphertext.
    let sealed = {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_read().unwrap();
        let table = txn.open_table(DEVICES).unwrap();
        let value = table
            .get(paired[2].node_id.as_bytes().as_slice())
            .unwrap()
            .unwrap();
        value.value().to_vec()
    };
    let mut bytes = fs::read(device.store_path()).unwrap();
    let at = bytes
        .windows(sealed.len())
        .position(|w| w == sealed)
        .expect("the record is stored as is");
    bytes[at + 20] ^= 0x01;
    fs::write(device.store_path(), &bytes).unwrap();

    let before = snapshot(&device.dir);
    let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
    // redb's page checksum catches it first; had it not, the AEAD tag would have.
    assert!(
        matches!(
            error,
            StoreError::Corrupt { .. } | StoreError::Undecryptable { .. }
        ),
        "{error}"
    );
    assert_eq!(snapshot(&device.dir), before);
}

#[test]
fn wrong_storage_key_is_refused_and_left_alone() {
    let (device, paired) = with_devices(3);
    let before = snapshot(&device.dir);
    let wrong = StorageKey::from_bytes(Zeroizing::new([7u8; 32]));
    let error = DeviceRegistry::open(&device.dir, &wrong).unwrap_err();
    let StoreError::Undecryptable { node, .. } = &error else {
        panic!("expected Undecryptable, got {error}")
    };
    assert!(paired.iter().any(|d| &d.node_id.to_string() == node));
    assert!(error.to_string().contains("storage key"));
    assert_eq!(snapshot(&device.dir), before);
}

fn set_schema_version(device: &Device, version: u64) {
    let db = redb::Database::open(device.store_path()).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(META)
        .unwrap()
        .insert("schema_version", version)
        .unwrap();
    txn.commit().unwrap();
}

#[test]
fn newer_schema_is_refused_and_left_alone() {
    let (device, _) = with_devices(2);
    set_schema_version(&device, SCHEMA_VERSION + 1);
    let keys = device.keys();
    let before = snapshot(&device.dir);
    let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema { found, supported, .. }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION
        ),
        "{error}"
    );
    assert!(error.to_string().contains("Upgrade Tether"));
    assert_eq!(snapshot(&device.dir), before);
}

#[test]
fn schema_zero_and_missing_version_are_corrupt() {
    let (device, _) = with_devices(2);
    set_schema_version(&device, 0);
    let keys = device.keys();
    let before = snapshot(&device.dir);
    let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert_eq!(snapshot(&device.dir), before);

    {
        let db = redb::Database::open(device.store_path()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.delete_table(META).unwrap();
        txn.commit().unwrap();
    }
    let before = snapshot(&device.dir);
    let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert_eq!(snapshot(&device.dir), before);
}

#[test]
fn new_store_records_the_schema_version() {
    let (device, _) = with_devices(0);
    let db = redb::Database::open(device.store_path()).unwrap();
    let txn = db.begin_read().unwrap();
    let version = txn.open_table(META).unwrap().get("schema_version").unwrap();
    assert_eq!(version.unwrap().value(), SCHEMA_VERSION);
}

#[test]
fn empty_file_from_an_interrupted_first_start_becomes_a_store() {
    let device = Device::new();
    let keys = device.keys();
    fs::write(device.store_path(), b"").unwrap();
    let registry = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    let mut rng = rng(5);
    pair(&registry, sample_pairing(&mut rng, "a"));
    drop(registry);
    assert_eq!(device.registry().paired_devices().len(), 1);
}

#[test]
fn second_open_is_refused_while_in_use() {
    let (device, _) = with_devices(1);
    let keys = KeyManager::open(&device.dir, &common::file_only()).unwrap();
    let first = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    let error = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap_err();
    assert!(matches!(error, StoreError::InUse { .. }), "{error}");
    drop(first);
    DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
}

#[test]
fn close_releases_the_store_while_clones_live() {
    let (device, _) = with_devices(2);
    let keys = KeyManager::open(&device.dir, &common::file_only()).unwrap();
    let first = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    let clone = first.clone();
    first.close();
    first.close();
    // The clone still answers from memory but can no longer store anything.
    assert_eq!(clone.paired_devices().len(), 2);
    let node = clone.paired_devices()[0].node_id;
    let error = clone.set_trust(node, TrustLevel::Blocked).unwrap_err();
    assert!(error.to_string().contains("is closed"), "{error}");
    // The same data directory opens again at once, with nothing lost.
    let second = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    assert_eq!(second.paired_devices().len(), 2);
    assert!(
        second
            .paired_devices()
            .iter()
            .all(|device| device.trust == TrustLevel::Trusted)
    );
}

/// Flips a byte every 97 bytes across a whole store, one at a time. Each open must either
/// fail with a typed error leaving the file as it was, or succeed with every device intact
/// (the byte was in free space): never a panic, never a silently shorter list.
#[test]
fn no_flipped_byte_loses_a_device_silently() {
    let (device, _) = with_devices(20);
    let keys = device.keys();
    let full = fs::read(device.store_path()).unwrap();
    let (mut intact, mut refused) = (0, 0);
    for offset in (0..full.len()).step_by(97) {
        let mut bytes = full.clone();
        bytes[offset] ^= 0x41;
        fs::write(device.store_path(), &bytes).unwrap();
        let before = snapshot(&device.dir);
        match DeviceRegistry::open(&device.dir, keys.storage_key()) {
            Ok(registry) => {
                assert_eq!(registry.paired_devices().len(), 20, "offset {offset}");
                intact += 1;
            }
            Err(error) => {
                assert!(
                    matches!(
                        error,
                        StoreError::Corrupt { .. } | StoreError::Undecryptable { .. }
                    ),
                    "offset {offset}: {error}"
                );
                assert_eq!(snapshot(&device.dir), before, "offset {offset}");
                refused += 1;
            }
        }
    }
    assert!(
        refused > 0 && intact > 0,
        "refused {refused}, intact {intact}"
    );
}
