//! `KeyManager`: loads the device key and the storage key at start-up, or makes them once.
//!
//! The two secrets live in one of three places, chosen when the device is set up and written
//! into the key file (see [`crate::key_file`] for its format):
//!
//! 1. the OS keychain ([`KeyStorageKind::OsKeychain`]); the key file then holds only the node id
//!    and the name of the keychain entry;
//! 2. the key file itself, sealed with ChaCha20-Poly1305 under a key derived with Argon2id from
//!    a passphrase the caller gives ([`KeyStorageKind::PassphraseFile`]);
//! 3. the key file in the clear, mode 0600, with a loud warning at every start
//!    ([`KeyStorageKind::UnprotectedFile`]).
//!
//! Once the key file exists it is never rewritten or replaced by this crate. Whatever goes wrong
//! reading it (damage, a wrong passphrase, a missing keychain entry) stops start-up with a
//! [`KeyError`] naming the file and the way out; a new identity is made only when there is no
//! key file and no `secrets.redb` either.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tether_identity::{NetworkIdentity, NodeId};
use zeroize::Zeroizing;

use crate::key_file::{ACCOUNT_ID_LEN, KeyFile, KeyFileBody, SECRETS_LEN};
use crate::{Argon2Params, KeyError, SECRETS_FILE, StorageKey, keychain, private_fs};

/// Name of the key file in the data directory.
pub const KEY_FILE: &str = "device.key";

/// Where new keys may be kept; existing keys are always read from where the key file says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeychainPolicy {
    /// Use the OS keychain if it works, else the key file. The default.
    #[default]
    Prefer,
    /// Use the OS keychain or fail with [`KeyError::KeychainRequired`].
    Require,
    /// Never touch the OS keychain; keep the keys in the key file.
    Never,
}

/// How the caller wants keys kept.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct KeyOptions {
    /// The passphrase for the key file, if the user gave one (the CLI reads `TETHER_PASSPHRASE`
    /// or a flag). Needed to open a passphrase-protected file. New keys go to the OS keychain
    /// when the policy allows and one works (the passphrase is then not used); otherwise to the
    /// key file, sealed with the passphrase, or, without one, unprotected.
    pub passphrase: Option<Zeroizing<String>>,
    /// Whether new keys may go to the OS keychain.
    pub keychain: KeychainPolicy,
    /// Argon2id parameters for a new passphrase-protected file, never below
    /// [`Argon2Params::MIN_MEMORY_KIB`] and [`Argon2Params::MIN_PASSES`] (lower values are
    /// raised; see [`Argon2Params::clamped`]).
    pub argon2: Argon2Params,
}

impl KeyOptions {
    /// Options with a passphrase and the default policy.
    pub fn with_passphrase(passphrase: Zeroizing<String>) -> Self {
        Self {
            passphrase: Some(passphrase),
            ..Self::default()
        }
    }

    /// Sets the keychain policy.
    pub fn keychain(mut self, policy: KeychainPolicy) -> Self {
        self.keychain = policy;
        self
    }

    /// Sets the Argon2id parameters used when a new passphrase-protected file is written.
    pub fn argon2(mut self, params: Argon2Params) -> Self {
        self.argon2 = params;
        self
    }
}

impl fmt::Debug for KeyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyOptions")
            .field("passphrase", &self.passphrase.as_ref().map(|_| ".."))
            .field("keychain", &self.keychain)
            .field("argon2", &self.argon2)
            .finish()
    }
}

/// Which of the three places holds the keys, for `tether doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyStorageKind {
    /// The OS keychain, under this service and account.
    OsKeychain {
        /// The keychain service name.
        service: String,
        /// The keychain account name.
        account: String,
    },
    /// The key file, encrypted with a passphrase (Argon2id, ChaCha20-Poly1305).
    PassphraseFile,
    /// The key file in the clear, protected only by its mode 0600.
    UnprotectedFile,
}

impl fmt::Display for KeyStorageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OsKeychain { service, account } => {
                write!(f, "OS keychain (service {service:?}, account {account:?})")
            }
            Self::PassphraseFile => f.write_str("key file encrypted with a passphrase (Argon2id)"),
            Self::UnprotectedFile => {
                f.write_str("key file NOT encrypted (mode 0600 only; readable by root and backups)")
            }
        }
    }
}

/// The device's keys, loaded once at start-up.
pub struct KeyManager {
    identity: NetworkIdentity,
    storage_key: StorageKey,
    kind: KeyStorageKind,
    key_file: PathBuf,
}

