//! `KeyManager`: loads the device key and the storage key at start-up, or makes them once.
//!
//! The two secrets live in one of three places, chosen when the device is set up and written
//! into the key file (see [`crate::key_file`] for its format):
//!
//! 1. the OS keychain ([`KeyStorageKind::OsKeychain`]); the key file then holds only the node id
//!    and the name of the keychain entry;
//! 2. the key file itself, sealed with ChaCha20-Poly1305 under a key derived with Argon2id from
//!    a passphrase the caller gives or a [`PassphrasePrompt`] asks for
//!    ([`KeyStorageKind::PassphraseFile`]);
//! 3. the key file in the clear, mode 0600 ([`KeyStorageKind::UnprotectedFile`]): for a new
//!    key only when the caller names that choice ([`KeyOptions::insecure_key_file`]), else
//!    [`KeyError::ProtectionRequired`]. An existing unprotected file still opens, with one
//!    short warning per start unless the caller named the choice.
//!
//! Once the key file exists it is only ever replaced by [`KeyManager::protect`], which seals an
//! unprotected file with a passphrase (temporary file, fsync, rename, fsync of the directory:
//! a crash leaves the old file or the new one, both holding the same key). Whatever goes wrong
//! reading it (damage, a wrong passphrase, a missing keychain entry) stops start-up with a
//! [`KeyError`] naming the file and the way out; a new identity is made only when there is no
//! key file and no `secrets.redb` either.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tether_identity::{NetworkIdentity, NodeId};
use zeroize::Zeroizing;

