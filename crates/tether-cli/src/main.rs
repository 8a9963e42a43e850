//! `tether`: pair this device with your others, then message them and send them files — from a
//! terminal.
//!
//! Commands that need the node (`devices`, `send`, `ping`, ...) talk to a running `tether up`
//! for the same data directory through its control socket, or run a short-lived node
//! themselves when none is running. Exit codes are in [`failure`].

mod clipboard;
mod code_input;
mod commands;
mod consent;
mod context;
mod control;
mod demo;
mod doctor;
mod failure;
mod key;
mod node;
mod output;
mod passphrase;
mod progress;
mod render;
mod send;
mod send_many;
mod settings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands::{QuotaChange, Request};
use crate::failure::{EXIT_CODES, Failure};
use crate::output::Output;
use crate::send::SendRequest;

/// Pair your devices once with a short word code, then talk directly.
#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    about = "Pair your devices once with a short word code, then talk directly.",
    long_about = None,
    after_help = EXIT_CODES
)]
struct Cli {
    /// Data directory (env TETHER_DATA_DIR; see README)
    #[arg(
        long,
        global = true,
        env = "TETHER_DATA_DIR",
        hide_env = true,
        value_name = "DIR"
    )]
    data_dir: Option<PathBuf>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// This machine only: 127.0.0.1, no relays, no mDNS.
    #[arg(long, global = true, conflicts_with = "lan")]
    local_only: bool,
    /// LAN only: all interfaces, mDNS, no relays.
    #[arg(long, global = true)]
    lan: bool,
    /// Your own iroh-relay server (repeatable).
    #[arg(long = "relay", value_name = "URL", global = true, value_parser = settings::parse_relay)]
    relays: Vec<String>,
    /// Trust this CA certificate (PEM or DER) for --relay.
    #[arg(long = "relay-ca", value_name = "FILE", global = true)]
    relay_cas: Vec<PathBuf>,
    /// Find devices on the Mainline DHT too (see README).
    #[arg(long, global = true, help_heading = "DHT")]
    dht: bool,
    /// Join the DHT through these nodes (ADDR:PORT,...).
    #[arg(
        long,
        value_name = "NODES",
        global = true,
        help_heading = "DHT",
        value_delimiter = ',',
        value_parser = settings::parse_dht_bootstrap
    )]
    dht_bootstrap: Vec<std::net::SocketAddr>,
    /// Read the key's passphrase from FILE's first line.
    #[arg(long, value_name = "FILE", global = true, help_heading = "Device key")]
    passphrase_file: Option<PathBuf>,
    /// Allow an unencrypted new key (tests only).
    #[arg(long, global = true, help_heading = "Device key")]
    insecure_key_file: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Two devices in one process, on loopback: pair, talk, send a file.
    Demo(demo::DemoArgs),
    /// Create this device's identity (or show the existing one).
    Init(node::InitArgs),
    /// Show this device's name, device id, node id and key storage.
    Id,
    /// Show a word code (or --ticket) and wait for the other device.
    Pair(PairArgs),
    /// Join the device showing a code: typed, `-` for stdin, or TETHER_CODE.
    Join(JoinArgs),
    /// Run the node in the foreground: serve devices, receive files.
    Up(node::UpArgs),
    /// List devices: state, path, round trip, last seen.
    Devices,
    /// Send files and directories to a device; run again to resume.
    Send(SendArgs),
    /// Send a short text (`-`: from stdin) to a paired device.
    Text(TextArgs),
    /// A live channel: lines typed here go to the paired devices on TOPIC.
    Channel(commands::channel::ChannelArgs),
    /// Time encrypted pings to a paired device (which must be up).
    Ping(PingArgs),
    /// Unpair a device: forget its secret and refuse it from now on.
    Unpair(DeviceArgs),
    /// Let a paired device send files here without asking, or not.
    Trust(TrustArgs),
    /// Show or set bandwidth quotas per device (--send 20GiB/day).
    Quota(commands::QuotaArgs),
    /// Remove what interrupted transfers left (idle or unpaired)
    Gc(GcArgs),
    /// Rename this device (or, with --device, a paired one, here).
    Rename(RenameArgs),
    /// Check addresses, relays, discovery, keys, clock, a device's path.
    Doctor(DoctorArgs),
    /// List the transfers sent and received, newest first.
    History(HistoryArgs),
    /// List the sends queued with `send --queue`; `queue cancel ID`.
    Queue(QueueArgs),
    /// The device key: `tether key protect` seals it with a passphrase.
    Key(key::KeyArgs),
    /// Serve a file a device shares to local players (HTTP, 127.0.0.1).
    Stream(commands::stream::StreamArgs),
}