impl KeyManager {
    /// Loads the keys of the device whose data directory is `data_dir`, or, on the very first
    /// start (no key file and no `secrets.redb`), makes new ones and stores them as `options`
    /// ask. Creates `data_dir` with mode 0700 if needed.
    pub fn open_or_create(data_dir: &Path, options: &KeyOptions) -> Result<Self, KeyError> {
        private_fs::ensure_private_dir(data_dir).map_err(io_error("create", data_dir))?;
        let key_file = data_dir.join(KEY_FILE);
        private_fs::remove_stale_temp_files(&key_file).map_err(io_error("clean up", data_dir))?;
        match fs::read(&key_file) {
            Ok(bytes) => Self::load(key_file, &Zeroizing::new(bytes), options),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                let store = data_dir.join(SECRETS_FILE);
                if fs::metadata(&store).is_ok_and(|meta| meta.len() > 0) {
                    return Err(KeyError::KeyFileMissing {
                        key_path: key_file,
                        store_path: store,
                    });
                }
                Self::create(key_file, options)
            }
            Err(error) => Err(io_error("read", &key_file)(error)),
        }
    }

    /// Loads the keys of an existing device; never makes new ones.
    pub fn open(data_dir: &Path, options: &KeyOptions) -> Result<Self, KeyError> {
        let key_file = data_dir.join(KEY_FILE);
        let bytes = fs::read(&key_file).map_err(io_error("read", &key_file))?;
        Self::load(key_file, &Zeroizing::new(bytes), options)
    }

    /// This device's identity (its Ed25519 key and node id).
    pub fn identity(&self) -> &NetworkIdentity {
        &self.identity
    }

    /// This device's node id.
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The key that encrypts `secrets.redb`.
    pub fn storage_key(&self) -> &StorageKey {
        &self.storage_key
    }

    /// Where the keys are kept.
    pub fn storage_kind(&self) -> &KeyStorageKind {
        &self.kind
    }

    /// The key file's path.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    fn load(key_file: PathBuf, bytes: &[u8], options: &KeyOptions) -> Result<Self, KeyError> {
        let file = KeyFile::decode(&key_file, bytes)?;
        private_fs::ensure_private_file(&key_file)
            .map_err(io_error("set the mode of", &key_file))?;
        let (secrets, kind) =
            match &file.body {
                KeyFileBody::Keychain { account_id } => {
                    let account = keychain::account_name(account_id);
                    let secrets = load_from_keychain(&key_file, &account)?;
                    let kind = KeyStorageKind::OsKeychain {
                        service: keychain::SERVICE.to_owned(),
                        account,
                    };
                    (secrets, kind)
                }
                body @ KeyFileBody::Passphrase { .. } => {
                    let passphrase = options.passphrase.as_ref().ok_or_else(|| {
                        KeyError::PassphraseRequired {
                            path: key_file.clone(),
                        }
                    })?;
                    let secrets = body.open_with_passphrase(passphrase)?.ok_or_else(|| {
                        KeyError::WrongPassphrase {
                            path: key_file.clone(),
                        }
                    })?;
                    (secrets, KeyStorageKind::PassphraseFile)
                }
                KeyFileBody::Unprotected { secrets } => {
                    warn_unprotected(&key_file);
                    if options.passphrase.is_some() {
                        tracing::warn!(
                            path = %key_file.display(),
                            "a passphrase was given, but this key file was created without one; \
                             the passphrase is not used"
                        );
                    }
                    (secrets.clone(), KeyStorageKind::UnprotectedFile)
                }
            };
        let manager = Self::from_secrets(key_file, &secrets, kind);
        if manager.identity.node_id().as_bytes() != &file.node_id {
            return Err(match manager.kind {
                KeyStorageKind::OsKeychain { account, .. } => KeyError::KeychainMismatch {
                    path: manager.key_file,
                    account,
                    reason: "its key has another node id than the key file records",
                },
                _ => KeyError::Corrupt {
                    path: manager.key_file,
                    reason: "the key does not match the node id",
                },
            });
        }
        tracing::info!(
            node_id = %manager.identity.node_id().fmt_short(),
            storage = %manager.kind,
            "loaded the device key"
        );
        Ok(manager)
    }

    fn create(key_file: PathBuf, options: &KeyOptions) -> Result<Self, KeyError> {
        let mut secrets = Zeroizing::new([0u8; SECRETS_LEN]);
        getrandom::fill(secrets.as_mut_slice()).map_err(KeyError::Random)?;
        let identity = identity_from(&secrets);
        let node_id = *identity.node_id().as_bytes();

        let mut keychain_entry = None;
        let (bytes, kind) = match try_keychain(options.keychain, &secrets)? {
            Some((account_id, account)) => {
                keychain_entry = Some(account.clone());
                let kind = KeyStorageKind::OsKeychain {
                    service: keychain::SERVICE.to_owned(),
                    account,
                };
                (
                    Zeroizing::new(KeyFile::encode_keychain(&node_id, &account_id)),
                    kind,
                )
            }
            None => match &options.passphrase {
                Some(passphrase) => {
                    let mut random = [0u8; 28];
                    getrandom::fill(&mut random).map_err(KeyError::Random)?;
                    let bytes = KeyFile::encode_passphrase(
                        &node_id,
                        &secrets,
                        passphrase,
                        options.argon2.clamped(),
                        random,
                    )?;
                    (Zeroizing::new(bytes), KeyStorageKind::PassphraseFile)
                }
                None => (
                    KeyFile::encode_unprotected(&node_id, &secrets),
                    KeyStorageKind::UnprotectedFile,
                ),
            },
        };
        if let Err(error) = private_fs::create_atomically(&key_file, &bytes) {
            if let Some(account) = keychain_entry {
                // The entry is useless without the file that names it.
                let _ = keychain::delete(&account);
            }
            return Err(io_error("create", &key_file)(error));
        }
        if kind == KeyStorageKind::UnprotectedFile {
            warn_unprotected(&key_file);
        }
        tracing::info!(
            node_id = %identity.node_id().fmt_short(),
            storage = %kind,
            path = %key_file.display(),
            "made a new device identity"
        );
        Ok(Self::from_secrets(key_file, &secrets, kind))
    }

    fn from_secrets(key_file: PathBuf, secrets: &[u8; SECRETS_LEN], kind: KeyStorageKind) -> Self {
        let (_, storage) = secrets.split_at(32);
        let mut storage_key = Zeroizing::new([0u8; 32]);
        storage_key.copy_from_slice(storage);
        Self {
            identity: identity_from(secrets),
            storage_key: StorageKey::from_bytes(storage_key),
            kind,
            key_file,
        }
    }
}

