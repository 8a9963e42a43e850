//! The orchestrator: servers and clients as separate processes, Tether and its baselines
//! alternated within each repetition, and the Markdown report.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::child::{Process, Server, args, client, vm_bytes};
use crate::stats::{Spread, median};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `tether-bench run` options.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The short smoke version: fewer repetitions, smaller sizes.
    #[arg(long)]
    quick: bool,
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
    /// Only these parts (transfer, small, connect, rtt, flood, growth, devices, pairing).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

/// One figure against its baseline.
struct Row {
    figure: String,
    candidate: String,
    baseline: String,
    ratio: Option<Spread>,
    target: String,
    met: Option<bool>,
}

struct Lab {
    work: PathBuf,
    tether_port: u16,
    logs: PathBuf,
    discovery: PathBuf,
    log_count: usize,
    raw_json: Vec<(String, Value)>,
}

impl Lab {
    fn log(&mut self, name: &str) -> PathBuf {
        self.log_count += 1;
        self.logs.join(format!("{:04}-{name}.log", self.log_count))
    }

    fn client(&mut self, name: &str, argv: Vec<OsString>) -> Result<Value> {
        let log = self.log(name);
        let mut full = args(&["client"]);
        full.extend(argv);
        let value = client(name, &full, &log)?;
        self.raw_json.push((name.to_owned(), value.clone()));
        Ok(value)
    }

    fn server(&mut self, name: &str, argv: Vec<OsString>) -> Result<Server> {
        let log = self.log(name);
        let mut full = args(&["serve"]);
        full.extend(argv);
        Server::start(name, &full, &log)
    }

    fn tether_server(&mut self) -> Result<Server> {
        self.tether_server_at("server", Vec::new())
    }

