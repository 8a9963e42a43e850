//! `tether`: pair this device with your others, then message them — from a terminal.
//!
//! Exit codes: 0 success; 1 an error (one sentence on stderr says what and the way out);
//! 2 bad usage; 3 pairing failed (wrong, expired or used code); 4 the device is not paired or
//! offline.

mod demo;
mod node;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Output;

/// Pair your devices once with a short word code, then talk directly.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about = None)]
struct Cli {
    /// Where this device's keys and paired devices live.
    #[arg(long, global = true, env = "TETHER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Stay on this machine: bind 127.0.0.1, no relays, no mDNS, no internet discovery.
    #[arg(long, global = true)]
    local_only: bool,
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
    /// Show a word code and a ticket, and wait for another device to join with it.
    Pair(node::PairArgs),
    /// Join the device showing CODE (a word code or a tether1... ticket).
    Join(node::JoinArgs),
    /// Run this device's node in the foreground, serving paired devices, until Ctrl-C.
    Up,
    /// List paired devices and their state.
    Devices,
    /// Measure the round trip of an encrypted ping to a paired device (which must be up).
    Ping(node::DeviceArgs),
    /// Unpair a device: forget its secret and refuse it from now on.
    Unpair(node::DeviceArgs),
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
    let result = runtime.block_on(run(cli, &out));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            out.error(&format!("{error:#}"));
            ExitCode::from(exit_code(&error))
        }
    }
}

async fn run(cli: Cli, out: &Output) -> anyhow::Result<()> {
    let settings = node::Settings {
        data_dir: cli.data_dir,
        local_only: cli.local_only,
    };
    match cli.command {
        Command::Demo(args) => demo::run(args, out).await,
        Command::Init(args) => node::init(&settings, args, out).await,
        Command::Id => node::id(&settings, out).await,
        Command::Pair(args) => node::pair(&settings, args, out).await,
        Command::Join(args) => node::join(&settings, args, out).await,
        Command::Up => node::up(&settings, out).await,
        Command::Devices => node::devices(&settings, out).await,
        Command::Ping(args) => node::ping(&settings, args, out).await,
        Command::Unpair(args) => node::unpair(&settings, args, out).await,
    }
}

fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<tether::NetworkError>() {
        Some(
            tether::NetworkError::Pairing(_)
            | tether::NetworkError::Code(_)
            | tether::NetworkError::Ticket(_),
        ) => 3,
        Some(tether::NetworkError::DeviceNotPaired(_) | tether::NetworkError::DeviceOffline(_)) => {
            4
        }
        _ => 1,
    }
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
