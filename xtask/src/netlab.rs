//! `cargo xtask netlab [--debug] [SCENARIO...] [lab options]`: the network lab of issue 10.
//!
//! Builds the `tether-netlab` package and the `tether` command (release: the line-rate scenarios are CPU-bound on a
//! busy 2-core machine; `--debug` builds faster) and runs its `tether-netlab` binary, which builds
//! networks out of Linux namespaces and runs real devices and a real relay in them. It needs
//! root and the kernel's netns, nftables, tc and NFQUEUE; without them it says
//! `netlab skipped: <why>` and succeeds, before spending time on a build.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Why the lab cannot run on this machine, if it cannot (checked again, in full, by the lab).
fn cannot_run() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (network namespaces need it)".into());
    }
    for tool in ["ip", "nft", "tc", "iptables"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|out| out.status.success());
        if !found {
            return Some(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables iptables)"
            ));
        }
    }
    None
}

pub(crate) fn netlab(root: &Path, debug: bool, args: &[String]) -> Result<()> {
    if let Some(why) = cannot_run() {
        eprintln!("netlab skipped: {why}");
        return Ok(());
    }
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build.current_dir(root).args([
        "build",
        "--locked",
        "-p",
        "tether-netlab",
        "--bins",
        // Scenario 11 runs the real `tether doctor`.
        "-p",
        "tether-cli",
    ]);
    if !debug {
        build.arg("--release");
    }
    eprintln!("==> netlab: building tether-netlab");
    if !build.status().context("running cargo build")?.success() {
        bail!("building tether-netlab failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    let lab = target
        .join(if debug { "debug" } else { "release" })
        .join("tether-netlab");
    let status = Command::new(&lab)
        .args(args)
        .status()
        .with_context(|| format!("running {}", lab.display()))?;
    if !status.success() {
        // The lab printed its table and what failed; pass its exit code on, no backtrace.
        eprintln!("netlab: a scenario failed (see the table above)");
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}
