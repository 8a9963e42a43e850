//! `KeyManager` with the key file: the passphrase-protected and the unprotected kinds, what a
//! damaged file does, and that an identity is never made anew over an existing one.
//!
//! These tests never touch the OS keychain (`KeychainPolicy::Never`); `tests/keychain.rs`
//! covers it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use crate::common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Instant;

use common::{Device, capture_logs, file_only, hex, mode, pair, rng, sample_pairing, snapshot};
use tether_registry::{
    Argon2Params, DeviceRegistry, KeyError, KeyManager, KeyOptions, KeyStorageKind, KeychainPolicy,
    PassphrasePrompt, PassphrasePurpose, StoreError,
};
use zeroize::Zeroizing;

/// The cheapest parameters a new file may use, so that most tests stay fast; one test uses
/// the defaults.
const FAST: Argon2Params = Argon2Params {
    memory_kib: Argon2Params::MIN_MEMORY_KIB,
    passes: Argon2Params::MIN_PASSES,
    lanes: 1,
};

fn with_passphrase(passphrase: &str) -> KeyOptions {
    KeyOptions::with_passphrase(Zeroizing::new(passphrase.to_owned()))
        .keychain(KeychainPolicy::Never)
        .argon2(FAST)
}

#[test]
fn unprotected_file_only_by_name_and_reopens_to_the_same_keys() {
    let device = Device::new();
    let (keys, logs) = capture_logs(|| KeyManager::open_or_create(&device.dir, &file_only()));
    let keys = keys.unwrap();
    assert_eq!(keys.storage_kind(), &KeyStorageKind::UnprotectedFile);
    assert!(keys.storage_kind().to_string().contains("NOT encrypted"));
    let secret_hex = hex(keys.identity().to_secret_bytes().as_slice());
    // Asked for by name: no warning.
    assert!(
        !logs.iter().any(|(level, _)| *level == tracing::Level::WARN),
        "{logs:?}"
    );
    for (_, text) in &logs {
        assert!(!text.contains(&secret_hex), "key material in a log: {text}");
    }
    assert_eq!(mode(&device.dir), 0o700);
    assert_eq!(mode(&device.key_path()), 0o600);

    // A device paired under these keys is readable under the reloaded ones.
    let registry = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
    let paired = pair(&registry, sample_pairing(&mut rng(1), "peer"));
    drop(registry);

    let (again, logs) = capture_logs(|| KeyManager::open_or_create(&device.dir, &file_only()));
    let again = again.unwrap();
    for (_, text) in &logs {
        assert!(!text.contains(&secret_hex), "key material in a log: {text}");
    }
    assert_eq!(again.node_id(), keys.node_id());
    assert_eq!(
        *again.identity().to_secret_bytes(),
        *keys.identity().to_secret_bytes()
    );
    let registry = DeviceRegistry::open(&device.dir, again.storage_key()).unwrap();
    assert_eq!(registry.paired_devices(), vec![paired]);
}

#[test]
fn passphrase_file_hides_the_key_and_reopens_with_the_passphrase() {
    let device = Device::new();
    let keys = KeyManager::open_or_create(&device.dir, &with_passphrase("correct horse")).unwrap();
    assert_eq!(keys.storage_kind(), &KeyStorageKind::PassphraseFile);
    let secret = keys.identity().to_secret_bytes();
    let file = fs::read(device.key_path()).unwrap();
    assert!(!file.windows(32).any(|w| w == secret.as_slice()));
    assert_eq!(mode(&device.key_path()), 0o600);

    let again = KeyManager::open(&device.dir, &with_passphrase("correct horse")).unwrap();
    assert_eq!(*again.identity().to_secret_bytes(), *secret);
    assert_eq!(again.storage_kind(), &KeyStorageKind::PassphraseFile);
}

