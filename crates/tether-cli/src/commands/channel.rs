//! `tether channel TOPIC`: a live channel with the paired devices. Lines typed on standard
//! input are published; others' lines and who comes and goes are shown. Ends with standard
//! input (Ctrl-D) or Ctrl-C.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tether::{NetworkingService, NodeId};
use tether_channels::{ChannelError, ChannelEvent, ChannelMessage, Channels};
use tokio::io::AsyncBufReadExt;

use crate::control;
use crate::failure::{ERROR, Failure};
use crate::output::Output;
use crate::settings::Settings;

#[derive(Debug, Args)]
pub(crate) struct ChannelArgs {
    /// The topic: 1 to 64 bytes of text.
    topic: String,
}

/// The channels of the node in `data_dir`: served by `tether up` and `tether channel`.
pub(crate) fn open(node: &NetworkingService, data_dir: &Path) -> Result<Channels> {
    let channels =
        Channels::open(&data_dir.join("channels")).context("cannot open the channels")?;
    node.register_protocol(channels.clone())?;
    channels.attach(node);
    Ok(channels)
}

pub(crate) async fn run(settings: &Settings, args: ChannelArgs, out: Output) -> Result<()> {
    let dir = settings.data_dir()?;
    if control::connect(&dir).await.is_some() {
        return Err(Failure::new(
            ERROR,
            format!(
                "`tether up` is running for {}; stop it first (`tether channel` runs the node itself)",
                dir.display()
            ),
        )
        .into());
    }
    let node = settings.start(false).await?;
    let result = talk(&node, &dir, &args.topic, out).await;
    node.shutdown().await;
    result
}

async fn talk(node: &NetworkingService, dir: &Path, topic: &str, out: Output) -> Result<()> {
    let channels = open(node, dir)?;
    let mut subscription = channels.subscribe(topic).map_err(|error| match error {
        ChannelError::BadTopic => Failure::usage(error.to_string()).into(),
        other => anyhow::Error::from(other),
    })?;
    out.line(
        "subscribed",
        &format!("on {topic:?}; type a line to send it, Ctrl-D to leave"),
        json!({ "topic": topic, "node_id": node.node_id().to_string() }),
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) if line.is_empty() => {}
                Ok(Some(line)) => {
                    if let Err(error) = subscription.publish(line) {
                        out.error(&format!("not sent: {}", tether::ErrorChain(&error)));
                    }
                }
                Ok(None) | Err(_) => break,
            },
            event = subscription.next() => match event {
                Some(event) => show(node, &event, out),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}

fn name_of(node: &NetworkingService, device: NodeId) -> String {
    node.device(device)
        .ok()
        .and_then(|handle| handle.info())
        .map_or_else(
            || device.fmt_short(),
            |info| info.info.device_name.to_string(),
        )
}

fn show(node: &NetworkingService, event: &ChannelEvent, out: Output) {
    match event {
        ChannelEvent::Message(message) => show_message(node, message, out),
        ChannelEvent::Joined { device } | ChannelEvent::Left { device } => {
            let (kind, verb) = if matches!(event, ChannelEvent::Joined { .. }) {
                ("joined", "joined")
            } else {
                ("left", "left")
            };
            let name = name_of(node, *device);
            out.line(
                kind,
                &format!("* {name} {verb}"),
                json!({ "device": device.to_string(), "name": name }),
            );
        }
        ChannelEvent::Gap {
            sender,
            first,
            last,
        } => {
            let name = name_of(node, *sender);
            out.line(
                "gap",
                &format!("* messages {first} to {last} from {name} are lost"),
                json!({ "device": sender.to_string(), "name": name, "first": first, "last": last }),
            );
        }
        ChannelEvent::Lagged { missed } => out.line(
            "lagged",
            &format!("* {missed} events missed (too slow)"),
            json!({ "missed": missed }),
        ),
        _ => {}
    }
}

fn show_message(node: &NetworkingService, message: &ChannelMessage, out: Output) {
    let name = name_of(node, message.sender);
    // Untrusted text: the output escapes control characters.
    let text = String::from_utf8_lossy(&message.body);
    out.line(
        "message",
        &format!("{name}: {text}"),
        json!({
            "from": message.sender.to_string(),
            "name": name,
            "text": text,
            "seq": message.seq,
            "hlc": message.hlc.to_string(),
        }),
    );
}
