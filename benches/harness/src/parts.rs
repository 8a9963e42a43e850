//! The parts of a run: each measures Tether against its baseline and adds its rows.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use std::ffi::OsString;
use std::fmt::Write as _;

use crate::child::{Process, Server, args, vm_bytes};
use crate::lab::{Cx, GIB, Lab, MIB, free_bytes, make_file, seconds};
use crate::raw::RawIo;
use crate::report::{Report, Row, mib_s, ms, rate, ratios, size_name};
use serde_json::Value;

use crate::stats::Spread;

pub(super) fn transfer(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref mut raw,
        ref work,
        big,
        reps,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
    let file = work.join("big.bin");
    make_file(&file, big, 1)?;
    let mut blobs = lab.blobs_server("blobs-store")?;
    let hash = blobs_import(&mut blobs, &file)?;
    let variants = [
        "tether",
        "raw-std",
        "blobs-fetch",
        "raw-memory",
        "blobs-e2e",
        "raw-tokio",
        "tether-plain",
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for rep in 0..reps {
        for k in 0..variants.len() {
            let v = (rep + k) % variants.len();
            let t = match v {
                0 => lab.tether_send(tether, &[&file], false)?,
                1 => lab.raw_send(raw, &file, RawIo::Std)?,
                2 => lab.blobs_fetch(&blobs, &hash, false)?,
                3 => lab.raw_send(raw, &file, RawIo::Memory)?,
                4 => lab.blobs_end_to_end(&file)?,
                5 => lab.raw_send(raw, &file, RawIo::Tokio)?,
                _ => lab.tether_send(tether, &[&file], true)?,
            };
            if let Some(list) = times.get_mut(v) {
                list.push(t);
            }
            let name = variants.get(v).copied().unwrap_or_default();
            eprintln!("tether-bench: transfer rep {rep} {name}: {t:.3} s");
        }
    }
    blobs.stop()?;
    let name = transfer_rows(rows, big, &times)?;
    receiver_peak(lab, tether, raw, &file, &name, rows)?;
    std::fs::remove_file(&file)?;
    Ok(())
}

/// The transfer part's rows from the seconds each variant took (in `transfer`'s order);
/// returns the size's name.
fn transfer_rows(rows: &mut Vec<Row>, big: u64, times: &[Vec<f64>]) -> Result<String> {
    let rates: Vec<Vec<f64>> = times
        .iter()
        .map(|ts| ts.iter().map(|t| mib_s(big, *t)).collect())
        .collect();
    let [enc, raw_std, fetch, memory, e2e, raw_tokio, plain] = rates.as_slice() else {
        bail!("seven variants");
    };
    let name = size_name(big);
    let mut push = |figure: String, c: &[f64], b: &[f64], bname: &str, target: Option<f64>| {
        let r = Spread::of(&ratios(c, b));
        rows.push(Row {
            figure,
            candidate: Spread::of(c).show(rate),
            baseline: format!("{bname}: {}", Spread::of(b).show(rate)),
            ratio: Some(r),
            target: target.map_or("reported".into(), |t| format!("≥ {t}×")),
            met: target.map(|t| r.median >= t),
        });
    };
    let good = "raw iroh file→file (std::fs threads)";
    let figures = [
        ("on", enc, raw_std, good, Some(0.9)),
        ("on", enc, memory, "raw iroh stream memory→memory", None),
        ("on", enc, fetch, "iroh-blobs verified fetch", Some(1.2)),
        ("on", enc, e2e, "iroh-blobs import+fetch+export", Some(1.5)),
        ("off", plain, raw_std, good, Some(0.95)),
    ];
    for (encrypt, candidate, baseline, baseline_name, target) in figures {
        let figure = format!("transfer {name} file→file, encrypt {encrypt}");
        push(figure, candidate, baseline, baseline_name, target);
    }
    let baselines = [
        (
            raw_std,
            "std::fs on a dedicated thread each end, 1 MiB buffers",
            Some(0.9),
        ),
        (
            raw_tokio,
            "`tokio::fs` each end (the earlier baseline)",
            None,
        ),
    ];
    for (candidate, how, target) in baselines {
        let figure = format!("baseline: raw iroh {name} file→file, {how}");
        push(
            figure,
            candidate,
            memory,
            "raw iroh stream memory→memory",
            target,
        );
    }

    Ok(name)
}

pub(super) fn small(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref work,
        reps,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
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
            many_t.push(lab.tether_send(tether, &[&dir], false)?);
            one_t.push(lab.tether_send(tether, &[&one], false)?);
        } else {
            one_t.push(lab.tether_send(tether, &[&one], false)?);
            many_t.push(lab.tether_send(tether, &[&dir], false)?);
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
    Ok(())
}

pub(super) fn connect(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref mut raw,
        reps,
        quick,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
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
            run_tether(lab)?;
            run_raw(lab)?;
        } else {
            run_raw(lab)?;
            run_tether(lab)?;
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
        target: "≤ 1.2×".into(),
        met: Some(r.median <= 1.2),
    });
    Ok(())
}

