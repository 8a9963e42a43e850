//! `tether-netlab-agent`: what the network lab runs inside a namespace — a Tether device
//! driven over stdin/stdout, the lab's iroh relay, or the userspace delay line.
#![allow(clippy::print_stdout)] // its output is the JSON lines the lab reads

mod delay;
mod device;
mod relay;
mod stream;
mod tcp;

use std::io::Write;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "The network lab's agent (run by `cargo xtask netlab`)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// A Tether device: JSON commands on stdin, answers and events on stdout.
    Device(device::DeviceArgs),
    /// The lab's relay server.
    Relay(relay::RelayArgs),
    /// Hold every packet of an NFQUEUE queue for a fixed time.
    Delay(delay::DelayArgs),
    /// Plain TCP through the same links, for reference.
    Tcp(tcp::TcpArgs),
}

/// Prints one JSON line on stdout.
pub(crate) fn emit(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Whether this process runs inside one of the lab's namespaces (`/run/netns/tnl-*`);
/// anywhere else it must stay on loopback.
pub(crate) fn in_lab_namespace() -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/self/ns/net").context("reading our network namespace")?;
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Ok(false);
    };
    Ok(entries.flatten().any(|entry| {
        entry.file_name().to_string_lossy().starts_with("tnl-")
            && entry
                .metadata()
                .is_ok_and(|ns| ns.ino() == own.ino() && ns.dev() == own.dev())
    }))
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match &cli.mode {
        Mode::Delay(args) => return delay::run(args),
        Mode::Tcp(args) => return tcp::run(args),
        _ => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        match cli.mode {
            Mode::Device(args) => device::run(args).await,
            Mode::Relay(args) => relay::run(args).await,
            Mode::Delay(_) | Mode::Tcp(_) => Ok(()),
        }
    })
}
