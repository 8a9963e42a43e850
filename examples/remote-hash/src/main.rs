//! `remote-hash`: a worker offering `blake3-tree`, and a submitter.
//!
//! ```text
//! remote-hash worker --dir W --discovery D [--pair]     # prints "node <id>", "ticket <code>"
//! remote-hash submit --dir S --discovery D [--pair] --worker <id> --input FOLDER --out OUT
//!                                   # --pair: the worker's ticket on stdin (never in argv)
//! ```
//!
//! Local-only (127.0.0.1, no relays, no mDNS); both find each other through the discovery
//! directory `D`. Keys are kept unprotected (a demo).
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tether::{NetworkingConfig, NetworkingService, NodeId};
use tether_example_remote_hash::{Blake3Tree, JOB_NAME, MANIFEST_NAME};
use tether_jobs::{Allow, JobEvent, JobPolicy, Jobs, SubmitOptions};
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
struct Cli {
    /// This device's data directory.
    #[arg(long)]
    dir: PathBuf,
    /// The loopback discovery directory both devices share.
    #[arg(long)]
    discovery: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offers blake3-tree to every paired device until interrupted.
    Worker {
        /// Shows a pairing ticket first and waits for one device to pair.
        #[arg(long)]
        pair: bool,
    },
    /// Pairs with a worker's ticket if given, submits a folder, and prints the manifest.
    Submit {
        /// Pair first, with the worker's ticket read from stdin's first line (a pairing
        /// secret does not go in argv, where other local users can read it).
        #[arg(long)]
        pair: bool,
        /// The worker's node id.
        #[arg(long)]
        worker: String,
        /// The folder to hash.
        #[arg(long)]
        input: PathBuf,
        /// Where the manifest goes.
        #[arg(long)]
        out: PathBuf,
        /// Milliseconds the worker waits before each file.
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Worker { pair } => worker(&cli.dir, &cli.discovery, pair).await,
        Command::Submit {
            pair,
            worker,
            input,
            out,
            delay_ms,
        } => {
            let service = start(&cli.dir, &cli.discovery, None).await?;
            if pair {
                let mut code = String::new();
                std::io::stdin()
                    .read_line(&mut code)
                    .context("reading the worker's ticket from stdin")?;
                service.join_pairing(code.trim()).await?;
            }
            let worker: NodeId = worker.parse().context("the worker's node id")?;
            submit(&service, worker, input, out, delay_ms).await
        }
    }
}

async fn start(
    dir: &std::path::Path,
    discovery: &std::path::Path,
    jobs: Option<Jobs>,
) -> anyhow::Result<NetworkingService> {
    let config = NetworkingConfig::local_only(dir)
        .with_loopback_discovery(discovery)
        .with_insecure_key_file();
    let mut builder = tether::Builder::from_config(config);
    if let Some(jobs) = jobs {
        builder = builder.protocol(jobs);
    }
    Ok(builder.spawn().await?)
}

async fn worker(
    dir: &std::path::Path,
    discovery: &std::path::Path,
    pair: bool,
) -> anyhow::Result<()> {
    let policy = JobPolicy::default()
        .allow(Allow::AnyPaired)
        .max_run_time(Duration::from_secs(120));
    let jobs = Jobs::builder(dir.join("jobs"))
        .handler(JOB_NAME, Blake3Tree, policy)
        .build();
    let service = start(dir, discovery, Some(jobs)).await?;
    say(&format!("node {}", service.node_id())).await?;
    if pair {
        let mut invite = service.start_pairing_with_ticket()?;
        say(&format!("ticket {}", invite.code)).await?;
        invite.paired().await?;
        say("paired").await?;
    }
    say("ready").await?;
    tokio::signal::ctrl_c().await?;
    service.shutdown().await;
    Ok(())
}

/// One line on stdout, flushed (a test reads it through a pipe).
async fn say(line: &str) -> anyhow::Result<()> {
    let mut stdout = tokio::io::stdout();
    stdout.write_all(format!("{line}\n").as_bytes()).await?;
    stdout.flush().await?;
    Ok(())
}

async fn submit(
    service: &NetworkingService,
    worker: NodeId,
    input: PathBuf,
    out: PathBuf,
    delay_ms: u64,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let options = SubmitOptions::new(&out).timeout(Duration::from_secs(120));
    let args = delay_ms.to_string();
    let mut handle = tether_jobs::submit(
        service,
        worker,
        JOB_NAME,
        args.as_bytes(),
        &[input],
        options,
    )
    .await?;
    while let Some(event) = handle.next_event().await {
        if let JobEvent::Progress { done, total, note } = event {
            say(&format!("{done}/{total} {note}")).await?;
        }
    }
    handle.result().await?;
    let manifest = tokio::fs::read_to_string(out.join(MANIFEST_NAME)).await?;
    say(manifest.trim_end()).await?;
    service.shutdown().await;
    Ok(())
}
