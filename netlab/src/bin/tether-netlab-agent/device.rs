//! A Tether device driven by the lab: commands on stdin, answers and events on stdout.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tether::{
    CongestionControl, DeviceName, Hlc, KeyOptions, KeychainPolicy, LibraryAnnounce, LibraryInfo,
    NetworkEvent, NetworkMessage, NetworkingConfig, NetworkingService, NodeId, PathKind,
    QuicTuning, RelayConfig, TransferEvent, TransferOptions, TransportConfig, TrustedRoot, Uuid,
};
use tether_netlab::protocol::{Command, Request};
use tether_stream::StreamServer;
use tokio::io::AsyncBufReadExt;
use tracing::warn;

use crate::emit;
use crate::stream::{self, Shelf};

/// How the device starts.
#[derive(Debug, clap::Args)]
pub(crate) struct DeviceArgs {
    /// Where its keys and registry live.
    #[arg(long)]
    data_dir: PathBuf,
    /// Where received files go.
    #[arg(long)]
    receive_dir: Option<PathBuf>,
    /// The address to bind (the namespace's own address; port 0 for a random port).
    #[arg(long)]
    bind: SocketAddr,
    /// Announce and look up devices with mDNS (only inside a namespace).
    #[arg(long)]
    mdns: bool,
    /// Relay URLs (the lab's own relay).
    #[arg(long)]
    relay: Vec<String>,
    /// The relay's certificate (PEM) to trust.
    #[arg(long)]
    relay_cert: Option<PathBuf>,
    /// The device's name.
    #[arg(long, default_value = "lab-device")]
    name: String,
    /// QUIC flow-control windows: `tether` (the library's defaults), `quinn` (noq's own), or
    /// `STREAM/CONNECTION/SEND` in KiB.
    #[arg(long, default_value = "tether", value_parser = parse_windows)]
    windows: QuicTuning,
    /// QUIC congestion controller.
    #[arg(long, value_enum, default_value_t = Congestion::Cubic)]
    congestion: Congestion,
    /// Ask the home router for a port mapping (UPnP, PCP, NAT-PMP), as the real-world
    /// defaults do (only inside a namespace).
    #[arg(long)]
    port_mapping: bool,
}

