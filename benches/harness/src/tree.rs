//! The `tree` part: a real tree copied once, Tether (encrypted) against sendme's way of moving
//! a folder (an iroh-blobs collection: import, fetch over iroh, export) and against `rsync`
//! over a local TCP socket, alternated, with every received file's BLAKE3 hash compared to the
//! source's outside the timed part.
//!
//! Full runs copy the whole toolchain sysroot (`rustc --print sysroot`, ≈ 52,000 files, from
//! bytes to tens of megabytes); quick runs copy its `share/doc/rust/html/std` (≈ 2,600 files).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::child::Server;
use crate::folders::toolchain_sysroot;
use crate::lab::{Cx, Lab, free_bytes};
use crate::report::{Report, Row, ratios};
use crate::rsync::Rsyncd;
use crate::stats::Spread;

/// The regular files under `root`, as paths relative to it, sorted; symbolic links and other
/// kinds are left out (none of the three ways copies them alike).
pub(crate) fn files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(relative) = stack.pop() {
        let dir = root.join(&relative);
        for entry in std::fs::read_dir(&dir).with_context(|| dir.display().to_string())? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = relative.join(entry.file_name());
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Each regular file's BLAKE3 hash and length, by relative path.
type Hashes = BTreeMap<PathBuf, (blake3::Hash, u64)>;

/// Hashes every regular file under `root` (this also reads it into the page cache).
fn hash_tree(root: &Path) -> Result<Hashes> {
    let mut hashes = BTreeMap::new();
    for relative in files(root)? {
        let path = root.join(&relative);
        let mut file = std::fs::File::open(&path).with_context(|| path.display().to_string())?;
        let mut hasher = blake3::Hasher::new();
        let len = std::io::copy(&mut file, &mut hasher)?;
        hashes.insert(relative, (hasher.finalize(), len));
    }
    Ok(hashes)
}

/// Fails unless `target` holds exactly the files of `source`, each with the same hash.
fn verify(source: &Hashes, target: &Path, who: &str) -> Result<()> {
    let received = hash_tree(target).with_context(|| format!("{who}: reading what arrived"))?;
    if received.len() != source.len() {
        bail!(
            "{who}: {} files arrived in {}, the source has {}",
            received.len(),
            target.display(),
            source.len()
        );
    }
    for (relative, expected) in source {
        match received.get(relative) {
            Some(got) if got == expected => {}
            Some(_) => bail!("{who}: {} differs from the source", relative.display()),
            None => bail!("{who}: {} did not arrive", relative.display()),
        }
    }
    Ok(())
}

/// The three ways, in the order a run starts them.
const WAYS: [&str; 3] = ["tether", "iroh-blobs collection", "rsync"];

pub(crate) fn tree(cx: &mut Cx, report: &mut Report) -> Result<()> {
    let sysroot = match toolchain_sysroot() {
        Ok(path) => path,
        Err(error) => {
            report.notes.push(format!("tree skipped: {error:#}"));
            return Ok(());
        }
    };
    let std = ["share", "doc", "rust", "html", "std"];
    let mut trees = vec![(
        "the sysroot's `share/doc/rust/html/std`",
        std.iter().fold(sysroot.clone(), |p, c| p.join(c)),
    )];
    if !cx.quick {
        trees.push(("the whole sysroot", sysroot));
    }
    let rsyncd = match crate::rsync::available() {
        Ok(()) => Rsyncd::start(&cx.work.join("rsyncd"))?,
        Err(error) => {
            report.notes.push(format!("tree skipped: {error:#}"));
            return Ok(());
        }
    };
    for (name, source) in trees {
        one_tree(cx, report, &rsyncd, name, &source)?;
    }
    Ok(())
}

/// Each way's seconds run by run; `None` where that run failed.
type Runs = [Vec<Option<f64>>; 3];

/// The three ways on one tree, alternated; a failed copy is noted and counted as failed.
fn one_tree(
    cx: &mut Cx,
    report: &mut Report,
    rsyncd: &Rsyncd,
    name: &str,
    source: &Path,
) -> Result<()> {
    let hashes = hash_tree(source)?;
    let bytes: u64 = hashes.values().map(|(_, len)| len).sum();
    // One received copy at a time (the blobs client's store and its export can hold two).
    let needed = 2 * bytes + (1 << 30);
    if free_bytes(&cx.work) < needed {
        report.notes.push(format!(
            "tree {name} skipped: under {:.1} GB free in {}",
            needed as f64 / 1e9,
            cx.work.display()
        ));
        return Ok(());
    }
    // Three runs of each: one copy of the sysroot takes tens of seconds here.
    let reps = cx.reps.min(3);
    let mut times: Runs = Default::default();
    for rep in 0..reps {
        for k in 0..WAYS.len() {
            let way = (rep + k) % WAYS.len();
            let way_name = WAYS.get(way).copied().unwrap_or_default();
            let t = match once(cx, rsyncd, source, &hashes, way) {
                Ok(t) => {
                    eprintln!("tether-bench: tree rep {rep} {way_name}: {t:.3} s (verified)");
                    Some(t)
                }
                Err(error) => {
                    eprintln!("tether-bench: tree rep {rep} {way_name} failed: {error:#}");
                    report.notes.push(format!(
                        "tree {name}, run {rep}: {way_name} failed: {}",
                        first_line(&error)
                    ));
                    after_failure(cx, way)?;
                    None
                }
            };
            if let Some(list) = times.get_mut(way) {
                list.push(t);
            }
        }
    }
    let m = Measured {
        name,
        source,
        files: hashes.len(),
        bytes,
        reps,
    };
    rows(report, &m, &times);
    Ok(())
}

/// The error chain on one line, without the backtrace a child's stderr may carry.
fn first_line(error: &anyhow::Error) -> String {
    let text = format!("{error:#}");
    let cut = text.find("Stack backtrace").unwrap_or(text.len());
    text.get(..cut)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(600)
        .collect()
}

/// Cleans up after a failed copy: a fresh Tether receiver (a failed transfer may leave state
/// behind), empty target directories.
fn after_failure(cx: &mut Cx, way: usize) -> Result<()> {
    cx.lab.clear_received()?;
    let _ = std::fs::remove_dir_all(cx.work.join("blobs-tree-export"));
    if way == 0 {
        cx.tether.stop()?;
        cx.tether = cx.lab.tether_server()?;
    }
    Ok(())
}

/// One copy of `source` the `way`th way, verified; its seconds.
fn once(cx: &mut Cx, rsyncd: &Rsyncd, source: &Path, hashes: &Hashes, way: usize) -> Result<f64> {
    let Cx {
        ref mut lab,
        ref mut tether,
        ref work,
        ..
    } = *cx;
    match way {
        0 => {
            let seconds = lab.tether_send_kept(tether, &[source], false)?;
            let folder = source.file_name().context("the tree has no name")?;
            let arrived = lab.received().join(folder);
            let checked = verify(hashes, &arrived, "Tether");
            lab.clear_received()?;
            checked?;
            Ok(seconds)
        }
        1 => blobs_once(lab, work, source, hashes),
        _ => {
            let target = rsyncd.target();
            let seconds = rsyncd.copy(source)?;
            let checked = verify(hashes, target, "rsync");
            rsyncd.clear()?;
            checked?;
            Ok(seconds)
        }
    }
}

/// sendme's way: a fresh provider imports the folder as a collection (timed in the provider),
/// a fresh client fetches it and exports every file into an empty directory.
fn blobs_once(lab: &mut Lab, work: &Path, source: &Path, hashes: &Hashes) -> Result<f64> {
    let mut server: Server = lab.blobs_server("blobs-tree-store")?;
    let reply = server.process.ask(
        &format!("import-dir {}", source.display()),
        Duration::from_secs(1800),
    )?;
    let mut words = reply.split_whitespace();
    let (Some("imported"), Some(hash), Some(import)) = (words.next(), words.next(), words.next())
    else {
        bail!("blobs import-dir answered {reply:?}");
    };
    let import: f64 = import.parse()?;
    let target = work.join("blobs-tree-export");
    let fetch = lab.blobs_fetch_collection(&server, hash, &target);
    if let Ok(seconds) = &fetch {
        let fetched = lab
            .raw_json
            .last()
            .and_then(|(_, v)| v.get("fetch_seconds"))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN);
        eprintln!(
            "tether-bench: tree iroh-blobs: import {import:.3} s, fetch {fetched:.3} s, \
             export {:.3} s",
            seconds - fetched
        );
    }
    server.stop()?;
    let _ = std::fs::remove_dir_all(work.join("blobs-tree-store"));
    let checked = fetch.and_then(|seconds| {
        verify(hashes, &target, "iroh-blobs")?;
        Ok(seconds)
    });
    let _ = std::fs::remove_dir_all(&target);
    Ok(import + checked?)
}

