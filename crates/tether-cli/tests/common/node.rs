//! The real `tether` binary as a person runs it: `--local-only`, throwaway keys, a loopback
//! discovery directory under the test's own runtime directory; `tether up` nodes in their own
//! processes, paired through their control sockets.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) use super::tether;
use super::{event, json_lines};

/// Generous bounds, only so that a broken build fails instead of hanging.
pub(crate) const START: Duration = Duration::from_secs(30);
pub(crate) const FINISH: Duration = Duration::from_secs(120);

pub(crate) fn check(output: &Output, what: &str) -> Vec<Value> {
    assert!(
        output.status.success(),
        "{what}: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&output.stdout)
}

/// A running process whose stdout JSON lines arrive on a channel; killed when dropped.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) lines: JsonLines,
}

impl Running {
    /// Starts `command` with its standard output read as JSON lines and its standard error
    /// the test's own.
    pub(crate) fn spawn(mut command: Command) -> Self {
        command.stderr(Stdio::inherit());
        Self::spawn_keeping_stderr(command)
    }

    /// Like [`Running::spawn`], but standard error goes where `command` already sends it (a
    /// log file, say).
    pub(crate) fn spawn_keeping_stderr(mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
        let lines = JsonLines::read(child.stdout.take().unwrap());
        Self { child, lines }
    }

    /// How long [`Running::wait_for`] waits for a line ([`START`] unless changed).
    pub(crate) fn patience(mut self, patience: Duration) -> Self {
        self.lines.patience = patience;
        self
    }

    /// The next line whose `event` is `name` (others are skipped).
    pub(crate) fn wait_for(&self, name: &str) -> Value {
        self.lines.wait_for(name)
    }

    pub(crate) fn wait(mut self, within: Duration) -> (std::process::ExitStatus, Vec<Value>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader thread ends with the pipe; collect what it read.
                std::thread::sleep(Duration::from_millis(100));
                return (status, self.lines.rest());
            }
            assert!(
                Instant::now() < deadline,
                "the process did not finish within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The JSON lines a process writes on its standard output, as they come (other lines are
/// skipped).
pub(crate) struct JsonLines {
    lines: mpsc::Receiver<Value>,
    patience: Duration,
}

impl JsonLines {
    /// Reads `stdout` in a thread of its own until it ends.
    pub(crate) fn read(stdout: ChildStdout) -> Self {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(value) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(value);
                }
            }
        });
        Self {
            lines,
            patience: START,
        }
    }

    /// How long [`JsonLines::wait_for`] waits for a line ([`START`] unless changed).
    pub(crate) fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }

    /// The next line whose `event` is `name` (others are skipped).
    pub(crate) fn wait_for(&self, name: &str) -> Value {
        let deadline = Instant::now() + self.patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line["event"] == name => return line,
                Ok(_) => {}
                Err(_) => panic!("no {name} line within {:?}", self.patience),
            }
        }
    }

    /// The lines that have come and were not taken yet.
    fn rest(&self) -> Vec<Value> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tether up` for `data`, once it says it is up.
pub(crate) fn up(runtime: &Path, data: &Path) -> Running {
    up_with(runtime, data, &[])
}

/// `tether up EXTRA...` for `data`, once it says it is up.
pub(crate) fn up_with(runtime: &Path, data: &Path, extra: &[&str]) -> Running {
    let mut args = vec!["up"];
    args.extend_from_slice(extra);
    let node = Running::spawn(tether(runtime, data, &args));
    let ready = node.wait_for("up");
    assert!(
        ready["control_socket"]
            .as_str()
            .unwrap()
            .ends_with("control.sock")
    );
    node
}

pub(crate) fn init(runtime: &Path, data: &Path, name: &str) {
    check(
        &tether(runtime, data, &["init", "--name", name])
            .output()
            .unwrap(),
        "init",
    );
}

/// Pairs the devices of `a` and `b` (each with its `up` running): `pair` on a, `join` on b,
/// both through the running nodes. Returns the verification codes both sides showed.
pub(crate) fn pair(runtime: &Path, a: &Path, b: &Path, ticket: bool) -> (String, String) {
    let mut args = vec!["pair", "--yes"];
    if ticket {
        args.push("--ticket");
    }
    let pairing = Running::spawn(tether(runtime, a, &args));
    let code = pairing.wait_for("code")["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let joined = check(&join(runtime, b, &code), "join");
    let (status, lines) = pairing.wait(FINISH);
    assert!(status.success(), "pair: {status}");
    (
        event(&joined, "paired")["verification_code"]
            .as_str()
            .unwrap()
            .to_owned(),
        event(&lines, "paired")["verification_code"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// `tether join -` for `data`, with `code` on its standard input.
pub(crate) fn join(runtime: &Path, data: &Path, code: &str) -> Output {
    let mut child = tether(runtime, data, &["join", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(code.as_bytes()).unwrap();
    drop(stdin);
    child.wait_with_output().unwrap()
}

pub(crate) struct Pair {
    pub(crate) runtime: tempfile::TempDir,
    pub(crate) desk: PathBuf,
    pub(crate) laptop: PathBuf,
}

pub(crate) fn two_devices() -> Pair {
    let runtime = tempfile::tempdir().unwrap();
    let (desk, laptop) = (runtime.path().join("desk"), runtime.path().join("laptop"));
    init(runtime.path(), &desk, "desk");
    init(runtime.path(), &laptop, "laptop");
    Pair {
        runtime,
        desk,
        laptop,
    }
}