fn parse_windows(text: &str) -> Result<QuicTuning, String> {
    match text {
        "tether" => return Ok(QuicTuning::default()),
        "quinn" => return Ok(QuicTuning::quinn_defaults()),
        _ => {}
    }
    let kib: Vec<u32> = text
        .split('/')
        .map(|part| part.parse::<u32>().map(|k| k.saturating_mul(1024)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{text}: {e}"))?;
    let [stream, connection, send] = kib[..] else {
        return Err(format!(
            "{text}: give tether, quinn or STREAM/CONNECTION/SEND in KiB"
        ));
    };
    let tuning = QuicTuning::default().with_windows(stream, connection, send);
    tuning.validate().map_err(|e| e.to_string())?;
    Ok(tuning)
}

/// Which congestion controller a lab device uses.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Congestion {
    Cubic,
    Newreno,
    Bbr,
}

fn quic_tuning(windows: QuicTuning, congestion: Congestion) -> QuicTuning {
    windows.with_congestion(match congestion {
        Congestion::Cubic => CongestionControl::Cubic,
        Congestion::Newreno => CongestionControl::NewReno,
        Congestion::Bbr => CongestionControl::Bbr,
    })
}

struct State {
    service: NetworkingService,
    /// What this device shares for streaming.
    shelf: Arc<Shelf>,
    /// How often each numbered message arrived.
    received: Mutex<HashMap<u64, u64>>,
    discovered: Mutex<BTreeSet<String>>,
}

/// Refuses anything but loopback when the agent is not inside a network namespace of its own:
/// the lab must never touch the host's network.
fn check_namespace(args: &DeviceArgs) -> Result<()> {
    if !crate::in_lab_namespace()?
        && (args.mdns || args.port_mapping || !args.bind.ip().is_loopback())
    {
        bail!(
            "the agent runs outside the lab's namespaces: only a loopback bind without mDNS \
             is allowed here (the lab starts agents with `ip netns exec`)"
        );
    }
    Ok(())
}

/// The device's configuration from its arguments.
fn config(args: &DeviceArgs) -> Result<NetworkingConfig> {
    let mut transport = TransportConfig::local_only();
    transport.local_only = false;
    transport.bind_addr = args.bind;
    transport.fall_back_to_random_port = false;
    transport.mdns = args.mdns;
    transport.port_mapping = args.port_mapping;
    transport.quic = quic_tuning(args.windows, args.congestion);
    transport.relay = if args.relay.is_empty() {
        RelayConfig::Disabled
    } else {
        RelayConfig::Custom(args.relay.clone())
    };
    if let Some(cert) = &args.relay_cert {
        transport = transport.with_relay_roots(TrustedRoot::load_pem(cert)?);
    }
    let mut config = NetworkingConfig::new(&args.data_dir);
    config.transport = transport;
    // Lab devices live in throwaway namespaces and directories: unprotected keys, by name.
    config.keys = KeyOptions::default()
        .keychain(KeychainPolicy::Never)
        .insecure_key_file();
    config.loopback_discovery = None;
    config.receive_dir.clone_from(&args.receive_dir);
    config.device_name = Some(DeviceName::new(args.name.clone()).context("device name")?);
    Ok(config)
}

pub(crate) async fn run(args: DeviceArgs) -> Result<()> {
    check_namespace(&args)?;
    let mut config = config(&args)?;
    let shelf = Arc::new(Shelf::default());
    config.share_provider = stream::provider(&shelf);
    let service = NetworkingService::builder(&args.data_dir)
        .configure(|c| *c = config)
        .protocol(StreamServer::new(stream::provider(&shelf)))
        .spawn()
        .await
        .context("starting the service")?;
    // With a relay, wait until it is this device's home relay, so tickets carry its URL.
    if !args.relay.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(20);
        while service.addr().relay_url.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if service.addr().relay_url.is_none() {
            warn!("no home relay after 20 s");
        }
    }
    emit(&json!({
        "event": "ready",
        "node_id": service.node_id().to_string(),
        "addr": service.addr(),
    }));
    let state = Arc::new(State {
        service,
        shelf,
        received: Mutex::default(),
        discovered: Mutex::default(),
    });
    tokio::spawn(watch_events(Arc::clone(&state)));

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let request: Request = match serde_json::from_str(&line) {
            Ok(request) => request,
            Err(error) => {
                emit(&json!({"event": "bad_request", "error": error.to_string()}));
                continue;
            }
        };
        if matches!(request.command, Command::Shutdown) {
            state.service.shutdown().await;
            emit(&json!({"id": request.id, "ok": true}));
            return Ok(());
        }
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let id = request.id;
            let mut answer = match handle(&state, id, request.command).await {
                Ok(Value::Object(map)) => Value::Object(map),
                Ok(other) => json!({ "value": other }),
                Err(error) => json!({"ok": false, "error": format!("{error:#}")}),
            };
            if let Some(map) = answer.as_object_mut() {
                map.insert("id".into(), id.into());
                map.entry("ok").or_insert(true.into());
            }
            emit(&answer);
        });
    }
    // The lab went away: stop cleanly.
    state.service.shutdown().await;
    Ok(())
}

async fn watch_events(state: Arc<State>) {
    let mut events = state.service.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                warn!(missed = n, "event stream lagged");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match event {
            NetworkEvent::DeviceDiscovered { node_id, source } => {
                let new = state.discovered.lock().insert(node_id.to_string());
                if new {
                    emit(
                        &json!({"event": "discovered", "node_id": node_id.to_string(), "source": source}),
                    );
                }
            }
            NetworkEvent::Connected { node_id, path } => {
                emit(
                    &json!({"event": "connected", "node_id": node_id.to_string(), "path": path.to_string()}),
                );
            }
            NetworkEvent::Disconnected { node_id, reason } => {
                emit(
                    &json!({"event": "disconnected", "node_id": node_id.to_string(), "reason": reason}),
                );
            }
            NetworkEvent::MessageReceived {
                message: NetworkMessage::LibraryAnnounce(announce),
                ..
            } => {
                let mut received = state.received.lock();
                for library in announce.libraries {
                    let number = u64::try_from(library.id.as_u128()).unwrap_or(u64::MAX);
                    *received.entry(number).or_default() += 1;
                }
            }
            NetworkEvent::TransferReceived { from, report } => {
                emit(&json!({
                    "event": "transfer_received",
                    "from": from.to_string(),
                    "bytes_total": report.bytes_total,
                    "bytes_transferred": report.bytes_transferred,
                    "bytes_resumed": report.bytes_resumed,
                    "secs": report.duration.as_secs_f64(),
                }));
            }
            NetworkEvent::PairingFailed { reason } => {
                emit(&json!({"event": "pairing_failed", "reason": reason}));
            }
            _ => {}
        }
    }
}

fn node(text: &str) -> Result<NodeId> {
    NodeId::from_str(text).map_err(|error| anyhow::anyhow!("bad node id {text}: {error}"))
}

