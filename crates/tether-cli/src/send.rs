//! `tether send DEVICE PATH...`: files and directories to a paired device, resumable.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tether::AbortCode;
use tether::errors::{LocalError, PeerError, TransferError};
use tether::{
    ErrorChain, NetworkError, NetworkingService, NodeId, TransferEvent, TransferOptions,
    TransferReport,
};
use tokio_util::sync::CancellationToken;

use crate::context::resolve;
use crate::failure::{Failure, TRANSFER, offline};
use crate::output::Sink;
use crate::progress::{bytes, duration};

/// What to send, and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SendRequest {
    pub(crate) device: String,
    /// Absolute paths (the running node has its own working directory).
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) compress: bool,
    pub(crate) encrypt: bool,
    /// Bytes per second.
    pub(crate) limit: Option<u64>,
    /// Seconds with no byte moving before the send ends.
    #[serde(default)]
    pub(crate) stall_timeout: Option<u64>,
    /// To every paired device (trusted) at once; `device` is then unused.
    #[serde(default)]
    pub(crate) all: bool,
    /// Milliseconds to wait for the device after a lost link; `None`: [`DEFAULT_RETRY_FOR`].
    #[serde(default)]
    pub(crate) retry_for_ms: Option<u64>,
}

/// How long a send waits for the device after a lost link, unless `--retry-for` says.
pub(crate) const DEFAULT_RETRY_FOR: Duration = Duration::from_secs(10 * 60);

/// The longest `--retry-for`: a week.
const MAX_RETRY_FOR: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Parses `--retry-for`: a humantime duration (`30s`, `10m`, `1h 30m`), `0` for none.
pub(crate) fn parse_retry_for(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text.trim())
        .map_err(|error| format!("{error}: give a duration such as 30s, 10m or 1h, or 0"))?;
    if duration > MAX_RETRY_FOR {
        return Err("at most a week (168h)".to_owned());
    }
    Ok(duration)
}

/// A duration in whole milliseconds (saturating).
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) async fn run(
    node: &NetworkingService,
    request: SendRequest,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let target = resolve(node, &request.device)?;
    let name = node
        .paired_devices()
        .into_iter()
        .find(|d| d.node_id == target)
        .map_or_else(|| target.fmt_short(), |d| d.info.device_name.to_string());
    let retry_for = request
        .retry_for_ms
        .map_or(DEFAULT_RETRY_FOR, Duration::from_millis);
    let options = TransferOptions::default()
        .compress(request.compress)
        .encrypt(request.encrypt)
        .rate_limit(request.limit)
        .retry_for(retry_for);
    let options = match request.stall_timeout {
        Some(secs) => options.stall_timeout(Duration::from_secs(secs)),
        None => options,
    };
    let mut handle = tokio::select! {
        handle = node.share_with_device(target, &request.paths, options) => match handle {
            Ok(handle) => handle,
            Err(NetworkError::Transfer(error)) => {
                return Err(Failure::usage(format!("cannot send: {}", ErrorChain(&error))).into());
            }
            Err(NetworkError::BandwidthQuota(exceeded)) => {
                return Err(Failure::new(TRANSFER, format!(
                    "{exceeded}; send again after the reset or raise it with `tether quota {name} --send`"
                )).into());
            }
            Err(error) => return Err(offline(&name, error)),
        },
        () = cancel.cancelled() => return Err(Failure::interrupted("the send was stopped before it started").into()),
    };
    let mut stopped = false;
    loop {
        tokio::select! {
            event = handle.events.recv() => match event {
                Some(event) => show(&event, &name, sink),
                None => break,
            },
            () = cancel.cancelled(), if !stopped => stopped = true,
        }
        if stopped {
            handle.cancel();
        }
    }
    match handle.finish().await {
        Ok(report) => {
            show_sent(&report, target, &name, sink);
            Ok(())
        }
        Err(_) if stopped => Err(Failure::interrupted(
            "the send was stopped; what the receiver verified is kept: run the same command again to resume",
        )
        .into()),
        Err(NetworkError::Transfer(error)) => {
            let mut message = transfer_failure(&name, &error);
            if !retry_for.is_zero() && retry_curable(&error) {
                message = format!(
                    "{message} (waited {} for {name} to be back)",
                    humantime::format_duration(retry_for)
                );
            }
            Err(Failure::new(TRANSFER, message).into())
        }
        Err(NetworkError::BandwidthQuota(reached)) => Err(Failure::new(
            TRANSFER,
            format!("{reached}; what {name} verified is kept: after the reset (or once the quota is raised), run the same send again to resume"),
        )
        .into()),
        Err(error) => Err(offline(&name, error)),
    }
}

/// Whether the library retried `error` (and so waited for the device before giving up).
fn retry_curable(error: &TransferError) -> bool {
    matches!(
        error,
        TransferError::Link(_) | TransferError::Stalled { .. }
    )
}

/// The line for a completed send.
fn show_sent(report: &TransferReport, target: NodeId, name: &str, sink: &Sink) {
    let seconds = report.duration.as_secs_f64();
    let rate = if seconds > 0.0 {
        report.bytes_transferred as f64 / seconds
    } else {
        0.0
    };
    sink.line(
        "sent",
        format!(
            "sent {} file{} ({}) to {name} in {}, {}/s, path {}\n{} verified by the receiver, {} resumed{}",
            report.files,
            if report.files == 1 { "" } else { "s" },
            bytes(report.bytes_total),
            duration(seconds),
            bytes(rate as u64),
            path_name(report.path),
            bytes(report.bytes_verified),
            bytes(report.bytes_resumed),
            if report.resumes > 0 {
                format!(
                    "; resumed {} time{} by itself, {} sent twice",
                    report.resumes,
                    if report.resumes == 1 { "" } else { "s" },
                    bytes(report.bytes_resent)
                )
            } else {
                String::new()
            },
        ),
        json!({
            "transfer_id": report.transfer_id.to_string(),
            "node_id": target.to_string(),
            "files": report.files,
            "bytes_total": report.bytes_total,
            "bytes_transferred": report.bytes_transferred,
            "bytes_resumed": report.bytes_resumed,
            "bytes_verified": report.bytes_verified,
            "wire_bytes": report.wire_bytes,
            "cipher": report.cipher.map(|c| c.name()),
            "duration_s": seconds,
            "rate_bytes_per_s": rate,
            "path": path_name(report.path),
            "resumes": report.resumes,
            "bytes_resent": report.bytes_resent,
        }),
    );
}