#[test]
fn wrong_or_missing_passphrase_stops_and_changes_nothing() {
    let device = Device::new();
    let node_id = KeyManager::open_or_create(&device.dir, &with_passphrase("right"))
        .unwrap()
        .node_id();
    let before = snapshot(&device.dir);

    let error = KeyManager::open_or_create(&device.dir, &with_passphrase("wrong")).unwrap_err();
    assert!(matches!(error, KeyError::WrongPassphrase { .. }), "{error}");
    assert!(error.to_string().contains("device.key"));
    assert!(error.to_string().contains("TETHER_PASSPHRASE"));
    assert_eq!(snapshot(&device.dir), before);

    let error = KeyManager::open_or_create(&device.dir, &file_only()).unwrap_err();
    assert!(
        matches!(error, KeyError::PassphraseRequired { .. }),
        "{error}"
    );
    assert_eq!(snapshot(&device.dir), before);

    // And the right one still works: nothing was regenerated.
    let keys = KeyManager::open_or_create(&device.dir, &with_passphrase("right")).unwrap();
    assert_eq!(keys.node_id(), node_id);
}

#[test]
fn default_argon2_parameters_are_rfc_9106() {
    assert_eq!(
        Argon2Params::default(),
        Argon2Params {
            memory_kib: 64 * 1024,
            passes: 3,
            lanes: 4
        }
    );
    let device = Device::new();
    let options = KeyOptions::with_passphrase(Zeroizing::new("pw".to_owned()))
        .keychain(KeychainPolicy::Never);
    let started = Instant::now();
    let keys = KeyManager::open_or_create(&device.dir, &options).unwrap();
    let created = started.elapsed();
    // The parameters are in the file, so reading needs no options beyond the passphrase.
    let again = KeyManager::open(&device.dir, &options.clone().argon2(FAST)).unwrap();
    assert_eq!(again.node_id(), keys.node_id());
    let file = fs::read(device.key_path()).unwrap();
    assert_eq!(&file[52..56], &(64u32 * 1024).to_le_bytes());
    assert_eq!(&file[56..60], &3u32.to_le_bytes());
    assert_eq!(&file[60..64], &4u32.to_le_bytes());
    assert!(created.as_millis() > 0);
}

#[test]
fn damaged_key_file_stops_start_up_and_is_never_replaced() {
    let device = Device::new();
    device.keys();
    let good = fs::read(device.key_path()).unwrap();
    let mut flipped = good.clone();
    flipped[60] ^= 0x04;
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("flipped bit in the key", flipped),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("empty", Vec::new()),
        ("garbage", b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec()),
    ];
    for (what, bytes) in damaged {
        fs::write(device.key_path(), &bytes).unwrap();
        let before = snapshot(&device.dir);
        for _ in 0..2 {
            let error = KeyManager::open_or_create(&device.dir, &file_only()).unwrap_err();
            assert!(matches!(error, KeyError::Corrupt { .. }), "{what}: {error}");
            let text = error.to_string();
            assert!(
                text.contains(&device.key_path().display().to_string()),
                "{text}"
            );
            assert!(text.contains("will not make a new identity"), "{text}");
            assert_eq!(snapshot(&device.dir), before, "{what}");
        }
    }
}

#[test]
fn missing_key_file_beside_a_store_is_not_replaced_by_a_new_identity() {
    let device = Device::new();
    {
        let registry = device.registry();
        pair(&registry, sample_pairing(&mut rng(2), "peer"));
    }
    fs::remove_file(device.key_path()).unwrap();
    let before = snapshot(&device.dir);
    let error = KeyManager::open_or_create(&device.dir, &file_only()).unwrap_err();
    assert!(matches!(error, KeyError::KeyFileMissing { .. }), "{error}");
    assert!(error.to_string().contains("secrets.redb"));
    assert_eq!(snapshot(&device.dir), before);
}

#[test]
fn keys_from_another_device_do_not_open_its_store() {
    let first = Device::new();
    {
        let registry = first.registry();
        pair(&registry, sample_pairing(&mut rng(3), "peer"));
    }
    let other = Device::new();
    let other_keys = other.keys();
    let before = snapshot(&first.dir);
    let error = DeviceRegistry::open(&first.dir, other_keys.storage_key()).unwrap_err();
    assert!(matches!(error, StoreError::Undecryptable { .. }), "{error}");
    assert_eq!(snapshot(&first.dir), before);
}

#[test]
fn open_never_creates() {
    let device = Device::new();
    let error = KeyManager::open(&device.dir, &file_only()).unwrap_err();
    assert!(matches!(error, KeyError::Io { .. }), "{error}");
    assert!(!device.dir.exists());
}

