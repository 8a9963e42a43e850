//! The errors of this crate: one enum per part, each naming the file involved and the way out.
//!
//! Messages never contain key material. They are written for the person at the keyboard: what
//! happened, which file, what Tether did not do (it never deletes or regenerates anything to
//! "recover"), and what to do next.

use std::path::PathBuf;

use tether_identity::NodeId;

use crate::KeyStorageKind;
use crate::passphrase::PassphrasePurpose;
use crate::state::{ConnectionRefused, PairingSessionId, StateKind};

/// Boxed lower-level error (from redb or the keychain), kept as a source without exposing the
/// library's types in this crate's API.
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why the device key could not be loaded or created. Every variant stops start-up; none of
/// them ever leads to a new identity being made in place of an existing one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing a file failed (permissions, disk full, ...).
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "create".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The key file is damaged: bad magic, wrong length or a failed checksum.
    #[error(
        "the key file {} is corrupt ({reason}). Tether will not start and will not make a new \
         identity while this file exists. Restore it from a backup; or, to start over as a new \
         device (every peer must be paired again), move it and secrets.redb out of the data \
         directory",
        path.display()
    )]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// What check failed.
        reason: &'static str,
    },
    /// The key file was written by a newer Tether.
    #[error(
        "the key file {} has format version {found}; this Tether reads version {supported}. \
         Upgrade Tether",
        path.display()
    )]
    UnsupportedVersion {
        /// The key file.
        path: PathBuf,
        /// The version in the file.
        found: u8,
        /// The version this build understands.
        supported: u8,
    },
    /// The key file is encrypted with a passphrase and none was given.
    #[error(
        "the key file {} is encrypted with a passphrase, and none was given or could be asked \
         for",
        path.display()
    )]
    PassphraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// The passphrase does not decrypt the key file (its checksum is intact, so the file is
    /// not damaged).
    #[error(
        "the passphrase does not decrypt {}. Nothing was changed; give the passphrase that \
         sealed it (TETHER_PASSPHRASE, --passphrase-file or the terminal in the CLI)",
        path.display()
    )]
    WrongPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The key file says the key is in the OS keychain, and the keychain cannot be reached.
    #[error(
        "the device key of {} is in the OS keychain, which is not available ({reason}). \
         Unlock the keychain (on Linux: a running, unlocked Secret Service such as \
         gnome-keyring in this session) and start again",
        path.display()
    )]
    KeychainUnavailable {
        /// The key file that refers to the keychain.
        path: PathBuf,
        /// What the keychain said.
        reason: String,
    },
    /// The key file says the key is in the OS keychain, and the keychain has no such entry.
    #[error(
        "the device key of {} should be in the OS keychain under service {service:?}, account \
         {account:?}, and is not there. Restore the keychain from a backup; Tether will not \
         make a new identity while {} exists",
        path.display(),
        path.display()
    )]
    KeychainEntryMissing {
        /// The key file that refers to the keychain.
        path: PathBuf,
        /// The keychain service name.
        service: String,
        /// The keychain account name.
        account: String,
    },
    /// The keychain entry exists but holds a key for another device, or is malformed.
    #[error(
        "the OS keychain entry for {} (account {account:?}) does not hold this device's key \
         ({reason}). Restore the keychain entry from a backup",
        path.display()
    )]
    KeychainMismatch {
        /// The key file that refers to the keychain.
        path: PathBuf,
        /// The keychain account name.
        account: String,
        /// What did not match.
        reason: &'static str,
    },
    /// The keychain was required for a new key and is not available.
    #[error(
        "the OS keychain is required and not available ({reason}); nothing was written. Start a \
         Secret Service (e.g. gnome-keyring) and unlock it, or allow the encrypted-file fallback"
    )]
    KeychainRequired {
        /// What the keychain said.
        reason: String,
    },
    /// The key file is missing although paired devices exist: the store was made with a key
    /// that is gone, and a new key would not decrypt it.
    #[error(
        "the key file {} is missing but {} exists. Tether will not make a new identity beside \
         existing pairings. Restore {} from a backup; or, to start over as a new device, move \
         {} away (every peer must be paired again)",
        key_path.display(),
        store_path.display(),
        key_path.display(),
        store_path.display()
    )]
    KeyFileMissing {
        /// The key file that should exist.
        key_path: PathBuf,
        /// The store that shows this device was set up before.
        store_path: PathBuf,
    },
    /// A new key would have to be written unprotected: no OS keychain took it, no passphrase
    /// was given or could be asked for, and [`crate::KeyOptions::insecure_key_file`] is off.
    #[error(
        "the new device key {} can be neither kept in an OS keychain nor sealed (no passphrase \
         was given and none could be asked for), and an unprotected key file was not allowed; \
         nothing was written",
        path.display()
    )]
    ProtectionRequired {
        /// The key file that was not written.
        path: PathBuf,
    },
    /// [`crate::KeyManager::protect`] was given no passphrase and could ask for none.
    #[error(
        "a passphrase is needed to seal {} and none was given; nothing was changed",
        path.display()
    )]
    SealPassphraseRequired {
        /// The key file.
        path: PathBuf,
    },
    /// An empty passphrase was given to seal a key file; it would protect nothing.
    #[error(
        "an empty passphrase would not protect {}; nothing was written",
        path.display()
    )]
    EmptyPassphrase {
        /// The key file.
        path: PathBuf,
    },
    /// The [`crate::PassphrasePrompt`] failed (nobody to ask, input closed, entries differ).
    #[error("could not get a passphrase to {purpose} {}", path.display())]
    Prompt {
        /// The key file.
        path: PathBuf,
        /// What the passphrase was for.
        purpose: PassphrasePurpose,
        /// What the prompt said.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::KeyManager::protect`] found a key file that is not unprotected.
    #[error(
        "the device key {} is already protected ({storage}); nothing was changed",
        path.display()
    )]
    AlreadyProtected {
        /// The key file.
        path: PathBuf,
        /// Where its key is kept.
        storage: KeyStorageKind,
    },
    /// The operating system's random generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
    /// Argon2id refused its parameters (only with hand-picked, out-of-range parameters).
    #[error("Argon2id could not run with these parameters: {0}")]
    Argon2(argon2::Error),
}

