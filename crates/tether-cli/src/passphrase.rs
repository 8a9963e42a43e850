//! The device key's passphrase: where it comes from (`--passphrase-file`, `TETHER_PASSPHRASE`,
//! the terminal), and the one sentence shown when a new key could only be stored unprotected.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use tether::{KeyError, NetworkError, PassphrasePrompt, PassphrasePurpose};
use zeroize::Zeroizing;

use crate::failure::{ERROR, Failure};

/// The environment variable holding the key file's passphrase.
pub(crate) const PASSPHRASE_VAR: &str = "TETHER_PASSPHRASE";

/// The longest passphrase file read (a passphrase is one line; this bounds a wrong FILE).
const MAX_PASSPHRASE_FILE: u64 = 4096;

/// How often the terminal asks again after a mistyped confirmation or passphrase.
const PROMPT_ATTEMPTS: usize = 3;

/// What is said, as one sentence, when a new key has no way to be protected.
pub(crate) const PROTECTION_REQUIRED: &str = "no OS keychain and no terminal to ask for a \
    passphrase, so the new device key would be stored unencrypted: give a passphrase with \
    TETHER_PASSPHRASE or --passphrase-file FILE, or pass --insecure-key-file to accept an \
    unprotected key file";

/// The passphrase the person gave up front: `--passphrase-file` first, else
/// `TETHER_PASSPHRASE`. An empty one counts as none.
pub(crate) fn given_passphrase(file: Option<&Path>) -> Result<Option<Zeroizing<String>>> {
    if let Some(file) = file {
        return read_passphrase_file(file).map(Some);
    }
    match std::env::var_os(PASSPHRASE_VAR) {
        Some(value) => {
            let value = value
                .into_string()
                .map_err(|_| Failure::usage(format!("{PASSPHRASE_VAR} is not valid UTF-8")))?;
            Ok((!value.is_empty()).then(|| Zeroizing::new(value)))
        }
        None => Ok(None),
    }
}

/// The first line of `file`, without its line ending; refused when empty or not UTF-8.
fn read_passphrase_file(file: &Path) -> Result<Zeroizing<String>> {
    let unreadable = |reason: String| {
        Failure::usage(format!(
            "cannot read the passphrase file {}: {reason}",
            file.display()
        ))
    };
    let opened = std::fs::File::open(file).map_err(|error| unreadable(error.to_string()))?;
    let mut bytes = Zeroizing::new(Vec::new());
    opened
        .take(MAX_PASSPHRASE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| unreadable(error.to_string()))?;
    if bytes.len() as u64 > MAX_PASSPHRASE_FILE {
        return Err(unreadable(format!(
            "it is longer than {MAX_PASSPHRASE_FILE} bytes; it should hold one line"
        ))
        .into());
    }
    let text =
        std::str::from_utf8(&bytes).map_err(|_| unreadable("it is not UTF-8 text".to_owned()))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(unreadable("its first line is empty".to_owned()).into());
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// The terminal, when standard input is one: asks without echo, twice for a new passphrase.
pub(crate) fn terminal_prompt() -> Option<Arc<dyn PassphrasePrompt>> {
    std::io::stdin()
        .is_terminal()
        .then(|| Arc::new(TerminalPrompt) as Arc<dyn PassphrasePrompt>)
}

#[derive(Debug)]
struct TerminalPrompt;

impl PassphrasePrompt for TerminalPrompt {
    fn passphrase(
        &self,
        key_file: &Path,
        purpose: PassphrasePurpose,
    ) -> std::io::Result<Zeroizing<String>> {
        let ask = |text: &str| rpassword::prompt_password(text).map(Zeroizing::new);
        match purpose {
            PassphrasePurpose::Seal => {
                for _ in 0..PROMPT_ATTEMPTS {
                    let first = ask(&format!(
                        "New passphrase for the device key {}: ",
                        key_file.display()
                    ))?;
                    if first.is_empty() {
                        eprint_line("An empty passphrase protects nothing; type one.");
                        continue;
                    }
                    let second = ask("The same passphrase again: ")?;
                    if *first == *second {
                        return Ok(first);
                    }
                    eprint_line("The two passphrases differ; again.");
                }
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "no passphrase was typed twice the same",
                ))
            }
            _ => ask(&format!(
                "Passphrase of the device key {}: ",
                key_file.display()
            )),
        }
    }
}

/// One line to the person at the terminal, beside the prompt.
fn eprint_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// The one sentence a key failure deserves in the CLI, with its exit code; `None` keeps the
/// error as it is.
pub(crate) fn key_failure(error: &NetworkError) -> Option<Failure> {
    match error {
        NetworkError::Keys(KeyError::ProtectionRequired { .. }) => {
            Some(Failure::usage(PROTECTION_REQUIRED))
        }
        NetworkError::Keys(KeyError::PassphraseRequired { path }) => Some(Failure::new(
            ERROR,
            format!(
                "the device key {} is sealed with a passphrase: give it with TETHER_PASSPHRASE \
                 or --passphrase-file FILE, or run this from a terminal to be asked",
                path.display()
            ),
        )),
        _ => None,
    }
}
