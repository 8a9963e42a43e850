//! The `folders` part: real folders, the toolchain's own, sent end to end with Tether and
//! alternated with the `small` part's baseline, the same bytes as one file.
//!
//! Full runs send the toolchain's `share/doc` (≈ 52,000 files) and the whole sysroot
//! (`rustc --print sysroot`, ≈ 1.2 GiB); quick runs send `share/doc/rust/html/core`. A folder
//! that is absent, or that the disk has no room to receive, is skipped with the reason.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::child::Server;
use crate::lab::{Cx, Lab, free_bytes, make_file};
use crate::report::{Report, ratios};

/// One folder's measurements, in repetition order.
struct Measured {
    name: String,
    files: u64,
    bytes: u64,
    tether: Vec<f64>,
    one_file: Vec<f64>,
}

pub(crate) fn folders(cx: &mut Cx, report: &mut Report) -> Result<()> {
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
    let sysroot = match toolchain_sysroot() {
        Ok(path) => path,
        Err(error) => {
            notes.push(format!("folders skipped: {error:#}"));
            return Ok(());
        }
    };
    let doc = sysroot.join("share").join("doc");
    let wanted: Vec<(&str, PathBuf)> = if quick {
        vec![(
            "`share/doc/rust/html/core`",
            doc.join("rust").join("html").join("core"),
        )]
    } else {
        vec![("`share/doc`", doc), ("the whole sysroot", sysroot.clone())]
    };
    // Two alternated runs each: one send of the sysroot takes seconds to tens of seconds here.
    let reps = reps.min(2);
    let fs_type = file_system(work);
    let mut measured = Vec::new();
    for (name, dir) in wanted {
        if !dir.is_dir() {
            notes.push(format!(
                "folder {name} skipped: {} is not a directory",
                dir.display()
            ));
            continue;
        }
        // Counts the tree and reads every file once, so that each side reads from the page
        // cache like the freshly written one-file baseline does.
        let (files, bytes) = read_tree(&dir)?;
        // The one-file copy, and one received copy at a time, with room to spare.
        let needed = 3 * bytes + (1 << 30);
        if free_bytes(work) < needed {
            notes.push(format!(
                "folder {name} skipped: under {:.1} GB free in {}",
                needed as f64 / 1e9,
                work.display()
            ));
            continue;
        }
        let one = work.join("folder-as-one.bin");
        make_file(&one, bytes, bytes)?;
        let mut m = Measured {
            name: name.to_owned(),
            files,
            bytes,
            tether: Vec::new(),
            one_file: Vec::new(),
        };
        let failed = alternate(lab, tether, &dir, &one, &mut m, reps)?;
        std::fs::remove_file(&one)?;
        if let Some(error) = failed {
            notes.push(format!(
                "folder {name} ({files} files, {:.1} MB): the send failed: {error:#}",
                bytes as f64 / 1e6
            ));
            // A failed transfer may leave state behind in the receiver: start a fresh one.
            lab.clear_received()?;
            tether.stop()?;
            *tether = lab.tether_server()?;
            continue;
        }
        measured.push(m);
    }
    if measured.is_empty() {
        return Ok(());
    }
    table(extra, &sysroot, reps, &fs_type, &measured);
    Ok(())
}

/// `reps` alternated runs of the folder and of the same bytes as `one` file, into `m`; the
/// error of the first folder send that failed, if one did.
fn alternate(
    lab: &mut Lab,
    tether: &mut Server,
    dir: &Path,
    one: &Path,
    m: &mut Measured,
    reps: usize,
) -> Result<Option<anyhow::Error>> {
    let mut failed = None;
    'reps: for rep in 0..reps {
        for k in 0..2 {
            if (rep + k) % 2 == 0 {
                match send_folder(lab, tether, dir, m.files, m.bytes) {
                    Ok(t) => m.tether.push(t),
                    Err(error) => {
                        failed = Some(error);
                        break 'reps;
                    }
                }
            } else {
                m.one_file.push(lab.tether_send(tether, &[one], false)?);
            }
        }
        eprintln!(
            "tether-bench: folders {} rep {rep}: {:.3} s, one file {:.3} s",
            m.name,
            m.tether.last().copied().unwrap_or(f64::NAN),
            m.one_file.last().copied().unwrap_or(f64::NAN)
        );
    }
    Ok(failed)
}