impl fmt::Debug for KeyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyManager")
            .field("node_id", &self.identity.node_id())
            .field("storage", &self.kind)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

fn identity_from(secrets: &[u8; SECRETS_LEN]) -> NetworkIdentity {
    let (device, _) = secrets.split_at(32);
    let mut device_key = Zeroizing::new([0u8; 32]);
    device_key.copy_from_slice(device);
    NetworkIdentity::from_secret_bytes(&device_key)
}

/// Stores new secrets in the keychain if the policy allows and the keychain works.
fn try_keychain(
    policy: KeychainPolicy,
    secrets: &[u8; SECRETS_LEN],
) -> Result<Option<([u8; ACCOUNT_ID_LEN], String)>, KeyError> {
    if policy == KeychainPolicy::Never {
        return Ok(None);
    }
    let mut account_id = [0u8; ACCOUNT_ID_LEN];
    getrandom::fill(&mut account_id).map_err(KeyError::Random)?;
    let account = keychain::account_name(&account_id);
    match keychain::store(&account, secrets) {
        Ok(()) => Ok(Some((account_id, account))),
        Err(failure) => {
            let reason = match failure {
                keychain::KeychainFailure::Unavailable(reason) => reason,
                keychain::KeychainFailure::NoEntry => "the stored entry vanished".to_owned(),
            };
            if policy == KeychainPolicy::Require {
                return Err(KeyError::KeychainRequired { reason });
            }
            tracing::info!(%reason, "no usable OS keychain; the device key goes to the key file");
            Ok(None)
        }
    }
}

fn load_from_keychain(
    key_file: &Path,
    account: &str,
) -> Result<Zeroizing<[u8; SECRETS_LEN]>, KeyError> {
    let stored = keychain::load(account).map_err(|failure| match failure {
        keychain::KeychainFailure::NoEntry => KeyError::KeychainEntryMissing {
            path: key_file.to_owned(),
            service: keychain::SERVICE.to_owned(),
            account: account.to_owned(),
        },
        keychain::KeychainFailure::Unavailable(reason) => KeyError::KeychainUnavailable {
            path: key_file.to_owned(),
            reason,
        },
    })?;
    let mut secrets = Zeroizing::new([0u8; SECRETS_LEN]);
    if stored.len() != SECRETS_LEN {
        return Err(KeyError::KeychainMismatch {
            path: key_file.to_owned(),
            account: account.to_owned(),
            reason: "the entry has the wrong length",
        });
    }
    secrets.copy_from_slice(&stored);
    Ok(secrets)
}

fn warn_unprotected(key_file: &Path) {
    tracing::warn!(
        path = %key_file.display(),
        "THE DEVICE KEY IS NOT ENCRYPTED AT REST: no OS keychain is available and no passphrase \
         was given, so it is stored in the clear, protected only by file mode 0600. Anyone who \
         can read this file (root, a backup, a stolen disk) can impersonate this device to all \
         its paired peers. Give TETHER_PASSPHRASE when a device is first set up to encrypt \
         its key (an existing key file cannot be converted yet)"
    );
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyError + use<> {
    let path = path.to_owned();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}
