//! `tether quota [DEVICE] [--send RATE/PERIOD|off] [--receive RATE/PERIOD|off]`: bandwidth
//! quotas per paired device and direction, set and shown.

use std::time::UNIX_EPOCH;

use anyhow::Result;
use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tether::{
    BandwidthQuota, BandwidthUse, ByteSize, NetworkingService, NodeId, QuotaDirection, UtcMinute,
};

use crate::context::resolve;
use crate::output::Sink;

/// `tether quota`'s arguments.
#[derive(Debug, Args)]
pub(crate) struct QuotaArgs {
    /// The device: name, device id or start of node id [default: all]
    pub(crate) device: Option<String>,
    /// Most sent to it a period: 20GiB/day, 500MB/week; off
    #[arg(long, value_name = "QUOTA", value_parser = parse_setting, requires = "device")]
    pub(crate) send: Option<QuotaSetting>,
    /// Most received from it a period: 100GiB/month; off
    #[arg(long, value_name = "QUOTA", value_parser = parse_setting, requires = "device")]
    pub(crate) receive: Option<QuotaSetting>,
}

/// A quota to set, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum QuotaSetting {
    /// This quota.
    Set(BandwidthQuota),
    /// No quota.
    Off,
}

fn parse_setting(text: &str) -> Result<QuotaSetting, String> {
    if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
        return Ok(QuotaSetting::Off);
    }
    text.parse()
        .map(QuotaSetting::Set)
        .map_err(|error: tether::QuotaParseError| error.to_string())
}

/// Sets what was asked, then shows the quotas of `device` (or of every paired device).
pub(super) fn quota(
    node: &NetworkingService,
    device: Option<&str>,
    send: Option<QuotaSetting>,
    receive: Option<QuotaSetting>,
    sink: &Sink,
) -> Result<()> {
    let targets: Vec<NodeId> = match device {
        Some(device) => vec![resolve(node, device)?],
        None => node
            .paired_devices()
            .into_iter()
            .map(|d| d.node_id)
            .collect(),
    };
    if let Some(target) = targets.first() {
        for (direction, setting) in [
            (QuotaDirection::Send, send),
            (QuotaDirection::Receive, receive),
        ] {
            let Some(setting) = setting else { continue };
            let quota = match setting {
                QuotaSetting::Set(quota) => Some(quota),
                QuotaSetting::Off => None,
            };
            node.set_bandwidth_quota(*target, direction, quota)?;
        }
    }
    if targets.is_empty() {
        sink.text("No paired devices yet.");
    }
    for target in targets {
        let name = node
            .device(target)
            .ok()
            .and_then(|d| d.info())
            .map_or_else(|| target.fmt_short(), |d| d.info.device_name.to_string());
        let Some(quotas) = node.bandwidth(target) else {
            continue;
        };
        sink.line(
            "quota",
            format!(
                "{name}\n  send:    {}\n  receive: {}",
                use_text(&quotas.send),
                use_text(&quotas.receive)
            ),
            json!({
                "node_id": target.to_string(),
                "name": name,
                "send": use_json(&quotas.send),
                "receive": use_json(&quotas.receive),
            }),
        );
    }
    Ok(())
}

/// One direction's use for people: `1.2 GiB of 20 GiB a day (resets 2026-12-08 14:03 UTC)`.
pub(crate) fn use_text(usage: &BandwidthUse) -> String {
    let Some(quota) = usage.quota else {
        return "no quota".to_owned();
    };
    let resets = usage.resets_at.map_or_else(
        || "the period starts at the next transfer".to_owned(),
        |at| format!("resets {}", UtcMinute(at)),
    );
    format!("{} of {quota} ({resets})", ByteSize(usage.used))
}

/// One direction's use for programs.
pub(crate) fn use_json(usage: &BandwidthUse) -> Value {
    json!({
        "quota": usage.quota.map(|q| json!({ "bytes": q.bytes, "period": q.period })),
        "used": usage.used,
        "resets_at": usage
            .resets_at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
            .map(|since| since.as_secs()),
    })
}

/// Both directions in one short column for `tether devices`: `1 MiB/20 GiB a day ↑ · - ↓`.
pub(crate) fn devices_column(node: &NetworkingService, target: NodeId) -> (String, Value) {
    let Some(quotas) = node.bandwidth(target) else {
        return ("-".to_owned(), Value::Null);
    };
    let short = |usage: &BandwidthUse| match usage.quota {
        None => "-".to_owned(),
        Some(quota) => format!("{}/{quota}", ByteSize(usage.used)),
    };
    (
        format!(
            "send {} recv {}",
            short(&quotas.send),
            short(&quotas.receive)
        ),
        json!({ "send": use_json(&quotas.send), "receive": use_json(&quotas.receive) }),
    )
}
