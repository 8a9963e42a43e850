//! Commands that run this device's node: identity, pairing, devices, ping.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::json;
use tether::{
    DeviceName, DeviceType, NetworkEvent, NetworkingConfig, NetworkingService, NodeId, PairedDevice,
};

use crate::output::Output;

/// Options every command shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) local_only: bool,
}

impl Settings {
    fn data_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .context("no data directory: pass --data-dir DIR or set TETHER_DATA_DIR")?;
        Ok(base.join("tether"))
    }

    /// The node's configuration; `offline` commands (identity, the device list) never need
    /// more than loopback, so they get the local-only configuration whatever the flag says.
    fn config(&self, offline: bool) -> Result<NetworkingConfig> {
        let dir = self.data_dir()?;
        Ok(if self.local_only || offline {
            NetworkingConfig::local_only(dir)
        } else {
            NetworkingConfig::new(dir)
        })
    }

    async fn start(&self, offline: bool) -> Result<NetworkingService> {
        let config = self.config(offline)?;
        let dir = config.data_dir.clone();
        NetworkingService::start(config)
            .await
            .with_context(|| format!("cannot start the node for {}", dir.display()))
    }
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// This device's name, as your other devices will show it.
    #[arg(long)]
    name: Option<String>,
    /// desktop, laptop, phone, tablet, server or other.
    #[arg(long = "type")]
    device_type: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PairArgs {
    /// Show a ticket (address + full-entropy secret, for pairing across networks or by QR code)
    /// instead of a word code.
    #[arg(long)]
    ticket: bool,
}

#[derive(Debug, Args)]
pub(crate) struct JoinArgs {
    /// The word code (e.g. harbor-brave-lion-sunset) or ticket (tether1...) the other device shows.
    code: String,
}

#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    /// The device: its name, or the start of its node id.
    device: String,
}

pub(crate) async fn init(settings: &Settings, args: InitArgs, out: &Output) -> Result<()> {
    let mut config = settings.config(true)?;
    if let Some(name) = args.name {
        config.device_name = Some(DeviceName::new(name).context("invalid device name")?);
    }
    if let Some(kind) = args.device_type {
        config.device_type = Some(DeviceType::from_name(&kind.to_ascii_lowercase()));
    }
    let node = NetworkingService::start(config).await?;
    show_identity(&node, out);
    node.shutdown().await;
    Ok(())
}

pub(crate) async fn id(settings: &Settings, out: &Output) -> Result<()> {
    let node = settings.start(true).await?;
    show_identity(&node, out);
    node.shutdown().await;
    Ok(())
}

