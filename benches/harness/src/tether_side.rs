//! Tether's side: a `NetworkingService` with `NetworkingConfig::local_only`, as a server (the
//! receiving, code-showing device) and as clients.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tether::{NetworkingConfig, NetworkingService, NodeId, TransferOptions, TrustedRoot};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::raw::wait_for_quit;
use crate::stats::summary;
use crate::{RelayArgs, TetherClient};

fn config(dir: &Path, discovery: &Path) -> NetworkingConfig {
    // Benchmark devices live in temporary directories: their keys may stay unprotected.
    let mut config = NetworkingConfig::local_only(dir.to_owned())
        .with_loopback_discovery(discovery.to_owned())
        .with_insecure_key_file();
    config.request_timeout = Duration::from_secs(60);
    config.connect_timeout = Duration::from_secs(30);
    config.discovery_timeout = Duration::from_secs(10);
    config
}

/// A paired client's service without discovery: it neither announces itself (so the server
/// does not dial it) nor dials the server on finding it; it dials on first use, at the address
/// its registry holds.
fn quiet_config(dir: &Path, discovery: &Path) -> NetworkingConfig {
    let mut config = config(dir, discovery);
    config.loopback_discovery = None;
    config
}

/// Only through `relay` (no direct socket), trusting its certificate; no change without one.
fn with_relay(mut config: NetworkingConfig, relay: &RelayArgs) -> Result<NetworkingConfig> {
    if let (Some(url), Some(cert)) = (&relay.relay, &relay.relay_cert) {
        let root = TrustedRoot::from_der(std::fs::read(cert)?);
        config.transport = config
            .transport
            .with_relays([url.clone()])
            .with_relay_roots([root]);
        config.transport.force_relay = true;
    }
    Ok(config)
}

