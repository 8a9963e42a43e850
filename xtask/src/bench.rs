//! `cargo xtask bench [--quick]`: the end-to-end harness (`tether-bench`, release build) and
//! the criterion benches, written into BENCHMARKS.md between two markers with the machine, the
//! date and the commands. Everything outside the markers (hand-written readings, the network
//! lab's section) is kept.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{cargo, step};

const START: &str = "<!-- xtask bench: generated, start -->";
const END: &str = "<!-- xtask bench: generated, end -->";

/// The criterion benches `cargo xtask bench` runs (the 256 MiB transfer bench is left to
/// its own command: the end-to-end harness measures transfers between processes).
const CRITERION_BENCHES: &[&str] = &["crypto", "wire", "registry", "functions"];

pub(crate) fn bench(root: &Path, quick: bool) -> Result<()> {
    let out_dir = root.join("target").join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let started = SystemTime::now();
    let date = shell("date -u '+%a %b %d %H:%M UTC %Y'");
    let mut commands = Vec::new();

    let build = ["build", "--release", "-p", "tether-bench-harness"];
    step(root, "build tether-bench (release)", cargo(&build))?;
    commands.push(format!("cargo {}", build.join(" ")));
    let markdown = out_dir.join("e2e.md");
    let json = out_dir.join("e2e.json");
    let harness = root.join("target").join("release").join("tether-bench");
    let mut run = Command::new(&harness);
    run.arg("run")
        .arg("--markdown")
        .arg(&markdown)
        .arg("--json")
        .arg(&json);
    if quick {
        run.arg("--quick");
    }
    let load_before = shell("cut -d' ' -f1-3 /proc/loadavg");
    step(root, "end-to-end harness", run)?;
    let load_after = shell("cut -d' ' -f1-3 /proc/loadavg");
    commands.push(format!(
        "target/release/tether-bench run{} --markdown target/bench/e2e.md --json target/bench/e2e.json",
        if quick { " --quick" } else { "" }
    ));
    let e2e = std::fs::read_to_string(&markdown)?;

    let estimates = criterion(root, quick, &mut commands)?;

    let mut generated = String::new();
    let _ = writeln!(generated, "{START}");
    let _ = writeln!(
        generated,
        "## The comparison run (`cargo xtask bench{}`)\n",
        if quick { " --quick" } else { "" }
    );
    let _ = writeln!(generated, "- Date: {date}");
    let _ = writeln!(generated, "{}", machine(&load_before, &load_after));
    let _ = writeln!(
        generated,
        "- Toolchain: {}; harness in the `release` profile, criterion in `bench`",
        shell("rustc --version")
    );
    let _ = writeln!(generated, "- Commands:");
    for command in &commands {
        let _ = writeln!(generated, "  - `{command}`");
    }
    let elapsed = started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    let _ = writeln!(generated, "- Total time: {elapsed} s\n");
    let _ = writeln!(
        generated,
        "### End-to-end (`benches/harness`, both ends separate processes on 127.0.0.1)\n"
    );
    generated.push_str(&e2e);
    let _ = writeln!(
        generated,
        "\n### Function benches (criterion, `benches/benches/`)\n\n| benchmark | median [95 % interval] | throughput |\n|---|---|---|"
    );
    for estimate in &estimates {
        let _ = writeln!(
            generated,
            "| {} | {} [{}, {}] | {} |",
            estimate.id,
            time(estimate.median),
            time(estimate.low),
            time(estimate.high),
            estimate.throughput()
        );
    }
    let _ = writeln!(generated, "{END}");

    let path = root.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let new = splice(&old, &generated);
    std::fs::write(&path, new)?;
    eprintln!(
        "xtask bench: BENCHMARKS.md written ({} criterion figures)",
        estimates.len()
    );
    Ok(())
}

/// Runs the criterion benches; returns their estimates and adds the commands to `commands`.
fn criterion(root: &Path, quick: bool, commands: &mut Vec<String>) -> Result<Vec<Estimate>> {
    // Short measurement windows: enough for stable medians on these functions, and the whole
    // set stays within minutes on two shared cores.
    let criterion_args: &[&str] = if quick {
        &[
            "--warm-up-time",
            "0.3",
            "--measurement-time",
            "1",
            "--sample-size",
            "10",
        ]
    } else {
        &["--warm-up-time", "1", "--measurement-time", "3"]
    };
    let criterion_started = SystemTime::now();
    for name in CRITERION_BENCHES {
        let mut argv = vec!["bench", "-p", "tether-benches", "--bench", name, "--"];
        argv.extend_from_slice(criterion_args);
        step(root, &format!("criterion {name}"), cargo(&argv))?;
        commands.push(format!("cargo {}", argv.join(" ")));
    }
    criterion_estimates(&root.join("target").join("criterion"), criterion_started)
}

