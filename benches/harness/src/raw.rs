//! The raw iroh baseline: the same endpoint settings Tether's `TransportConfig::local_only`
//! uses (`presets::Minimal`, relays off, IP transport on 127.0.0.1 only), no Tether on top.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use iroh::endpoint::{Connection, presets};
use iroh::protocol::{AcceptError, ProtocolHandler, Router};
use iroh::tls::CaTlsConfig;
use iroh::{Endpoint, EndpointAddr, EndpointId, RelayMap, RelayMode, RelayUrl};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::stats::summary;
use crate::{RawPeer, RelayArgs};

/// The raw protocol's ALPN.
pub(crate) const ALPN: &[u8] = b"tether-bench/raw/1";
/// One echo message.
pub(crate) const MESSAGE: usize = 64;
/// Read and write size for files.
const BUFFER: usize = 1 << 20;

const OP_ECHO: u8 = b'E';
const OP_FILE: u8 = b'F';

/// An endpoint on 127.0.0.1 with Tether's local-only settings.
pub(crate) async fn endpoint(alpns: Vec<Vec<u8>>) -> Result<Endpoint> {
    Ok(Endpoint::builder(presets::Minimal)
        .alpns(alpns)
        .relay_mode(RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")?
        .bind()
        .await?)
}

/// An endpoint with no IP transport at all, only the relay (on 127.0.0.1), trusting its
/// certificate: the same settings as Tether's `force_relay` with that relay.
pub(crate) async fn relay_endpoint(alpns: Vec<Vec<u8>>, relay: &RelayArgs) -> Result<Endpoint> {
    let (Some(url), Some(cert)) = (&relay.relay, &relay.relay_cert) else {
        return endpoint(alpns).await;
    };
    let url: RelayUrl = url.parse().context("relay URL")?;
    if !url
        .host_str()
        .is_some_and(|h| h == "127.0.0.1" || h == "localhost")
    {
        bail!("the relay must be on this machine: {url}");
    }
    let der = std::fs::read(cert)?;
    let roots = [rustls_pki_types::CertificateDer::from(der)];
    Ok(Endpoint::builder(presets::Minimal)
        .alpns(alpns)
        .relay_mode(RelayMode::Custom([url].into_iter().collect::<RelayMap>()))
        .clear_ip_transports()
        .ca_tls_config(CaTlsConfig::embedded().with_extra_roots(roots))
        .bind()
        .await?)
}

/// The first line a server prints: its id and loopback address (or `relay`).
pub(crate) async fn announce_relayed(endpoint: &Endpoint, relay: &RelayArgs) -> Result<()> {
    if relay.relay.is_none() {
        return announce(endpoint);
    }
    tokio::time::timeout(std::time::Duration::from_secs(30), endpoint.online())
        .await
        .context("not connected to the relay within 30 s")?;
    println!("ready {} relay", endpoint.id());
    Ok(())
}

/// The first line a server prints: its id and loopback address.
pub(crate) fn announce(endpoint: &Endpoint) -> Result<()> {
    let addr = endpoint
        .bound_sockets()
        .into_iter()
        .find(|a| a.ip().is_loopback())
        .context("the endpoint has no loopback socket")?;
    println!("ready {} {addr}", endpoint.id());
    Ok(())
}

pub(crate) fn endpoint_addr(peer: &RawPeer) -> Result<EndpointAddr> {
    let id: EndpointId = peer.id.parse().context("endpoint id")?;
    if peer.addr == "relay" {
        let url: RelayUrl = peer
            .relay
            .relay
            .as_deref()
            .context("`--addr relay` needs `--relay`")?
            .parse()
            .context("relay URL")?;
        return Ok(EndpointAddr::new(id).with_relay_url(url));
    }
    let addr: SocketAddr = peer.addr.parse().context("socket address")?;
    if !addr.ip().is_loopback() {
        bail!("{addr} is not a loopback address");
    }
    Ok(EndpointAddr::new(id).with_ip_addr(addr))
}

#[derive(Debug, Clone)]
struct RawHandler {
    dir: PathBuf,
    files: Arc<AtomicU64>,
}

impl ProtocolHandler for RawHandler {
    async fn accept(&self, connection: Connection) -> Result<(), AcceptError> {
        while let Ok((send, recv)) = connection.accept_bi().await {
            let this = self.clone();
            tokio::spawn(async move {
                let _ = this.stream(send, recv).await;
            });
        }
        Ok(())
    }
}

impl RawHandler {
    async fn stream(
        &self,
        mut send: iroh::endpoint::SendStream,
        mut recv: iroh::endpoint::RecvStream,
    ) -> Result<()> {
        let mut op = [0u8; 1];
        recv.read_exact(&mut op).await?;
        match op {
            [OP_ECHO] => {
                let mut buf = [0u8; MESSAGE];
                while recv.read_exact(&mut buf).await.is_ok() {
                    send.write_all(&buf).await?;
                }
            }
            [OP_FILE] => {
                let n = self.files.fetch_add(1, Ordering::Relaxed);
                let path = self.dir.join(format!("raw-{n}"));
                let mut file = tokio::fs::File::create(&path).await?;
                let mut buf = vec![0u8; BUFFER];
                while let Some(read) = recv.read(&mut buf).await? {
                    file.write_all(buf.get(..read).context("read past the buffer")?)
                        .await?;
                }
                file.sync_all().await?;
                drop(file);
                send.write_all(b"K").await?;
                send.finish()?;
                let _ = send.stopped().await;
                tokio::fs::remove_file(&path).await?;
            }
            _ => bail!("unknown op"),
        }
        Ok(())
    }
}

/// Serves until stdin closes or says `quit`.
pub(crate) async fn serve(dir: PathBuf, relay: &RelayArgs) -> Result<()> {
    tokio::fs::create_dir_all(&dir).await?;
    let endpoint = relay_endpoint(vec![ALPN.to_vec()], relay).await?;
    let handler = RawHandler {
        dir,
        files: Arc::default(),
    };
    let router = Router::builder(endpoint.clone())
        .accept(ALPN, handler)
        .spawn();
    announce_relayed(&endpoint, relay).await?;
    wait_for_quit().await;
    router.shutdown().await?;
    Ok(())
}

/// Waits until stdin closes or a `quit` line.
pub(crate) async fn wait_for_quit() {
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "quit" {
            break;
        }
    }
}

