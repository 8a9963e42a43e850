//! Where `tether join` takes the code from: never the command line.
//!
//! Every local user can read a process's arguments (`ps`, `/proc/PID/cmdline`) for as long as
//! it runs, and a code read there can be redeemed first (croc's CVE-2023-43621). So the code
//! comes from the terminal (a prompt on stderr), from standard input with `tether join -`, or
//! from `TETHER_CODE`, whose value only this user can read (`/proc/PID/environ` is 0400).
#![allow(clippy::print_stderr)] // the prompt goes to the terminal

use std::fmt;
use std::io::{BufRead, IsTerminal, Write};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::failure::Failure;

/// The environment variable `tether join` reads the code from.
pub(crate) const CODE_VAR: &str = "TETHER_CODE";

/// The argument that means "read the code from standard input".
pub(crate) const FROM_STDIN: &str = "-";

/// Longer input is not a code or a ticket (a ticket is a few hundred characters).
const MAX_INPUT: u64 = 4096;

/// What `tether join` says when it is given the code as an argument.
pub(crate) const REFUSED: &str = "a code on the command line can be read by every user of this \
    machine (ps, /proc), so tether join does not take one there: run `tether join` and type it, \
    pipe it to `tether join -`, or set TETHER_CODE";

/// What `tether join --help` says after the arguments.
pub(crate) const JOIN_HELP: &str = "\
The word code or tether1... ticket the other device shows is typed at the
prompt, read from standard input (`tether join -`), or taken from TETHER_CODE.
It is never given as an argument: every user of this machine can read those.";

/// A word code or ticket as typed, wiped from memory when dropped and never shown by `Debug`.
#[derive(Clone)]
pub(crate) struct CodeText(Zeroizing<String>);

impl Serialize for CodeText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CodeText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(Zeroizing::new(text)))
    }
}

impl CodeText {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CodeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeText(<redacted>)")
    }
}

/// The code for `tether join [ARG]`: from standard input when `ARG` is `-`, refused when `ARG`
/// is anything else, else from `TETHER_CODE`, else typed at the terminal.
pub(crate) fn read_code(arg: Option<&str>) -> Result<CodeText, Failure> {
    match arg {
        Some(FROM_STDIN) => from_reader(std::io::stdin().lock(), "standard input"),
        Some(_) => Err(Failure::usage(REFUSED)),
        None => {
            if let Some(code) = std::env::var_os(CODE_VAR) {
                let code = code.into_string().map_err(|_| {
                    Failure::usage(format!("{CODE_VAR} is not valid UTF-8; set it again"))
                })?;
                let code = Zeroizing::new(code);
                return non_empty(&code, CODE_VAR);
            }
            if !std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "no code to join with: type it at a terminal, pipe it to `tether join -`, \
                     or set TETHER_CODE",
                ));
            }
            eprint!("Code shown on the other device: ");
            let _ = std::io::stderr().flush();
            from_reader(std::io::stdin().lock(), "the terminal")
        }
    }
}

/// The first line of `input` (at most [`MAX_INPUT`] bytes), without surrounding blank space.
fn from_reader(input: impl BufRead, source: &str) -> Result<CodeText, Failure> {
    let mut line = Zeroizing::new(String::new());
    input
        .take(MAX_INPUT)
        .read_line(&mut line)
        .map_err(|error| Failure::usage(format!("cannot read the code from {source}: {error}")))?;
    non_empty(&line, source)
}

fn non_empty(text: &str, source: &str) -> Result<CodeText, Failure> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(Failure::usage(format!(
            "no code in {source}: give the word code or ticket the other device shows"
        )));
    }
    Ok(CodeText(Zeroizing::new(trimmed.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_code_and_debug_hides_it() {
        let code = from_reader(&b" harbor-brave-lion-sunset \nmore\n"[..], "test").unwrap();
        assert_eq!(code.as_str(), "harbor-brave-lion-sunset");
        assert_eq!(format!("{code:?}"), "CodeText(<redacted>)");
        assert_eq!(
            serde_json::to_string(&code).unwrap(),
            "\"harbor-brave-lion-sunset\""
        );
    }

    #[test]
    fn empty_or_endless_input_is_a_usage_error() {
        assert!(from_reader(&b"\n"[..], "test").is_err());
        assert!(from_reader(&b""[..], "test").is_err());
        // A line longer than any code is cut at the bound, not read for ever.
        let long = vec![b'a'; 1 << 20];
        let code = from_reader(&long[..], "test").unwrap();
        assert_eq!(code.as_str().len(), MAX_INPUT as usize);
        assert_eq!(
            read_code(Some("harbor-brave-lion-sunset"))
                .unwrap_err()
                .code,
            crate::failure::USAGE
        );
    }
}
