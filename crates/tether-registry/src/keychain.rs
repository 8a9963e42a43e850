//! The OS keychain, through the `keyring` crate: Secret Service on Linux and the BSDs (over the
//! pure-Rust zbus D-Bus client), Keychain Services on macOS, Credential Manager on Windows.
//!
//! Each call runs on its own thread with a deadline. A Secret Service whose collection is
//! locked may try to show an unlock prompt, and on a machine with no one to answer it the call
//! would wait forever; after [`TIMEOUT`] we give up and treat the keychain as unavailable
//! (the abandoned thread ends when the D-Bus call does).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use zeroize::Zeroizing;

/// The keychain service name of every Tether entry.
pub(crate) const SERVICE: &str = "tether";

/// How long one keychain call may take.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Why a keychain call did not give the answer asked for.
#[derive(Debug)]
pub(crate) enum KeychainFailure {
    /// There is no keychain, it is locked, or it failed; the text says which.
    Unavailable(String),
    /// The keychain works and has no such entry.
    NoEntry,
}

/// The account name of an entry, from the id stored in the key file.
pub(crate) fn account_name(account_id: &[u8]) -> String {
    let hex: String = account_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("device-key-{hex}")
}

/// Stores `secret` under `account`, then reads it back to prove the keychain really keeps it.
pub(crate) fn store(account: &str, secret: &[u8]) -> Result<(), KeychainFailure> {
    let stored = Zeroizing::new(secret.to_vec());
    let account_owned = account.to_owned();
    run(move || {
        let entry = keyring::Entry::new(SERVICE, &account_owned)?;
        entry.set_secret(&stored)?;
        let read_back = Zeroizing::new(entry.get_secret()?);
        Ok(*read_back == *stored)
    })
    .and_then(|same| {
        if same {
            Ok(())
        } else {
            // Leave no half-working entry behind.
            let _ = delete(account);
            Err(KeychainFailure::Unavailable(
                "the keychain returned other bytes than were stored".to_owned(),
            ))
        }
    })
}

/// Reads the secret stored under `account`.
pub(crate) fn load(account: &str) -> Result<Zeroizing<Vec<u8>>, KeychainFailure> {
    let account = account.to_owned();
    run(move || {
        let entry = keyring::Entry::new(SERVICE, &account)?;
        entry.get_secret().map(Zeroizing::new)
    })
}

/// Deletes the entry under `account`.
pub(crate) fn delete(account: &str) -> Result<(), KeychainFailure> {
    let account = account.to_owned();
    run(move || keyring::Entry::new(SERVICE, &account)?.delete_credential())
}

/// Runs a keychain call on a thread and waits at most [`TIMEOUT`] for it.
fn run<T: Send + 'static>(
    call: impl FnOnce() -> keyring::Result<T> + Send + 'static,
) -> Result<T, KeychainFailure> {
    let (sender, receiver) = mpsc::sync_channel(1);
    thread::Builder::new()
        .name("tether-keychain".to_owned())
        .spawn(move || {
            // The receiver may have given up; then nobody needs the answer.
            let _ = sender.send(call());
        })
        .map_err(|error| KeychainFailure::Unavailable(format!("cannot start a thread: {error}")))?;
    match receiver.recv_timeout(TIMEOUT) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(keyring::Error::NoEntry)) => Err(KeychainFailure::NoEntry),
        Ok(Err(error)) => Err(KeychainFailure::Unavailable(describe(&error))),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(KeychainFailure::Unavailable(format!(
            "no answer within {} s (a locked keychain waiting for an unlock prompt?)",
            TIMEOUT.as_secs()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(KeychainFailure::Unavailable(
            "the keychain call ended without an answer".to_owned(),
        )),
    }
}

/// A description of a keyring error that never includes secret bytes (some variants carry
/// the data that was read).
fn describe(error: &keyring::Error) -> String {
    match error {
        keyring::Error::PlatformFailure(inner) => format!("platform failure: {inner}"),
        keyring::Error::NoStorageAccess(inner) => format!("no access to storage: {inner}"),
        keyring::Error::NoDefaultStore => match keyring::Entry::store_status() {
            Err(keyring::Error::NoDefaultStore) | Ok(()) => {
                "no credential store on this system".to_owned()
            }
            Err(why) => format!("no credential store on this system: {}", describe(why)),
        },
        keyring::Error::BadEncoding(_) | keyring::Error::BadDataFormat(..) => {
            "the entry is not in the expected format".to_owned()
        }
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_hex() {
        assert_eq!(account_name(&[0, 1, 0xab]), "device-key-0001ab");
    }

    #[test]
    fn errors_with_data_do_not_show_it() {
        let text = describe(&keyring::Error::BadEncoding(b"SECRET".to_vec()));
        assert!(!text.contains("SECRET"));
        assert!(!text.contains("83, 69"));
    }
}
