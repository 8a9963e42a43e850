//! `tether send --queue DEVICE PATH...`, `tether queue` and `tether queue cancel ID`: sends
//! the running node delivers when the device is reachable (the library's outbox).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use tether::{NetworkingService, OutboxEntry, OutboxId, OutboxState, TransferOptions};

use super::history::{millis, utc_minute, utc_seconds};
use crate::context::{NodeContext, resolve};
use crate::failure::Failure;
use crate::output::Sink;
use crate::progress::bytes;
use crate::send::{DEFAULT_RETRY_FOR, SendRequest};

/// Queues `request` for its device and says when it goes out.
pub(super) async fn queue(
    node: &NetworkingService,
    request: SendRequest,
    sink: &Sink,
    context: &NodeContext,
) -> Result<()> {
    let target = resolve(node, &request.device)?;
    let options = TransferOptions::default()
        .compress(request.compress)
        .encrypt(request.encrypt)
        .rate_limit(request.limit)
        .retry_for(
            request
                .retry_for_ms
                .map_or(DEFAULT_RETRY_FOR, Duration::from_millis),
        );
    let options = match request.stall_timeout {
        Some(secs) => options.stall_timeout(Duration::from_secs(secs)),
        None => options,
    };
    let id = node.queue_send(target, &request.paths, options).await?;
    let entry = node.outbox()?.into_iter().find(|entry| entry.id == id);
    let (files, size) = entry.as_ref().map_or((0, 0), |e| (e.files, e.bytes));
    let name = entry
        .and_then(|entry| entry.device_name)
        .map_or_else(|| target.fmt_short(), |name| name.to_string());
    let when = if context.running {
        format!("it goes out when {name} is reachable")
    } else {
        "no node is running: it goes out once `tether up` runs".to_owned()
    };
    sink.line(
        "queued",
        format!(
            "queued #{id}: {files} file(s), {} for {name}; {when} (`tether queue` lists it)",
            bytes(size)
        ),
        json!({
            "id": id.get(),
            "node_id": target.to_string(),
            "name": name,
            "files": files,
            "bytes_total": size,
            "node_running": context.running,
        }),
    );
    Ok(())
}

/// Lists the queued sends, oldest first.
pub(super) fn list(node: &NetworkingService, sink: &Sink) -> Result<()> {
    let entries = node.outbox()?;
    if entries.is_empty() {
        sink.text("Nothing queued.");
        return Ok(());
    }
    sink.text(format!(
        "{:>5} {:<16} {:>5} {:>10} {:<17} {:>5}  {}",
        "ID", "DEVICE", "FILES", "SIZE", "QUEUED (UTC)", "TRIES", "STATE"
    ));
    for entry in &entries {
        let name = name(entry);
        sink.line(
            "queued_send",
            format!(
                "{:>5} {:<16} {:>5} {:>10} {:<17} {:>5}  {}",
                entry.id,
                clip(&name, 16),
                entry.files,
                bytes(entry.bytes),
                utc_minute(entry.queued_at),
                entry.attempts,
                clip(&state_text(entry), 100),
            ),
            json!({
                "id": entry.id.get(),
                "node_id": entry.node_id.to_string(),
                "name": entry.device_name.as_ref().map(|name| name.as_str()),
                "paths": entry.paths,
                "files": entry.files,
                "bytes_total": entry.bytes,
                "queued_at": utc_seconds(entry.queued_at),
                "queued_at_ms": millis(entry.queued_at),
                "attempts": entry.attempts,
                "state": match entry.state {
                    OutboxState::Failed => "failed",
                    _ => "pending",
                },
                "last_error": entry.last_error,
            }),
        );
    }
    Ok(())
}

/// Cancels queued send `id`.
pub(super) fn cancel(node: &NetworkingService, id: u64, sink: &Sink) -> Result<()> {
    if !node.cancel_queued(OutboxId::new(id))? {
        return Err(Failure::usage(format!(
            "nothing is queued as #{id} (delivered or cancelled already?); see `tether queue`"
        ))
        .into());
    }
    sink.line(
        "cancelled",
        format!("cancelled #{id}; it will not be sent"),
        json!({ "id": id }),
    );
    Ok(())
}

fn name(entry: &OutboxEntry) -> String {
    entry.device_name.as_ref().map_or_else(
        || entry.node_id.fmt_short().to_string(),
        |name| name.to_string(),
    )
}

fn state_text(entry: &OutboxEntry) -> String {
    match (entry.state, &entry.last_error) {
        (OutboxState::Failed, Some(error)) => format!("failed: {error}"),
        (OutboxState::Failed, None) => "failed".to_owned(),
        (_, Some(error)) => format!("waiting (last try: {error})"),
        (_, None) => "waiting".to_owned(),
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