#[test]
fn loose_modes_are_narrowed_and_stale_temp_files_removed() {
    let device = Device::new();
    device.keys();
    fs::set_permissions(&device.dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(device.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
    let stale = device.dir.join(".device.key.XYZ123.tmp");
    fs::write(&stale, b"half a key").unwrap();
    device.keys();
    assert_eq!(mode(&device.dir), 0o700);
    assert_eq!(mode(&device.key_path()), 0o600);
    assert!(!stale.exists());
}

#[test]
fn passphrase_for_an_unprotected_file_is_reported_unused() {
    let device = Device::new();
    let node_id = device.keys().node_id();
    let (keys, logs) =
        capture_logs(|| KeyManager::open_or_create(&device.dir, &with_passphrase("late")));
    assert_eq!(keys.unwrap().node_id(), node_id);
    assert!(
        logs.iter()
            .any(|(_, text)| text.contains("passphrase is not used"))
    );
}

#[test]
fn weak_argon2_parameters_are_raised_to_the_minimum() {
    let device = Device::new();
    let weak = Argon2Params {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };
    let options = with_passphrase("pw").argon2(weak);
    KeyManager::open_or_create(&device.dir, &options).unwrap();
    let file = fs::read(device.key_path()).unwrap();
    assert_eq!(&file[52..56], &Argon2Params::MIN_MEMORY_KIB.to_le_bytes());
    assert_eq!(&file[56..60], &Argon2Params::MIN_PASSES.to_le_bytes());
}

/// The files of `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if fs::read(&path)
            .unwrap()
            .windows(needle.len())
            .any(|w| w == needle)
        {
            found.push(path);
        }
    }
    found
}

/// Issue 17: with no keychain, no passphrase and no explicit consent to an unprotected file,
/// a new device key is refused and nothing is written; the key never lands on disk in the
/// clear.
#[test]
fn a_new_key_without_keychain_passphrase_or_consent_is_refused() {
    let device = Device::new();
    let options = KeyOptions::default().keychain(KeychainPolicy::Never);
    match KeyManager::open_or_create(&device.dir, &options) {
        Err(KeyError::ProtectionRequired { path }) => assert_eq!(path, device.key_path()),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(keys) => panic!(
            "a new device key was stored without protection: its raw bytes are in {:?}",
            files_containing(&device.dir, keys.identity().to_secret_bytes().as_slice())
        ),
    }
    assert!(!device.key_path().exists());
    assert!(
        fs::read_dir(&device.dir)
            .map(|entries| entries.count() == 0)
            .unwrap_or(true),
        "nothing may be written"
    );
}

/// Issue 17: an existing unprotected key file keeps working, with one short warning that says
/// how to protect it (it was five lines on a terminal, saying it could not be converted).
#[test]
fn an_existing_unprotected_key_warns_in_one_short_line() {
    let device = Device::new();
    let node_id = device.keys().node_id();
    let options = KeyOptions::default().keychain(KeychainPolicy::Never);
    let (keys, logs) = capture_logs(|| KeyManager::open_or_create(&device.dir, &options));
    assert_eq!(keys.unwrap().node_id(), node_id);
    let warnings: Vec<_> = logs
        .iter()
        .filter(|(level, _)| *level == tracing::Level::WARN)
        .map(|(_, text)| text)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let message = warnings[0]
        .split("message=")
        .nth(1)
        .unwrap_or(warnings[0].as_str());
    assert!(
        message.len() <= 100,
        "{} characters: {message}",
        message.len()
    );
    assert!(message.contains("tether key protect"), "{message}");
}

/// A prompt that answers with a fixed passphrase and counts what it was asked.
#[derive(Debug, Default)]
struct Answering {
    passphrase: &'static str,
    asked: std::sync::Mutex<Vec<PassphrasePurpose>>,
}

impl PassphrasePrompt for Answering {
    fn passphrase(
        &self,
        _key_file: &std::path::Path,
        purpose: PassphrasePurpose,
    ) -> std::io::Result<Zeroizing<String>> {
        self.asked.lock().unwrap().push(purpose);
        Ok(Zeroizing::new(self.passphrase.to_owned()))
    }
}

fn prompted(passphrase: &'static str) -> (Arc<Answering>, KeyOptions) {
    let prompt = Arc::new(Answering {
        passphrase,
        ..Answering::default()
    });
    let options = KeyOptions::default()
        .keychain(KeychainPolicy::Never)
        .argon2(FAST)
        .prompt(prompt.clone());
    (prompt, options)
}

