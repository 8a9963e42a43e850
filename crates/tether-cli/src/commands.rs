//! What each command does with a node, whichever process runs that node: this one (a
//! short-lived node) or a running `tether up` (through the control socket).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether::{DeviceInfo, DeviceName, NetworkingService};
use tokio_util::sync::CancellationToken;

use crate::code_input::CodeText;
use crate::context::{NodeContext, resolve};
use crate::doctor;
use crate::failure::{Failure, offline};
use crate::output::Sink;
use crate::send::SendRequest;

/// The pause between two pings of `tether ping`.
const PING_GAP: Duration = Duration::from_millis(100);

pub(crate) mod channel;
mod history;
mod pairing;
mod queue;
mod quota;
pub(crate) mod stream;
mod text;

pub(crate) use history::DEFAULT_LIMIT as HISTORY_LIMIT;
pub(crate) use pairing::Confirm;
pub(crate) use quota::{QuotaArgs, QuotaSetting};
pub(crate) use text::read_text;

/// A change to a paired device's storage quota (`tether trust --quota/--no-quota`). An enum,
/// not `Option<Option<u64>>`: that one's `Some(None)` reads back from JSON as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum QuotaChange {
    /// At most this many bytes.
    Set(u64),
    /// Back to the default (`tether up --quota`, else none).
    Default,
}

/// A command for a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(crate) enum Request {
    Id,
    Devices,
    Ping {
        device: String,
        count: u32,
    },
    Unpair {
        device: String,
    },
    Trust {
        device: String,
        /// `None`: unchanged.
        auto_accept: Option<bool>,
        /// `None`: unchanged.
        #[serde(default)]
        quota: Option<QuotaChange>,
        #[serde(default)]
        quota_reset: bool,
    },
    Gc {
        dry_run: bool,
        receive_dir: Option<PathBuf>,
    },
    Rename {
        name: String,
        device: Option<String>,
    },
    Doctor {
        device: Option<String>,
    },
    History {
        device: Option<String>,
        limit: usize,
    },
    Pair {
        ticket: bool,
        /// Whether (and where) to ask before pairing with a joiner that proved the code.
        #[serde(default)]
        confirm: Confirm,
    },
    Join {
        code: CodeText,
    },
    Send(SendRequest),
    /// `tether send --queue`: into the outbox, delivered by the running node.
    QueueSend(SendRequest),
    /// `tether queue`: the outbox.
    Queue,
    /// `tether queue cancel ID`.
    QueueCancel {
        id: u64,
    },
    Text {
        device: String,
        text: String,
    },
    /// `tether quota`: bandwidth quotas, set (`None`: unchanged) and shown.
    Quota {
        device: Option<String>,
        send: Option<QuotaSetting>,
        receive: Option<QuotaSetting>,
    },
}

impl Request {
    /// The command's name, for the log (never its arguments).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Id => "id",
            Self::Devices => "devices",
            Self::Ping { .. } => "ping",
            Self::Unpair { .. } => "unpair",
            Self::Trust { .. } => "trust",
            Self::Gc { .. } => "gc",
            Self::Rename { .. } => "rename",
            Self::Doctor { .. } => "doctor",
            Self::History { .. } => "history",
            Self::Pair { .. } => "pair",
            Self::Join { .. } => "join",
            Self::Send(_) => "send",
            Self::QueueSend(_) => "send --queue",
            Self::Queue => "queue",
            Self::QueueCancel { .. } => "queue cancel",
            Self::Text { .. } => "text",
            Self::Quota { .. } => "quota",
        }
    }

    /// Whether a short-lived node for this command needs no more than loopback.
    pub(crate) fn offline(&self) -> bool {
        matches!(
            self,
            Self::Id
                | Self::Devices
                | Self::Unpair { .. }
                | Self::Trust { .. }
                | Self::Gc { .. }
                | Self::Rename { .. }
                | Self::History { .. }
                | Self::QueueSend(_)
                | Self::Queue
                | Self::QueueCancel { .. }
                | Self::Quota { .. }
        )
    }
}