pub(super) fn rtt(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref mut raw,
        reps,
        quick,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
    let samples = if quick { 100 } else { 300 };
    let (mut t_rtt, mut r_rtt, mut j_rtt) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let mut run_tether = |lab: &mut Lab| -> Result<()> {
            let mut argv = args(&["rtt", "--samples", &samples.to_string()]);
            argv.extend(lab.tether_client_args("client"));
            argv.extend(args(&["--peer", &tether.id]));
            t_rtt.push(seconds(&lab.client("tether-rtt", argv)?, "rtt.median")?);
            // The same client forced to JSON messages, right after (issue 22's baseline).
            let mut argv = args(&["rtt", "--samples", &samples.to_string(), "--json"]);
            argv.extend(lab.tether_client_args("client"));
            argv.extend(args(&["--peer", &tether.id]));
            j_rtt.push(seconds(
                &lab.client("tether-rtt-json", argv)?,
                "rtt.median",
            )?);
            Ok(())
        };
        let mut run_raw = |lab: &mut Lab| -> Result<()> {
            let mut argv = args(&["raw-rtt", "--samples", &samples.to_string()]);
            argv.extend(raw.peer_args());
            r_rtt.push(seconds(&lab.client("raw-rtt", argv)?, "rtt.median")?);
            Ok(())
        };
        if rep % 2 == 0 {
            run_tether(lab)?;
            run_raw(lab)?;
        } else {
            run_raw(lab)?;
            run_tether(lab)?;
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
    rows.push(Row {
        figure: format!("Ping/Pong round trip, binary messages (median of {samples})"),
        candidate: Spread::of(&t_rtt).show(|s| format!("{:.0} µs", s * 1e6)),
        baseline: format!(
            "JSON messages: {}",
            Spread::of(&j_rtt).show(|s| format!("{:.0} µs", s * 1e6))
        ),
        ratio: Some(Spread::of(&ratios(&t_rtt, &j_rtt))),
        target: "reported".into(),
        met: None,
    });
    Ok(())
}

pub(super) fn flood(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        reps,
        quick,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
    let secs = if quick { 1.0 } else { 3.0 };
    let (mut rates, mut p99s, mut p50s) = (Vec::new(), Vec::new(), Vec::new());
    let (mut j_rates, mut j_p99s) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        // Binary (the default) and JSON-only runs alternate, first one then the other.
        for json in [rep % 2 == 1, rep % 2 == 0] {
            let mut argv = args(&["flood", "--senders", "64", "--seconds", &secs.to_string()]);
            if json {
                argv.extend(args(&["--json"]));
            }
            argv.extend(lab.tether_client_args("client"));
            argv.extend(args(&["--peer", &tether.id]));
            let v = lab.client(
                if json {
                    "tether-flood-json"
                } else {
                    "tether-flood"
                },
                argv,
            )?;
            let (rate, p99) = (
                seconds(&v, "messages_per_second")?,
                seconds(&v, "latency.p99")?,
            );
            if json {
                j_rates.push(rate);
                j_p99s.push(p99);
            } else {
                rates.push(rate);
                p99s.push(p99);
                p50s.push(seconds(&v, "latency.median")?);
            }
        }
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
    rows.push(Row {
        figure: format!("64 parallel senders of Ping, binary vs JSON messages ({secs} s each run)"),
        candidate: format!(
            "binary {} msg/s, p99 {}",
            Spread::of(&rates).show(|x| format!("{x:.0}")),
            Spread::of(&p99s).show(ms)
        ),
        baseline: format!(
            "JSON {} msg/s, p99 {}",
            Spread::of(&j_rates).show(|x| format!("{x:.0}")),
            Spread::of(&j_p99s).show(ms)
        ),
        ratio: Some(Spread::of(&ratios(&rates, &j_rates))),
        target: "reported (ratio: binary msg/s ÷ JSON msg/s)".into(),
        met: None,
    });
    Ok(())
}

pub(super) fn growth(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref work,
        reps,
        quick,
        ..
    } = *cx;
    let Report {
        ref mut notes,
        ref mut extra,
        ..
    } = *report;
    let mut sizes = if quick {
        vec![16 * MIB, 64 * MIB]
    } else {
        vec![64 * MIB, 256 * MIB, GIB]
    };
    if !quick {
        // 4 GiB source + 4 GiB received, with room to spare.
        if free_bytes(work) > 14 * GIB {
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
            ts.push(lab.tether_send(tether, &[&file], false)?);
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
    Ok(())
}

pub(super) fn devices(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref work,
        quick,
        ..
    } = *cx;
    let Report {
        ref mut rows,
        ref mut extra,
        ..
    } = *report;
    let n = if quick { 20 } else { 100 };
    let root = work.join("devices");
    pair_devices(lab, tether, &root, n)?;

    // Idle memory: fresh server processes, n connections, alternated.
    let mem_reps = if quick { 2 } else { 3 };
    let (mut t_mem, mut r_mem) = (Vec::new(), Vec::new());
    for rep in 0..mem_reps {
        for k in 0..2 {
            let tether_turn = (rep + k) % 2 == 0;
            let per = idle_memory(lab, tether, &root, n, tether_turn)?;
            if tether_turn {
                t_mem.push(per);
            } else {
                r_mem.push(per);
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
    *tether = lab.tether_server()?;
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
    Ok(())
}

pub(super) fn relay(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let Cx {
        ref mut lab,
        ref work,
        reps,
        quick,
        ..
    } = *cx;
    let Report { ref mut rows, .. } = *report;
    let size = if quick { 16 * MIB } else { 256 * MIB };
    let cert = work.join("relay-cert.der");
    let mut relay = lab.server(
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
    let mut raw_relayed = lab.server("raw-relay-server", raw_argv)?;
    let mut relayed = lab.tether_server_at("relay-server", relay_args.clone())?;
    pair_over_relay(lab, &mut relayed, &relay_args)?;
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
    Ok(())
}

/// Pairs the relay client with `relayed` by ticket, both reaching each other only through the
/// relay in `relay_args`.
fn pair_over_relay(lab: &mut Lab, relayed: &mut Server, relay_args: &[OsString]) -> Result<()> {
    let reply = relayed.process.ask("ticket", Duration::from_secs(30))?;
    let ticket = reply
        .strip_prefix("code ")
        .context("ticket reply")?
        .to_owned();
    let mut argv = args(&["pair", "--code", &ticket]);
    argv.extend(lab.tether_client_args("relay-client"));
    argv.extend(relay_args.iter().cloned());
    lab.client("tether-pair-relay", argv)?;
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

/// Pairs `n` devices (under `root`) with the server by ticket, one after another.
fn pair_devices(lab: &mut Lab, tether: &mut Server, root: &Path, n: usize) -> Result<()> {
    let mut argv = args(&["pair-many", "--n", &n.to_string()]);
    argv.extend(["--root".into(), root.to_path_buf().into()]);
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
    Ok(())
}

/// The server's memory per idle connection, KiB, with `n` devices connected to a fresh
/// server process: Tether's when `tether_turn`, else raw iroh's.
fn idle_memory(
    lab: &mut Lab,
    tether: &mut Server,
    root: &Path,
    n: usize,
    tether_turn: bool,
) -> Result<f64> {
    let mut raw_idle: Option<Server> = None;
    let (client_args, name) = if tether_turn {
        tether.stop()?;
        *tether = lab.tether_server()?;
        let mut argv = args(&["idle", "--n", &n.to_string(), "--peer", &tether.id]);
        argv.extend(["--root".into(), root.to_path_buf().into()]);
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
    if let Some(mut server) = raw_idle {
        server.stop()?;
    }
    Ok(per)
}

/// Imports `file` into the iroh-blobs store server; returns its hash.
fn blobs_import(blobs: &mut Server, file: &Path) -> Result<String> {
    let reply = blobs.process.ask(
        &format!("import {}", file.display()),
        Duration::from_secs(600),
    )?;
    Ok(reply
        .split_whitespace()
        .nth(1)
        .context("blobs import reply")?
        .to_owned())
}

/// Receiver peak RSS: a fresh receiving process, one transfer of `file`; Tether's and raw
/// iroh's.
fn receiver_peak(
    lab: &mut Lab,
    tether: &mut Server,
    raw: &mut Server,
    file: &Path,
    name: &str,
    rows: &mut Vec<Row>,
) -> Result<()> {
    tether.stop()?;
    *tether = lab.tether_server()?;
    let before = vm_bytes(tether.process.pid(), "VmHWM")?;
    lab.tether_send(tether, &[file], false)?;
    let peak = vm_bytes(tether.process.pid(), "VmHWM")?;
    raw.stop()?;
    *raw = lab.raw_server()?;
    lab.raw_send(raw, file, RawIo::Std)?;
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
    Ok(())
}