/// One file on one stream, acknowledged after the server's fsync.
pub(crate) async fn send(peer: &RawPeer, file: &Path) -> Result<serde_json::Value> {
    let addr = endpoint_addr(peer)?;
    let endpoint = relay_endpoint(Vec::new(), &peer.relay).await?;
    let mut source = tokio::fs::File::open(file).await?;
    let started = Instant::now();
    let connection = endpoint.connect(addr, ALPN).await?;
    let relayed = connection
        .paths()
        .iter()
        .any(|p| p.is_selected() && p.is_relay());
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(&[OP_FILE]).await?;
    let mut buf = vec![0u8; BUFFER];
    let mut bytes = 0u64;
    loop {
        let read = source.read(&mut buf).await?;
        if read == 0 {
            break;
        }
        send.write_all(buf.get(..read).context("read past the buffer")?)
            .await?;
        bytes += read as u64;
    }
    send.finish()?;
    let mut ack = [0u8; 1];
    recv.read_exact(&mut ack).await?;
    let seconds = started.elapsed().as_secs_f64();
    connection.close(0u32.into(), b"done");
    endpoint.close().await;
    Ok(json!({ "seconds": seconds, "bytes": bytes, "relayed": relayed }))
}

async fn echo_once(
    send: &mut iroh::endpoint::SendStream,
    recv: &mut iroh::endpoint::RecvStream,
) -> Result<()> {
    let message = [7u8; MESSAGE];
    send.write_all(&message).await?;
    let mut back = [0u8; MESSAGE];
    recv.read_exact(&mut back).await?;
    if back != message {
        bail!("the echo differs");
    }
    Ok(())
}

/// Fresh endpoint (untimed), then connect + one 64-byte round trip, `samples` times.
pub(crate) async fn connect(peer: &RawPeer, samples: usize) -> Result<serde_json::Value> {
    let addr = endpoint_addr(peer)?;
    let mut connects = Vec::new();
    let mut firsts = Vec::new();
    for _ in 0..samples {
        let endpoint = endpoint(Vec::new()).await?;
        let started = Instant::now();
        let connection = endpoint.connect(addr.clone(), ALPN).await?;
        connects.push(started.elapsed().as_secs_f64());
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&[OP_ECHO]).await?;
        echo_once(&mut send, &mut recv).await?;
        firsts.push(started.elapsed().as_secs_f64());
        connection.close(0u32.into(), b"done");
        endpoint.close().await;
    }
    Ok(json!({ "connect": summary(&connects), "first_round_trip": summary(&firsts) }))
}

/// 64-byte round trips on one stream, after 20 to warm up.
pub(crate) async fn rtt(peer: &RawPeer, samples: usize) -> Result<serde_json::Value> {
    let addr = endpoint_addr(peer)?;
    let endpoint = endpoint(Vec::new()).await?;
    let connection = endpoint.connect(addr, ALPN).await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(&[OP_ECHO]).await?;
    for _ in 0..20 {
        echo_once(&mut send, &mut recv).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        echo_once(&mut send, &mut recv).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    connection.close(0u32.into(), b"done");
    endpoint.close().await;
    Ok(json!({ "rtt": summary(&times) }))
}

/// `n` endpoints, each with a live connection (one round trip done), until a stdin line.
pub(crate) async fn idle(peer: &RawPeer, n: usize) -> Result<serde_json::Value> {
    let addr = endpoint_addr(peer)?;
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let endpoint = endpoint(Vec::new()).await?;
        let connection = endpoint.connect(addr.clone(), ALPN).await?;
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&[OP_ECHO]).await?;
        echo_once(&mut send, &mut recv).await?;
        held.push((endpoint, connection, send, recv));
    }
    println!("ready");
    wait_for_quit().await;
    for (endpoint, connection, ..) in held {
        connection.close(0u32.into(), b"done");
        endpoint.close().await;
    }
    Ok(json!({ "connections": n }))
}