/// Runs `request` on `node`, reporting into `sink`, until done or `cancel`.
pub(crate) async fn execute(
    node: &NetworkingService,
    request: Request,
    sink: &Sink,
    cancel: &CancellationToken,
    context: &NodeContext,
) -> Result<()> {
    match request {
        Request::Id => {
            show_identity(node, &node.device_info(), sink);
            Ok(())
        }
        Request::Devices => {
            devices(node, sink);
            Ok(())
        }
        Request::Ping { device, count } => ping(node, &device, count, sink, cancel).await,
        Request::Unpair { device } => unpair(node, &device, sink),
        Request::Trust {
            device,
            auto_accept,
            quota,
            quota_reset,
        } => trust(node, &device, auto_accept, quota, quota_reset, sink),
        Request::Gc {
            dry_run,
            receive_dir,
        } => gc(node, dry_run, receive_dir.as_deref(), sink),
        Request::Rename { name, device } => rename(node, &name, device.as_deref(), sink),
        Request::Doctor { device } => doctor::run(node, device.as_deref(), sink, context).await,
        Request::History { device, limit } => {
            history::history(node, device.as_deref(), limit, sink)
        }
        Request::Pair { ticket, confirm } => {
            pairing::pair(node, ticket, confirm, sink, cancel).await
        }
        Request::Join { code } => pairing::join(node, code.as_str(), sink, cancel).await,
        Request::Send(request) => crate::send_many::run(node, request, sink, cancel).await,
        Request::QueueSend(request) => queue::queue(node, request, sink, context).await,
        Request::Queue => queue::list(node, sink),
        Request::QueueCancel { id } => queue::cancel(node, id, sink),
        Request::Text { device, text } => text::send(node, &device, text, sink, cancel).await,
        Request::Quota {
            device,
            send,
            receive,
        } => quota::quota(node, device.as_deref(), send, receive, sink),
    }
}

pub(crate) fn show_identity(node: &NetworkingService, info: &DeviceInfo, sink: &Sink) {
    let storage = node.key_storage().to_string();
    sink.line(
        "identity",
        format!(
            "name:      {}\ntype:      {}\ndevice id: {}\nnode id:   {}\nkey kept:  {}",
            info.device_name, info.device_type, info.device_id, info.public_key, storage
        ),
        json!({
            "name": info.device_name.as_str(),
            "type": info.device_type.as_str(),
            "device_id": info.device_id.to_string(),
            "node_id": info.public_key.to_string(),
            "key_storage": storage,
        }),
    );
}

