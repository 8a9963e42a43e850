//! Running commands: in this process on a short-lived node, or on the running `tether up`
//! through its control socket; and `init` and `up` themselves.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tether::{DeviceType, NetworkEvent, NetworkingService, NodeId, TransferConsent};
use tokio_util::sync::CancellationToken;

use crate::clipboard::Clipboard;
use crate::commands::{self, Request};
use crate::consent::TerminalConsent;
use crate::context::NodeContext;
use crate::control;
use crate::failure::{ERROR, Failure};
use crate::output::{Output, Sink};
use crate::progress::bytes;
use crate::render::render;
use crate::settings::{Settings, start_node};

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// This device's name, as other devices show it.
    #[arg(long)]
    name: Option<String>,
    /// desktop, laptop, phone, tablet, server or other.
    #[arg(long = "type")]
    device_type: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// Receive into DIR [default: DATA_DIR/received]
    #[arg(long, value_name = "DIR")]
    receive_dir: Option<PathBuf>,
    /// End a stalled transfer after S s [default: 60]
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stall_timeout: Option<u64>,
    /// Also take --no-encrypt transfers (TLS only)
    #[arg(long)]
    allow_plain: bool,
    /// Take files from DEVICE without asking (repeatable)
    #[arg(long, value_name = "DEVICE")]
    accept_from: Vec<String>,
    /// Keep SIZE or N% free [default: 5%, at most 1GiB]
    #[arg(long, value_name = "SIZE", value_parser = crate::progress::parse_reserve)]
    reserve: Option<tether::Reserve>,
    /// Keep N inodes or N% free [default: 5%]
    #[arg(long, value_name = "N", value_parser = crate::progress::parse_inode_reserve)]
    inode_reserve: Option<tether::Reserve>,
    /// Default most a device may store here (SIZE)
    #[arg(long, value_name = "SIZE", value_parser = crate::progress::parse_size)]
    quota: Option<u64>,
    /// Put received texts on the clipboard too
    #[arg(long)]
    clipboard: bool,
    /// Remove partial files idle for DAYS [default: 7]
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..=36_500))]
    leftover_days: Option<u64>,
    /// Share FILE with paired devices (repeatable)
    #[arg(long, value_name = "FILE")]
    share: Vec<PathBuf>,
}

fn context(settings: &Settings, running: bool) -> NodeContext {
    NodeContext {
        network: settings.network,
        running,
    }
}

/// Runs `request` on the running node of the data directory, or on a short-lived node here
/// when none is running.
pub(crate) async fn dispatch(settings: &Settings, request: Request, out: Output) -> Result<()> {
    let dir = settings.data_dir()?;
    if let Some(stream) = control::connect(&dir).await {
        return control::request(stream, &request, out).await;
    }
    let node = settings.start(request.offline()).await?;
    let (sink, lines) = Sink::channel();
    let shown = tokio::spawn(render(lines, out));
    let cancel = CancellationToken::new();
    let on_ctrl_c = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.cancel();
            }
        }
    });
    let result = commands::execute(&node, request, &sink, &cancel, &context(settings, false)).await;
    drop(sink);
    let _ = shown.await;
    on_ctrl_c.abort();
    node.shutdown().await;
    result
}

pub(crate) async fn init(settings: &Settings, args: InitArgs, out: Output) -> Result<()> {
    let dir = settings.data_dir()?;
    if control::connect(&dir).await.is_some() {
        return Err(Failure::new(
            ERROR,
            format!(
                "a node is running for {}: see `tether id`, and rename it with `tether rename NAME`",
                dir.display()
            ),
        )
        .into());
    }
    let mut config = settings.config(true)?;
    if let Some(name) = args.name {
        config.device_name = Some(commands::new_device_name(&name)?);
    }
    if let Some(kind) = args.device_type {
        config.device_type = Some(DeviceType::from_name(&kind.to_ascii_lowercase()));
    }
    let node = start_node(config).await?;
    let (sink, lines) = Sink::channel();
    commands::show_identity(&node, &node.device_info(), &sink);
    drop(sink);
    render(lines, out).await;
    node.shutdown().await;
    Ok(())
}

/// `tether up`: the node in the foreground, serving paired devices and the control socket.
pub(crate) async fn up(settings: &Settings, args: UpArgs, out: Output) -> Result<()> {
    let dir = settings.data_dir()?;
    // The socket first: a second `up` for the same directory stops here.
    let listener = control::bind(&dir)?;
    let socket = control::socket_path(&dir);
    let result = serve(settings, args, &dir, listener, out).await;
    let _ = std::fs::remove_file(&socket);
    result
}

