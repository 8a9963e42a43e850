//! `tether send desk,phone PATH...` and `tether send --all PATH...`: one send per device, at
//! once, each with its own progress line, then a line per device and the worst exit code.

use std::sync::{Arc, Mutex};

use anyhow::Result;
use serde_json::{Value, json};
use tether::{NetworkingService, NodeId, TrustLevel};
use tokio_util::sync::CancellationToken;

use crate::context::resolve;
use crate::failure::{Failure, exit_code};
use crate::output::Sink;
use crate::progress::{bytes, duration};
use crate::send::{self, SendRequest};

/// Runs `request`: to one device as `tether send` always did, to several at once when its
/// device names a list (`desk,phone`, where the whole text is not itself a device) or
/// `all` is set.
pub(crate) async fn run(
    node: &NetworkingService,
    request: SendRequest,
    sink: &Sink,
    cancel: &CancellationToken,
) -> Result<()> {
    let Some(targets) = targets(node, &request)? else {
        return send::run(node, request, sink, cancel).await;
    };
    let sends = targets.into_iter().map(|(node_id, name)| {
        let mut one = request.clone();
        one.device = node_id.to_string();
        one.all = false;
        let sent = Arc::new(Mutex::new(Value::Null));
        let seen = Arc::clone(&sent);
        let (device_sink, forward) = sink.tagged(&name, move |line| {
            if line.event == "sent"
                && let Ok(mut sent) = seen.lock()
            {
                *sent = line.record.clone();
            }
        });
        async move {
            let result = send::run(node, one, &device_sink, cancel).await;
            drop(device_sink);
            let _ = forward.await;
            let sent = sent.lock().map(|sent| sent.clone()).unwrap_or_default();
            Outcome {
                name,
                node_id,
                result,
                sent,
            }
        }
    });
    let outcomes = n0_future::join_all(sends).await;
    summarize(&outcomes, sink)
}

/// What one device's send came to.
struct Outcome {
    name: String,
    node_id: NodeId,
    result: Result<()>,
    /// The `sent` record, when it finished.
    sent: Value,
}

/// The devices `request` names when it names more than one (or `--all`); `None` for one
/// device, which `send::run` resolves (and reports) itself.
fn targets(
    node: &NetworkingService,
    request: &SendRequest,
) -> Result<Option<Vec<(NodeId, String)>>> {
    let paired = node.paired_devices();
    let name_of = |node_id: NodeId| {
        paired
            .iter()
            .find(|d| d.node_id == node_id)
            .map_or_else(|| node_id.fmt_short(), |d| d.info.device_name.to_string())
    };
    if request.all {
        let all: Vec<(NodeId, String)> = paired
            .iter()
            .filter(|d| d.trust == TrustLevel::Trusted)
            .map(|d| (d.node_id, d.info.device_name.to_string()))
            .collect();
        if all.is_empty() {
            return Err(Failure::usage("--all: no paired device to send to").into());
        }
        return Ok(Some(all));
    }
    // A name with a comma in it is still one device.
    if !request.device.contains(',') || resolve(node, &request.device).is_ok() {
        return Ok(None);
    }
    let mut targets: Vec<(NodeId, String)> = Vec::new();
    for wanted in request.device.split(',').map(str::trim) {
        if wanted.is_empty() {
            return Err(Failure::usage(format!(
                "{:?}: an empty device name in the list",
                request.device
            ))
            .into());
        }
        let node_id = resolve(node, wanted)?;
        if !targets.iter().any(|(known, _)| *known == node_id) {
            targets.push((node_id, name_of(node_id)));
        }
    }
    Ok(Some(targets))
}

/// A line per device, then `Ok` when every device verified everything, else the worst exit
/// code with how many did not.
fn summarize(outcomes: &[Outcome], sink: &Sink) -> Result<()> {
    let width = outcomes
        .iter()
        .map(|o| o.name.chars().count())
        .max()
        .unwrap_or(0);
    let mut worst = 0u8;
    for outcome in outcomes {
        let name = &outcome.name;
        match &outcome.result {
            Ok(()) => {
                let files = outcome
                    .sent
                    .get("files")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let total = outcome
                    .sent
                    .get("bytes_total")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let seconds = outcome
                    .sent
                    .get("duration_s")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                sink.line(
                    "delivery",
                    format!(
                        "  {name:<width$}  verified  {files} file{} ({}) in {}",
                        if files == 1 { "" } else { "s" },
                        bytes(total),
                        duration(seconds)
                    ),
                    json!({
                        "device": name,
                        "node_id": outcome.node_id.to_string(),
                        "ok": true,
                        "files": files,
                        "bytes_total": total,
                        "duration_s": seconds,
                    }),
                );
            }
            Err(error) => {
                let code = exit_code(error);
                worst = worst.max(code);
                sink.line(
                    "delivery",
                    format!("  {name:<width$}  failed (exit {code}): {error:#}"),
                    json!({
                        "device": name,
                        "node_id": outcome.node_id.to_string(),
                        "ok": false,
                        "exit_code": code,
                        "error": format!("{error:#}"),
                    }),
                );
            }
        }
    }
    if worst == 0 {
        return Ok(());
    }
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    Err(Failure::new(
        worst,
        format!(
            "{failed} of {} devices did not get everything (see the line per device above)",
            outcomes.len()
        ),
    )
    .into())
}
