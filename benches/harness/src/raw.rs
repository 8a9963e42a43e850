//! The raw iroh baseline: the same endpoint settings Tether's `TransportConfig::local_only`
//! uses (`presets::Minimal`, relays off, IP transport on 127.0.0.1 only), no Tether on top.
//!
//! Three ways to move one stream's bytes, so that Tether is held against the best of them:
//! file→file with good file IO (each end's disk work on a dedicated thread with `std::fs`,
//! 1 MiB reads handed to iroh's `write_chunk` on the sending side, the stream's own
//! `read_chunk` buffers written in vectored batches on the receiving side, bounded channels
//! between, one fsync at the end as Tether does); file→file through `tokio::fs` (a
//! blocking-pool hop per call, the harness's earlier baseline, kept to show the difference);
//! and memory→memory (no disk at all: one buffer written again and again, `read_chunk`s dropped).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use iroh::endpoint::{Connection, RecvStream, SendStream, presets};
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

/// Buffers in flight between a disk thread and the stream, each way.
const IN_FLIGHT: usize = 8;
/// The receiving file's writer asks for a flush to disk after this many bytes.
const SYNC_STEP: usize = 64 << 20;

const OP_ECHO: u8 = b'E';
/// A file, written with `tokio::fs`.
const OP_FILE_TOKIO: u8 = b'F';
/// A file, written with `std::fs` on a dedicated thread.
const OP_FILE: u8 = b'G';
/// Bytes that are read and dropped.
const OP_DISCARD: u8 = b'M';

/// How a raw sender reads its bytes, and how the server stores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RawIo {
    /// `std::fs` on a dedicated thread at each end, large reused buffers.
    Std,
    /// `tokio::fs` at each end (a blocking-pool hop per call).
    Tokio,
    /// No file: the sender writes one buffer again and again, the server drops what it reads.
    Memory,
}

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
    fn next_path(&self) -> PathBuf {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("raw-{n}"))
    }

    async fn stream(&self, mut send: SendStream, mut recv: RecvStream) -> Result<()> {
        let mut op = [0u8; 1];
        recv.read_exact(&mut op).await?;
        match op {
            [OP_ECHO] => {
                let mut buf = [0u8; MESSAGE];
                while recv.read_exact(&mut buf).await.is_ok() {
                    send.write_all(&buf).await?;
                }
            }
            [OP_FILE_TOKIO] => {
                let path = self.next_path();
                receive_tokio(&mut recv, &path).await?;
                acknowledge(&mut send).await?;
                tokio::fs::remove_file(&path).await?;
            }
            [OP_FILE] => {
                let path = self.next_path();
                receive_std(&mut recv, &path).await?;
                acknowledge(&mut send).await?;
                tokio::fs::remove_file(&path).await?;
            }
            [OP_DISCARD] => {
                while recv.read_chunk(usize::MAX).await?.is_some() {}
                acknowledge(&mut send).await?;
            }
            _ => bail!("unknown op"),
        }
        Ok(())
    }
}

/// The one-byte answer after everything was received (and, for a file, fsynced).
async fn acknowledge(send: &mut SendStream) -> Result<()> {
    send.write_all(b"K").await?;
    send.finish()?;
    let _ = send.stopped().await;
    Ok(())
}

/// The earlier baseline: `tokio::fs`, one blocking-pool hop per write.
async fn receive_tokio(recv: &mut RecvStream, path: &Path) -> Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut buf = vec![0u8; BUFFER];
    while let Some(read) = recv.read(&mut buf).await? {
        file.write_all(buf.get(..read).context("read past the buffer")?)
            .await?;
    }
    file.sync_all().await?;
    Ok(())
}

/// Good file IO: the stream's own buffers (`read_chunk`, no copy) go in batches of up to 1 MiB
/// to a dedicated thread that writes each batch with one vectored `write`; a second thread
/// flushes what was written every [`SYNC_STEP`] while the stream goes on; one fsync at the end.
async fn receive_std(recv: &mut RecvStream, path: &Path) -> Result<()> {
    let file = std::fs::File::create(path)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(IN_FLIGHT);
    let writer = std::thread::spawn(move || write_out(file, rx));
    let streamed = batch_and_hand_over(recv, &tx).await;
    drop(tx);
    let written = tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the writer thread panicked"))?;
    streamed?;
    Ok(written?)
}