/// The machine line of the report, with the load average `before` and `after` the harness.
fn machine(load_before: &str, load_after: &str) -> String {
    format!(
        "- Machine: {} ({} cores, `nproc` = {}), {} memory, Linux {}; load average {} before \
         the harness, {} after (other builds share the machine: absolute figures are noisy, \
         the ratios come from runs alternated within this one)",
        shell("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        shell("lscpu | sed -n 's/^CPU(s): *//p' | head -1"),
        shell("nproc"),
        shell("awk '/MemTotal/ {printf \"%.1f GiB\", $2/1048576}' /proc/meminfo"),
        shell("uname -r"),
        load_before,
        load_after,
    )
}

/// Puts `generated` between the markers of `old`; without markers, after the title and its
/// introduction, before the first `## ` section (every section of `old` is kept).
fn splice(old: &str, generated: &str) -> String {
    if let (Some(start), Some(end)) = (old.find(START), old.find(END))
        && start < end
    {
        let before = old.get(..start).unwrap_or_default();
        let after = old.get(end + END.len()..).unwrap_or_default();
        return format!("{before}{}{after}", generated.trim_end());
    }
    let split = old.find("\n## ").map_or(old.len(), |i| i + 1);
    let (head, tail) = old.split_at(split);
    let head = if head.trim().is_empty() {
        "# Benchmarks\n\n"
    } else {
        head
    };
    format!("{head}{generated}\n{tail}")
}

struct Estimate {
    id: String,
    median: f64,
    low: f64,
    high: f64,
    throughput: Option<(String, f64)>,
}

impl Estimate {
    fn throughput(&self) -> String {
        match &self.throughput {
            Some((kind, n)) if kind == "Bytes" => {
                let per_s = n / (self.median * 1e-9);
                if per_s >= (1u64 << 30) as f64 {
                    format!("{:.2} GiB/s", per_s / (1u64 << 30) as f64)
                } else {
                    format!("{:.1} MiB/s", per_s / (1u64 << 20) as f64)
                }
            }
            Some((_, n)) => {
                let per_s = n / (self.median * 1e-9);
                if per_s >= 1e6 {
                    format!("{:.2} M/s", per_s / 1e6)
                } else {
                    format!("{:.1} k/s", per_s / 1e3)
                }
            }
            None => "—".into(),
        }
    }
}

fn time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

/// Every criterion result written since `since` under `dir`.
fn criterion_estimates(dir: &Path, since: SystemTime) -> Result<Vec<Estimate>> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "estimates.json")
                && path
                    .parent()
                    .and_then(Path::file_name)
                    .is_some_and(|n| n == "new")
            {
                let fresh = std::fs::metadata(&path)?.modified()? >= since;
                if fresh {
                    found.push(read_estimate(&path)?);
                }
            }
        }
    }
    if found.is_empty() {
        bail!("no criterion results under {}", dir.display());
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(found)
}

fn read_estimate(estimates: &Path) -> Result<Estimate> {
    let dir: PathBuf = estimates
        .parent()
        .context("estimates.json has a parent")?
        .to_owned();
    let e: Value = serde_json::from_str(&std::fs::read_to_string(estimates)?)?;
    let b: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("benchmark.json"))?)?;
    let num = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let throughput = b
        .get("throughput")
        .and_then(Value::as_object)
        .and_then(|o| o.iter().next())
        .and_then(|(k, v)| v.as_f64().map(|n| (k.clone(), n)));
    Ok(Estimate {
        id: b
            .get("full_id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
        median: num(&e, "/median/point_estimate"),
        low: num(&e, "/median/confidence_interval/lower_bound"),
        high: num(&e, "/median/confidence_interval/upper_bound"),
        throughput,
    })
}

/// The trimmed output of a shell command, or `?`.
fn shell(command: &str) -> String {
    Command::new("sh")
        .args(["-c", command])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_part() {
        let generated = format!("{START}\nnew figures\n{END}\n");
        let first = splice(
            "# Benchmarks\n\nIntro.\n\n## Network lab\n\nlab figures\n",
            &generated,
        );
        assert_eq!(
            first,
            format!("# Benchmarks\n\nIntro.\n\n{generated}\n## Network lab\n\nlab figures\n")
        );
        let again = splice(&first, &format!("{START}\nnewer\n{END}\n"));
        assert!(again.contains("newer") && !again.contains("new figures"));
        assert!(again.contains("## Network lab\n\nlab figures\n"));
        assert!(again.starts_with("# Benchmarks\n\nIntro.\n\n"));
    }

    #[test]
    fn splice_into_an_empty_file_adds_a_title() {
        let out = splice("", &format!("{START}\nx\n{END}\n"));
        assert!(out.starts_with("# Benchmarks\n\n<!--"));
    }
}
