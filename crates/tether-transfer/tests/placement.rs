//! Placement under attack. Someone who can write the receive directory but is not its owner (a
//! shared `--receive-dir`, a sandboxed app that may write `~/Downloads`) swaps names while real
//! transfers run through the usual harness (TCP on 127.0.0.1, two lanes): an intermediate
//! directory for a symlink to outside, a partial file for a symlink, the resume record's names
//! for symlinks, the final name for a symlink. A thread does the swap in a loop; each round is a
//! fresh transfer into a fresh destination. Whatever the timing, no byte outside the receive
//! directory is written, created or truncated, and a transfer that reports success has put the
//! verified files, as regular files, at their targets.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs,
    clippy::panic,
    clippy::needless_pass_by_value
)]

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use common::{Setup, hash_file, random_file, transfer};
use tether_transfer::{TransferError, TransferReport};

/// Transfers per test.
const ROUNDS: usize = 24;

const CANARY: &[u8] = b"outside the receive directory";

/// Files of several chunks (with resume records) and of one chunk, in two directories.
const BIG: [&str; 3] = ["big0.bin", "sub/big1.bin", "sub/deeper/big2.bin"];

/// A source tree `share/` in `dir`: the `BIG` files (3 chunks each) and 16 small ones.
fn source(dir: &Path) -> PathBuf {
    let root = dir.join("share");
    fs::create_dir_all(root.join("sub/deeper")).unwrap();
    for (i, name) in BIG.iter().enumerate() {
        random_file(&root.join(name), 700 << 10, 10 + i as u64);
    }
    for i in 0..16u64 {
        let name = match i % 3 {
            0 => format!("s{i}.txt"),
            1 => format!("sub/s{i}.txt"),
            _ => format!("sub/deeper/s{i}.txt"),
        };
        random_file(&root.join(name), 5000 + i, 100 + i);
    }
    root
}

/// Every file under `root`, relative.
fn files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    out
}

/// A directory outside the receive directory holding one canary file.
struct Outside {
    dir: tempfile::TempDir,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("canary"), CANARY).unwrap();
        Outside { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn canary(&self) -> PathBuf {
        self.dir.path().join("canary")
    }

    /// Panics unless the directory holds exactly the untouched canary.
    fn assert_untouched(&self, round: usize, result: &Result<TransferReport, TransferError>) {
        let mut names: Vec<String> = fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["canary"],
            "round {round}: the receiver created entries outside its directory ({result:?})"
        );
        assert_eq!(
            String::from_utf8_lossy(&fs::read(self.canary()).unwrap()),
            String::from_utf8_lossy(CANARY),
            "round {round}: the receiver wrote through a link to a file outside ({result:?})"
        );
    }
}