use crate::key_file::{ACCOUNT_ID_LEN, KeyFile, KeyFileBody, SECRETS_LEN};
use crate::passphrase::{PassphrasePrompt, PassphrasePurpose};
use crate::{
    Argon2Params, KeyError, KeyStorageKind, SECRETS_FILE, StorageKey, keychain, private_fs,
};

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
///
/// A new key goes to the OS keychain when [`Self::keychain`] allows and one works. Otherwise
/// it goes to the key file, sealed with [`Self::passphrase`]; without one, with
/// [`Self::insecure_key_file`] it is written unprotected; without that, [`Self::prompt`] is
/// asked for a passphrase to seal it with; with no prompt either, it is refused
/// ([`KeyError::ProtectionRequired`]) and nothing is written. An existing key file is read
/// from wherever it says, asking [`Self::prompt`] for its passphrase if it is sealed and none
/// was given.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct KeyOptions {
    /// The passphrase for the key file, if the user gave one up front (the CLI reads
    /// `--passphrase-file` or `TETHER_PASSPHRASE`). Seals a new key file and opens a sealed one.
    pub passphrase: Option<Zeroizing<String>>,
    /// Asked for a passphrase when one is needed and [`Self::passphrase`] is `None`: to seal a
    /// new key file, or to open a sealed one. `None`: nobody can be asked (no terminal).
    pub prompt: Option<Arc<dyn PassphrasePrompt>>,
    /// Allows a new key to be written to the key file in the clear (mode 0600 only) when no
    /// keychain takes it and no passphrase was given. Off by default: anyone who reads the
    /// file (root, a backup, a stolen disk) can act as the device and read `secrets.redb`.
    /// For tests and throwaway demos. It also silences the warning an existing unprotected
    /// file gives at every start.
    pub insecure_key_file: bool,
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

    /// Sets who is asked for a passphrase when one is needed and none was given.
    pub fn prompt(mut self, prompt: Arc<dyn PassphrasePrompt>) -> Self {
        self.prompt = Some(prompt);
        self
    }

    /// Allows a new key file in the clear (see [`Self::insecure_key_file`]): tests and demos.
    pub fn insecure_key_file(mut self) -> Self {
        self.insecure_key_file = true;
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
            .field("prompt", &self.prompt)
            .field("insecure_key_file", &self.insecure_key_file)
            .field("keychain", &self.keychain)
            .field("argon2", &self.argon2)
            .finish()
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
        let (secrets, kind) = match &file.body {
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
                let passphrase = match &options.passphrase {
                    Some(passphrase) => passphrase.clone(),
                    None => ask(options, &key_file, PassphrasePurpose::Open)?.ok_or_else(|| {
                        KeyError::PassphraseRequired {
                            path: key_file.clone(),
                        }
                    })?,
                };
                let secrets = body.open_with_passphrase(&passphrase)?.ok_or_else(|| {
                    KeyError::WrongPassphrase {
                        path: key_file.clone(),
                    }
                })?;
                (secrets, KeyStorageKind::PassphraseFile)
            }
            KeyFileBody::Unprotected { secrets } => {
                if options.passphrase.is_some() {
                    tracing::warn!(
                        "the device key is not encrypted and the passphrase is not used; \
                             seal it: tether key protect"
                    );
                } else if !options.insecure_key_file {
                    tracing::warn!(
                        "the device key is not encrypted; seal it with a passphrase: \
                             tether key protect"
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
            None => match seal_passphrase(options, &key_file)? {
                Some(passphrase) => {
                    let bytes = seal(&key_file, &node_id, &secrets, &passphrase, options)?;
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
        tracing::info!(
            node_id = %identity.node_id().fmt_short(),
            storage = %kind,
            path = %key_file.display(),
            "made a new device identity"
        );
        Ok(Self::from_secrets(key_file, &secrets, kind))
    }

    /// Seals the unprotected key file of `data_dir` with a passphrase, in place: the same key
    /// and node id, from now on opened only with that passphrase. The passphrase is
    /// `options.passphrase`, else asked of `options.prompt`
    /// ([`KeyError::SealPassphraseRequired`] without either); Argon2id runs with
    /// `options.argon2`.
    ///
    /// The new file is checked to open with the passphrase before it replaces the old one,
    /// atomically (temporary file, fsync, rename, fsync of the directory): a crash at any
    /// point leaves the old file or the new one. A key file that is already sealed or names a
    /// keychain entry is left alone ([`KeyError::AlreadyProtected`]). The old file's bytes
    /// may survive in the file system's free blocks: a disk that may have been read calls for
    /// a new identity, not this.
    pub fn protect(data_dir: &Path, options: &KeyOptions) -> Result<Self, KeyError> {
        let key_file = data_dir.join(KEY_FILE);
        private_fs::remove_stale_temp_files(&key_file).map_err(io_error("clean up", data_dir))?;
        let bytes = Zeroizing::new(fs::read(&key_file).map_err(io_error("read", &key_file))?);
        let file = KeyFile::decode(&key_file, &bytes)?;
        let secrets = match file.body {
            KeyFileBody::Unprotected { secrets } => secrets,
            KeyFileBody::Passphrase { .. } => {
                return Err(KeyError::AlreadyProtected {
                    path: key_file,
                    storage: KeyStorageKind::PassphraseFile,
                });
            }
            KeyFileBody::Keychain { account_id } => {
                return Err(KeyError::AlreadyProtected {
                    path: key_file,
                    storage: KeyStorageKind::OsKeychain {
                        service: keychain::SERVICE.to_owned(),
                        account: keychain::account_name(&account_id),
                    },
                });
            }
        };
        if identity_from(&secrets).node_id().as_bytes() != &file.node_id {
            return Err(KeyError::Corrupt {
                path: key_file,
                reason: "the key does not match the node id",
            });
        }
        let passphrase = match &options.passphrase {
            Some(passphrase) => passphrase.clone(),
            None => ask(options, &key_file, PassphrasePurpose::Seal)?.ok_or_else(|| {
                KeyError::SealPassphraseRequired {
                    path: key_file.clone(),
                }
            })?,
        };
        let sealed = seal(&key_file, &file.node_id, &secrets, &passphrase, options)?;
        // Never replace a key the passphrase cannot open again.
        let opened = KeyFile::decode(&key_file, &sealed)?
            .body
            .open_with_passphrase(&passphrase)?;
        if opened.as_deref() != Some(&*secrets) {
            return Err(KeyError::Corrupt {
                path: key_file,
                reason: "the sealed key did not open again; nothing was changed",
            });
        }
        private_fs::pause_point("protect", "sealed");
        private_fs::replace_atomically(&key_file, &sealed, "protect")
            .map_err(io_error("replace", &key_file))?;
        let manager = Self::from_secrets(key_file, &secrets, KeyStorageKind::PassphraseFile);
        tracing::info!(
            node_id = %manager.identity.node_id().fmt_short(),
            path = %manager.key_file.display(),
            "sealed the device key with a passphrase"
        );
        Ok(manager)
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

/// The passphrase a new key file is sealed with: the one given, else none when an unprotected
/// file is allowed, else the prompt's. Without any of them the key is refused.
fn seal_passphrase(
    options: &KeyOptions,
    key_file: &Path,
) -> Result<Option<Zeroizing<String>>, KeyError> {
    if let Some(passphrase) = &options.passphrase {
        return Ok(Some(passphrase.clone()));
    }
    if options.insecure_key_file {
        return Ok(None);
    }
    match ask(options, key_file, PassphrasePurpose::Seal)? {
        Some(passphrase) => Ok(Some(passphrase)),
        None => Err(KeyError::ProtectionRequired {
            path: key_file.to_owned(),
        }),
    }
}

/// Asks the prompt, if there is one.
fn ask(
    options: &KeyOptions,
    key_file: &Path,
    purpose: PassphrasePurpose,
) -> Result<Option<Zeroizing<String>>, KeyError> {
    let Some(prompt) = &options.prompt else {
        return Ok(None);
    };
    prompt
        .passphrase(key_file, purpose)
        .map(Some)
        .map_err(|source| KeyError::Prompt {
            path: key_file.to_owned(),
            purpose,
            source,
        })
}

/// The bytes of a key file holding `secrets` sealed with `passphrase`.
fn seal(
    key_file: &Path,
    node_id: &[u8; 32],
    secrets: &[u8; SECRETS_LEN],
    passphrase: &str,
    options: &KeyOptions,
) -> Result<Vec<u8>, KeyError> {
    if passphrase.is_empty() {
        return Err(KeyError::EmptyPassphrase {
            path: key_file.to_owned(),
        });
    }
    let mut random = [0u8; 28];
    getrandom::fill(&mut random).map_err(KeyError::Random)?;
    KeyFile::encode_passphrase(
        node_id,
        secrets,
        passphrase,
        options.argon2.clamped(),
        random,
    )
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyError + use<> {
    let path = path.to_owned();
    move |source| KeyError::Io {
        action,
        path,
        source,
    }
}
