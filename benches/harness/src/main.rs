//! `tether-bench`: Tether's end-to-end benchmark harness.
//!
//! `tether-bench run` is the orchestrator: it starts servers and clients as separate processes
//! (this same binary, as `serve ...` and `client ...`), alternates Tether with its baselines
//! (a raw iroh stream, an iroh-blobs fetch) within the run, and writes a Markdown section of
//! medians and ratios. Everything stays on 127.0.0.1: `NetworkingConfig::local_only`, iroh's
//! `presets::Minimal` with relays off, a relay only when the run starts one on 127.0.0.1.
//!
//! `cargo xtask bench` builds this in release mode and runs it with the criterion benches.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a benchmark tool: stdout is its protocol

mod blobs;
mod child;
mod folders;
mod lab;
mod parts;
mod raw;
mod relay;
mod report;
mod rsync;
mod run;
mod stats;
mod tether_side;
mod tree;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Tether end-to-end benchmarks (loopback only)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmarks and write the Markdown report.
    Run(run::RunArgs),
    /// Internal: one server process (raw iroh, iroh-blobs or a Tether service).
    Serve {
        #[command(subcommand)]
        kind: ServeKind,
    },
    /// Internal: one client process; prints one JSON line with its measurements.
    Client {
        #[command(subcommand)]
        op: ClientOp,
    },
}

/// The server processes.
#[derive(Subcommand)]
pub(crate) enum ServeKind {
    /// A raw iroh endpoint: echoes 64-byte messages, writes received streams to files.
    Raw {
        /// Where received streams are written.
        #[arg(long)]
        dir: PathBuf,
        #[command(flatten)]
        relay: RelayArgs,
    },
    /// An iroh-relay server on 127.0.0.1 (self-signed); prints `ready <url> <cert file>`.
    Relay {
        /// Where the certificate (DER) is written for the clients to trust.
        #[arg(long)]
        cert: PathBuf,
    },
    /// An iroh-blobs provider with an `FsStore` in `dir`.
    Blobs {
        /// The store's directory.
        #[arg(long)]
        dir: PathBuf,
    },
    /// A Tether service (`NetworkingConfig::local_only`).
    Tether {
        /// Data directory.
        #[arg(long)]
        dir: PathBuf,
        /// Loopback discovery directory shared with the clients.
        #[arg(long)]
        discovery: PathBuf,
        /// Where received transfers go.
        #[arg(long)]
        receive: PathBuf,
        /// UDP port on 127.0.0.1, fixed so clients find a restarted server by the address
        /// their registry holds (they run without discovery, so neither side dials the other
        /// on its own and a measured connect is the only one).
        #[arg(long)]
        port: u16,
        #[command(flatten)]
        relay: RelayArgs,
    },
}

/// Only through this relay (no direct socket), trusting its certificate.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct RelayArgs {
    /// The relay's URL (on 127.0.0.1).
    #[arg(long, requires = "relay_cert")]
    pub(crate) relay: Option<String>,
    /// Its certificate, DER.
    #[arg(long)]
    pub(crate) relay_cert: Option<PathBuf>,
}

/// Where a raw or blobs server listens.
#[derive(clap::Args, Clone)]
pub(crate) struct RawPeer {
    /// The server's endpoint id (hex).
    #[arg(long)]
    pub(crate) id: String,
    /// The server's socket address on 127.0.0.1, or `relay` to reach it through the relay.
    #[arg(long)]
    pub(crate) addr: String,
    #[command(flatten)]
    pub(crate) relay: RelayArgs,
}