/// A thread running `swap` in a loop until dropped.
struct Racer {
    stop: Arc<AtomicBool>,
    swaps: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Racer {
    /// `swap` returns whether it changed anything.
    fn start(mut swap: impl FnMut() -> bool + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let swaps = Arc::new(AtomicU64::new(0));
        let thread = thread::spawn({
            let (stop, swaps) = (stop.clone(), swaps.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if swap() {
                        swaps.fetch_add(1, Ordering::Relaxed);
                    }
                    thread::yield_now();
                }
            }
        });
        Racer {
            stop,
            swaps,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        self.swaps.load(Ordering::Relaxed)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn setup(overwrite: bool) -> Setup {
    Setup {
        lanes: 2,
        overwrite,
        checkpoint_ms: Some(1),
        stall_ms: Some(10_000),
        ..Setup::default()
    }
}

/// After a round: if the transfer reported success, every file is at its target, a regular file
/// with the source's contents.
fn assert_success_is_true(
    round: usize,
    src: &Path,
    dest: &Path,
    result: &Result<TransferReport, TransferError>,
) {
    if result.is_err() {
        return;
    }
    for rel in files(src) {
        let target = dest.join("share").join(&rel);
        let meta = fs::symlink_metadata(&target)
            .unwrap_or_else(|e| panic!("round {round}: {rel} reported but missing: {e}"));
        assert!(
            meta.file_type().is_file(),
            "round {round}: {rel} was reported verified and in place, but the target is {:?}",
            meta.file_type()
        );
        assert_eq!(
            hash_file(&target),
            hash_file(&src.join(&rel)),
            "round {round}: {rel} reported verified with other contents"
        );
    }
}

/// Runs `ROUNDS` transfers of the source tree, each into a fresh destination prepared by
/// `prepare`, while a racer made by `racer` swaps names; checks every round.
fn race(
    overwrite: impl Fn(usize) -> bool,
    prepare: impl Fn(&Path, &Outside),
    racer: impl Fn(PathBuf, PathBuf) -> Racer,
) {
    let src_dir = tempfile::tempdir().unwrap();
    let src = source(src_dir.path());
    let runtime = runtime();
    let (mut ok, mut swaps) = (0, 0);
    for round in 0..ROUNDS {
        let dest = tempfile::tempdir().unwrap();
        let outside = Outside::new();
        prepare(dest.path(), &outside);
        let racer = racer(dest.path().to_path_buf(), outside.path().to_path_buf());
        let (_, received) = runtime.block_on(transfer(&src, dest.path(), &setup(overwrite(round))));
        swaps += racer.stop();
        outside.assert_untouched(round, &received);
        assert_success_is_true(round, &src, dest.path(), &received);
        ok += usize::from(received.is_ok());
    }
    eprintln!("{ROUNDS} rounds, {ok} transfers complete, {swaps} swaps");
    assert!(swaps > 0, "the racer never swapped anything");
}

/// Swaps `dest/share` (made by the receiver's planning) for a symlink to `outside` and back.
fn swap_directory(dest: PathBuf, outside: PathBuf) -> Racer {
    let dir = dest.join("share");
    let held = dest.join("held");
    Racer::start(move || {
        let is_real = fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir());
        if !is_real || fs::rename(&dir, &held).is_err() {
            return false;
        }
        let linked = symlink(&outside, &dir).is_ok();
        thread::sleep(Duration::from_micros(300));
        if linked {
            let _ = fs::remove_file(&dir);
        }
        let _ = fs::rename(&held, &dir);
        thread::sleep(Duration::from_micros(100));
        linked
    })
}

#[test]
fn an_intermediate_directory_swapped_for_a_symlink_never_redirects_a_write() {
    race(|_| false, |_, _| {}, swap_directory);
}

/// Every partial file under `dest/share` that is a regular file: moved aside and replaced by a
/// symlink to the canary.
fn swap_partials(dest: PathBuf, outside: PathBuf) -> Racer {
    let canary = outside.join("canary");
    let dirs = [
        dest.join("share"),
        dest.join("share/sub"),
        dest.join("share/sub/deeper"),
    ];
    Racer::start(move || {
        let mut swapped = false;
        for dir in &dirs {
            let Ok(listing) = fs::read_dir(dir) else {
                continue;
            };
            for entry in listing.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let is_file = entry.file_type().is_ok_and(|t| t.is_file());
                if is_file && name.ends_with(".tether-partial") {
                    let path = entry.path();
                    if fs::rename(&path, dir.join(format!("{name}.moved"))).is_ok() {
                        swapped |= symlink(&canary, &path).is_ok();
                    }
                }
            }
        }
        swapped
    })
}

#[test]
fn a_partial_file_swapped_for_a_symlink_is_never_written_through_nor_placed() {
    race(|_| false, |_, _| {}, swap_partials);
}

/// The record names of every `BIG` file, as symlinks to `outside/record*`.
fn plant_record_links(dest: &Path, outside: &Path) -> bool {
    let mut planted = false;
    for name in BIG {
        let target = dest.join("share").join(name);
        let dir = target.parent().unwrap();
        let file = target.file_name().unwrap().to_string_lossy();
        for suffix in [".tether-resume", ".tether-resume.tmp"] {
            let link = dir.join(format!(".{file}{suffix}"));
            if fs::symlink_metadata(&link).is_err() {
                planted |= symlink(outside.join("canary"), &link).is_ok();
            }
        }
    }
    planted
}

#[test]
fn resume_record_names_planted_as_symlinks_are_never_written_through() {
    race(
        |_| false,
        |dest, outside| {
            fs::create_dir_all(dest.join("share/sub/deeper")).unwrap();
            assert!(plant_record_links(dest, outside.path()));
        },
        |dest, outside| Racer::start(move || plant_record_links(&dest, &outside)),
    );
}

/// Every target name of the source tree that is free, as a symlink to the canary or to the
/// outside directory. Never removed: the attacker cannot remove only a link without racing the
/// receiver's own rename (and removing a placed file is always in their power anyway).
fn plant_targets(dest: PathBuf, outside: PathBuf, names: Vec<String>) -> Racer {
    Racer::start(move || {
        let mut planted = false;
        for (i, name) in names.iter().enumerate() {
            let to = if i % 2 == 0 {
                outside.join("canary")
            } else {
                outside.clone()
            };
            planted |= symlink(&to, dest.join("share").join(name)).is_ok();
        }
        planted
    })
}

#[test]
fn a_final_name_planted_as_a_symlink_is_never_written_through() {
    let src = tempfile::tempdir().unwrap();
    let names = files(&source(src.path()));
    race(
        |round| round % 2 == 1,
        |_, _| {},
        move |dest, outside| plant_targets(dest, outside, names.clone()),
    );
}
