//! The orchestrator's view of its child processes: servers answering line commands, clients
//! printing one JSON line, and the kernel's memory counters for a process.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running child with line-based stdin/stdout.
pub(crate) struct Process {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
}

impl Process {
    /// Spawns this binary with `args`; its stderr goes to `log`.
    pub(crate) fn spawn(name: &str, args: &[OsString], log: &Path) -> Result<Self> {
        let exe = std::env::current_exe()?;
        let stderr = std::fs::File::create(log)?;
        let mut child = Command::new(exe)
            .args(args)
            // An error's chain, not its backtrace, ends up in the report's notes.
            .env("RUST_LIB_BACKTRACE", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log: log.to_owned(),
        })
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line on stdout, within `timeout`.
    pub(crate) fn line(&mut self, timeout: Duration) -> Result<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(error) => bail!(
                "{}: no line within {timeout:?} ({error}); stderr: {}",
                self.name,
                self.stderr_tail()
            ),
        }
    }

    /// Writes a line to stdin.
    pub(crate) fn say(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
    }

    /// Writes `line` and returns the answer.
    pub(crate) fn ask(&mut self, line: &str, timeout: Duration) -> Result<String> {
        self.say(line)?;
        self.line(timeout)
    }

    /// Closes stdin and waits (at most `timeout`, then kills) for the exit; the last stdout
    /// line.
    pub(crate) fn finish(&mut self, timeout: Duration) -> Result<Option<String>> {
        drop(self.stdin.take());
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{}: still running after {timeout:?}, killed; stderr: {}",
                    self.name,
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut last = None;
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            last = Some(line);
        }
        if !status.success() {
            bail!(
                "{} exited with {status}; stderr: {}",
                self.name,
                self.stderr_tail()
            );
        }
        Ok(last)
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text.get(start..).unwrap_or_default().to_owned()
    }
}

/// A server: started, its `ready <id> <addr>` line read.
pub(crate) struct Server {
    pub(crate) process: Process,
    pub(crate) id: String,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(name: &str, args: &[OsString], log: &Path) -> Result<Self> {
        let mut process = Process::spawn(name, args, log)?;
        let ready = process.line(Duration::from_secs(60))?;
        let mut words = ready.split_whitespace();
        let (Some("ready"), Some(id), Some(addr)) = (words.next(), words.next(), words.next())
        else {
            bail!("{name}: expected `ready <id> <addr>`, got {ready:?}");
        };
        Ok(Self {
            id: id.to_owned(),
            addr: addr.to_owned(),
            process,
        })
    }

    /// `--id <id> --addr <addr>` for raw and blobs clients.
    pub(crate) fn peer_args(&self) -> Vec<OsString> {
        args(&["--id", &self.id, "--addr", &self.addr])
    }

    pub(crate) fn stop(&mut self) -> Result<()> {
        let _ = self.process.say("quit");
        self.process.finish(Duration::from_secs(60)).map(drop)
    }
}

/// Runs a client to completion and parses its last stdout line as JSON.
pub(crate) fn client(name: &str, args: &[OsString], log: &Path) -> Result<serde_json::Value> {
    let mut process = Process::spawn(name, args, log)?;
    let last = process
        .finish(Duration::from_secs(900))?
        .with_context(|| format!("{name} printed nothing"))?;
    serde_json::from_str(&last).with_context(|| format!("{name} printed {last:?}"))
}

/// `strs` as process arguments.
pub(crate) fn args(strs: &[&str]) -> Vec<OsString> {
    strs.iter().map(OsString::from).collect()
}

/// A `Vm*` field of `/proc/<pid>/status`, in bytes.
pub(crate) fn vm_bytes(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix(field).and_then(|r| r.strip_prefix(':')) {
            let kib: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{field} of {pid}: {rest:?}"))?;
            return Ok(kib * 1024);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}
