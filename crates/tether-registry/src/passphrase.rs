//! Asking the person for the key file's passphrase, when the keys need one and the caller gave
//! none up front.
//!
//! [`crate::KeyManager`] calls a [`PassphrasePrompt`] only when it must: to seal a new key
//! that no OS keychain takes ([`PassphrasePurpose::Seal`]), or to open a key file sealed when
//! the device was set up ([`PassphrasePurpose::Open`]). A device whose key is in the keychain
//! is never asked.

use std::fmt;
use std::io;
use std::path::Path;

use zeroize::Zeroizing;

/// Why a passphrase is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphrasePurpose {
    /// To seal the key file: a new passphrase (a terminal asks twice). An empty one is
    /// refused with [`crate::KeyError::EmptyPassphrase`].
    Seal,
    /// To open the key file, sealed with the passphrase given when it was made.
    Open,
}

impl fmt::Display for PassphrasePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Seal => "seal",
            Self::Open => "open",
        })
    }
}

/// Asks someone for the key file's passphrase (a terminal without echo, a dialog).
///
/// An error (no one to ask, input closed, two entries that differ) stops start-up with
/// [`crate::KeyError::Prompt`]; nothing is written.
pub trait PassphrasePrompt: Send + Sync + fmt::Debug {
    /// The passphrase for `key_file`, for `purpose`.
    fn passphrase(
        &self,
        key_file: &Path,
        purpose: PassphrasePurpose,
    ) -> io::Result<Zeroizing<String>>;
}