/// Starts a service; with a relay, waits until it is reachable through it.
async fn start_service(config: NetworkingConfig, relay: &RelayArgs) -> Result<NetworkingService> {
    let service = NetworkingService::start(with_relay(config, relay)?).await?;
    if relay.relay.is_some() {
        let deadline = Instant::now() + Duration::from_secs(30);
        while service.home_relay().is_none() {
            if Instant::now() > deadline {
                bail!("no home relay after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(service)
}

/// A client's service: quiet (see [`quiet_config`]) on loopback; through a relay, with
/// discovery, which tells it the server's relay URL.
async fn start(client: &TetherClient) -> Result<NetworkingService> {
    let mut config = if client.relay.relay.is_some() {
        config(&client.dir, &client.discovery)
    } else {
        quiet_config(&client.dir, &client.discovery)
    };
    config.binary_messages = !client.json;
    start_service(config, &client.relay).await
}

fn node(peer: &str) -> Result<NodeId> {
    peer.parse().context("node id")
}

/// Serves: prints `ready <node id>`, then answers stdin `invite` (a word code) and `ticket`
/// with the code on one line; pairings finish in the background.
pub(crate) async fn serve(
    dir: PathBuf,
    discovery: PathBuf,
    receive: PathBuf,
    port: u16,
    relay: &RelayArgs,
) -> Result<()> {
    tokio::fs::create_dir_all(&receive).await?;
    let mut config = config(&dir, &discovery).with_receive_dir(receive);
    config.transport.bind_addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    config.transport.fall_back_to_random_port = false;
    let service = start_service(config, relay).await?;
    println!("ready {} -", service.node_id());
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut invite = match line.trim() {
            "quit" => break,
            "invite" => service.start_pairing_as_initiator()?,
            "ticket" => service.start_pairing_with_ticket()?,
            other => bail!("unknown command {other:?}"),
        };
        stdout
            .write_all(format!("code {}\n", invite.code).as_bytes())
            .await?;
        stdout.flush().await?;
        let server = service.clone();
        tokio::spawn(async move {
            match invite.paired().await {
                // The benchmark's clients send files here: accept them without asking.
                Ok(paired) => {
                    if let Err(error) = server.set_auto_accept(paired.device.public_key, true) {
                        eprintln!("cannot mark the paired client auto-accept: {error}");
                    }
                }
                Err(error) => eprintln!("pairing failed on the showing side: {error}"),
            }
        });
    }
    service.shutdown().await;
    Ok(())
}

/// Joins by code; the time is `join_pairing` (discovery of the code's slot, connect, SPAKE2,
/// confirmation, registry write with fsync).
pub(crate) async fn pair(client: &TetherClient, code: &str) -> Result<serde_json::Value> {
    let service = start_service(config(&client.dir, &client.discovery), &client.relay).await?;
    let started = Instant::now();
    service.join_pairing(code).await?;
    let seconds = started.elapsed().as_secs_f64();
    service.shutdown().await;
    Ok(json!({ "seconds": seconds }))
}

/// Pairs `n` services, one after another, with tickets read from stdin (asked for with a
/// `need-ticket` line).
pub(crate) async fn pair_many(
    root: &Path,
    discovery: &Path,
    n: usize,
) -> Result<serde_json::Value> {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    for i in 0..n {
        let service =
            NetworkingService::start(config(&root.join(format!("dev{i}")), discovery)).await?;
        println!("need-ticket");
        let ticket = lines
            .next_line()
            .await?
            .context("stdin closed before a ticket")?;
        service.join_pairing(ticket.trim()).await?;
        service.shutdown().await;
    }
    Ok(json!({ "paired": n }))
}

/// Shares `paths`; the time runs from the call to the receiver's verified report.
pub(crate) async fn send(
    client: &TetherClient,
    peer: &str,
    paths: &[PathBuf],
    plain: bool,
) -> Result<serde_json::Value> {
    let peer = node(peer)?;
    let service = start(client).await?;
    let options = TransferOptions::default().encrypt(!plain);
    let started = Instant::now();
    let report = service
        .share_with_device(peer, paths, options)
        .await?
        .finish()
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let relayed = report.path == tether::TransferPathKind::Relayed;
    if report.bytes_transferred != report.bytes_total {
        bail!(
            "only {} of {} bytes crossed the link (the receiver kept the rest)",
            report.bytes_transferred,
            report.bytes_total
        );
    }
    service.shutdown().await;
    Ok(json!({
        "seconds": seconds,
        "bytes": report.bytes_total,
        "files": report.files,
        "verified": report.bytes_verified,
        "relayed": relayed,
    }))
}

/// Service start (untimed), then the first Ping: dial, QUIC handshake, session handshake,
/// one encrypted round trip.
pub(crate) async fn connect(
    client: &TetherClient,
    peer: &str,
    samples: usize,
) -> Result<serde_json::Value> {
    let peer = node(peer)?;
    let mut firsts = Vec::with_capacity(samples);
    for _ in 0..samples {
        let service = start(client).await?;
        let device = service.device(peer)?;
        let started = Instant::now();
        device.ping().await?;
        firsts.push(started.elapsed().as_secs_f64());
        service.shutdown().await;
    }
    Ok(json!({ "first_round_trip": summary(&firsts) }))
}

/// Encrypted Ping/Pong round trips on the pooled connection, after 20 to warm up.
pub(crate) async fn rtt(
    client: &TetherClient,
    peer: &str,
    samples: usize,
) -> Result<serde_json::Value> {
    let peer = node(peer)?;
    let service = start(client).await?;
    let device = service.device(peer)?;
    for _ in 0..20 {
        device.ping().await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        device.ping().await?;
        times.push(started.elapsed().as_secs_f64());
    }
    service.shutdown().await;
    Ok(json!({ "rtt": summary(&times) }))
}

/// `senders` tasks each sending Pings back to back for `seconds` on the pooled connection.
pub(crate) async fn flood(
    client: &TetherClient,
    peer: &str,
    senders: usize,
    seconds: f64,
) -> Result<serde_json::Value> {
    let duration = Duration::try_from_secs_f64(seconds)
        .with_context(|| format!("--seconds {seconds} is not a duration"))?;
    let peer = node(peer)?;
    let service = start(client).await?;
    let device = service.device(peer)?;
    device.ping().await?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let device = device.clone();
        tasks.spawn(async move {
            let mut times = Vec::new();
            while started.elapsed() < duration {
                let sent = Instant::now();
                device.ping().await?;
                times.push(sent.elapsed().as_secs_f64());
            }
            anyhow::Ok(times)
        });
    }
    let mut times = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.extend(done??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    service.shutdown().await;
    Ok(json!({
        "messages_per_second": times.len() as f64 / elapsed,
        "latency": summary(&times),
    }))
}

async fn start_many(root: &Path, discovery: &Path, n: usize) -> Result<Vec<NetworkingService>> {
    let mut services = Vec::with_capacity(n);
    for i in 0..n {
        services.push(
            NetworkingService::start(quiet_config(&root.join(format!("dev{i}")), discovery))
                .await?,
        );
    }
    Ok(services)
}

/// Pings from each of `services` at once; the times of each first Ping.
async fn ping_all(services: &[NetworkingService], peer: NodeId) -> Result<Vec<f64>> {
    let mut tasks = tokio::task::JoinSet::new();
    for service in services {
        let device = service.device(peer)?;
        tasks.spawn(async move {
            let started = Instant::now();
            device.ping().await?;
            anyhow::Ok(started.elapsed().as_secs_f64())
        });
    }
    let mut times = Vec::new();
    while let Some(done) = tasks.join_next().await {
        times.push(done??);
    }
    Ok(times)
}

async fn shutdown_all(services: Vec<NetworkingService>) {
    let mut stops = tokio::task::JoinSet::new();
    for service in services {
        stops.spawn(async move { service.shutdown().await });
    }
    while stops.join_next().await.is_some() {}
}

/// `n` paired services, each with a live connection (one Ping), until a stdin line.
pub(crate) async fn idle(
    root: &Path,
    discovery: &Path,
    peer: &str,
    n: usize,
) -> Result<serde_json::Value> {
    let peer = node(peer)?;
    let services = start_many(root, discovery, n).await?;
    let mut connected = 0;
    for chunk in services.chunks(10) {
        connected += ping_all(chunk, peer).await?.len();
    }
    println!("ready");
    wait_for_quit().await;
    shutdown_all(services).await;
    Ok(json!({ "connections": connected }))
}

/// With 1, 10 and `n` paired devices connected: the time the last of them took to connect
/// alone (dial, handshakes, first Ping; the others connected before it, ten at a time) and
/// the Ping round trip of device 0.
pub(crate) async fn scale(
    root: &Path,
    discovery: &Path,
    peer: &str,
    n: usize,
) -> Result<serde_json::Value> {
    let peer = node(peer)?;
    let services = start_many(root, discovery, n).await?;
    let mut stages = Vec::new();
    let mut connected = 0;
    for target in [1, 10, n] {
        let target = target.min(n);
        if target <= connected {
            continue;
        }
        let before = services
            .get(connected..target - 1)
            .context("stage past the devices")?;
        for chunk in before.chunks(10) {
            ping_all(chunk, peer).await?;
        }
        let last = services
            .get(target - 1..target)
            .context("stage past the devices")?;
        let connect = ping_all(last, peer).await?;
        connected = target;
        let first = services.first().context("no devices")?.device(peer)?;
        let mut rtts = Vec::new();
        for _ in 0..50 {
            let started = Instant::now();
            first.ping().await?;
            rtts.push(started.elapsed().as_secs_f64());
        }
        stages.push(json!({
            "connected": connected,
            "connect": connect.first().copied().unwrap_or(f64::NAN),
            "rtt": summary(&rtts),
        }));
    }
    shutdown_all(services).await;
    Ok(json!({ "stages": stages }))
}