/// The writer thread: writes each batch; asks the flusher for a `sync_data` every
/// [`SYNC_STEP`] bytes (skipped while one runs), so that the fsync at the end finds little left
/// to write, as the disk keeps pace with the stream instead of taking the whole file at the end.
fn write_out(
    mut file: std::fs::File,
    mut batches: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> std::io::Result<()> {
    let flushed = file.try_clone()?;
    let (flush_tx, flush_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let flusher = std::thread::spawn(move || -> std::io::Result<()> {
        for () in flush_rx {
            flushed.sync_data()?;
        }
        Ok(())
    });
    let mut unflushed = 0;
    while let Some(batch) = batches.blocking_recv() {
        unflushed += write_batch(&mut file, &batch)?;
        if unflushed >= SYNC_STEP {
            // Full: a flush is running and will take these bytes too.
            let _ = flush_tx.try_send(());
            unflushed = 0;
        }
    }
    drop(flush_tx);
    flusher
        .join()
        .map_err(|_| std::io::Error::other("the flusher thread panicked"))??;
    file.sync_all()
}

/// Writes every chunk of `batch` with vectored writes (at most [`BATCH_CHUNKS`] chunks, under
/// the kernel's `IOV_MAX`); the bytes written.
fn write_batch(file: &mut std::fs::File, batch: &[Bytes]) -> std::io::Result<usize> {
    use std::io::{IoSlice, Write as _};
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = slices.as_mut_slice();
    let mut written = 0;
    while !rest.is_empty() {
        let n = file.write_vectored(rest)?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        written += n;
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(written)
}

/// The most chunks in one batch (Linux's `IOV_MAX` is 1024).
const BATCH_CHUNKS: usize = 512;

/// Reads the stream's chunks until it ends, handing them over in batches of up to [`BUFFER`]
/// bytes or [`BATCH_CHUNKS`] chunks.
async fn batch_and_hand_over(
    recv: &mut RecvStream,
    batches: &tokio::sync::mpsc::Sender<Vec<Bytes>>,
) -> Result<()> {
    let mut batch = Vec::with_capacity(BATCH_CHUNKS);
    let mut bytes = 0;
    while let Some(chunk) = recv.read_chunk(BUFFER).await? {
        bytes += chunk.len();
        batch.push(chunk);
        if bytes >= BUFFER || batch.len() >= BATCH_CHUNKS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_CHUNKS));
            batches
                .send(full)
                .await
                .map_err(|_| anyhow::anyhow!("the writer thread stopped"))?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        batches
            .send(batch)
            .await
            .map_err(|_| anyhow::anyhow!("the writer thread stopped"))?;
    }
    Ok(())
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

/// One file on one stream, acknowledged after the server's fsync (`io` says how each end
/// does its file IO; with `Memory` the file's length in bytes goes from memory to nowhere).
pub(crate) async fn send(peer: &RawPeer, file: &Path, io: RawIo) -> Result<serde_json::Value> {
    let addr = endpoint_addr(peer)?;
    let endpoint = relay_endpoint(Vec::new(), &peer.relay).await?;
    let size = std::fs::metadata(file)?.len();
    let started = Instant::now();
    let connection = endpoint.connect(addr, ALPN).await?;
    let relayed = connection
        .paths()
        .iter()
        .any(|p| p.is_selected() && p.is_relay());
    let (mut send, mut recv) = connection.open_bi().await?;
    let bytes = match io {
        RawIo::Std => {
            send.write_all(&[OP_FILE]).await?;
            send_std(&mut send, file).await?
        }
        RawIo::Tokio => {
            send.write_all(&[OP_FILE_TOKIO]).await?;
            send_tokio(&mut send, file).await?
        }
        RawIo::Memory => {
            send.write_all(&[OP_DISCARD]).await?;
            send_memory(&mut send, size).await?
        }
    };
    send.finish()?;
    let mut ack = [0u8; 1];
    recv.read_exact(&mut ack).await?;
    let seconds = started.elapsed().as_secs_f64();
    connection.close(0u32.into(), b"done");
    endpoint.close().await;
    Ok(json!({ "seconds": seconds, "bytes": bytes, "relayed": relayed }))
}

/// The earlier baseline: `tokio::fs` reads into one buffer, `write_all` copies it out.
async fn send_tokio(send: &mut SendStream, file: &Path) -> Result<u64> {
    let mut source = tokio::fs::File::open(file).await?;
    let mut buf = vec![0u8; BUFFER];
    let mut bytes = 0u64;
    loop {
        let read = source.read(&mut buf).await?;
        if read == 0 {
            return Ok(bytes);
        }
        send.write_all(buf.get(..read).context("read past the buffer")?)
            .await?;
        bytes += read as u64;
    }
}

/// Good file IO: a dedicated thread reads 1 MiB buffers with `std::fs`; each goes to the
/// stream as it is (`write_chunk`, no copy).
async fn send_std(send: &mut SendStream, file: &Path) -> Result<u64> {
    let mut source = std::fs::File::open(file)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(IN_FLIGHT);
    let reader = std::thread::spawn(move || -> std::io::Result<()> {
        use std::io::Read as _;
        loop {
            let mut buf = vec![0u8; BUFFER];
            let mut len = 0;
            while len < BUFFER {
                match source.read(buf.get_mut(len..).unwrap_or_default())? {
                    0 => break,
                    n => len += n,
                }
            }
            if len == 0 {
                return Ok(());
            }
            buf.truncate(len);
            if tx.blocking_send(Bytes::from(buf)).is_err() {
                // The stream side stopped on an error it reports itself.
                return Ok(());
            }
        }
    });
    let mut bytes = 0u64;
    let mut streamed = Ok(());
    while let Some(chunk) = rx.recv().await {
        bytes += chunk.len() as u64;
        if let Err(error) = send.write_chunk(chunk).await {
            streamed = Err(error);
            break;
        }
    }
    drop(rx);
    let read = tokio::task::spawn_blocking(move || reader.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))?;
    streamed?;
    read?;
    Ok(bytes)
}

/// No disk: one 1 MiB buffer of random bytes, written `size` bytes' worth (`write_chunk`
/// shares it, no copy).
async fn send_memory(send: &mut SendStream, size: u64) -> Result<u64> {
    let mut buf = vec![0u8; BUFFER];
    blake3::Hasher::new().finalize_xof().fill(&mut buf);
    let buf = Bytes::from(buf);
    let mut left = size;
    while left > 0 {
        let n = left.min(BUFFER as u64);
        send.write_chunk(buf.slice(..n as usize)).await?;
        left -= n;
    }
    Ok(size)
}

async fn echo_once(send: &mut SendStream, recv: &mut RecvStream) -> Result<()> {
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