async fn serve(
    settings: &Settings,
    args: UpArgs,
    dir: &std::path::Path,
    listener: tokio::net::UnixListener,
    out: Output,
) -> Result<()> {
    let receive_dir = args.receive_dir.unwrap_or_else(|| dir.join("received"));
    std::fs::create_dir_all(&receive_dir)
        .with_context(|| format!("cannot create {}", receive_dir.display()))?;
    // Files only with consent: marked devices, --accept-from, or a yes on the terminal.
    let consent = Arc::new(TerminalConsent::new(args.accept_from, receive_dir.clone()));
    let mut config = settings.config(false)?.with_receive_dir(&receive_dir);
    config.consent = Arc::clone(&consent) as Arc<dyn TransferConsent>;
    if let Some(secs) = args.stall_timeout {
        config.transfer_stall_timeout = std::time::Duration::from_secs(secs);
    }
    config.require_encryption = !args.allow_plain;
    if let Some(reserve) = args.reserve {
        config.space_reserve = reserve;
    }
    if let Some(reserve) = args.inode_reserve {
        config.inode_reserve = reserve;
    }
    config.default_storage_quota = args.quota;
    if let Some(days) = args.leftover_days {
        config.leftover_idle = std::time::Duration::from_secs(days * 24 * 60 * 60);
    }
    let streams = commands::stream::share(&mut config, &args.share, out)?;
    let clipboard = args.clipboard.then(|| open_clipboard(out)).flatten();
    let node = start_node(config).await?;
    node.register_protocol(streams)?;
    consent.attach(node.clone());
    // Paired devices' channels reach this node too (`tether channel` on theirs).
    let _channels = commands::channel::open(&node, dir)?;
    let mut events = node.subscribe();
    let addr = node.addr();
    let info = node.device_info();
    out.line(
        "up",
        &format!(
            "\"{}\" (node {}) is up on {}\nreceiving into {}\nCtrl-C to stop",
            info.device_name,
            node.node_id().fmt_short(),
            addr.direct
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            receive_dir.display()
        ),
        json!({
            "node_id": node.node_id().to_string(),
            "name": info.device_name.as_str(),
            "addrs": addr.direct,
            "receive_dir": receive_dir,
            "control_socket": control::socket_path(dir),
        }),
    );
    let context = context(settings, true);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(control::serve(stream, node.clone(), context.clone()));
                }
                Err(error) => tracing::warn!(%error, "control socket accept failed"),
            },
            event = events.recv() => match event {
                Ok(NetworkEvent::TextReceived { from, text }) => {
                    show_text(&node, from, &text, clipboard.as_ref(), out);
                }
                Ok(event) => show_event(&event, out),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    node.shutdown().await;
    Ok(())
}

/// The clipboard for `--clipboard`, or `None` after saying once why there is none (texts are
/// still shown).
fn open_clipboard(out: Output) -> Option<Clipboard> {
    match Clipboard::open() {
        Ok(clipboard) => Some(clipboard),
        Err(reason) => {
            out.line(
                "clipboard_off",
                &format!("clipboard off: {reason}; received texts are only shown"),
                json!({ "reason": reason }),
            );
            None
        }
    }
}

/// A text from a paired device: shown (every line of it indented, so it cannot pass for a
/// line of this node's own), and put on the clipboard with `--clipboard`.
fn show_text(
    node: &NetworkingService,
    from: NodeId,
    text: &str,
    clipboard: Option<&Clipboard>,
    out: Output,
) {
    let name = node
        .device(from)
        .ok()
        .and_then(|device| device.info())
        .map(|device| device.info.device_name.to_string());
    let on_clipboard = clipboard.is_some_and(|clipboard| clipboard.set(text));
    let who = match &name {
        Some(name) => format!("{name:?} (node {})", from.fmt_short()),
        None => format!("node {}", from.fmt_short()),
    };
    out.line(
        "text",
        &text_line(&who, on_clipboard, text),
        json!({
            "from": from.to_string(),
            "name": name,
            "text": text,
            "clipboard": on_clipboard,
        }),
    );
}

/// How a received text reads for people: a heading, then the text with every line indented.
fn text_line(who: &str, on_clipboard: bool, text: &str) -> String {
    let clipboard = if on_clipboard {
        ", on the clipboard"
    } else {
        ""
    };
    format!(
        "text from {who}{clipboard}:\n  {}",
        text.replace('\n', "\n  ")
    )
}