fn show_identity(node: &NetworkingService, out: &Output) {
    let info = node.device_info();
    let storage = node.key_storage().to_string();
    out.line(
        "identity",
        &format!(
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

pub(crate) async fn pair(settings: &Settings, args: PairArgs, out: &Output) -> Result<()> {
    let node = settings.start(false).await?;
    let mut invite = if args.ticket {
        node.start_pairing_with_ticket()?
    } else {
        node.start_pairing_as_initiator()?
    };
    let minutes = invite.expires_in.as_secs().div_ceil(60);
    out.line(
        "code",
        &format!(
            "On the other device run:\n\n    tether join {}\n\nThe code works once, for {minutes} minutes. Waiting...",
            invite.code
        ),
        json!({ "code": invite.code, "expires_in_s": invite.expires_in.as_secs() }),
    );
    if args.ticket
        && !out.is_json()
        && let Ok(qr) = qrcode::QrCode::new(invite.code.to_ascii_uppercase())
    {
        out.text(
            &qr.render::<char>()
                .quiet_zone(true)
                .module_dimensions(2, 1)
                .build(),
        );
    }
    let expires_in = invite.expires_in;
    let result = tokio::select! {
        result = invite.paired() => result,
        _ = tokio::time::sleep(expires_in) => Err(tether::NetworkError::Pairing(tether::PairingError::Expired)),
        _ = tokio::signal::ctrl_c() => Err(tether::NetworkError::Usage("cancelled".to_owned())),
    };
    let finished = result.map(|device| show_paired(&device, out));
    node.shutdown().await;
    Ok(finished?)
}

pub(crate) async fn join(settings: &Settings, args: JoinArgs, out: &Output) -> Result<()> {
    let node = settings.start(false).await?;
    let result = node.join_pairing(&args.code).await;
    let finished = result.map(|device| show_paired(&device, out));
    node.shutdown().await;
    Ok(finished?)
}

fn show_paired(device: &PairedDevice, out: &Output) {
    out.line(
        "paired",
        &format!(
            "Paired with \"{}\" ({}, node {}).\nVerification code: {} (both screens show the same one)",
            device.device.device_name,
            device.device.device_type,
            device.device.public_key.fmt_short(),
            device.verification_code
        ),
        json!({
            "name": device.device.device_name.as_str(),
            "node_id": device.device.public_key.to_string(),
            "device_id": device.device.device_id.to_string(),
            "verification_code": device.verification_code,
        }),
    );
}

pub(crate) async fn up(settings: &Settings, out: &Output) -> Result<()> {
    let node = settings.start(false).await?;
    let mut events = node.subscribe();
    let addr = node.addr();
    out.line(
        "up",
        &format!(
            "node {} is up on {}; Ctrl-C to stop",
            node.node_id().fmt_short(),
            addr.direct
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        json!({ "node_id": node.node_id().to_string(), "addrs": addr.direct }),
    );
    loop {
        tokio::select! {
            event = events.recv() => match event {
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

fn show_event(event: &NetworkEvent, out: &Output) {
    let (name, text, record) = match event {
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
        other => (
            "event",
            format!("{other:?}"),
            json!({ "detail": format!("{other:?}") }),
        ),
    };
    out.line(name, &text, record);
}

pub(crate) async fn devices(settings: &Settings, out: &Output) -> Result<()> {
    let node = settings.start(true).await?;
    let devices = node.paired_devices();
    if devices.is_empty() {
        out.text("No paired devices yet: run `tether pair` here and `tether join CODE` on the other device.");
    }
    for device in devices {
        let state = node
            .devices()
            .into_iter()
            .find(|d| d.node_id == device.node_id)
            .map_or_else(
                || "unknown".to_owned(),
                |d| format!("{:?}", d.state).to_lowercase(),
            );
        out.line(
            "device",
            &format!(
                "{:<24} {:<8} {}  {:<10} {:?}",
                device.info.device_name.as_str(),
                device.info.device_type.as_str(),
                device.node_id.fmt_short(),
                state,
                device.trust
            ),
            json!({
                "name": device.info.device_name.as_str(),
                "type": device.info.device_type.as_str(),
                "node_id": device.node_id.to_string(),
                "state": state,
                "trust": format!("{:?}", device.trust).to_lowercase(),
                "addresses": device.addresses,
            }),
        );
    }
    node.shutdown().await;
    Ok(())
}

pub(crate) async fn ping(settings: &Settings, args: DeviceArgs, out: &Output) -> Result<()> {
    let node = settings.start(false).await?;
    let result = async {
        let target = resolve(&node, &args.device)?;
        let device = node.device(target)?;
        let mut rtts = Vec::new();
        for _ in 0..5 {
            rtts.push(device.ping().await?);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let path = device
            .connection_info()
            .map_or_else(|| "unknown".to_owned(), |i| i.path.to_string());
        for (i, rtt) in rtts.iter().enumerate() {
            out.line(
                "pong",
                &format!(
                    "pong from {}: {:.2} ms ({path})",
                    target.fmt_short(),
                    rtt.as_secs_f64() * 1e3
                ),
                json!({ "seq": i, "rtt_ms": rtt.as_secs_f64() * 1e3, "path": path }),
            );
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    node.shutdown().await;
    result
}

pub(crate) async fn unpair(settings: &Settings, args: DeviceArgs, out: &Output) -> Result<()> {
    let node = settings.start(true).await?;
    let result = resolve(&node, &args.device).and_then(|target| {
        node.unpair(target)?;
        out.line(
            "unpaired",
            &format!(
                "unpaired {}; it will be refused from now on",
                target.fmt_short()
            ),
            json!({ "node_id": target.to_string() }),
        );
        Ok(())
    });
    node.shutdown().await;
    result
}

/// Finds a paired device by name or node-id prefix.
fn resolve(node: &NetworkingService, wanted: &str) -> Result<NodeId> {
    let paired = node.paired_devices();
    let by_name: Vec<_> = paired
        .iter()
        .filter(|d| d.info.device_name.as_str() == wanted)
        .collect();
    if let [one] = by_name.as_slice() {
        return Ok(one.node_id);
    }
    let prefix = wanted.to_ascii_lowercase();
    let by_id: Vec<_> = paired
        .iter()
        .filter(|d| prefix.len() >= 4 && d.node_id.to_string().starts_with(&prefix))
        .collect();
    match by_id.as_slice() {
        [one] => Ok(one.node_id),
        [] if by_name.is_empty() => Err(anyhow!(tether::NetworkError::DeviceNotPaired(
            wanted.to_owned()
        )))
        .context("see `tether devices` for the paired devices"),
        _ => bail!("{wanted:?} matches more than one paired device; use more of its node id"),
    }
}
