//! `tether history [DEVICE]`: the transfers this device sent and received, newest first.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;
use serde_json::{Value, json};
use tether::{NetworkingService, TransferDirection, TransferOutcome, TransferRecord};
use time::OffsetDateTime;

use crate::context::resolve;
use crate::output::Sink;
use crate::progress::{bytes, duration};

/// How many records `tether history` shows unless `--limit` says otherwise.
pub(crate) const DEFAULT_LIMIT: usize = 50;

pub(super) fn history(
    node: &NetworkingService,
    device: Option<&str>,
    limit: usize,
    sink: &Sink,
) -> Result<()> {
    let device = device.map(|device| resolve(node, device)).transpose()?;
    let records = node.transfer_history(device, limit)?;
    if records.is_empty() {
        sink.text("No transfers yet.");
        return Ok(());
    }
    sink.text(format!(
        "{:<17} {:<16} {:<8} {:>5} {:>10} {:>10} {:<8} {:<17} {:>6}  {}",
        "WHEN (UTC)", "DEVICE", "WAY", "FILES", "SIZE", "RESUMED", "PATH", "CIPHER", "TOOK", "END"
    ));
    for record in &records {
        sink.line("transfer", row(record), fields(record));
    }
    Ok(())
}

/// One line of the table.
fn row(record: &TransferRecord) -> String {
    let name = record.device_name.as_ref().map_or_else(
        || record.node_id.fmt_short().to_string(),
        |name| name.to_string(),
    );
    let resumed = match record.bytes_resumed {
        Some(0) | None => "-".to_owned(),
        Some(resumed) => bytes(resumed),
    };
    format!(
        "{:<17} {:<16} {:<8} {:>5} {:>10} {:>10} {:<8} {:<17} {:>6}  {}",
        utc_minute(record.started_at),
        clip(&name, 16),
        way(record),
        record.files,
        bytes(record.bytes_total),
        resumed,
        path_name(record.path),
        cipher_name(record),
        duration(record.duration.as_secs_f64()),
        clip(&end_text(&record.outcome), 100),
    )
}

/// The record for scripts.
fn fields(record: &TransferRecord) -> Value {
    let (outcome, reason, by_peer, resumable) = match &record.outcome {
        TransferOutcome::Verified => ("verified", None, None, None),
        TransferOutcome::Cancelled { by_peer } => ("cancelled", None, Some(*by_peer), None),
        TransferOutcome::Refused { reason } => ("refused", Some(reason.as_str()), None, None),
        TransferOutcome::Failed { reason, resumable } => {
            ("failed", Some(reason.as_str()), None, Some(*resumable))
        }
        _ => ("unknown", None, None, None),
    };
    json!({
        "id": record.id,
        "node_id": record.node_id.to_string(),
        "name": record.device_name.as_ref().map(|name| name.as_str()),
        "direction": match record.direction {
            TransferDirection::Send => "send",
            _ => "receive",
        },
        "pull": record.pull,
        "started_at": utc_seconds(record.started_at),
        "started_at_ms": millis(record.started_at),
        "duration_s": record.duration.as_secs_f64(),
        "files": record.files,
        "bytes_total": record.bytes_total,
        "bytes_transferred": record.bytes_transferred,
        "bytes_resumed": record.bytes_resumed,
        "resumed": record.resumed(),
        "encrypted": record.encrypted,
        "cipher": record.cipher.map(|cipher| cipher.name()),
        "path": path_name(record.path),
        "outcome": outcome,
        "reason": reason,
        "by_peer": by_peer,
        "resumable": resumable,
    })
}

/// Which way the files went, from this device's side.
fn way(record: &TransferRecord) -> &'static str {
    match (record.direction, record.pull) {
        (TransferDirection::Send, false) => "sent",
        (TransferDirection::Send, true) => "served",
        (_, false) => "received",
        (_, true) => "pulled",
    }
}

fn cipher_name(record: &TransferRecord) -> &'static str {
    match record.cipher {
        Some(cipher) => cipher.name(),
        None if record.encrypted => "-",
        None => "plain",
    }
}

fn path_name(path: tether::TransferPathKind) -> &'static str {
    match path {
        tether::TransferPathKind::Direct => "direct",
        tether::TransferPathKind::Relayed => "relayed",
        _ => "unknown",
    }
}

fn end_text(outcome: &TransferOutcome) -> String {
    match outcome {
        TransferOutcome::Verified => "verified".to_owned(),
        TransferOutcome::Cancelled { by_peer: false } => "cancelled here".to_owned(),
        TransferOutcome::Cancelled { by_peer: true } => "cancelled by the device".to_owned(),
        TransferOutcome::Refused { reason } => format!("refused: {reason}"),
        TransferOutcome::Failed {
            reason,
            resumable: true,
        } => format!("failed (send again to resume): {reason}"),
        TransferOutcome::Failed { reason, .. } => format!("failed: {reason}"),
        _ => "unknown".to_owned(),
    }
}

/// `text` cut to `max` characters, the last one an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut kept: String = text.chars().take(max.saturating_sub(1)).collect();
    kept.push('…');
    kept
}

pub(super) fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub(super) fn utc_minute(time: SystemTime) -> String {
    match utc(time) {
        Some(at) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        ),
        None => "-".to_owned(),
    }
}

/// RFC 3339 in UTC, to the second: `YYYY-MM-DDTHH:MM:SSZ`.
pub(super) fn utc_seconds(time: SystemTime) -> String {
    match utc(time) {
        Some(at) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute(),
            at.second()
        ),
        None => "-".to_owned(),
    }
}

/// `time` in UTC (times before 1970 count as 1970); `None` past what a date can say.
fn utc(time: SystemTime) -> Option<OffsetDateTime> {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn utc_dates_match_known_days() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(utc_seconds(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc_seconds(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(utc_seconds(at(951_868_799)), "2000-02-29T23:59:59Z");
        assert_eq!(utc_seconds(at(951_868_800)), "2000-03-01T00:00:00Z");
        assert_eq!(utc_minute(at(1_796_649_408)), "2026-12-07 13:16");
        assert_eq!(utc_seconds(at(4_102_444_800)), "2100-01-01T00:00:00Z");
        assert_eq!(utc_seconds(at(4_107_456_000)), "2100-02-28T00:00:00Z");
        assert_eq!(utc_seconds(at(4_107_542_400)), "2100-03-01T00:00:00Z");
    }
}