async fn handle(state: &State, id: u64, command: Command) -> Result<Value> {
    let service = &state.service;
    match command {
        Command::PairInit { ticket } => pair_init(service, ticket),
        Command::Join { code } => {
            let started = Instant::now();
            let device = service.join_pairing(&code).await?;
            service.set_auto_accept(device.device.public_key, true)?;
            Ok(json!({
                "node_id": device.device.public_key.to_string(),
                "verification": device.verification_code,
                "ms": ms(started.elapsed()),
            }))
        }
        Command::SendMessages { to, start, count } => {
            send_messages(service, to, start, count).await
        }
        Command::Messages { start, count } => messages(state, start, count),
        Command::SendFile { to, path } => send_file(service, id, node(&to)?, path, None).await,
        Command::SendFileLanes { to, path, lanes } => {
            send_file(service, id, node(&to)?, path, Some(lanes)).await
        }
        Command::Hash { path } => hash_file(path).await,
        Command::Conn { to } => Ok(conn_info(service, node(&to)?)),
        Command::WaitDirect { to, timeout_ms } => wait_direct(service, to, timeout_ms).await,
        Command::Ping { to } => {
            let to = node(&to)?;
            let started = Instant::now();
            let rtt = service.device(to)?.ping().await?;
            Ok(
                json!({"rtt_ms": ms(rtt), "ms": ms(started.elapsed()), "path": path_of(service, to)}),
            )
        }
        Command::Discovered => {
            let discovered: Vec<String> = state.discovered.lock().iter().cloned().collect();
            Ok(json!({ "discovered": discovered }))
        }
        Command::Share { path } => Ok(json!({"entry": state.shelf.share(path).to_string()})),
        Command::StreamFigures { from, entry } => {
            stream::figures(service, node(&from)?, &entry).await
        }
        Command::Shutdown => Ok(json!({})),
    }
}

fn pair_init(service: &NetworkingService, ticket: bool) -> Result<Value> {
    let mut invite = if ticket {
        service.start_pairing_with_ticket()?
    } else {
        service.start_pairing_as_initiator()?
    };
    let code = invite.code.clone();
    let service = service.clone();
    tokio::spawn(async move {
        match invite.paired().await {
            // The lab's devices are one person's: each takes the other's files.
            Ok(device) => emit(
                &match service.set_auto_accept(device.device.public_key, true) {
                    Err(error) => {
                        json!({"event": "pairing_failed", "reason": error.to_string()})
                    }
                    Ok(()) => json!({
                    "event": "paired",
                    "node_id": device.device.public_key.to_string(),
                    "verification": device.verification_code,
                    }),
                },
            ),
            Err(error) => {
                emit(&json!({"event": "pairing_failed", "reason": error.to_string()}));
            }
        }
    });
    Ok(json!({ "code": code }))
}

async fn send_messages(
    service: &NetworkingService,
    to: String,
    start: u64,
    count: u64,
) -> Result<Value> {
    let to = node(&to)?;
    let started = Instant::now();
    let mut failed = Vec::new();
    for number in start..start.saturating_add(count) {
        // Announcements are acknowledged by the service once delivered to the app.
        let message = NetworkMessage::LibraryAnnounce(LibraryAnnounce {
            libraries: vec![LibraryInfo {
                id: Uuid::from_u128(u128::from(number)),
                name: "netlab".to_owned(),
                entry_count: number,
                updated: Hlc::ZERO,
            }],
        });
        match service.send_message(to, message).await {
            Ok(NetworkMessage::Ack) => {}
            Ok(other) => failed.push(format!("{number}: answered {other:?}")),
            Err(error) => failed.push(format!("{number}: {error}")),
        }
    }
    Ok(json!({
        "sent": count,
        "failed": failed.len(),
        "errors": failed.iter().take(5).collect::<Vec<_>>(),
        "ms": ms(started.elapsed()),
    }))
}

fn messages(state: &State, start: u64, count: u64) -> Result<Value> {
    let range = start..start.saturating_add(count);
    let received: HashMap<u64, u64> = state
        .received
        .lock()
        .iter()
        .filter(|(number, _)| range.contains(number))
        .map(|(number, times)| (*number, *times))
        .collect();
    let missing = range.clone().filter(|n| !received.contains_key(n)).count();
    let duplicated = received.values().filter(|&&times| times > 1).count();
    Ok(json!({
        "distinct": received.len(),
        "missing": missing,
        "duplicated": duplicated,
    }))
}