/// The real folders' table, under the report's extra sections.
fn table(extra: &mut String, sysroot: &Path, reps: usize, fs_type: &str, measured: &[Measured]) {
    let _ = writeln!(
        extra,
        "\n**Real folders** (Tether, encrypted, the toolchain's own folders, sysroot `{}`; \
         {reps} runs each, alternated with the same bytes as one file (the small-files \
         baseline), each figure listed run by run; each run receives into a directory emptied \
         beforehand, on {fs_type}; each folder read once before the runs, so both sides read \
         from the page cache; MB = 10⁶ bytes):\n\n| folder | files | bytes | Tether time | \
         files/s | MB/s | same bytes as one file: time | MB/s | ratio (MB/s) |\n\
         |---|---|---|---|---|---|---|---|---|",
        sysroot.display()
    );
    for m in measured {
        let mb = m.bytes as f64 / 1e6;
        let rate = |ts: &[f64]| -> Vec<f64> { ts.iter().map(|t| mb / t).collect() };
        let (folder_rate, one_rate) = (rate(&m.tether), rate(&m.one_file));
        let files_s: Vec<f64> = m.tether.iter().map(|t| m.files as f64 / t).collect();
        let secs = |x: &f64| format!("{x:.2} s");
        let mbs = |x: &f64| format!("{x:.1}");
        let _ = writeln!(
            extra,
            "| {} | {} | {} ({mb:.1} MB) | {} | {} | {} | {} | {} | {} |",
            m.name,
            m.files,
            m.bytes,
            each(&m.tether, secs),
            each(&files_s, |x| format!("{x:.0}")),
            each(&folder_rate, mbs),
            each(&m.one_file, secs),
            each(&one_rate, mbs),
            each(&ratios(&folder_rate, &one_rate), |x| format!("{x:.2}×")),
        );
    }
}

/// Every run's figure, in run order (two runs have no median worth the name).
fn each(values: &[f64], show: impl Fn(&f64) -> String) -> String {
    values.iter().map(show).collect::<Vec<_>>().join(", ")
}

/// `rustc --print sysroot`.
pub(crate) fn toolchain_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("`rustc --print sysroot` could not run")?;
    if !out.status.success() {
        bail!("`rustc --print sysroot` failed ({})", out.status);
    }
    let path = String::from_utf8(out.stdout).context("`rustc --print sysroot` output")?;
    Ok(PathBuf::from(path.trim()))
}

/// The file system type of `dir` (`df --output=fstype`), or `an unknown file system`.
fn file_system(dir: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .map(|l| l.trim().to_owned())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "an unknown file system".into())
}

/// The regular files under `dir` and their bytes; reads each file to the end.
fn read_tree(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let path = entry.path();
                let mut file =
                    std::fs::File::open(&path).with_context(|| path.display().to_string())?;
                bytes += std::io::copy(&mut file, &mut std::io::sink())?;
                files += 1;
            }
        }
    }
    Ok((files, bytes))
}

/// Tether sends `dir`; seconds. Fails unless the receiver reports `files` files of `bytes`.
fn send_folder(lab: &mut Lab, tether: &Server, dir: &Path, files: u64, bytes: u64) -> Result<f64> {
    let seconds = lab.tether_send(tether, &[dir], false)?;
    let (_, sent) = lab.raw_json.last().context("the send's result")?;
    let sent_files = sent.get("files").and_then(Value::as_u64);
    let sent_bytes = sent.get("bytes").and_then(Value::as_u64);
    if sent_files != Some(files) || sent_bytes != Some(bytes) {
        bail!(
            "the receiver reported {sent_files:?} files of {sent_bytes:?} bytes, the tree has \
             {files} of {bytes}"
        );
    }
    Ok(seconds)
}