fn devices(node: &NetworkingService, sink: &Sink) {
    let statuses = node.device_statuses();
    if statuses.is_empty() {
        sink.text(
            "No paired devices yet: run `tether pair` here and `tether join` on the other device.",
        );
        return;
    }
    sink.text(format!(
        "{:<18} {:<10} {:<12} {:<7} {:>7}  {:<8} {:<9} {:<20} {}",
        "NAME", "NODE", "STATE", "PATH", "RTT", "FOUND BY", "LAST SEEN", "STORED", "BANDWIDTH"
    ));
    for status in statuses {
        let name = status
            .info
            .as_ref()
            .map_or_else(|| "(not paired)".to_owned(), |i| i.device_name.to_string());
        let path = status
            .connection
            .as_ref()
            .map_or_else(|| "-".to_owned(), |c| c.path.to_string());
        let rtt_ms = status
            .connection
            .as_ref()
            .and_then(|c| c.rtt)
            .map(|rtt| rtt.as_secs_f64() * 1e3);
        let seen_ago = status
            .last_seen
            .map(|at| SystemTime::now().duration_since(at).unwrap_or_default());
        let stored = match (status.info.is_some(), status.quota) {
            (false, _) => "-".to_owned(),
            (true, None) => crate::progress::bytes(status.stored_bytes),
            (true, Some(quota)) => format!(
                "{} of {}",
                crate::progress::bytes(status.stored_bytes),
                crate::progress::bytes(quota)
            ),
        };
        let (bandwidth, bandwidth_json) = quota::devices_column(node, status.node_id);
        sink.line(
            "device",
            format!(
                "{:<18} {:<10} {:<12} {:<7} {:>7}  {:<8} {:<9} {:<20} {}",
                clip(&name, 18),
                status.node_id.fmt_short(),
                status.state.to_string(),
                path,
                rtt_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}ms")),
                status.discovered_by.unwrap_or("-"),
                seen_ago.map_or_else(|| "-".to_owned(), ago_text),
                stored,
                bandwidth,
            ),
            json!({
                "name": status.info.as_ref().map(|i| i.device_name.as_str()),
                "type": status.info.as_ref().map(|i| i.device_type.as_str()),
                "device_id": status.info.as_ref().map(|i| i.device_id.to_string()),
                "node_id": status.node_id.to_string(),
                "paired": status.info.is_some(),
                "state": status.state.to_string(),
                "path": status.connection.as_ref().map(|c| c.path.to_string()),
                "relay_url": status.connection.as_ref().and_then(|c| c.relay_url.clone()),
                "remote": status.connection.as_ref().and_then(|c| c.remote.clone()),
                "rtt_ms": rtt_ms,
                "last_seen_s_ago": seen_ago.map(|ago| ago.as_secs_f64()),
                "discovered_by": status.discovered_by,
                "quota": status.quota,
                "stored_bytes": status.stored_bytes,
                "bandwidth": bandwidth_json,
            }),
        );
    }
}

fn ago_text(ago: Duration) -> String {
    let s = ago.as_secs();
    match s {
        0..=4 => "now".to_owned(),
        5..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(max - 1).collect();
        format!("{kept}…")
    }
}

async fn ping(
    node: &NetworkingService,
    device: &str,
    count: u32,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let target = resolve(node, device)?;
    let handle = node.device(target)?;
    for seq in 0..count {
        let rtt = tokio::select! {
            rtt = handle.ping() => rtt.map_err(|error| offline(device, error))?,
            () = cancel.cancelled() => return Err(Failure::interrupted("ping stopped").into()),
        };
        let path = handle
            .connection_info()
            .map_or_else(|| "unknown".to_owned(), |i| i.path.to_string());
        sink.line(
            "pong",
            format!(
                "pong from {}: {:.2} ms ({path})",
                target.fmt_short(),
                rtt.as_secs_f64() * 1e3
            ),
            json!({ "seq": seq, "rtt_ms": rtt.as_secs_f64() * 1e3, "path": path }),
        );
        if seq + 1 < count {
            tokio::time::sleep(PING_GAP).await;
        }
    }
    Ok(())
}

fn unpair(node: &NetworkingService, device: &str, sink: &Sink) -> Result<()> {
    let target = resolve(node, device)?;
    node.unpair(target)?;
    sink.line(
        "unpaired",
        format!(
            "unpaired {}; it will be refused from now on",
            target.fmt_short()
        ),
        json!({ "node_id": target.to_string() }),
    );
    Ok(())
}