async fn hash_file(path: PathBuf) -> Result<Value> {
    let hash = tokio::task::spawn_blocking(move || -> Result<String> {
        let mut hasher = blake3::Hasher::new();
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        hasher
            .update_reader(std::io::BufReader::with_capacity(1 << 20, file))
            .with_context(|| format!("hashing {}", path.display()))?;
        Ok(hasher.finalize().to_hex().to_string())
    })
    .await??;
    Ok(json!({ "hash": hash }))
}

async fn wait_direct(service: &NetworkingService, to: String, timeout_ms: u64) -> Result<Value> {
    let to = node(&to)?;
    let started = Instant::now();
    let deadline = started + Duration::from_millis(timeout_ms);
    loop {
        // A ping dials when there is no link and keeps the link busy.
        let rtt = service.device(to)?.ping().await;
        if let Some(info) = service.connection_info(to)
            && info.path == PathKind::Direct
        {
            let mut answer = conn_info(service, to);
            if let Some(map) = answer.as_object_mut() {
                map.insert("ms".into(), ms(started.elapsed()).into());
            }
            return Ok(answer);
        }
        if Instant::now() > deadline {
            let mut answer = conn_info(service, to);
            if let Some(map) = answer.as_object_mut() {
                map.insert("ok".into(), false.into());
                map.insert(
                    "error".into(),
                    format!(
                        "no direct path within {timeout_ms} ms (last ping: {})",
                        match rtt {
                            Ok(rtt) => format!("{} ms", ms(rtt)),
                            Err(error) => error.to_string(),
                        }
                    )
                    .into(),
                );
            }
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send_file(
    service: &NetworkingService,
    id: u64,
    to: NodeId,
    path: PathBuf,
    lanes: Option<u8>,
) -> Result<Value> {
    let started = Instant::now();
    // As `tether send` does: a lost link or a path change is waited out and resumed.
    let mut options = TransferOptions::default().retry_for(Duration::from_secs(600));
    if let Some(lanes) = lanes {
        options = options.lanes(lanes);
    }
    let mut handle = service.share_with_device(to, &[path], options).await?;
    let mut events = std::mem::replace(&mut handle.events, tokio::sync::mpsc::channel(1).1);
    // Progress at most every 1 % so the lab can act at a given point of the transfer.
    let progress = tokio::spawn(async move {
        let mut last_step = u64::MAX;
        while let Some(event) = events.recv().await {
            if let TransferEvent::Retrying {
                attempt,
                reason,
                retry_in,
                ..
            } = &event
            {
                emit(&json!({
                    "event": "retrying",
                    "id": id,
                    "attempt": attempt,
                    "reason": reason,
                    "retry_in_ms": ms(*retry_in),
                }));
            }
            if let TransferEvent::Started { bytes_total, .. } = &event {
                emit(&json!({"event": "started", "id": id, "total": bytes_total}));
                // The next progress is told whatever its step: a new run moved.
                last_step = u64::MAX;
            }
            if let TransferEvent::Progress(progress) = event {
                let step = progress
                    .bytes_done
                    .saturating_mul(100)
                    .checked_div(progress.bytes_total)
                    .unwrap_or(0);
                if step != last_step {
                    last_step = step;
                    emit(&json!({
                        "event": "progress",
                        "id": id,
                        "done": progress.bytes_done,
                        "total": progress.bytes_total,
                    }));
                }
            }
        }
    });
    let outcome = handle.finish().await;
    progress.abort();
    let report = outcome?;
    let secs = report.duration.as_secs_f64();
    Ok(json!({
        "bytes_total": report.bytes_total,
        "bytes_transferred": report.bytes_transferred,
        "bytes_resumed": report.bytes_resumed,
        "resumes": report.resumes,
        "bytes_resent": report.bytes_resent,
        "secs": secs,
        "wall_secs": started.elapsed().as_secs_f64(),
        "goodput_mbit": report.bytes_transferred as f64 * 8.0 / secs.max(1e-9) / 1e6,
        "path": path_of(service, to),
    }))
}

fn path_of(service: &NetworkingService, to: NodeId) -> String {
    service
        .connection_info(to)
        .map_or_else(|| "none".to_owned(), |info| info.path.to_string())
}

fn conn_info(service: &NetworkingService, to: NodeId) -> Value {
    match service.connection_info(to) {
        Some(info) => json!({
            "path": info.path.to_string(),
            "remote": info.remote,
            "rtt_ms": info.rtt.map(ms),
            "lost_packets": info.lost_packets,
            "bytes_sent": info.bytes_sent,
        }),
        None => json!({"path": "none"}),
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
