//! Project automation, run as `cargo xtask <command>`.
#![allow(clippy::print_stderr)] // a build tool reports on stderr
//!
//! - `cargo xtask ci` runs what CI runs: formatting, clippy with warnings as errors on every
//!   target, the test suite (nextest where installed), the docs with warnings as errors, the
//!   facade's public API against its snapshot, import cycles, ARCHITECTURE.md's crate graph,
//!   functions over 80 lines outside
//!   tests, commit subjects over 72 characters, cargo-deny, and a short smoke run of every fuzz
//!   target.
//! - `cargo xtask fuzz [--seconds N] [TARGET...]` runs the fuzz targets on the stable toolchain.
//! - `cargo xtask bench [--quick]` runs the end-to-end harness and the criterion benches and
//!   rewrites the generated part of BENCHMARKS.md.
//! - `cargo xtask netlab [--debug] [SCENARIO...]` runs the network lab (root only).
//! - `cargo xtask cycles` prints every import cycle between the module files of a crate.
//! - `cargo xtask public-api [--bless]` checks the facade's public API against the committed
//!   `crates/tether/public-api.txt` (or rewrites it).

mod bench;
mod crate_graph;
mod cycles;
mod hygiene;
mod netlab;
mod public_api;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Tether project automation")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every check CI runs.
    Ci {
        /// Seconds each fuzz target runs in the smoke test (0 skips fuzzing).
        #[arg(long, default_value_t = 20)]
        fuzz_seconds: u64,
        /// Skip the test suite (for `.ci/run`, which has just run it as the README says).
        #[arg(long)]
        skip_tests: bool,
    },
    /// Run the fuzz targets (cargo-fuzz on the stable toolchain).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Targets to run; all when empty.
        targets: Vec<String>,
    },
    /// Run the benchmarks (release build) and rewrite BENCHMARKS.md's generated part.
    Bench {
        /// The short smoke version: fewer repetitions, smaller sizes.
        #[arg(long)]
        quick: bool,
    },
    /// Run the network lab (namespaces, NAT, relay, loss, cuts; needs root).
    Netlab {
        /// Build the lab in debug mode (faster to build; release is the default).
        #[arg(long)]
        debug: bool,
        /// Scenarios (1-10, `fat` for 9 and 10) and the lab's options (`--long-cut-secs`, `--mib`,
        /// `--settings`, `--lanes`); 1-9 when empty.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print every import cycle between the module files of a crate (fails if there is one).
    Cycles,
    /// Compare the facade's public API with crates/tether/public-api.txt.
    PublicApi {
        /// Rewrite the file with the API of this tree (for an intended change).
        #[arg(long)]
        bless: bool,
    },
}

fn main() -> Result<()> {
    public_api::run_as_rustdoc();
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Task::Ci {
            fuzz_seconds,
            skip_tests,
        } => ci(&root, fuzz_seconds, skip_tests),
        Task::Fuzz { seconds, targets } => fuzz(&root, seconds, &targets),
        Task::Bench { quick } => bench::bench(&root, quick),
        Task::Netlab { debug, args } => netlab::netlab(&root, debug, &args),
        Task::Cycles => cycles::cycles(&root),
        Task::PublicApi { bless } => public_api::public_api(&root, bless),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one level below the workspace root")
}

