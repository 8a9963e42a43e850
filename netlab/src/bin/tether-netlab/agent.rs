//! A device agent running in a namespace, driven over its stdin and read from its stdout.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tether_netlab::protocol::{Command as AgentCommand, Request};

use crate::lab::Host;

/// How a device starts.
pub(crate) struct DeviceSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) host: Host,
    /// Bind address; `None` binds the host's LAN address on a random port.
    pub(crate) bind: Option<&'a str>,
    pub(crate) mdns: bool,
    /// The lab relay's URL and certificate.
    pub(crate) relay: Option<(&'a str, &'a Path)>,
}

/// A running device agent.
pub(crate) struct Agent {
    pub(crate) name: String,
    pub(crate) node_id: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<Value>,
    /// Lines read but not yet asked for (events, answers to other requests).
    pending: Vec<Value>,
    next_id: u64,
    pub(crate) receive_dir: PathBuf,
}

impl Agent {
    pub(crate) fn start(agent_bin: &Path, dir: &Path, spec: &DeviceSpec<'_>) -> Result<Self> {
        Self::start_with(agent_bin, dir, spec, &[])
    }

    /// [`Agent::start`] with more arguments for the device (such as its QUIC settings:
    /// `--windows quinn --congestion bbr`).
    pub(crate) fn start_with(
        agent_bin: &Path,
        dir: &Path,
        spec: &DeviceSpec<'_>,
        extra: &[&str],
    ) -> Result<Self> {
        let data_dir = dir.join(spec.name).join("data");
        let receive_dir = dir.join(spec.name).join("received");
        std::fs::create_dir_all(&receive_dir)?;
        let bind = spec
            .bind
            .map_or_else(|| format!("{}:0", spec.host.ip()), str::to_owned);
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &spec.host.ns()])
            .arg(agent_bin)
            .arg("device")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--receive-dir")
            .arg(&receive_dir)
            .args(["--bind", &bind, "--name", spec.name])
            .args(extra);
        if spec.mdns {
            command.arg("--mdns");
        }
        if let Some((url, cert)) = spec.relay {
            command.args(["--relay", url]).arg("--relay-cert").arg(cert);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", spec.name)))?;
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("starting a device agent")?;
        let stdin = child.stdin.take().context("agent stdin")?;
        let stdout = child.stdout.take().context("agent stdout")?;
        let (tx, lines) = mpsc::channel();
        let name = spec.name.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) => {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                    Err(_) => tracing::warn!(agent = %name, %line, "not JSON"),
                }
            }
        });
        let mut agent = Self {
            name: spec.name.to_owned(),
            node_id: String::new(),
            child,
            stdin,
            lines,
            pending: Vec::new(),
            next_id: 1,
            receive_dir,
        };
        let ready = agent
            .wait_event(Duration::from_secs(30), |v| v["event"] == "ready")
            .with_context(|| format!("device {} did not start", spec.name))?;
        agent.node_id = ready["node_id"].as_str().unwrap_or_default().to_owned();
        Ok(agent)
    }

    /// Sends a command without waiting; returns its id.
    pub(crate) fn send(&mut self, command: AgentCommand) -> Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&Request { id, command })?;
        writeln!(self.stdin, "{line}").with_context(|| format!("writing to {}", self.name))?;
        self.stdin.flush()?;
        Ok(id)
    }

    /// Sends a command and waits for its answer (which may say `ok: false`).
    pub(crate) fn call(&mut self, command: AgentCommand, timeout: Duration) -> Result<Value> {
        let id = self.send(command)?;
        self.answer(id, timeout)
    }

    /// Like [`Agent::call`], failing when the answer is not ok.
    pub(crate) fn call_ok(&mut self, command: AgentCommand, timeout: Duration) -> Result<Value> {
        let answer = self.call(command, timeout)?;
        if answer["ok"] != true {
            bail!(
                "{}: {}",
                self.name,
                answer["error"].as_str().unwrap_or("failed")
            );
        }
        Ok(answer)
    }

    /// Waits for the answer to request `id`.
    pub(crate) fn answer(&mut self, id: u64, timeout: Duration) -> Result<Value> {
        self.wait_event(timeout, |v| v["id"] == id && v.get("event").is_none())
            .with_context(|| format!("{}: no answer to request {id}", self.name))
    }

    /// Takes the lines already read that match `pred`.
    pub(crate) fn take_events(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let (taken, kept) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|v| pred(v));
        self.pending = kept;
        taken
    }

    /// Waits for a line matching `pred` (looking at lines already read first).
    pub(crate) fn wait_event(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        if let Some(index) = self.pending.iter().position(&pred) {
            return Ok(self.pending.remove(index));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(value) if pred(&value) => return Ok(value),
                Ok(value) => self.pending.push(value),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: timed out after {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => bail!("{}: the agent exited", self.name),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.send(AgentCommand::Shutdown);
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Pairs `joiner` with `initiator` by word code or ticket; returns the joiner's answer.
pub(crate) fn pair(initiator: &mut Agent, joiner: &mut Agent, ticket: bool) -> Result<Value> {
    let code = initiator.call_ok(AgentCommand::PairInit { ticket }, Duration::from_secs(10))?;
    let code = code["code"].as_str().context("no code")?.to_owned();
    let joined = joiner.call_ok(AgentCommand::Join { code }, Duration::from_secs(60))?;
    let paired = initiator.wait_event(Duration::from_secs(30), |v| {
        v["event"] == "paired" || v["event"] == "pairing_failed"
    })?;
    if paired["event"] != "paired" {
        bail!("pairing failed: {}", paired["reason"]);
    }
    if paired["verification"] != joined["verification"] {
        bail!("the two sides show different verification codes");
    }
    Ok(joined)
}
