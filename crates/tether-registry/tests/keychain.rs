//! The device key in a real OS keychain (on Linux: a Secret Service such as gnome-keyring).
//!
//! Where no keychain is usable the tests print that they were skipped and why, and pass;
//! with `TETHER_REQUIRE_KEYCHAIN=1` a missing keychain fails them instead, so CI can prove they
//! ran. `tests/run-with-keyring.sh` starts a private D-Bus session with an unlocked
//! gnome-keyring and runs them that way.
//!
//! The tests write entries under service "tether" with random account names and delete them
//! again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr,
    missing_docs
)]

mod common;

use std::env;
use std::fs;

use common::{Device, pair, rng, sample_pairing, snapshot};
use sha2::{Digest, Sha256};
use tether_identity::NetworkIdentity;
use tether_registry::{
    DeviceRegistry, KeyError, KeyManager, KeyOptions, KeyStorageKind, KeychainPolicy,
};

const REQUIRE: &str = "TETHER_REQUIRE_KEYCHAIN";

fn required() -> bool {
    env::var(REQUIRE).is_ok_and(|value| value == "1")
}

/// Makes keys in the keychain, or returns `None` after saying why the test is skipped.
fn keys_in_keychain(device: &Device, options: &KeyOptions, test: &str) -> Option<KeyManager> {
    match KeyManager::open_or_create(&device.dir, options) {
        Ok(keys) => Some(keys),
        Err(KeyError::KeychainRequired { reason }) => {
            assert!(
                !required(),
                "{REQUIRE}=1 but the OS keychain is not usable: {reason}"
            );
            eprintln!(
                "SKIPPED {test}: no usable OS keychain ({reason}). Run \
                 crates/tether-registry/tests/run-with-keyring.sh for a real Secret Service; \
                 set {REQUIRE}=1 to make a missing keychain a failure."
            );
            assert!(!device.key_path().exists(), "nothing may be written");
            None
        }
        Err(other) => panic!("{other}"),
    }
}

fn account_of(keys: &KeyManager) -> String {
    match keys.storage_kind() {
        KeyStorageKind::OsKeychain { service, account } => {
            assert_eq!(service, "tether");
            account.clone()
        }
        other => panic!("expected the keychain, got {other}"),
    }
}

fn entry(account: &str) -> keyring::Entry {
    keyring::Entry::new("tether", account).unwrap()
}

#[test]
fn device_key_lives_in_the_keychain_and_survives_restarts() {
    let device = Device::new();
    let require = KeyOptions::default().keychain(KeychainPolicy::Require);
    let Some(keys) = keys_in_keychain(&device, &require, "keychain round trip") else {
        return;
    };
    let account = account_of(&keys);
    let secret = keys.identity().to_secret_bytes();

    // The keychain holds the secrets; the key file only names the entry.
    let stored = entry(&account).get_secret().unwrap();
    assert_eq!(stored.len(), 64);
    assert_eq!(&stored[..32], secret.as_slice());
    let file = fs::read(device.key_path()).unwrap();
    assert_eq!(file.len(), 18 + 2 + 32 + 16 + 32);
    assert!(!file.windows(32).any(|w| w == secret.as_slice()));
    assert!(!file.windows(32).any(|w| w == &stored[32..]));

    // A paired device is readable after a restart; the policy only matters for new keys.
    let registry = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    let paired = pair(&registry, sample_pairing(&mut rng(1), "peer"));
    drop((registry, keys));
    let never = KeyOptions::default().keychain(KeychainPolicy::Never);
    let again = KeyManager::open_or_create(&device.dir, &never).unwrap();
    assert_eq!(*again.identity().to_secret_bytes(), *secret);
    assert_eq!(account_of(&again), account);
    let registry = DeviceRegistry::open(&device.dir, again.storage_key()).unwrap();
    assert_eq!(registry.paired_devices(), vec![paired]);
    drop(registry);

    // A keychain entry holding another key is refused, and nothing is changed.
    let foreign = NetworkIdentity::generate(&mut rng(2)).to_secret_bytes();
    let mut other = stored.clone();
    other[..32].copy_from_slice(foreign.as_slice());
    entry(&account).set_secret(&other).unwrap();
    let before = snapshot(&device.dir);
    let error = KeyManager::open_or_create(&device.dir, &never).unwrap_err();
    assert!(
        matches!(error, KeyError::KeychainMismatch { .. }),
        "{error}"
    );
    assert_eq!(snapshot(&device.dir), before);

    // A deleted entry stops start-up with a clear error; no identity is made in its place.
    entry(&account).delete_credential().unwrap();
    for options in [&never, &require, &KeyOptions::default()] {
        let error = KeyManager::open_or_create(&device.dir, options).unwrap_err();
        assert!(
            matches!(&error, KeyError::KeychainEntryMissing { account: a, .. } if *a == account),
            "{error}"
        );
        assert!(error.to_string().contains("device.key"), "{error}");
        assert_eq!(snapshot(&device.dir), before);
    }
}

#[test]
fn default_policy_prefers_the_keychain() {
    let device = Device::new();
    let Some(keys) = keys_in_keychain(
        &device,
        &KeyOptions::default().keychain(KeychainPolicy::Require),
        "default policy",
    ) else {
        return;
    };
    entry(&account_of(&keys)).delete_credential().unwrap();

    let second = Device::new();
    let keys = KeyManager::open_or_create(&second.dir, &KeyOptions::default()).unwrap();
    let account = account_of(&keys);
    entry(&account).delete_credential().unwrap();
}

/// A key file that names a keychain entry, when the entry cannot be had: with no keychain,
/// `KeychainUnavailable`; with one, `KeychainEntryMissing`. Either way a clear error and an
/// untouched directory. Runs in every environment.
#[test]
fn key_file_naming_an_unreachable_entry_is_a_clear_error() {
    let device = Device::new();
    fs::create_dir_all(&device.dir).unwrap();
    let node_id = NetworkIdentity::generate(&mut rng(3)).node_id();
    let mut file = b"tether-device-key\n".to_vec();
    file.extend_from_slice(&[1, 1]);
    file.extend_from_slice(node_id.as_bytes());
    file.extend_from_slice(&[0xee; 16]);
    let checksum = Sha256::digest(&file);
    file.extend_from_slice(&checksum);
    fs::write(device.key_path(), &file).unwrap();
    let before = snapshot(&device.dir);

    let error = KeyManager::open_or_create(&device.dir, &KeyOptions::default()).unwrap_err();
    match &error {
        KeyError::KeychainUnavailable { .. } => {
            assert!(!required(), "{REQUIRE}=1 but: {error}");
            assert!(error.to_string().contains("Unlock the keychain"), "{error}");
        }
        KeyError::KeychainEntryMissing { account, .. } => {
            assert_eq!(account, &format!("device-key-{}", "ee".repeat(16)));
        }
        other => panic!("unexpected: {other}"),
    }
    assert!(error.to_string().contains("device.key"), "{error}");
    assert_eq!(snapshot(&device.dir), before);
}