    fn tether_server_at(&mut self, name: &str, extra: Vec<OsString>) -> Result<Server> {
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

    fn raw_server(&mut self) -> Result<Server> {
        let dir = self.work.join("raw-received");
        self.server("raw-server", vec!["raw".into(), "--dir".into(), dir.into()])
    }

    fn blobs_server(&mut self, name: &str) -> Result<Server> {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        self.server(
            "blobs-server",
            vec!["blobs".into(), "--dir".into(), dir.into()],
        )
    }

    fn tether_client_args(&self, name: &str) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.work.join(name).into(),
            "--discovery".into(),
            self.discovery.clone().into(),
        ]
    }

    fn clear_received(&self) -> Result<()> {
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
    fn tether_send(&mut self, server: &Server, paths: &[&Path], plain: bool) -> Result<f64> {
        self.tether_send_from("client", Vec::new(), server, paths, plain)
    }

    fn tether_send_from(
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

    fn raw_send(&mut self, server: &Server, file: &Path) -> Result<f64> {
        self.raw_send_with(server, Vec::new(), file)
    }

    fn raw_send_with(&mut self, server: &Server, extra: Vec<OsString>, file: &Path) -> Result<f64> {
        let mut argv = args(&["raw-send"]);
        argv.extend(server.peer_args());
        argv.extend(extra);
        argv.extend(["--file".into(), file.into()]);
        seconds(&self.client("raw-send", argv)?, "seconds")
    }

    fn blobs_fetch(&mut self, server: &Server, hash: &str, export: bool) -> Result<f64> {
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
    fn blobs_end_to_end(&mut self, file: &Path) -> Result<f64> {
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

fn seconds(value: &Value, key: &str) -> Result<f64> {
    value
        .pointer(&format!("/{}", key.replace('.', "/")))
        .and_then(Value::as_f64)
        .with_context(|| format!("no {key} in {value}"))
}

/// Writes `size` pseudo-random bytes (BLAKE3's output stream) to `path`.
fn make_file(path: &Path, size: u64, seed: u64) -> Result<()> {
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

fn free_bytes(dir: &Path) -> u64 {
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

fn mib_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / MIB as f64 / seconds
}

fn size_name(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn ms(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.3} ms", seconds * 1e3)
    } else {
        format!("{:.1} ms", seconds * 1e3)
    }
}

fn rate(x: f64) -> String {
    format!("{x:.0} MiB/s")
}

/// Per-repetition ratios candidate/baseline (both lists in repetition order).
fn ratios(candidate: &[f64], baseline: &[f64]) -> Vec<f64> {
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
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut extra = String::new();

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
        rows.push(Row {
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

    let mut raw = lab.raw_server()?;

    if wants("transfer") {
        let file = work.join("big.bin");
        make_file(&file, big, 1)?;
        let mut blobs = lab.blobs_server("blobs-store")?;
        let reply = blobs.process.ask(
            &format!("import {}", file.display()),
            Duration::from_secs(600),
        )?;
        let hash = reply
            .split_whitespace()
            .nth(1)
            .context("blobs import reply")?
            .to_owned();
        let variants = ["tether", "raw", "blobs-fetch", "blobs-e2e", "tether-plain"];
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
        for rep in 0..reps {
            for k in 0..variants.len() {
                let v = (rep + k) % variants.len();
                let t = match v {
                    0 => lab.tether_send(&tether, &[&file], false)?,
                    1 => lab.raw_send(&raw, &file)?,
                    2 => lab.blobs_fetch(&blobs, &hash, false)?,
                    3 => lab.blobs_end_to_end(&file)?,
                    _ => lab.tether_send(&tether, &[&file], true)?,
                };
                if let Some(list) = times.get_mut(v) {
                    list.push(t);
                }
                let name = variants.get(v).copied().unwrap_or_default();
                eprintln!("tether-bench: transfer rep {rep} {name}: {t:.3} s");
            }
        }
        blobs.stop()?;
        let rates: Vec<Vec<f64>> = times
            .iter()
            .map(|ts| ts.iter().map(|t| mib_s(big, *t)).collect())
            .collect();
        let [enc, rawr, fetch, e2e, plain] = rates.as_slice() else {
            bail!("five variants");
        };
        let name = size_name(big);
        let mut push = |figure: String, c: &[f64], b: &[f64], bname: &str, target: f64| {
            let r = Spread::of(&ratios(c, b));
            rows.push(Row {
                figure,
                candidate: Spread::of(c).show(rate),
                baseline: format!("{bname}: {}", Spread::of(b).show(rate)),
                ratio: Some(r),
                target: format!("≥ {target}×"),
                met: Some(r.median >= target),
            });
        };
        push(
            format!("transfer {name} file→file, encrypt on"),
            enc,
            rawr,
            "raw iroh stream",
            0.6,
        );
        push(
            format!("transfer {name} file→file, encrypt on"),
            enc,
            fetch,
            "iroh-blobs verified fetch",
            1.2,
        );
        push(
            format!("transfer {name} file→file, encrypt on"),
            enc,
            e2e,
            "iroh-blobs import+fetch+export",
            1.5,
        );
        push(
            format!("transfer {name} file→file, encrypt off"),
            plain,
            rawr,
            "raw iroh stream",
            0.9,
        );

        // Receiver peak RSS: a fresh receiving process, one transfer.
        tether.stop()?;
        tether = lab.tether_server()?;
        let before = vm_bytes(tether.process.pid(), "VmHWM")?;
        lab.tether_send(&tether, &[&file], false)?;
        let peak = vm_bytes(tether.process.pid(), "VmHWM")?;
        raw.stop()?;
        raw = lab.raw_server()?;
        lab.raw_send(&raw, &file)?;
        let raw_peak = vm_bytes(raw.process.pid(), "VmHWM")?;
        rows.push(Row {
            figure: format!("receiver peak RSS, {name} encrypted transfer (fresh process)"),
            candidate: format!(
                "{:.1} MiB (at start {:.1} MiB)",
                peak as f64 / MIB as f64,
                before as f64 / MIB as f64
            ),
            baseline: format!("raw iroh receiver: {:.1} MiB", raw_peak as f64 / MIB as f64),
            ratio: None,
            target: "≤ 64 MiB".into(),
            met: Some(peak <= 64 * MIB),
        });
        std::fs::remove_file(&file)?;
    }

    if wants("small") {
        let dir = work.join("small");
        std::fs::create_dir_all(&dir)?;
        let count = 1000u64;
        for i in 0..count {
            make_file(&dir.join(format!("f{i:04}.bin")), 4096, 1000 + i)?;
        }
        let one = work.join("one.bin");
        make_file(&one, count * 4096, 7)?;
        let (mut many_t, mut one_t) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            if rep % 2 == 0 {
                many_t.push(lab.tether_send(&tether, &[&dir], false)?);
                one_t.push(lab.tether_send(&tether, &[&one], false)?);
            } else {
                one_t.push(lab.tether_send(&tether, &[&one], false)?);
                many_t.push(lab.tether_send(&tether, &[&dir], false)?);
            }
        }
        let bytes = count * 4096;
        let many_r: Vec<f64> = many_t.iter().map(|t| mib_s(bytes, *t)).collect();
        let one_r: Vec<f64> = one_t.iter().map(|t| mib_s(bytes, *t)).collect();
        let files_s: Vec<f64> = many_t.iter().map(|t| count as f64 / t).collect();
        let r = Spread::of(&ratios(&many_r, &one_r));
        rows.push(Row {
            figure: "1,000 files of 4 KiB, encrypted".into(),
            candidate: format!(
                "{} = {} files/s",
                Spread::of(&many_r).show(|x| format!("{x:.1} MiB/s")),
                Spread::of(&files_s).show(|x| format!("{x:.0}"))
            ),
            baseline: format!(
                "the same 4000 KiB as one file: {}",
                Spread::of(&one_r).show(|x| format!("{x:.1} MiB/s"))
            ),
            ratio: Some(r),
            target: "≥ 0.5×".into(),
            met: Some(r.median >= 0.5),
        });
        std::fs::remove_dir_all(&dir)?;
        std::fs::remove_file(&one)?;
    }

    if wants("connect") {
        let samples = if quick { 3 } else { 5 };
        let (mut t_first, mut r_first, mut r_connect) = (Vec::new(), Vec::new(), Vec::new());
        for rep in 0..reps {
            let mut run_tether = |lab: &mut Lab| -> Result<()> {
                let mut argv = args(&["connect", "--samples", &samples.to_string()]);
                argv.extend(lab.tether_client_args("client"));
                argv.extend(args(&["--peer", &tether.id]));
                let v = lab.client("tether-connect", argv)?;
                t_first.push(seconds(&v, "first_round_trip.median")?);
                Ok(())
            };
            let mut run_raw = |lab: &mut Lab| -> Result<()> {
                let mut argv = args(&["raw-connect", "--samples", &samples.to_string()]);
                argv.extend(raw.peer_args());
                let v = lab.client("raw-connect", argv)?;
                r_first.push(seconds(&v, "first_round_trip.median")?);
                r_connect.push(seconds(&v, "connect.median")?);
                Ok(())
            };
            if rep % 2 == 0 {
                run_tether(&mut lab)?;
                run_raw(&mut lab)?;
            } else {
                run_raw(&mut lab)?;
                run_tether(&mut lab)?;
            }
        }
        let r = Spread::of(&ratios(&t_first, &r_first));
        rows.push(Row {
            figure: "connect + session handshake + first Ping/Pong to a paired device".into(),
            candidate: Spread::of(&t_first).show(ms),
            baseline: format!(
                "raw iroh connect + first 64 B round trip: {} (connect alone {})",
                Spread::of(&r_first).show(ms),
                Spread::of(&r_connect).show(ms)
            ),
            ratio: Some(r),
            target: "≤ 1.5×".into(),
            met: Some(r.median <= 1.5),
        });
    }

    if wants("rtt") {
        let samples = if quick { 100 } else { 300 };
        let (mut t_rtt, mut r_rtt) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            let mut run_tether = |lab: &mut Lab| -> Result<()> {
                let mut argv = args(&["rtt", "--samples", &samples.to_string()]);
                argv.extend(lab.tether_client_args("client"));
                argv.extend(args(&["--peer", &tether.id]));
                t_rtt.push(seconds(&lab.client("tether-rtt", argv)?, "rtt.median")?);
                Ok(())
            };
            let mut run_raw = |lab: &mut Lab| -> Result<()> {
                let mut argv = args(&["raw-rtt", "--samples", &samples.to_string()]);
                argv.extend(raw.peer_args());
                r_rtt.push(seconds(&lab.client("raw-rtt", argv)?, "rtt.median")?);
                Ok(())
            };
            if rep % 2 == 0 {
                run_tether(&mut lab)?;
                run_raw(&mut lab)?;
            } else {
                run_raw(&mut lab)?;
                run_tether(&mut lab)?;
            }
        }
        let r = Spread::of(&ratios(&t_rtt, &r_rtt));
        rows.push(Row {
            figure: format!("encrypted Ping/Pong round trip (median of {samples})"),
            candidate: Spread::of(&t_rtt).show(|s| format!("{:.0} µs", s * 1e6)),
            baseline: format!(
                "raw 64 B round trip on one stream: {}",
                Spread::of(&r_rtt).show(|s| format!("{:.0} µs", s * 1e6))
            ),
            ratio: Some(r),
            target: "≤ 1.3×".into(),
            met: Some(r.median <= 1.3),
        });
    }

    if wants("flood") {
        let secs = if quick { 1.0 } else { 3.0 };
        let (mut rates, mut p99s, mut p50s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let mut argv = args(&["flood", "--senders", "64", "--seconds", &secs.to_string()]);
            argv.extend(lab.tether_client_args("client"));
            argv.extend(args(&["--peer", &tether.id]));
            let v = lab.client("tether-flood", argv)?;
            rates.push(seconds(&v, "messages_per_second")?);
            p99s.push(seconds(&v, "latency.p99")?);
            p50s.push(seconds(&v, "latency.median")?);
        }
        rows.push(Row {
            figure: format!("64 parallel senders of Ping ({secs} s each run)"),
            candidate: format!(
                "{} msg/s; p99 {}, median {}",
                Spread::of(&rates).show(|x| format!("{x:.0}")),
                Spread::of(&p99s).show(ms),
                Spread::of(&p50s).show(ms)
            ),
            baseline: "—".into(),
            ratio: None,
            target: "messages/s and p99 reported".into(),
            met: None,
        });
    }

    if wants("growth") {
        let mut sizes = if quick {
            vec![16 * MIB, 64 * MIB]
        } else {
            vec![64 * MIB, 256 * MIB, GIB]
        };
        if !quick {
            // 4 GiB source + 4 GiB received, with room to spare.
            if free_bytes(&work) > 14 * GIB {
                sizes.push(4 * GIB);
            } else {
                notes.push("4 GiB growth point skipped: under 14 GiB free".into());
            }
        }
        let _ = writeln!(
            extra,
            "\n**Cost growth** (Tether, encrypted, file→file; one file per size, {} runs \
             each{}):\n\n| size | time median [min, max] | rate | time per GiB vs \
             the smallest |\n|---|---|---|---|",
            reps.min(3),
            if sizes.contains(&(4 * GIB)) {
                ", 1 for 4 GiB"
            } else {
                ""
            }
        );
        let mut first_per_gib = None;
        for size in sizes {
            let file = work.join("growth.bin");
            make_file(&file, size, size)?;
            let n = if size >= 4 * GIB { 1 } else { reps.min(3) };
            let mut ts = Vec::new();
            for _ in 0..n {
                ts.push(lab.tether_send(&tether, &[&file], false)?);
            }
            std::fs::remove_file(&file)?;
            let s = Spread::of(&ts);
            let per_gib = s.median / (size as f64 / GIB as f64);
            let base = *first_per_gib.get_or_insert(per_gib);
            let _ = writeln!(
                extra,
                "| {} | {} | {:.0} MiB/s | {:.2}× |",
                size_name(size),
                s.show(|x| format!("{x:.2} s")),
                mib_s(size, s.median),
                per_gib / base
            );
            eprintln!(
                "tether-bench: growth {}: {:.3} s",
                size_name(size),
                s.median
            );
        }
    }

    if wants("devices") {
        let n = if quick { 20 } else { 100 };
        let root = work.join("devices");
        // Pair n devices by ticket, one after another.
        let mut argv = args(&["pair-many", "--n", &n.to_string()]);
        argv.extend(["--root".into(), root.clone().into()]);
        argv.extend(["--discovery".into(), lab.discovery.clone().into()]);
        let log = lab.log("pair-many");
        let mut full = args(&["client"]);
        full.extend(argv);
        let mut pairer = Process::spawn("pair-many", &full, &log)?;
        for _ in 0..n {
            let ask = pairer.line(Duration::from_secs(60))?;
            if ask != "need-ticket" {
                bail!("pair-many said {ask:?}");
            }
            let reply = tether.process.ask("ticket", Duration::from_secs(30))?;
            pairer.say(reply.strip_prefix("code ").context("ticket reply")?)?;
        }
        pairer.finish(Duration::from_secs(120))?;
        eprintln!("tether-bench: {n} devices paired");

        // Idle memory: fresh server processes, n connections, alternated.
        let mem_reps = if quick { 2 } else { 3 };
        let (mut t_mem, mut r_mem) = (Vec::new(), Vec::new());
        for rep in 0..mem_reps {
            for k in 0..2 {
                let tether_turn = (rep + k) % 2 == 0;
                let mut raw_idle: Option<Server> = None;
                let (client_args, name) = if tether_turn {
                    tether.stop()?;
                    tether = lab.tether_server()?;
                    let mut argv = args(&["idle", "--n", &n.to_string(), "--peer", &tether.id]);
                    argv.extend(["--root".into(), root.clone().into()]);
                    argv.extend(["--discovery".into(), lab.discovery.clone().into()]);
                    (argv, "tether-idle")
                } else {
                    let server = lab.raw_server()?;
                    let mut argv = args(&["raw-idle", "--n", &n.to_string()]);
                    argv.extend(server.peer_args());
                    raw_idle = Some(server);
                    (argv, "raw-idle")
                };
                let pid = match &raw_idle {
                    Some(server) => server.process.pid(),
                    None => tether.process.pid(),
                };
                std::thread::sleep(Duration::from_millis(500));
                let before = vm_bytes(pid, "VmRSS")?;
                let log = lab.log(name);
                let mut full = args(&["client"]);
                full.extend(client_args);
                let mut holder = Process::spawn(name, &full, &log)?;
                let ready = holder.line(Duration::from_secs(300))?;
                if ready != "ready" {
                    bail!("{name} said {ready:?}");
                }
                std::thread::sleep(Duration::from_secs(1));
                let after = vm_bytes(pid, "VmRSS")?;
                holder.say("quit")?;
                holder.finish(Duration::from_secs(120))?;
                let per = (after as f64 - before as f64) / n as f64 / 1024.0;
                match raw_idle {
                    Some(server) => {
                        r_mem.push(per);
                        server.stop()?;
                    }
                    None => t_mem.push(per),
                }
            }
        }
        let r = Spread::of(&ratios(&t_mem, &r_mem));
        rows.push(Row {
            figure: format!(
                "memory per idle paired connection (server side, {n} connections, fresh process)"
            ),
            candidate: Spread::of(&t_mem).show(|x| format!("{x:.0} KiB")),
            baseline: format!(
                "raw iroh idle connection: {}",
                Spread::of(&r_mem).show(|x| format!("{x:.0} KiB"))
            ),
            ratio: Some(r),
            target: "≤ 1.25×".into(),
            met: Some(r.median <= 1.25),
        });

        // Connect and RTT with 1, 10, n devices connected (a fresh server).
        tether.stop()?;
        tether = lab.tether_server()?;
        let mut argv = args(&["scale", "--n", &n.to_string(), "--peer", &tether.id]);
        argv.extend(["--root".into(), root.into()]);
        argv.extend(["--discovery".into(), lab.discovery.clone().into()]);
        let v = lab.client("tether-scale", argv)?;
        let _ = writeln!(
            extra,
            "\n**Paired devices connected at once** (one server process, the devices in one \
             client process; connect = the last device's dial + handshakes + first Ping, the \
             others already connected; RTT = device 0's Ping, median of 50):\n\n| devices \
             connected | connect of the last | RTT median | RTT p90 |\n|---|---|---|---|"
        );
        for stage in v
            .get("stages")
            .and_then(Value::as_array)
            .context("stages")?
        {
            let _ = writeln!(
                extra,
                "| {} | {} | {} | {} |",
                stage.get("connected").and_then(Value::as_u64).unwrap_or(0),
                ms(seconds(stage, "connect")?),
                ms(seconds(stage, "rtt.median")?),
                ms(seconds(stage, "rtt.p90")?),
            );
        }
    }

    if wants("relay") {
        let size = if quick { 16 * MIB } else { 256 * MIB };
        let cert = work.join("relay-cert.der");
        let relay = lab.server(
            "relay",
            vec!["relay".into(), "--cert".into(), cert.clone().into()],
        )?;
        let relay_args: Vec<OsString> = vec![
            "--relay".into(),
            relay.id.clone().into(),
            "--relay-cert".into(),
            cert.into(),
        ];
        let mut raw_argv = vec!["raw".into(), "--dir".into(), work.join("raw-relay").into()];
        raw_argv.extend(relay_args.clone());
        let raw_relayed = lab.server("raw-relay-server", raw_argv)?;
        let mut relayed = lab.tether_server_at("relay-server", relay_args.clone())?;
        let reply = relayed.process.ask("ticket", Duration::from_secs(30))?;
        let ticket = reply
            .strip_prefix("code ")
            .context("ticket reply")?
            .to_owned();
        let mut argv = args(&["pair", "--code", &ticket]);
        argv.extend(lab.tether_client_args("relay-client"));
        argv.extend(relay_args.clone());
        lab.client("tether-pair-relay", argv)?;
        std::thread::sleep(Duration::from_millis(200));
        let file = work.join("relay.bin");
        make_file(&file, size, 3)?;
        let (mut t, mut r) = (Vec::new(), Vec::new());
        for rep in 0..reps {
            for k in 0..2 {
                if (rep + k) % 2 == 0 {
                    let secs = lab.tether_send_from(
                        "relay-client",
                        relay_args.clone(),
                        &relayed,
                        &[&file],
                        false,
                    )?;
                    t.push(mib_s(size, secs));
                } else {
                    let secs = lab.raw_send_with(&raw_relayed, relay_args.clone(), &file)?;
                    r.push(mib_s(size, secs));
                }
            }
        }
        let all_relayed = lab
            .raw_json
            .iter()
            .rev()
            .take(2 * reps)
            .all(|(_, v)| v.get("relayed").and_then(Value::as_bool) == Some(true));
        std::fs::remove_file(&file)?;
        relayed.stop()?;
        raw_relayed.stop()?;
        relay.stop()?;
        let ratio = Spread::of(&ratios(&t, &r));
        rows.push(Row {
            figure: format!(
                "transfer {} via a local iroh-relay only, encrypt on{}",
                size_name(size),
                if all_relayed {
                    ""
                } else {
                    " (**a run did not report a relayed path**)"
                }
            ),
            candidate: Spread::of(&t).show(rate),
            baseline: format!(
                "raw iroh stream via the same relay: {}",
                Spread::of(&r).show(rate)
            ),
            ratio: Some(ratio),
            target: "≥ 0.9×".into(),
            met: Some(ratio.median >= 0.9),
        });
    }

    raw.stop()?;
    tether.stop()?;

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