#[derive(Debug, Args)]
struct PairArgs {
    /// Show a ticket (and QR code) instead of a word code.
    #[arg(long)]
    ticket: bool,
    /// Pair without asking (scripts); else ask on the terminal
    #[arg(long, short = 'y')]
    yes: bool,
}

/// The code itself is never an argument: other users can read a command line.
#[derive(Debug, Args)]
#[command(after_help = code_input::JOIN_HELP)]
struct JoinArgs {
    /// `-`: read the code from standard input (never the code itself).
    #[arg(value_name = "-")]
    from: Option<String>,
}

#[derive(Debug, Args)]
struct DeviceArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
}

#[derive(Debug, Args)]
struct TrustArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
    /// Take its files without asking (`tether up` asks).
    #[arg(long, required_unless_present_any = ["no_auto_accept", "quota", "no_quota", "quota_reset"])]
    auto_accept: bool,
    /// Ask again before accepting its files.
    #[arg(long, conflicts_with = "auto_accept")]
    no_auto_accept: bool,
    /// Let it store at most SIZE here (e.g. 10GiB)
    #[arg(long, value_name = "SIZE", value_parser = progress::parse_size)]
    quota: Option<u64>,
    /// Back to the default quota (`tether up --quota`)
    #[arg(long, conflicts_with = "quota")]
    no_quota: bool,
    /// Count what it stored from zero again
    #[arg(long)]
    quota_reset: bool,
}

#[derive(Debug, Args)]
struct GcArgs {
    /// Only list what would be removed
    #[arg(long)]
    dry_run: bool,
    /// Clean DIR [default: DATA_DIR/received]
    #[arg(long, value_name = "DIR")]
    receive_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TextArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
    /// The text (at most 64 KiB); `-` reads it from standard input.
    #[arg(allow_hyphen_values = true)]
    text: String,
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
    /// The device: name, device id or node id start; several: desk,phone
    device: String,
    /// Files and directories to send.
    paths: Vec<PathBuf>,
    /// To every paired device at once (give paths only)
    #[arg(long)]
    all: bool,
    /// At most RATE bytes/s: 10M, 500KiB, 2MB/s.
    #[arg(long, value_name = "RATE", value_parser = progress::parse_rate)]
    limit: Option<u64>,
    /// Compress with zstd (per chunk, where it pays).
    #[arg(long)]
    compress: bool,
    /// No per-transfer encryption (QUIC's TLS still applies).
    #[arg(long)]
    no_encrypt: bool,
    /// End a stalled send after S s (exit 5) [default: 60]
    #[arg(long, value_name = "S", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stall_timeout: Option<u64>,
    /// Resume after a lost link for up to T [default: 10m]
    #[arg(long, value_name = "T", value_parser = send::parse_retry_for)]
    retry_for: Option<std::time::Duration>,
    /// Queue it for `tether up` to send when reachable
    #[arg(long, conflicts_with = "all")]
    queue: bool,
}

#[derive(Debug, Args)]
struct RenameArgs {
    /// The new name.
    name: String,
    /// Rename this paired device here, not this device.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// Only this device: its name, device id or the start of its node id.
    device: Option<String>,
    /// Show at most N transfers.
    #[arg(long, value_name = "N", default_value_t = commands::HISTORY_LIMIT)]
    limit: usize,
}

#[derive(Debug, Args)]
struct QueueArgs {
    #[command(subcommand)]
    action: Option<QueueAction>,
}

#[derive(Debug, Subcommand)]
enum QueueAction {
    /// Take a queued send out of the queue (stops it if it is being sent).
    Cancel {
        /// Its number, as `tether queue` shows it.
        id: u64,
    },
}