/// The one sentence for a transfer that did not complete, with the way out.
fn transfer_failure(name: &str, error: &TransferError) -> String {
    let again = "run the same send again to resume";
    match error {
        TransferError::Peer(
            PeerError::Declined { code, message } | PeerError::Aborted { code, message },
        ) => {
            let detail = if message.is_empty() {
                String::new()
            } else {
                format!(" ({})", message.chars().take(120).collect::<String>())
            };
            match code {
                // A full disk, the space or inode reserve, or this device's quota there.
                AbortCode::NoSpace => format!(
                    "{name} has no room for the transfer{detail}; once there is (free space, \
                     or a larger or reset quota for this device there), {again}"
                ),
                AbortCode::Refused => format!(
                    "{name} refused the transfer{detail}: a file with the same name and other \
                     contents may be in its receive directory; move it away there and try again"
                ),
                AbortCode::Declined => format!("{name} declined the transfer{detail}"),
                AbortCode::EncryptionRequired => format!(
                    "{name} takes only encrypted transfers; send again without --no-encrypt"
                ),
                AbortCode::Busy => format!(
                    "{name} is still answering other offers from this device; try again when \
                     they are answered"
                ),
                AbortCode::SourceChanged => {
                    format!("a file changed while it was being sent{detail}; {again}")
                }
                AbortCode::Stalled => format!(
                    "{name} ended the transfer because nothing arrived for too long{detail}; \
                     {again}"
                ),
                AbortCode::BandwidthQuota => format!(
                    "{name} refused the transfer: it would pass the bandwidth quota {name} \
                     keeps for this device{detail}; after the reset (or once it is raised \
                     there), {again}"
                ),
                _ => format!("{name} stopped the transfer{detail}; {again}"),
            }
        }
        TransferError::Link(error) => {
            format!(
                "the connection to {name} was lost ({}); {again}",
                ErrorChain(error)
            )
        }
        TransferError::Stalled { waiting_for, idle } => format!(
            "the transfer to {name} stalled: nothing moved for {} s while waiting for \
             {waiting_for}; {again}",
            idle.as_secs()
        ),
        TransferError::Local(LocalError::DiskFull { .. }) => {
            format!(
                "this device's disk is full ({}); free space and {again}",
                ErrorChain(error)
            )
        }
        other => format!(
            "the transfer to {name} did not complete ({}); {again}",
            ErrorChain(other)
        ),
    }
}

fn show(event: &TransferEvent, name: &str, sink: &Sink) {
    match event {
        TransferEvent::Started {
            files,
            bytes_total,
            bytes_resumed,
            ..
        } => {
            let resumed = if *bytes_resumed > 0 {
                format!(", resuming: {} already there", bytes(*bytes_resumed))
            } else {
                String::new()
            };
            sink.line(
                "started",
                format!(
                    "sending {files} file{} ({}) to {name}{resumed}",
                    if *files == 1 { "" } else { "s" },
                    bytes(*bytes_total)
                ),
                json!({ "files": files, "bytes_total": bytes_total, "bytes_resumed": bytes_resumed }),
            );
        }
        TransferEvent::Progress(progress) => {
            let file = progress.file.as_ref();
            sink.line(
                "progress",
                String::new(),
                json!({
                    "bytes_done": progress.bytes_done,
                    "bytes_total": progress.bytes_total,
                    "rate": progress.rate,
                    "eta_s": progress.eta.map(|eta| eta.as_secs_f64()),
                    "file": file.map(|f| f.path.clone()),
                    "file_done": file.map(|f| f.bytes_done),
                    "file_size": file.map(|f| f.size),
                }),
            );
        }
        TransferEvent::Waiting {
            waiting_for, idle, ..
        } => {
            sink.line(
                "waiting",
                format!(
                    "nothing has moved for {} s: waiting for {waiting_for}",
                    idle.as_secs()
                ),
                json!({ "waiting_for": waiting_for, "idle_s": idle.as_secs_f64() }),
            );
        }
        TransferEvent::Retrying {
            attempt,
            reason,
            retry_in,
            ..
        } => {
            sink.line(
                "retrying",
                format!(
                    "waiting for {name} ({reason}), retrying in {:.1} s (try {attempt})",
                    retry_in.as_secs_f64()
                ),
                json!({
                    "device": name,
                    "attempt": attempt,
                    "reason": reason,
                    "retry_in_s": retry_in.as_secs_f64(),
                }),
            );
        }
        _ => {}
    }
}

fn path_name(path: tether::TransferPathKind) -> &'static str {
    match path {
        tether::TransferPathKind::Direct => "direct",
        tether::TransferPathKind::Relayed => "relayed",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_retry_for;

    #[test]
    fn retry_for_takes_human_durations_and_zero() {
        assert_eq!(parse_retry_for("0"), Ok(Duration::ZERO));
        assert_eq!(parse_retry_for("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_retry_for("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_retry_for("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_retry_for("soon").is_err());
        assert!(parse_retry_for("-1s").is_err());
        assert!(parse_retry_for("8days").is_err());
    }
}