/// Why `secrets.redb` could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Reading, creating or setting permissions on the file failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a readable redb database, or fails redb's integrity check.
    #[error(
        "the device store {} is damaged ({detail}). Nothing was changed. Restore it from a \
         backup; or move it away and pair your devices again",
        path.display()
    )]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
    /// A record does not decrypt under this device's storage key: the key and the store do not
    /// belong together, or the record was altered.
    #[error(
        "a record in {} (node {node}) does not decrypt with this device's storage key. Nothing \
         was changed. The key file (or keychain entry) is not the one this store was written \
         with, or the store was altered: restore the matching key, or move the store away and \
         pair your devices again",
        path.display()
    )]
    Undecryptable {
        /// The store.
        path: PathBuf,
        /// The node id the record is stored under, as text.
        node: String,
    },
    /// The store was written by a newer Tether with a schema this build does not know.
    #[error(
        "the device store {} has schema version {found}; this Tether reads up to version \
         {supported}. Nothing was changed. Upgrade Tether",
        path.display()
    )]
    NewerSchema {
        /// The store.
        path: PathBuf,
        /// The version in the file.
        found: u64,
        /// The newest version this build understands.
        supported: u64,
    },
    /// Another process has the store open.
    #[error(
        "the device store {} is in use by another Tether process; stop it first",
        path.display()
    )]
    InUse {
        /// The store.
        path: PathBuf,
    },
    /// The registry was closed (its service shut down); nothing more can be stored.
    #[error(
        "the device store {} is closed: the service using it has shut down",
        path.display()
    )]
    Closed {
        /// The store.
        path: PathBuf,
    },
    /// The database failed while working (an IO error inside redb, a full disk, ...).
    #[error("the device store {} failed", path.display())]
    Database {
        /// The store.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: BoxedSource,
    },
    /// The operating system's random number generator failed while making a nonce.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// Why a registry operation was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The device is not in a state from which this change is allowed.
    #[error("device {node}: cannot go from {} to {to}", from_text(*from))]
    IllegalTransition {
        /// The device.
        node: NodeId,
        /// Its state, or `None` if the registry does not know it.
        from: Option<StateKind>,
        /// The state that was asked for.
        to: StateKind,
    },
    /// A pairing result or failure names a session other than the one in progress.
    #[error("device {node}: pairing session {given} is not the one in progress ({current})")]
    SessionMismatch {
        /// The device.
        node: NodeId,
        /// The session in progress.
        current: PairingSessionId,
        /// The session given.
        given: PairingSessionId,
    },
    /// A connection from this device is not allowed.
    #[error("device {node}: connection refused: {reason}")]
    Refused {
        /// The device.
        node: NodeId,
        /// Why.
        reason: ConnectionRefused,
    },
    /// The operation needs a paired device and this one is not paired.
    #[error("device {node} is not paired")]
    NotPaired {
        /// The device.
        node: NodeId,
    },
    /// A pairing result whose device info claims another key than the node it is stored for.
    #[error("device info claims key {claimed} but the pairing was with {node}")]
    NodeMismatch {
        /// The node the pairing was with.
        node: NodeId,
        /// The key the device info claims.
        claimed: NodeId,
    },
    /// A relay URL that is empty or unreasonably long.
    #[error("a relay URL must be 1 to {max} bytes, this one has {len}")]
    RelayUrl {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A transfer history entry longer than the registry keeps.
    #[error("a history entry may have at most {max} bytes, this one has {len}")]
    HistoryEntryTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The outbox holds as many queued sends as it keeps.
    #[error("the outbox is full ({max} queued sends); cancel some or let them be delivered")]
    OutboxFull {
        /// The limit.
        max: usize,
    },
    /// A queued send longer than the outbox keeps.
    #[error("an outbox entry may have at most {max} bytes, this one has {len}")]
    OutboxEntryTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Saving the change failed; memory was not changed either.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn from_text(from: Option<StateKind>) -> String {
    from.map_or_else(|| "unknown".to_owned(), |kind| kind.to_string())
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    fn denied() -> std::io::Error {
        std::io::Error::from(std::io::ErrorKind::PermissionDenied)
    }

    fn store_io() -> StoreError {
        StoreError::Io {
            action: "open",
            path: PathBuf::from("/data/secrets.redb"),
            source: denied(),
        }
    }

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(KeyError::Io {
                action: "read",
                path: PathBuf::from("/data/device.key"),
                source: denied(),
            }),
            Box::new(KeyError::Prompt {
                path: PathBuf::from("/data/device.key"),
                purpose: PassphrasePurpose::Open,
                source: std::io::Error::other("no terminal"),
            }),
            Box::new(store_io()),
            Box::new(StoreError::Database {
                path: PathBuf::from("/data/secrets.redb"),
                source: Box::new(denied()),
            }),
            Box::new(RegistryError::Store(store_io())),
        ];
        for error in &errors {
            assert_no_repeated_layer(error.as_ref());
        }
        assert_eq!(
            error_chain(&RegistryError::Store(store_io())),
            "could not open /data/secrets.redb: permission denied"
        );
    }
}