#[derive(Debug, Args)]
struct DoctorArgs {
    /// Also check how this paired device is reached.
    device: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    log_panics();
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

/// The network the flags ask for: `--local-only`, `--lan`, or the internet.
fn network(local_only: bool, lan: bool) -> settings::Network {
    if local_only {
        settings::Network::LocalOnly
    } else if lan {
        settings::Network::Lan
    } else {
        settings::Network::Internet
    }
}

async fn run(cli: Cli, out: Output) -> anyhow::Result<()> {
    let settings = settings::Settings {
        data_dir: cli.data_dir,
        network: network(cli.local_only, cli.lan),
        relays: cli.relays,
        relay_cas: cli.relay_cas,
        dht: settings::dht(cli.dht, cli.dht_bootstrap),
        passphrase_file: cli.passphrase_file,
        insecure_key_file: cli.insecure_key_file,
    };
    let request = match cli.command {
        Command::Demo(args) => return demo::run(args, &out).await,
        Command::Init(args) => return node::init(&settings, args, out).await,
        Command::Up(args) => return node::up(&settings, args, out).await,
        Command::Channel(args) => return commands::channel::run(&settings, args, out).await,
        Command::Key(args) => return key::run(&settings, args, out).await,
        Command::Stream(args) => return commands::stream::run(&settings, args, out).await,
        Command::Id => Request::Id,
        Command::Pair(args) => Request::Pair {
            confirm: confirm_pairing(args.yes),
            ticket: args.ticket,
        },
        Command::Join(args) => Request::Join {
            code: code_input::read_code(args.from.as_deref())?,
        },
        Command::Devices => Request::Devices,
        Command::Ping(args) => Request::Ping {
            device: args.device,
            count: args.count,
        },
        Command::Quota(args) => Request::Quota {
            device: args.device,
            send: args.send,
            receive: args.receive,
        },
        Command::Text(args) => Request::Text {
            device: args.device,
            text: commands::read_text(&args.text)?,
        },
        Command::Unpair(args) => Request::Unpair {
            device: args.device,
        },
        Command::Trust(args) => Request::Trust {
            device: args.device,
            auto_accept: (args.auto_accept || args.no_auto_accept).then_some(args.auto_accept),
            quota: if args.no_quota {
                Some(QuotaChange::Default)
            } else {
                args.quota.map(QuotaChange::Set)
            },
            quota_reset: args.quota_reset,
        },
        Command::Gc(args) => Request::Gc {
            dry_run: args.dry_run,
            receive_dir: args.receive_dir,
        },
        Command::Rename(args) => Request::Rename {
            name: args.name,
            device: args.device,
        },
        Command::Doctor(args) => Request::Doctor {
            device: args.device,
        },
        Command::History(args) => Request::History {
            device: args.device,
            limit: args.limit,
        },
        Command::Send(args) => send_request(args)?,
        Command::Queue(args) => match args.action {
            None => Request::Queue,
            Some(QueueAction::Cancel { id }) => Request::QueueCancel { id },
        },
    };
    node::dispatch(&settings, request, out).await
}

/// How `tether pair` confirms the joiner: `--yes`, else at the terminal, else not at all.
fn confirm_pairing(yes: bool) -> commands::Confirm {
    if yes {
        commands::Confirm::Yes
    } else if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        commands::Confirm::Ask
    } else {
        commands::Confirm::Refuse
    }
}

/// The request `tether send` makes of a node.
fn send_request(mut args: SendArgs) -> anyhow::Result<Request> {
    let device = if args.all {
        // `tether send --all PATH...`: the first positional is a path.
        args.paths
            .insert(0, PathBuf::from(std::mem::take(&mut args.device)));
        String::new()
    } else {
        args.device
    };
    if args.paths.is_empty() {
        return Err(Failure::usage("nothing to send: give one or more paths").into());
    }
    if args.queue && device.contains(',') {
        return Err(Failure::usage("--queue takes one device; queue for each in turn").into());
    }
    let queue = args.queue;
    let request = SendRequest {
        device,
        all: args.all,
        paths: commands::absolute_paths(&args.paths)?,
        compress: args.compress,
        encrypt: !args.no_encrypt,
        limit: args.limit,
        stall_timeout: args.stall_timeout,
        retry_for_ms: args.retry_for.map(send::millis),
    };
    Ok(if queue {
        Request::QueueSend(request)
    } else {
        Request::Send(request)
    })
}

/// Logs go to stderr, filtered by `RUST_LOG` (default: warnings).
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// A panic anywhere (a background task's too, which nobody may be waiting for) is logged with
/// where it happened and its message, instead of the default hook's line; with the log off
/// (`RUST_LOG=off`, say), the default hook still prints it.
fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !tracing::enabled!(target: "panic", tracing::Level::ERROR) {
            return default(info);
        }
        let message = info.payload_as_str().unwrap_or("unknown panic payload");
        let location = info
            .location()
            .map_or_else(|| "an unknown place".to_owned(), ToString::to_string);
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        // As the default hook does: a backtrace when RUST_BACKTRACE asks for one.
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
            _ => String::new(),
        };
        tracing::error!(
            target: "panic",
            "thread '{thread}' panicked at {location}: {message}; this is a bug in Tether{backtrace}"
        );
    }));
}
