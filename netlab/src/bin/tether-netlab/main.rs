//! `tether-netlab`: the network lab of issue 10 (run it with `cargo xtask netlab`, as root).
//!
//! Builds networks out of Linux namespaces, runs real Tether devices (and a real iroh relay)
//! in them, breaks the networks in the ways users' networks break, and prints a table of
//! scenarios, pass/fail and figures. Everything it makes is named `tnl-*` and taken down when
//! a scenario ends, fails or panics; leftovers of a killed run are removed at the start.
//! Not root, or no netns/nft/tc/iptables: it says "skipped: <why>" and exits 0.
#![allow(clippy::print_stdout, clippy::print_stderr)]
// a command-line tool reports on stdout
// `serde_json::Value[&str]` gives `Null` for a missing key or a non-object; it never panics.
#![allow(clippy::indexing_slicing)]

mod agent;
mod lab;
mod scenarios;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

use crate::scenarios::{ALL, Ctx, FAT, ON_REQUEST, Scenario};

#[derive(Parser)]
#[command(about = "Tether's network lab (issue 10): run as root")]
struct Cli {
    /// Scenarios to run (1-11, or `fat` for 9 and 10); all but 10 when empty.
    scenarios: Vec<String>,
    /// Size of the test files in MiB (the 1 Gbit/s and relay-fallback runs send 4×).
    #[arg(long, default_value_t = 64)]
    mib: u64,
    /// Length of the long link cut in seconds (the two minutes; the transfer fails
    /// when the connection's idle timeout ends it, about 20 s into the cut).
    #[arg(long, default_value_t = 120)]
    long_cut_secs: u64,
    /// QUIC settings scenario 10 compares, as `WINDOWS:CONGESTION` (windows `tether`,
    /// `quinn` or `STREAM/CONNECTION/SEND` in KiB; congestion `cubic`, `newreno` or `bbr`).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "quinn:cubic,quinn:newreno,quinn:bbr,tether:cubic,tether:newreno,tether:bbr"
    )]
    settings: Vec<String>,
    /// Extra streams (transfer lanes) of scenario 10's transfers.
    #[arg(long, default_value_t = 0)]
    lanes: u8,
}

/// Why the lab cannot run here, if it cannot.
fn unsupported() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root (network namespaces need it)".into());
    }
    for tool in ["ip", "nft", "tc", "iptables"] {
        if lab::run("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables iptables)"
            ));
        }
    }
    // The kernel features, tried in a throwaway namespace.
    let probe = lab::ns("probe");
    let result = (|| -> Result<()> {
        lab::run("ip", &["netns", "add", &probe])?;
        lab::nft(
            "probe",
            "table inet p {\n chain c {\n type filter hook output priority 0; policy accept;\n numgen random mod 10000 < 1 drop\n }\n}\n",
        )?;
        lab::x(
            "probe",
            &[
                "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            ],
        )?;
        lab::x(
            "probe",
            &[
                "tc", "qdisc", "add", "dev", "v0", "root", "tbf", "rate", "1gbit", "burst", "1mb",
                "latency", "50ms",
            ],
        )?;
        lab::x("probe", &["ip", "link", "add", "br0", "type", "bridge"])?;
        lab::x(
            "probe",
            &[
                "iptables",
                "-t",
                "mangle",
                "-A",
                "OUTPUT",
                "-j",
                "NFQUEUE",
                "--queue-num",
                "9",
                "--queue-bypass",
            ],
        )?;
        Ok(())
    })();
    let _ = lab::run("ip", &["netns", "del", &probe]);
    result
        .err()
        .map(|error| format!("the kernel lacks a feature the lab needs: {error:#}"))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("netlab: {error:#}");
            lab::remove_all();
            ExitCode::FAILURE
        }
    }
}

/// The scenarios `names` asks for: numbers, or `fat`; when none, all but those on request.
fn selected(names: &[String]) -> Vec<&'static Scenario> {
    ALL.iter()
        .filter(|(number, _, _)| {
            if names.is_empty() {
                return !ON_REQUEST.contains(number);
            }
            names
                .iter()
                .any(|s| s == number || (s == "fat" && FAT.contains(number)))
        })
        .collect()
}

fn run(cli: &Cli) -> Result<bool> {
    if let Some(why) = unsupported() {
        println!("netlab skipped: {why}");
        return Ok(true);
    }
    let removed = lab::remove_all();
    if removed > 0 {
        println!("removed {removed} namespaces left by an earlier run");
    }
    let exe = std::env::current_exe().context("locating this program")?;
    let agent = exe.with_file_name("tether-netlab-agent");
    if !agent.exists() {
        anyhow::bail!(
            "{} is missing (build the tether-netlab package)",
            agent.display()
        );
    }
    let dir = std::env::temp_dir().join(format!("tether-netlab-{}", std::process::id()));
    let ctx = Ctx {
        agent,
        dir: dir.clone(),
        mib: cli.mib,
        long_cut: Duration::from_secs(cli.long_cut_secs),
        relay_trust: true,
        settings: cli.settings.clone(),
        lanes: cli.lanes,
    };
    let selected = selected(&cli.scenarios);
    let started = Instant::now();
    let mut rows = Vec::new();
    for (number, name, scenario) in selected {
        println!("== {number}. {name}");
        let began = Instant::now();
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| scenario(&ctx)));
        // Whatever happened, nothing of the scenario may outlive it.
        lab::remove_all();
        let secs = began.elapsed().as_secs_f64();
        let row = match outcome {
            Ok(Ok(outcome)) => (
                *number,
                match (outcome.pass, outcome.target_missed) {
                    (false, _) => "FAIL",
                    (true, false) => "pass",
                    (true, true) => "pass, speed target missed",
                },
                outcome.figures.join("; "),
            ),
            Ok(Err(error)) => {
                let text = format!("{error:#}");
                if let Some(why) = text.strip_prefix("skipped: ") {
                    (*number, "skipped", why.to_owned())
                } else {
                    println!("   FAIL {text}");
                    (*number, "FAIL", text)
                }
            }
            Err(_) => (*number, "FAIL", "the scenario panicked".to_owned()),
        };
        println!("   -> {} ({secs:.1} s)", row.1);
        rows.push((row.0, *name, row.1, row.2, secs));
    }
    let passed = rows.iter().all(|(_, _, result, _, _)| *result != "FAIL");
    if passed {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("logs of the devices and the relay: {}", dir.display());
    }

    println!();
    println!("| # | scenario | result | time | figures |");
    println!("|---|---|---|---|---|");
    for (number, name, result, figures, secs) in &rows {
        println!("| {number} | {name} | {result} | {secs:.0} s | {figures} |");
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    Ok(passed)
}
