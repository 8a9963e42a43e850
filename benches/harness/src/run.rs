//! The orchestrator: servers and clients as separate processes, Tether and its baselines
//! alternated within each repetition, and the Markdown report.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::child::{Server, args, client};
use crate::stats::{Spread, median};
use crate::{folders, parts};

pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;

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
    /// Only these parts (transfer, small, folders, connect, rtt, flood, growth, devices, relay,
    /// pairing); pairing by code always runs, it makes the client.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// One figure against its baseline.
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) candidate: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<Spread>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

/// What the parts of a run share: the processes and the run's settings.
pub(crate) struct Cx {
    pub(crate) lab: Lab,
    pub(crate) tether: Server,
    pub(crate) raw: Server,
    pub(crate) work: PathBuf,
    /// The big transfer's size.
    pub(crate) big: u64,
    pub(crate) reps: usize,
    pub(crate) quick: bool,
}

/// What the parts write: the table's rows, notes under it and extra sections.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    pub(crate) extra: String,
}

pub(crate) struct Lab {
    work: PathBuf,
    tether_port: u16,
    logs: PathBuf,
    pub(crate) discovery: PathBuf,
    log_count: usize,
    pub(crate) raw_json: Vec<(String, Value)>,
}

impl Lab {
    pub(crate) fn log(&mut self, name: &str) -> PathBuf {
        self.log_count += 1;
        self.logs.join(format!("{:04}-{name}.log", self.log_count))
    }

    pub(crate) fn client(&mut self, name: &str, argv: Vec<OsString>) -> Result<Value> {
        let log = self.log(name);
        let mut full = args(&["client"]);
        full.extend(argv);
        let value = client(name, &full, &log)?;
        self.raw_json.push((name.to_owned(), value.clone()));
        Ok(value)
    }

    pub(crate) fn server(&mut self, name: &str, argv: Vec<OsString>) -> Result<Server> {
        let log = self.log(name);
        let mut full = args(&["serve"]);
        full.extend(argv);
        Server::start(name, &full, &log)
    }

    pub(crate) fn tether_server(&mut self) -> Result<Server> {
        self.tether_server_at("server", Vec::new())
    }

    pub(crate) fn tether_server_at(&mut self, name: &str, extra: Vec<OsString>) -> Result<Server> {
        let dir = self.work.join(name);
        let receive = self.work.join("received");
        let discovery = self.discovery.clone();
        let port = if extra.is_empty() {
            self.tether_port
        } else {
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        };
        let mut argv: Vec<OsString> = vec![
            "tether".into(),
            "--dir".into(),
            dir.into(),
            "--discovery".into(),
            discovery.into(),
            "--receive".into(),
            receive.into(),
            "--port".into(),
            port.to_string().into(),
        ];
        argv.extend(extra);
        self.server("tether-server", argv)
    }

    pub(crate) fn raw_server(&mut self) -> Result<Server> {
        let dir = self.work.join("raw-received");
        self.server("raw-server", vec!["raw".into(), "--dir".into(), dir.into()])
    }

    pub(crate) fn blobs_server(&mut self, name: &str) -> Result<Server> {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        self.server(
            "blobs-server",
            vec!["blobs".into(), "--dir".into(), dir.into()],
        )
    }

