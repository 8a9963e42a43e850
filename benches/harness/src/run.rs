//! The orchestrator: servers and clients as separate processes, Tether and its baselines
//! alternated within each repetition, and the Markdown report.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::child::{Server, args};
use crate::lab::{Cx, GIB, Lab, MIB, seconds};
use crate::report::{Report, Row, ms, size_name};
use crate::stats::median;
use crate::{folders, parts, tree};

/// `tether-bench run` options.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The short smoke version: fewer repetitions, smaller sizes.
    #[arg(long)]
    pub(crate) quick: bool,
    /// Repetitions of each alternated comparison (default 5, quick 3).
    #[arg(long)]
    reps: Option<usize>,
    /// Where the work files go (default: the system temp directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the Markdown section here.
    #[arg(long)]
    markdown: PathBuf,
    /// Write every measurement as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Keep the work directory (files, data directories, every process's log).
    #[arg(long)]
    keep: bool,
    /// Only these parts (transfer, small, folders, tree, connect, rtt, flood, growth, devices,
    /// relay, pairing); pairing by code always runs, it makes the client.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// Runs the benchmarks and writes the report.
pub(crate) fn run(opts: &RunArgs) -> Result<()> {
    let quick = opts.quick;
    let reps = opts.reps.unwrap_or(if quick { 3 } else { 5 });
    let base = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let work_dir = tempfile::Builder::new()
        .prefix("tether-bench-")
        .tempdir_in(&base)?;
    // Dropping the guard removes the work directory; `--keep` leaves it.
    let (work, _guard) = if opts.keep {
        (work_dir.keep(), None)
    } else {
        (work_dir.path().to_owned(), Some(work_dir))
    };
    let mut lab = Lab::new(work.clone())?;
    let started = Instant::now();
    let big: u64 = if quick { 64 * MIB } else { GIB };
    let mut report = Report::default();

    eprintln!("tether-bench: work in {}", work.display());
    let mut tether = lab.tether_server()?;
    pairing(&mut lab, &mut tether, opts, &mut report)?;
    let mut cx = Cx {
        raw: lab.raw_server()?,
        lab,
        tether,
        work,
        big,
        reps,
        quick,
    };
    parts(&mut cx, opts, &mut report)?;

    let Cx {
        lab,
        mut tether,
        mut raw,
        ..
    } = cx;
    raw.stop()?;
    tether.stop()?;
    let mode = format!(
        "Mode: {} ({reps} alternated repetitions per comparison; transfer size {}); harness \
         wall time {:.0} s.",
        if quick { "quick" } else { "full" },
        size_name(big),
        started.elapsed().as_secs_f64()
    );
    std::fs::write(&opts.markdown, report.markdown(&mode))?;
    if let Some(path) = &opts.json {
        let all: Vec<Value> = lab
            .raw_json
            .iter()
            .map(|(name, v)| json!({ "client": name, "result": v }))
            .collect();
        std::fs::write(path, serde_json::to_string_pretty(&all)?)?;
    }
    eprintln!(
        "tether-bench: done in {:.0} s; report in {}",
        started.elapsed().as_secs_f64(),
        opts.markdown.display()
    );
    Ok(())
}

/// Whether `--only` asks for `part` (every part when it is empty).
fn wants(opts: &RunArgs, part: &str) -> bool {
    opts.only.is_empty() || opts.only.iter().any(|p| p == part)
}

/// Pairing by code, end to end; the first joiner is the client of every later figure.
fn pairing(lab: &mut Lab, tether: &mut Server, opts: &RunArgs, report: &mut Report) -> Result<()> {
    let pair_reps = if opts.quick { 3 } else { 10 };
    let mut pair_times = Vec::new();
    for i in 0..pair_reps {
        let reply = tether.process.ask("invite", Duration::from_secs(30))?;
        let code = reply
            .strip_prefix("code ")
            .context("invite reply")?
            .to_owned();
        let name = if i == 0 {
            "client".to_owned()
        } else {
            format!("joiner{i}")
        };
        let mut argv = args(&["pair", "--code", &code]);
        argv.extend(lab.tether_client_args(&name));
        pair_times.push(seconds(&lab.client("tether-pair", argv)?, "seconds")?);
        // Let the showing side finish its half before the next code replaces it.
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("tether-bench: pairing done");
    if wants(opts, "pairing") {
        report.rows.push(Row {
            figure: "pairing by code, end to end (`join_pairing`)".into(),
            candidate: format!(
                "median {}, p90 {} (n = {pair_reps})",
                ms(median(&pair_times)),
                ms(crate::stats::quantile(&pair_times, 0.9))
            ),
            baseline: "—".into(),
            ratio: None,
            target: "median and p90 reported".into(),
            met: None,
        });
    }
    Ok(())
}

/// Every part `--only` asks for, in the report's order.
fn parts(cx: &mut Cx, opts: &RunArgs, report: &mut Report) -> Result<()> {
    type Part = fn(&mut Cx, &mut Report) -> Result<()>;
    let all: [(&str, Part); 10] = [
        ("transfer", parts::transfer),
        ("small", parts::small),
        ("folders", folders::folders),
        ("tree", tree::tree),
        ("connect", parts::connect),
        ("rtt", parts::rtt),
        ("flood", parts::flood),
        ("growth", parts::growth),
        ("devices", parts::devices),
        ("relay", parts::relay),
    ];
    for (name, part) in all {
        if wants(opts, name) {
            part(cx, report)?;
        }
    }
    Ok(())
}