/// An event's name, its line for people, and its JSON record.
type Shown = (&'static str, String, serde_json::Value);

fn show_event(event: &NetworkEvent, out: Output) {
    if let Some((name, text, record)) = transfer_event(event).or_else(|| device_event(event)) {
        out.line(name, &text, record);
    }
}

/// The line for a transfer received or a queued send's end; `None` for other events.
fn transfer_event(event: &NetworkEvent) -> Option<Shown> {
    Some(match event {
        NetworkEvent::TransferReceived { from, report } => (
            "received",
            format!(
                "received {} file(s), {} from {} ({} resumed), verified",
                report.files,
                bytes(report.bytes_total),
                from.fmt_short(),
                bytes(report.bytes_resumed)
            ),
            json!({
                "from": from.to_string(),
                "files": report.files,
                "bytes_total": report.bytes_total,
                "bytes_resumed": report.bytes_resumed,
                "bytes_verified": report.bytes_verified,
                "cipher": report.cipher.map(|c| c.name()),
            }),
        ),
        NetworkEvent::QueuedSendDelivered {
            id,
            node_id,
            report,
        } => (
            "queued_delivered",
            format!(
                "delivered queued send #{id} to {}: {} file(s), {}, verified",
                node_id.fmt_short(),
                report.files,
                bytes(report.bytes_total)
            ),
            json!({
                "id": id.get(),
                "node_id": node_id.to_string(),
                "files": report.files,
                "bytes_total": report.bytes_total,
                "bytes_resumed": report.bytes_resumed,
            }),
        ),
        NetworkEvent::QueuedSendFailed {
            id,
            node_id,
            reason,
        } => (
            "queued_failed",
            format!(
                "queued send #{id} to {} failed: {reason}; `tether queue cancel {id}` removes it",
                node_id.fmt_short()
            ),
            json!({ "id": id.get(), "node_id": node_id.to_string(), "reason": reason }),
        ),
        _ => return None,
    })
}

/// The line for a device, message or pairing event; `None` for those that only go to the log.
fn device_event(event: &NetworkEvent) -> Option<Shown> {
    Some(match event {
        NetworkEvent::Connected { node_id, path } => (
            "connected",
            format!("connected: {} ({path})", node_id.fmt_short()),
            json!({ "node_id": node_id.to_string(), "path": path.to_string() }),
        ),
        NetworkEvent::Disconnected { node_id, reason } => (
            "disconnected",
            format!("disconnected: {} ({reason})", node_id.fmt_short()),
            json!({ "node_id": node_id.to_string(), "reason": reason }),
        ),
        NetworkEvent::Paired {
            device,
            verification_code,
        } => (
            "paired",
            format!(
                "paired with \"{}\" (node {}), verification code {verification_code}",
                device.device_name,
                device.public_key.fmt_short()
            ),
            json!({ "name": device.device_name.as_str(), "node_id": device.public_key.to_string() }),
        ),
        NetworkEvent::MessageReceived { from, message } => (
            "message",
            format!("message from {}: {message:?}", from.fmt_short()),
            json!({ "from": from.to_string(), "message": format!("{message:?}") }),
        ),
        NetworkEvent::DeviceDiscovered { node_id, source } => (
            "discovered",
            format!("discovered: {} via {source}", node_id.fmt_short()),
            json!({ "node_id": node_id.to_string(), "source": source }),
        ),
        NetworkEvent::DeviceRenamed { node_id, name } => (
            "renamed",
            format!("{} renamed itself \"{name}\"", node_id.fmt_short()),
            json!({ "node_id": node_id.to_string(), "name": name.as_str() }),
        ),
        NetworkEvent::Unpaired { node_id } => (
            "unpaired",
            format!("unpaired: {}", node_id.fmt_short()),
            json!({ "node_id": node_id.to_string() }),
        ),
        // Its reason may name the code's public word, and the command that joined has shown
        // it to the person already; the log only says that it happened.
        NetworkEvent::PairingFailed { .. } => {
            tracing::debug!("a pairing attempt failed");
            return None;
        }
        // The rest (state changes) go to the log at debug level.
        other => {
            tracing::debug!(?other, "event");
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::terminal_safe;

    #[test]
    fn a_texts_lines_are_indented_so_none_passes_for_the_nodes_own() {
        let forged = "hi\nreceived 1 file(s), 1 GiB from 1a2b3c4d5e, verified\r\u{1b}[2K";
        let line = text_line("\"laptop\" (node 5e4d3c2b1a)", true, forged);
        let shown = terminal_safe(&line, true);
        let lines: Vec<&str> = shown.lines().collect();
        assert_eq!(
            lines,
            [
                "text from \"laptop\" (node 5e4d3c2b1a), on the clipboard:",
                "  hi",
                "  received 1 file(s), 1 GiB from 1a2b3c4d5e, verified\\u{d}\\u{1b}[2K",
            ]
        );
    }
}
