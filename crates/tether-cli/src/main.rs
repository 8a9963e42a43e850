//! `tether`: pair this device with your others, then message them and send them files — from a
//! terminal.
//!
//! Commands that need the node (`devices`, `send`, `ping`, ...) talk to a running `tether up`
//! for the same data directory through its control socket, or run a short-lived node
//! themselves when none is running. Exit codes are in [`failure`].

mod commands;
mod control;
mod demo;
mod doctor;
mod failure;
mod node;
mod output;
mod progress;
mod send;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands::Request;
use crate::failure::{EXIT_CODES, Failure};
use crate::output::Output;
use crate::send::SendRequest;

/// Pair your devices once with a short word code, then talk directly.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// Where this device's keys and paired devices live [default: ~/.local/share/tether].
    #[arg(long, global = true, env = "TETHER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Stay on this machine: bind 127.0.0.1, no relays, no mDNS, no internet discovery.
    #[arg(long, global = true, conflicts_with = "lan")]
    local_only: bool,
    /// LAN mode: bind every interface, find devices with mDNS; no relays (unless --relay),
    /// no internet discovery, no port mapping.
    #[arg(long, global = true)]
    lan: bool,
    /// Use your own iroh-relay server at URL (repeatable) instead of the public relays.
    #[arg(long = "relay", value_name = "URL", global = true)]
    relays: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two devices in one process pair by word code and exchange messages, on loopback only.
    Demo(demo::DemoArgs),
    /// Create this device's identity (or show the existing one).
    Init(node::InitArgs),
    /// Show this device's identity: name, device id, node id, where the key is kept.
    Id,
    /// Show a word code (or a ticket) and wait for another device to join with it.
    Pair(PairArgs),
    /// Join the device showing CODE (a word code or a tether1... ticket).
    Join(JoinArgs),
    /// Run this device's node in the foreground: serve paired devices, receive files.
    Up(node::UpArgs),
    /// List paired and discovered devices: state, path, round trip, last seen.
    Devices,
    /// Send files and directories to a paired device; run it again to resume.
    Send(SendArgs),
    /// Measure the round trip of encrypted pings to a paired device (which must be up).
    Ping(PingArgs),
    /// Unpair a device: forget its secret and refuse it from now on.
    Unpair(DeviceArgs),
    /// Rename this device (or, with --device, how a paired device is shown here).
    Rename(RenameArgs),
    /// Check the set-up: addresses, relays, discovery, key storage, clock, a device's path.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
struct PairArgs {
    /// Show a ticket (address + full-entropy secret, for pairing across networks or by QR
    /// code) instead of a word code.
    #[arg(long)]
    ticket: bool,
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// The word code (e.g. harbor-brave-lion-sunset) or ticket (tether1...) the other device
    /// shows.
    code: String,
}

#[derive(Debug, Args)]
struct DeviceArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
}

#[derive(Debug, Args)]
struct PingArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
    /// How many pings.
    #[arg(long, short = 'c', default_value_t = 5)]
    count: u32,
}

#[derive(Debug, Args)]
struct SendArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
    /// Files and directories to send.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// At most RATE bytes per second: 10M, 500KiB, 2MB/s (k, M, G = 1000^n; KiB, MiB, GiB =
    /// 1024^n).
    #[arg(long, value_name = "RATE", value_parser = progress::parse_rate)]
    limit: Option<u64>,
    /// Compress with zstd (skipped per chunk when it does not pay).
    #[arg(long)]
    compress: bool,
    /// No per-transfer encryption on top of QUIC's TLS (faster; still encrypted in transit).
    #[arg(long)]
    no_encrypt: bool,
}

#[derive(Debug, Args)]
struct RenameArgs {
    /// The new name.
    name: String,
    /// Rename how this paired device is shown here, instead of this device.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// Also check whether this paired device is reachable, directly or only via a relay.
    device: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's keys live in a temporary directory that is deleted at the end, so the warning
    // about an unencrypted key file is noise there.
    init_logging(matches!(cli.command, Command::Demo(_)));
    let out = Output::new(cli.json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            out.error(&format!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli, out));
    // Tasks still running (a control client, say) must not hold the process.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            out.error(&format!("{error:#}"));
            ExitCode::from(failure::exit_code(&error))
        }
    }
}

async fn run(cli: Cli, out: Output) -> anyhow::Result<()> {
    let network = if cli.local_only {
        settings::Network::LocalOnly
    } else if cli.lan {
        settings::Network::Lan
    } else {
        settings::Network::Internet
    };
    let settings = settings::Settings {
        data_dir: cli.data_dir,
        network,
        relays: cli.relays,
    };
    let request = match cli.command {
        Command::Demo(args) => return demo::run(args, &out).await,
        Command::Init(args) => return node::init(&settings, args, out).await,
        Command::Up(args) => return node::up(&settings, args, out).await,
        Command::Id => Request::Id,
        Command::Pair(args) => Request::Pair {
            ticket: args.ticket,
        },
        Command::Join(args) => Request::Join { code: args.code },
        Command::Devices => Request::Devices,
        Command::Ping(args) => Request::Ping {
            device: args.device,
            count: args.count,
        },
        Command::Unpair(args) => Request::Unpair {
            device: args.device,
        },
        Command::Rename(args) => Request::Rename {
            name: args.name,
            device: args.device,
        },
        Command::Doctor(args) => Request::Doctor {
            device: args.device,
        },
        Command::Send(args) => {
            if args.paths.is_empty() {
                return Err(Failure::usage("nothing to send: give one or more paths").into());
            }
            Request::Send(SendRequest {
                device: args.device,
                paths: commands::absolute_paths(&args.paths)?,
                compress: args.compress,
                encrypt: !args.no_encrypt,
                limit: args.limit,
            })
        }
    };
    node::dispatch(&settings, request, out).await
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logging(demo: bool) {
    use std::io::IsTerminal;
    let default = if demo {
        "warn,tether_registry::key_manager=error"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