fn trust(
    node: &NetworkingService,
    device: &str,
    auto_accept: Option<bool>,
    quota: Option<QuotaChange>,
    quota_reset: bool,
    sink: &Sink,
) -> Result<()> {
    let target = resolve(node, device)?;
    if let Some(change) = quota {
        let quota = match change {
            QuotaChange::Set(bytes) => Some(bytes),
            QuotaChange::Default => None,
        };
        node.set_storage_quota(target, quota)?;
        let text = match quota {
            Some(bytes) => format!(
                "{} may store at most {} here",
                target.fmt_short(),
                crate::progress::bytes(bytes)
            ),
            None => format!("{} has the default quota again", target.fmt_short()),
        };
        sink.line(
            "quota",
            text,
            json!({ "node_id": target.to_string(), "quota": quota }),
        );
    }
    if quota_reset {
        node.reset_stored_bytes(target)?;
        sink.line(
            "quota_reset",
            format!(
                "what {} stored here counts from zero again",
                target.fmt_short()
            ),
            json!({ "node_id": target.to_string(), "stored_bytes": 0 }),
        );
    }
    let Some(auto_accept) = auto_accept else {
        return Ok(());
    };
    node.set_auto_accept(target, auto_accept)?;
    let text = if auto_accept {
        format!(
            "{} may now send files here without asking",
            target.fmt_short()
        )
    } else {
        format!(
            "files from {} are now asked about (or declined without a terminal)",
            target.fmt_short()
        )
    };
    sink.line(
        "trust",
        text,
        json!({ "node_id": target.to_string(), "auto_accept": auto_accept }),
    );
    Ok(())
}

fn gc(
    node: &NetworkingService,
    dry_run: bool,
    receive_dir: Option<&std::path::Path>,
    sink: &Sink,
) -> Result<()> {
    let default = node.data_dir().join("received");
    let dir = receive_dir.or(node.receive_dir()).unwrap_or(&default);
    let collected = node.collect_leftovers(Some(dir), dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    for file in &collected.files {
        let why = match file.reason {
            tether::LeftoverReason::Unpaired(node_id) => {
                format!("from {}, no longer paired", node_id.fmt_short())
            }
            _ => "idle".to_owned(),
        };
        sink.line(
            "leftover",
            format!(
                "{verb} {} ({}, {why})",
                file.path.display(),
                crate::progress::bytes(file.bytes)
            ),
            json!({ "path": file.path, "bytes": file.bytes, "dry_run": dry_run }),
        );
    }
    sink.line(
        "gc",
        format!(
            "{verb} {} file{} of interrupted transfers, {} freed",
            collected.files.len(),
            if collected.files.len() == 1 { "" } else { "s" },
            crate::progress::bytes(collected.bytes)
        ),
        json!({ "files": collected.files.len(), "bytes": collected.bytes, "dry_run": dry_run }),
    );
    Ok(())
}

fn rename(node: &NetworkingService, name: &str, device: Option<&str>, sink: &Sink) -> Result<()> {
    let new_name = new_device_name(name)?;
    match device {
        Some(device) => {
            let target = resolve(node, device)?;
            node.rename_device(target, new_name)?;
            sink.line(
                "renamed",
                format!("this device now shows {} as {name:?}", target.fmt_short()),
                json!({ "node_id": target.to_string(), "name": name }),
            );
        }
        None => {
            let info = node.rename_self(&new_name)?;
            sink.line(
                "renamed",
                format!(
                    "this device is now {name:?}\npaired devices are told (now if connected, else when they next connect)"
                ),
                json!({ "node_id": info.public_key.to_string(), "name": name }),
            );
        }
    }
    Ok(())
}

/// A new device name as the user typed it: a printable name that cannot pass for an id.
pub(crate) fn new_device_name(name: &str) -> Result<DeviceName, Failure> {
    let new_name = DeviceName::new(name).map_err(|error| {
        Failure::usage(format!(
            "invalid device name {name:?}: {error}; pick a shorter, printable name"
        ))
    })?;
    if new_name.looks_like_id() {
        return Err(Failure::usage(format!(
            "the name {name:?} looks like a device id, so `tether send {name}` could reach the \
             wrong device; pick a name that is not only hex digits and hyphens"
        )));
    }
    Ok(new_name)
}

/// Paths as the running node will see them: absolute, existing.
pub(crate) fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    paths
        .iter()
        .map(|path| {
            std::fs::canonicalize(path).map_err(|error| {
                anyhow!(Failure::usage(format!(
                    "cannot send {}: {error}; check the path",
                    path.display()
                )))
            })
        })
        .collect()
}