#[test]
fn the_prompt_is_asked_only_when_a_passphrase_is_needed() {
    // A new key: asked once, to seal; the file hides the key.
    let device = Device::new();
    let (prompt, options) = prompted("typed at the terminal");
    let keys = KeyManager::open_or_create(&device.dir, &options).unwrap();
    assert_eq!(keys.storage_kind(), &KeyStorageKind::PassphraseFile);
    assert_eq!(*prompt.asked.lock().unwrap(), [PassphrasePurpose::Seal]);
    let secret = keys.identity().to_secret_bytes();
    assert!(files_containing(&device.dir, secret.as_slice()).is_empty());

    // Reopening: asked once, to open.
    let (prompt, options) = prompted("typed at the terminal");
    let again = KeyManager::open_or_create(&device.dir, &options).unwrap();
    assert_eq!(again.node_id(), keys.node_id());
    assert_eq!(*prompt.asked.lock().unwrap(), [PassphrasePurpose::Open]);

    // A passphrase given up front: not asked.
    let (prompt, options) = prompted("unused");
    let mut options = options;
    options.passphrase = Some(Zeroizing::new("typed at the terminal".to_owned()));
    KeyManager::open(&device.dir, &options).unwrap();
    assert!(prompt.asked.lock().unwrap().is_empty());

    // An unprotected file, or a new one allowed unprotected: not asked.
    let bare = Device::new();
    let (prompt, options) = prompted("unused");
    KeyManager::open_or_create(&bare.dir, &options.clone().insecure_key_file()).unwrap();
    KeyManager::open_or_create(&bare.dir, &options).unwrap();
    assert!(prompt.asked.lock().unwrap().is_empty());

    // An empty answer protects nothing: refused, nothing written.
    let empty = Device::new();
    let (_, options) = prompted("");
    let error = KeyManager::open_or_create(&empty.dir, &options).unwrap_err();
    assert!(matches!(error, KeyError::EmptyPassphrase { .. }), "{error}");
    assert!(!empty.key_path().exists());
}

#[test]
fn protect_seals_an_unprotected_key_in_place() {
    let device = Device::new();
    let keys = device.keys();
    let secret = keys.identity().to_secret_bytes();
    {
        let registry = DeviceRegistry::open(&device.dir, keys.storage_key()).unwrap();
        pair(&registry, sample_pairing(&mut rng(7), "peer"));
    }
    let before = snapshot(&device.dir);

    // No passphrase and nobody to ask: nothing changes.
    let error = KeyManager::protect(&device.dir, &KeyOptions::default()).unwrap_err();
    assert!(
        matches!(error, KeyError::SealPassphraseRequired { .. }),
        "{error}"
    );
    assert_eq!(snapshot(&device.dir), before);

    let (prompt, options) = prompted("sealed now");
    let sealed = KeyManager::protect(&device.dir, &options).unwrap();
    assert_eq!(*prompt.asked.lock().unwrap(), [PassphrasePurpose::Seal]);
    assert_eq!(sealed.node_id(), keys.node_id());
    assert_eq!(sealed.storage_kind(), &KeyStorageKind::PassphraseFile);
    assert!(files_containing(&device.dir, secret.as_slice()).is_empty());
    assert_eq!(mode(&device.key_path()), 0o600);
    assert_eq!(fs::read_dir(&device.dir).unwrap().count(), before.len());

    // From now on the passphrase is needed, and opens the same keys and the same store.
    let error = KeyManager::open(&device.dir, &file_only()).unwrap_err();
    assert!(
        matches!(error, KeyError::PassphraseRequired { .. }),
        "{error}"
    );
    let again = KeyManager::open(&device.dir, &with_passphrase("sealed now")).unwrap();
    assert_eq!(*again.identity().to_secret_bytes(), *secret);
    let registry = DeviceRegistry::open(&device.dir, again.storage_key()).unwrap();
    assert_eq!(registry.paired_devices().len(), 1);
    drop(registry);

    // A sealed file is left alone.
    let before = snapshot(&device.dir);
    let error = KeyManager::protect(&device.dir, &with_passphrase("other")).unwrap_err();
    assert!(
        matches!(error, KeyError::AlreadyProtected { .. }),
        "{error}"
    );
    assert_eq!(snapshot(&device.dir), before);
}