/// A Tether client's service.
#[derive(clap::Args, Clone)]
pub(crate) struct TetherClient {
    /// Data directory of this client's service.
    #[arg(long)]
    pub(crate) dir: PathBuf,
    /// Loopback discovery directory shared with the server (used only to pair by code;
    /// other operations reach the server at the address their registry holds).
    #[arg(long)]
    pub(crate) discovery: PathBuf,
    #[command(flatten)]
    pub(crate) relay: RelayArgs,
    /// Speak JSON messages only (`NetworkingConfig::binary_messages` off), as a build without
    /// the binary encoding: the baseline of the binary-versus-JSON rows.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The client processes.
#[derive(Subcommand)]
pub(crate) enum ClientOp {
    /// Send a file on one raw iroh stream; the server writes it to a file and fsyncs
    /// (`--io memory`: the file's length from memory, dropped on arrival).
    RawSend {
        #[command(flatten)]
        peer: RawPeer,
        #[arg(long)]
        file: PathBuf,
        #[arg(long, value_enum, default_value = "std")]
        io: raw::RawIo,
    },
    /// Fresh endpoint, connect, one 64-byte round trip; `samples` times.
    RawConnect {
        #[command(flatten)]
        peer: RawPeer,
        #[arg(long)]
        samples: usize,
    },
    /// 64-byte round trips on one stream.
    RawRtt {
        #[command(flatten)]
        peer: RawPeer,
        #[arg(long)]
        samples: usize,
    },
    /// `n` endpoints, each connected with one round trip; waits for a line on stdin.
    RawIdle {
        #[command(flatten)]
        peer: RawPeer,
        #[arg(long)]
        n: usize,
    },
    /// iroh-blobs: fetch a blob into a fresh store in `dir` (verified), optionally export it.
    BlobsFetch {
        #[command(flatten)]
        peer: RawPeer,
        #[arg(long)]
        hash: String,
        #[arg(long)]
        dir: PathBuf,
        /// Export the blob to this file after the fetch (a collection: into this directory).
        #[arg(long)]
        export: Option<PathBuf>,
        /// `hash` is a collection (sendme's folder): fetch its hash sequence and every blob.
        #[arg(long)]
        collection: bool,
    },
    /// Tether: join the device showing `code`.
    Pair {
        #[command(flatten)]
        client: TetherClient,
        #[arg(long)]
        code: String,
    },
    /// Tether: pair `n` services in `root`/dev{i}, reading one ticket per line on stdin.
    PairMany {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        discovery: PathBuf,
        #[arg(long)]
        n: usize,
    },
    /// Tether: share files with the peer, encrypted or not.
    Send {
        #[command(flatten)]
        client: TetherClient,
        #[arg(long)]
        peer: String,
        #[arg(long, required = true)]
        path: Vec<PathBuf>,
        #[arg(long)]
        plain: bool,
    },
    /// Tether: start the service (untimed), time the first Ping (dial, QUIC, session
    /// handshake, one round trip); `samples` times.
    Connect {
        #[command(flatten)]
        client: TetherClient,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        samples: usize,
    },
    /// Tether: encrypted Ping/Pong round trips on the pooled connection.
    Rtt {
        #[command(flatten)]
        client: TetherClient,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        samples: usize,
    },
    /// Tether: `senders` tasks sending Pings for `seconds`.
    Flood {
        #[command(flatten)]
        client: TetherClient,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        senders: usize,
        #[arg(long)]
        seconds: f64,
    },
    /// Tether: `n` paired services from `root`/dev{i}, each connected with one Ping; waits
    /// for a line on stdin.
    Idle {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        discovery: PathBuf,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        n: usize,
    },
    /// Tether: connect time and RTT with 1, 10 and `n` paired devices connected.
    Scale {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        discovery: PathBuf,
        #[arg(long)]
        peer: String,
        #[arg(long)]
        n: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // Logs to stderr (the orchestrator keeps each process's in its log directory), off unless
    // `RUST_LOG` asks: `RUST_LOG=tether=debug` shows where a connect spends its time.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Serve { kind } => runtime()?.block_on(serve(kind)),
        Command::Client { op } => {
            let result = runtime()?.block_on(client(op))?;
            println!("{result}");
            Ok(())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

async fn serve(kind: ServeKind) -> Result<()> {
    match kind {
        ServeKind::Raw { dir, relay } => raw::serve(dir, &relay).await,
        ServeKind::Relay { cert } => relay::serve(&cert).await,
        ServeKind::Blobs { dir } => blobs::serve(dir).await,
        ServeKind::Tether {
            dir,
            discovery,
            receive,
            port,
            relay,
        } => tether_side::serve(dir, discovery, receive, port, &relay).await,
    }
}

async fn client(op: ClientOp) -> Result<serde_json::Value> {
    match op {
        ClientOp::RawSend { peer, file, io } => raw::send(&peer, &file, io).await,
        ClientOp::RawConnect { peer, samples } => raw::connect(&peer, samples).await,
        ClientOp::RawRtt { peer, samples } => raw::rtt(&peer, samples).await,
        ClientOp::RawIdle { peer, n } => raw::idle(&peer, n).await,
        ClientOp::BlobsFetch {
            peer,
            hash,
            dir,
            export,
            collection,
        } => blobs::fetch(&peer, &hash, &dir, export.as_deref(), collection).await,
        ClientOp::Pair { client, code } => tether_side::pair(&client, &code).await,
        ClientOp::PairMany { root, discovery, n } => {
            tether_side::pair_many(&root, &discovery, n).await
        }
        ClientOp::Send {
            client,
            peer,
            path,
            plain,
        } => tether_side::send(&client, &peer, &path, plain).await,
        ClientOp::Connect {
            client,
            peer,
            samples,
        } => tether_side::connect(&client, &peer, samples).await,
        ClientOp::Rtt {
            client,
            peer,
            samples,
        } => tether_side::rtt(&client, &peer, samples).await,
        ClientOp::Flood {
            client,
            peer,
            senders,
            seconds,
        } => tether_side::flood(&client, &peer, senders, seconds).await,
        ClientOp::Idle {
            root,
            discovery,
            peer,
            n,
        } => tether_side::idle(&root, &discovery, &peer, n).await,
        ClientOp::Scale {
            root,
            discovery,
            peer,
            n,
        } => tether_side::scale(&root, &discovery, &peer, n).await,
    }
}