/// What the rows say about the tree.
struct Measured<'a> {
    name: &'a str,
    source: &'a Path,
    files: usize,
    bytes: u64,
    reps: usize,
}

/// The two rows (against the collection, against rsync) and the run-by-run table. Ratios pair
/// the runs where both ways finished.
fn rows(report: &mut Report, m: &Measured<'_>, times: &Runs) {
    let mb = m.bytes as f64 / 1e6;
    let [tether, blobs, rsync] = times;
    let show = |x: f64| format!("{x:.1} MB/s");
    let figure = format!(
        "a real tree copied once: {}, {} files, {mb:.1} MB, encrypt on, every file verified",
        m.name, m.files
    );
    let against = [
        (
            blobs,
            "iroh-blobs collection (sendme's way: import + fetch + export)",
            1.5,
        ),
        (
            rsync,
            "`rsync -a` to an `rsync --daemon` on 127.0.0.1 (TCP)",
            1.0,
        ),
    ];
    for (baseline, bname, target) in against {
        let pairs: Vec<(f64, f64)> = tether
            .iter()
            .zip(baseline)
            .filter_map(|(t, b)| Some((mb / (*t)?, mb / (*b)?)))
            .collect();
        // The ratios pair the runs where both finished; each side's own figures are all of its
        // finished runs.
        let (t, b): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
        let failed = baseline.iter().filter(|x| x.is_none()).count();
        let failures = if failed > 0 {
            format!(
                " (failed in {failed} of {} runs, see the notes)",
                baseline.len()
            )
        } else {
            String::new()
        };
        let ratio = (!t.is_empty()).then(|| Spread::of(&ratios(&t, &b)));
        let done =
            |ts: &[Option<f64>]| -> Vec<f64> { ts.iter().flatten().map(|t| mb / t).collect() };
        report.rows.push(Row {
            figure: figure.clone(),
            candidate: Spread::of(&done(tether)).show(show),
            baseline: format!(
                "{bname}: {}{failures}",
                Spread::of(&done(baseline)).show(show)
            ),
            ratio,
            target: format!("≥ {target}×"),
            met: ratio.map(|r| r.median >= target),
        });
    }
    let secs = |ts: &[Option<f64>]| {
        ts.iter()
            .map(|x| x.map_or("failed".into(), |x| format!("{x:.2} s")))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        report.extra,
        "\n**A real tree copied once** ({}, `{}`: {} files, {} bytes; {} runs of each way, \
         alternated; each way receives into an empty directory, its time runs from the start \
         (sendme's import included) to the last file in place; every received file's BLAKE3 \
         hash compared to the source's after the timed part; Tether fsyncs every file it places, \
         rsync runs without `--fsync`):\n\n| way | times, run by run |\n|---|---|\n\
         | Tether, encrypted | {} |\n| iroh-blobs collection | {} |\n| rsync over TCP | {} |",
        m.name,
        m.source.display(),
        m.files,
        m.bytes,
        m.reps,
        secs(tether),
        secs(blobs),
        secs(rsync),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, relative: &str, contents: &[u8]) {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    #[test]
    fn verify_refuses_a_changed_a_missing_and_an_extra_file() {
        let source = tempfile::tempdir().unwrap();
        write(source.path(), "a/b/one", b"one");
        write(source.path(), "two", b"two");
        let hashes = hash_tree(source.path()).unwrap();
        assert_eq!(hashes.len(), 2);

        let copy = tempfile::tempdir().unwrap();
        write(copy.path(), "a/b/one", b"one");
        write(copy.path(), "two", b"two");
        verify(&hashes, copy.path(), "copy").unwrap();

        write(copy.path(), "two", b"tw0");
        let changed = verify(&hashes, copy.path(), "copy").unwrap_err();
        assert!(changed.to_string().contains("two differs"), "{changed}");

        std::fs::remove_file(copy.path().join("two")).unwrap();
        write(copy.path(), "three", b"two");
        let renamed = verify(&hashes, copy.path(), "copy").unwrap_err();
        assert!(
            renamed.to_string().contains("two did not arrive"),
            "{renamed}"
        );

        write(copy.path(), "two", b"two");
        let extra = verify(&hashes, copy.path(), "copy").unwrap_err();
        assert!(extra.to_string().contains("3 files arrived"), "{extra}");
    }
}