    pub(crate) fn tether_client_args(&self, name: &str) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.work.join(name).into(),
            "--discovery".into(),
            self.discovery.clone().into(),
        ]
    }

    pub(crate) fn clear_received(&self) -> Result<()> {
        let dir = self.work.join("received");
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Tether sends `paths`; seconds.
    pub(crate) fn tether_send(
        &mut self,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Result<f64> {
        self.tether_send_from("client", Vec::new(), server, paths, plain)
    }

    pub(crate) fn tether_send_from(
        &mut self,
        client: &str,
        extra: Vec<OsString>,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Result<f64> {
        let mut argv = args(&["send"]);
        argv.extend(self.tether_client_args(client));
        argv.extend(extra);
        argv.extend(args(&["--peer", &server.id]));
        for path in paths {
            argv.push("--path".into());
            argv.push(path.into());
        }
        if plain {
            argv.push("--plain".into());
        }
        let result = self.client(
            if plain {
                "tether-send-plain"
            } else {
                "tether-send"
            },
            argv,
        );
        self.clear_received()?;
        seconds(&result?, "seconds")
    }

    pub(crate) fn raw_send(&mut self, server: &Server, file: &Path) -> Result<f64> {
        self.raw_send_with(server, Vec::new(), file)
    }

    pub(crate) fn raw_send_with(
        &mut self,
        server: &Server,
        extra: Vec<OsString>,
        file: &Path,
    ) -> Result<f64> {
        let mut argv = args(&["raw-send"]);
        argv.extend(server.peer_args());
        argv.extend(extra);
        argv.extend(["--file".into(), file.into()]);
        seconds(&self.client("raw-send", argv)?, "seconds")
    }

    pub(crate) fn blobs_fetch(&mut self, server: &Server, hash: &str, export: bool) -> Result<f64> {
        let store = self.work.join("blobs-client");
        let target = self.work.join("blobs-export");
        let mut argv = args(&["blobs-fetch", "--hash", hash]);
        argv.extend(server.peer_args());
        argv.extend(["--dir".into(), store.clone().into()]);
        if export {
            argv.extend(["--export".into(), target.clone().into()]);
        }
        let result = self.client("blobs-fetch", argv);
        let _ = std::fs::remove_dir_all(&store);
        let _ = std::fs::remove_file(&target);
        seconds(&result?, "seconds")
    }

    /// sendme end to end: a fresh provider imports the file (timed in the provider), then a
    /// fresh client fetches and exports it.
    pub(crate) fn blobs_end_to_end(&mut self, file: &Path) -> Result<f64> {
        let mut server = self.blobs_server("blobs-e2e-store")?;
        let reply = server.process.ask(
            &format!("import {}", file.display()),
            Duration::from_secs(600),
        )?;
        let mut words = reply.split_whitespace();
        let (Some("imported"), Some(hash), Some(import)) =
            (words.next(), words.next(), words.next())
        else {
            bail!("blobs import answered {reply:?}");
        };
        let import: f64 = import.parse()?;
        let hash = hash.to_owned();
        let fetch = self.blobs_fetch(&server, &hash, true)?;
        server.stop()?;
        let _ = std::fs::remove_dir_all(self.work.join("blobs-e2e-store"));
        Ok(import + fetch)
    }
}

pub(crate) fn seconds(value: &Value, key: &str) -> Result<f64> {
    value
        .pointer(&format!("/{}", key.replace('.', "/")))
        .and_then(Value::as_f64)
        .with_context(|| format!("no {key} in {value}"))
}

/// Writes `size` pseudo-random bytes (BLAKE3's output stream) to `path`.
pub(crate) fn make_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(
        4 * MIB as usize,
        std::fs::File::create(path).with_context(|| path.display().to_string())?,
    );
    let mut reader = blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        let chunk = buf.get_mut(..n).context("chunk")?;
        reader.fill(chunk);
        out.write_all(chunk)?;
        left -= n as u64;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

pub(crate) fn free_bytes(dir: &Path) -> u64 {
    // `df` is the portable way without unsafe statvfs; the figure only gates the 4 GiB run.
    std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn mib_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / MIB as f64 / seconds
}

pub(crate) fn size_name(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

pub(crate) fn ms(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.3} ms", seconds * 1e3)
    } else {
        format!("{:.1} ms", seconds * 1e3)
    }
}

pub(crate) fn rate(x: f64) -> String {
    format!("{x:.0} MiB/s")
}

/// Per-repetition ratios candidate/baseline (both lists in repetition order).
pub(crate) fn ratios(candidate: &[f64], baseline: &[f64]) -> Vec<f64> {
    candidate.iter().zip(baseline).map(|(c, b)| c / b).collect()
}

/// Runs the benchmarks and writes the report.
pub(crate) fn run(opts: &RunArgs) -> Result<()> {
    let quick = opts.quick;
    let reps = opts.reps.unwrap_or(if quick { 3 } else { 5 });
    let wants = |part: &str| opts.only.is_empty() || opts.only.iter().any(|p| p == part);
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
    let mut lab = Lab {
        logs: work.join("logs"),
        discovery: work.join("discovery"),
        work: work.clone(),
        tether_port: std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
        log_count: 0,
        raw_json: Vec::new(),
    };
    std::fs::create_dir_all(&lab.logs)?;
    let started = Instant::now();
    let big: u64 = if quick { 64 * MIB } else { GIB };
    let mut report = Report::default();

    eprintln!("tether-bench: work in {}", work.display());
    let mut tether = lab.tether_server()?;

    // Pairing by code, end to end; the first joiner is the client of every later figure.
    let pair_reps = if quick { 3 } else { 10 };
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
    if wants("pairing") {
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

    let raw = lab.raw_server()?;
    let mut cx = Cx {
        lab,
        tether,
        raw,
        work,
        big,
        reps,
        quick,
    };

    if wants("transfer") {
        parts::transfer(&mut cx, &mut report)?;
    }

    if wants("small") {
        parts::small(&mut cx, &mut report)?;
    }

    if wants("folders") {
        folders::folders(&mut cx, &mut report)?;
    }

    if wants("connect") {
        parts::connect(&mut cx, &mut report)?;
    }

    if wants("rtt") {
        parts::rtt(&mut cx, &mut report)?;
    }

    if wants("flood") {
        parts::flood(&mut cx, &mut report)?;
    }

    if wants("growth") {
        parts::growth(&mut cx, &mut report)?;
    }

    if wants("devices") {
        parts::devices(&mut cx, &mut report)?;
    }

    if wants("relay") {
        parts::relay(&mut cx, &mut report)?;
    }

    let Cx {
        lab,
        mut tether,
        mut raw,
        ..
    } = cx;
    raw.stop()?;
    tether.stop()?;
    let Report { rows, notes, extra } = report;

    let mut md = String::new();
    let _ = writeln!(
        md,
        "Mode: {} ({reps} alternated repetitions per comparison; transfer size {}); harness \
         wall time {:.0} s.\n",
        if quick { "quick" } else { "full" },
        size_name(big),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        md,
        "| figure | Tether median [min, max] | baseline in the same run | ratio median [min, max] | target | met |\n|---|---|---|---|---|---|"
    );
    for row in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            row.figure,
            row.candidate,
            row.baseline,
            row.ratio
                .map_or("—".into(), |r| r.show(|x| format!("{x:.2}×"))),
            row.target,
            match row.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "reported",
            }
        );
    }
    md.push_str(&extra);
    if !notes.is_empty() {
        md.push('\n');
        for note in &notes {
            let _ = writeln!(md, "- {note}");
        }
    }
    std::fs::write(&opts.markdown, md)?;
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