fn ci(root: &Path, fuzz_seconds: u64, skip_tests: bool) -> Result<()> {
    step(root, "format", cargo(&["fmt", "--all", "--", "--check"]))?;
    step(
        root,
        "clippy",
        cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    step(
        root,
        &format!(
            "no function over {} lines outside tests",
            hygiene::MAX_FUNCTION_LINES
        ),
        hygiene::long_functions(),
    )?;
    hygiene::commit_subjects(root)?;
    if !skip_tests {
        if has_cargo_subcommand("nextest") {
            let nextest = [
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--profile",
                "ci",
            ];
            step(root, "tests", cargo(&nextest))?;
            // nextest does not run doctests.
            let doctests = ["test", "--workspace", "--doc", "--locked"];
            step(root, "doctests", cargo(&doctests))?;
        } else {
            step(root, "tests", cargo(&["test", "--workspace", "--locked"]))?;
        }
    }
    no_danger_in_shipped_builds(root)?;
    eprintln!("xtask: == import cycles between module files ==");
    cycles::cycles(root)?;
    crate_graph::check(root)?;
    let mut doc = cargo(&["doc", "--workspace", "--no-deps", "--locked"]);
    doc.env("RUSTDOCFLAGS", "-Dwarnings");
    step(root, "docs", doc)?;
    // After the docs: rustdoc JSON reuses the dependencies' metadata that step left.
    eprintln!("xtask: == public API of the facade (crates/tether/public-api.txt) ==");
    public_api::public_api(root, false)?;
    deny(root)?;
    if fuzz_seconds > 0 {
        fuzz(root, fuzz_seconds, &[])?;
    }
    eprintln!("xtask ci: every check passed");
    Ok(())
}

/// Fails if a crate we ship (the `tether` facade, the `tether` CLI) is built with a `danger`
/// or `test-hooks` feature: those are test hooks (fixed nonces, keys from seeds, the fuzzing
/// driver, pauses inside key protection) that only tests, fuzzing and benches may turn on.
fn no_danger_in_shipped_builds(root: &Path) -> Result<()> {
    eprintln!("xtask: == no danger feature in shipped builds ==");
    let output = cargo(&[
        "tree",
        "--locked",
        "-p",
        "tether",
        "-p",
        "tether-cli",
        "--edges",
        "normal,build,features",
        "--target",
        "all",
    ])
    .current_dir(root)
    .output()
    .context("running cargo tree")?;
    if !output.status.success() {
        bail!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let tree = String::from_utf8_lossy(&output.stdout);
    if let Some(line) = tree
        .lines()
        .find(|line| line.contains("feature \"danger\"") || line.contains("feature \"test-hooks\""))
    {
        bail!("a shipped crate is built with test hooks: {}", line.trim());
    }
    Ok(())
}

/// Runs fuzz targets with cargo-fuzz.
///
/// cargo-fuzz passes nightly-only flags to rustc (`-Zsanitizer=...`). The machine has one
/// stable toolchain, so we set `RUSTC_BOOTSTRAP=1`, which lets stable rustc accept them. This
/// is for the fuzz build only; nothing we ship is built this way.
fn fuzz(root: &Path, seconds: u64, targets: &[String]) -> Result<()> {
    let fuzz_dir = root.join("fuzz");
    if !has_cargo_subcommand("fuzz") {
        bail!(
            "cargo-fuzz is not installed: `cargo install cargo-fuzz --locked` (.ci/run does this)"
        );
    }
    let targets = if targets.is_empty() {
        fuzz_targets(&fuzz_dir)?
    } else {
        targets.to_vec()
    };
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        let seeds = fuzz_dir.join("seeds").join(target);
        std::fs::create_dir_all(&corpus)
            .with_context(|| format!("creating {}", corpus.display()))?;
        let mut run = Command::new("cargo");
        run.current_dir(&fuzz_dir)
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", "--sanitizer", "address", target])
            .arg(&corpus);
        if seeds.is_dir() {
            run.arg(&seeds);
        }
        run.args([
            "--".to_owned(),
            format!("-max_total_time={seconds}"),
            "-print_final_stats=1".to_owned(),
        ]);
        step(root, &format!("fuzz {target} ({seconds} s)"), run)?;
    }
    Ok(())
}

/// Runs cargo-deny. Its advisory check needs the RustSec database, which cargo-deny clones from
/// GitHub; machines here reach only the package registries. So we run offline: with every check
/// when a database is already on disk (`~/.cargo/advisory-dbs`), and without the advisory check,
/// saying so loudly, when none is.
fn deny(root: &Path) -> Result<()> {
    if !has_cargo_subcommand("deny") {
        bail!(
            "cargo-deny is not installed: `cargo install cargo-deny --locked` (.ci/run does this)"
        );
    }
    // cargo-deny reads the metadata of every platform's dependencies, and `--offline` cannot
    // download the ones a build on this platform never fetched (a run failed on that), so fetch
    // them all first from the package registry.
    step(root, "cargo fetch", cargo(&["fetch", "--locked"]))?;
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let have_db = home.is_some_and(|home| {
        std::fs::read_dir(home.join("advisory-dbs"))
            .is_ok_and(|mut dbs| dbs.any(|db| db.is_ok_and(|db| db.path().join("crates").is_dir())))
    });
    if have_db {
        step(root, "cargo-deny", cargo(&["deny", "--offline", "check"]))
    } else {
        eprintln!(
            "xtask: cargo-deny ADVISORIES SKIPPED: no RustSec advisory database on this machine and \
             GitHub is unreachable from here; clone github.com/RustSec/advisory-db into \
             ~/.cargo/advisory-dbs/ to include it. Checking bans, licenses and sources."
        );
        let checks = ["deny", "--offline", "check", "bans", "licenses", "sources"];
        step(root, "cargo-deny", cargo(&checks))
    }
}

fn fuzz_targets(fuzz_dir: &Path) -> Result<Vec<String>> {
    let dir = fuzz_dir.join("fuzz_targets");
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            targets.push(stem.to_owned());
        }
    }
    targets.sort();
    Ok(targets)
}

fn cargo(args: &[&str]) -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(args);
    command
}

/// `cargo metadata --no-deps` of the workspace, parsed.
fn cargo_metadata(root: &Path) -> Result<serde_json::Value> {
    let output = cargo(&["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading cargo metadata's JSON")
}

fn has_cargo_subcommand(name: &str) -> bool {
    Command::new("cargo")
        .args([name, "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn step(root: &Path, name: &str, mut command: Command) -> Result<()> {
    if command.get_current_dir().is_none() {
        command.current_dir(root);
    }
    eprintln!("xtask: == {name} ==");
    let status = command
        .status()
        .with_context(|| format!("starting {name}"))?;
    if !status.success() {
        bail!("{name} failed ({status})");
    }
    Ok(())
}
