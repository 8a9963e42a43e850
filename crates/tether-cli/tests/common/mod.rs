//! The `tether` binary as the end-to-end tests run it, and reading its `--json` output.
//!
//! Every test's `tether` is set up here, once: its own loopback discovery directory
//! (`XDG_RUNTIME_DIR`), no `TETHER_*` variable of the person running the tests, no terminal on
//! standard input, and by default `--local-only --json --insecure-key-file --data-dir DATA`
//! (throwaway keys: no passphrase).
#![allow(dead_code, clippy::panic)]

pub(crate) mod node;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// How one test runs `tether`: its directories and global options.
#[derive(Debug, Clone)]
pub(crate) struct Tether {
    runtime: PathBuf,
    data: Option<PathBuf>,
    network: Option<&'static str>,
    json: bool,
    insecure_key_file: bool,
}

impl Tether {
    /// `tether --local-only --json --insecure-key-file --data-dir DATA`, with the loopback
    /// discovery directory under `runtime`.
    pub(crate) fn new(runtime: &Path, data: &Path) -> Self {
        Self {
            runtime: runtime.to_owned(),
            data: Some(data.to_owned()),
            network: Some("--local-only"),
            json: true,
            insecure_key_file: true,
        }
    }

    /// No `--data-dir` (the demo, `--help`).
    pub(crate) fn without_data_dir(runtime: &Path) -> Self {
        Self {
            data: None,
            ..Self::new(runtime, runtime)
        }
    }

    /// `--lan` instead of `--local-only`.
    pub(crate) fn lan(mut self) -> Self {
        self.network = Some("--lan");
        self
    }

    /// Neither `--local-only` nor `--lan` (the command itself must bring its own).
    pub(crate) fn no_network_option(mut self) -> Self {
        self.network = None;
        self
    }

    /// Text output instead of `--json`.
    pub(crate) fn text(mut self) -> Self {
        self.json = false;
        self
    }

    /// Without `--insecure-key-file`: a new key must be sealed (or is refused).
    pub(crate) fn sealed_key(mut self) -> Self {
        self.insecure_key_file = false;
        self
    }

    /// `tether OPTIONS... ARGS...`.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tether"));
        self.set_up(&mut command);
        command.args(args);
        command
    }

    /// Puts the options and the environment on `command`, a `tether` command made elsewhere
    /// (inside a network namespace, say).
    pub(crate) fn set_up(&self, command: &mut Command) {
        command.args(self.network);
        if self.json {
            command.arg("--json");
        }
        if self.insecure_key_file {
            command.arg("--insecure-key-file");
        }
        if let Some(data) = &self.data {
            command.arg("--data-dir").arg(data);
        }
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TETHER_") {
                command.env_remove(name);
            }
        }
        command
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .stdin(Stdio::null());
    }
}

/// `tether --local-only --json --insecure-key-file --data-dir DATA ARGS...` (see [`Tether`]).
pub(crate) fn tether(runtime: &Path, data: &Path, args: &[&str]) -> Command {
    Tether::new(runtime, data).command(args)
}

/// Every JSON line of a command's standard output (other lines are skipped).
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line whose `event` is `name`.
pub(crate) fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// A command's standard error, after checking that no line of it (the one-sentence error
/// with its causes) repeats a run of its `: `-separated layers right after itself.
pub(crate) fn error_text(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    for line in text.lines() {
        tether::assert_no_repeated_segment(line);
    }
    text
}
