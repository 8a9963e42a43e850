//! `KeyStorageKind`: which of the three places holds the device's keys.

use std::fmt;

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
