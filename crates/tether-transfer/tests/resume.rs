//! Resume across real process deaths: the receiver SIGKILLed twenty times in a row, the sender
//! killed and restarted, a byte flipped in a kept chunk, and a source that changes mid-transfer.
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
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    ChildProc, Setup, hash_file, leftovers, listen, random_file, send_to, serve_one, start_receiver,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_transfer::{AbortCode, CHUNK_SIZE, LocalError, PeerError, Receiver, TransferError};

const CHUNK: u64 = CHUNK_SIZE as u64;

fn is_child() -> bool {
    std::env::var(common::ROLE).is_ok()
}

#[test]
fn receiver_sigkilled_twenty_times_then_completes() {
    if is_child() {
        return;
    }
    const SIZE: u64 = 64 << 20;
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("movie.bin");
    random_file(&file, SIZE, 11);
    let target = dest.path().join("movie.bin");
    let receiver_setup = Setup {
        checkpoint_ms: Some(40),
        progress_ms: Some(5),
        ..Setup::default()
    };
    // The sender is throttled so that twenty kills land before the end.
    let sender_setup = Setup {
        rate: Some(16 << 20),
        ..Setup::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let mut kills = 0;
    let mut early_kills = 0;
    let mut furthest = 0u64;
    while kills < 20 {
        let (child, port) = start_receiver(dest.path(), &receiver_setup);
        let sending = runtime.spawn({
            let file = file.clone();
            let setup = sender_setup.clone();
            async move { send_to(port, &file, &setup).await }
        });
        if rng.next_u32() % 5 == 0 {
            // Early: during the manifest, planning or verification of kept chunks.
            std::thread::sleep(Duration::from_millis(u64::from(rng.next_u32() % 30)));
            early_kills += 1;
        } else {
            // Mid-data: a random distance past where this run started.
            let first: u64 = match child.wait_for("progress", Duration::from_secs(30)) {
                Some(line) => line.parse().unwrap(),
                None => panic!("no progress in round {kills}"),
            };
            let kill_at = first + CHUNK * 2 + u64::from(rng.next_u32()) % (1 << 20);
            loop {
                match child.wait_for("progress", Duration::from_secs(30)) {
                    Some(line) if line.parse::<u64>().unwrap() >= kill_at => break,
                    Some(_) => {}
                    None => panic!("receiver stalled in round {kills}"),
                }
            }
            furthest = furthest.max(kill_at);
        }
        child.kill();
        kills += 1;
        let sent = runtime.block_on(sending).unwrap();
        assert!(
            sent.is_err(),
            "round {kills}: transfer finished before the kill"
        );
        assert!(
            sent.as_ref().unwrap_err().is_resumable(),
            "round {kills}: {sent:?}"
        );
        // The target is never a partial file.
        assert!(
            !target.exists(),
            "round {kills}: target exists before completion"
        );
    }
    let (child, port) = start_receiver(dest.path(), &receiver_setup);
    let sent = runtime
        .block_on(send_to(port, &file, &Setup::default()))
        .unwrap();
    let report = child.outcome(Duration::from_secs(120)).unwrap();
    child.wait();
    assert_eq!(hash_file(&target), hash_file(&file));
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
    assert_eq!(report.bytes_resumed + report.bytes_transferred, SIZE);
    assert!(
        report.bytes_resumed > 0,
        "nothing survived twenty kills: {report:?}"
    );
    assert_eq!(sent.bytes_resumed, report.bytes_resumed);
    eprintln!(
        "20 kills ({early_kills} early), furthest kill at {} MiB; last run resumed {} MiB, fetched {} MiB, {} kept chunks failed",
        furthest >> 20,
        report.bytes_resumed >> 20,
        report.bytes_transferred >> 20,
        report.chunks_refetched
    );
}

/// Chunks listed in the resume record beside `target`'s partial file.
fn recorded_chunks(dest: &Path, name: &str) -> u64 {
    let record = fs::read(dest.join(format!(".{name}.tether-resume"))).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&record).unwrap();
    let have = hex::decode(json["have"].as_str().unwrap()).unwrap();
    have.iter().map(|b| u64::from(b.count_ones())).sum()
}

#[test]
fn flipped_byte_in_a_kept_chunk_is_fetched_again_alone() {
    if is_child() {
        return;
    }
    const SIZE: u64 = 8 << 20;
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("data.bin");
    random_file(&file, SIZE, 12);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    // First run: the receiver cancels itself half way (a clean stop saves the record).
    let setup = Setup {
        cancel_at: Some(SIZE / 2),
        ..Setup::default()
    };
    let (child, port) = start_receiver(dest.path(), &setup);
    let sent = runtime.block_on(send_to(
        port,
        &file,
        &Setup {
            rate: Some(16 << 20),
            ..Setup::default()
        },
    ));
    assert!(
        matches!(
            &sent,
            Err(TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Cancelled,
                ..
            }))
        ),
        "{sent:?}"
    );
    let outcome = child.outcome(Duration::from_secs(60));
    assert!(
        outcome.as_ref().is_err_and(|e| e.contains("cancelled")),
        "{outcome:?}"
    );
    child.wait();
    let kept = recorded_chunks(dest.path(), "data.bin");
    assert!(kept >= 16, "kept {kept} chunks");

    // Flip one byte inside chunk 3, which was kept.
    let partial = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dest.path().join(".data.bin.tether-partial"))
        .unwrap();
    let mut byte = [0u8];
    partial.read_exact_at(&mut byte, 3 * CHUNK + 1234).unwrap();
    partial
        .write_all_at(&[byte[0] ^ 0x40], 3 * CHUNK + 1234)
        .unwrap();
    drop(partial);

    let (child, port) = start_receiver(dest.path(), &Setup::default());
    let sent = runtime
        .block_on(send_to(port, &file, &Setup::default()))
        .unwrap();
    let report = child.outcome(Duration::from_secs(60)).unwrap();
    child.wait();
    assert_eq!(hash_file(&dest.path().join("data.bin")), hash_file(&file));
    assert_eq!(report.chunks_refetched, 1);
    assert_eq!(report.bytes_resumed, (kept - 1) * CHUNK);
    assert_eq!(report.bytes_transferred, SIZE - (kept - 1) * CHUNK);
    assert_eq!(sent.bytes_transferred, report.bytes_transferred);
    assert_eq!(
        report.bytes_verified,
        SIZE + CHUNK,
        "kept chunks re-verified, one twice"
    );
}

#[test]
fn source_changed_mid_transfer_aborts_without_finalising() {
    if is_child() {
        return;
    }
    const SIZE: u64 = 16 << 20;
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("draft.bin");
    random_file(&file, SIZE, 13);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (child, port) = start_receiver(dest.path(), &Setup::default());
    let sending = runtime.spawn({
        let file = file.clone();
        async move {
            send_to(
                port,
                &file,
                &Setup {
                    rate: Some(8 << 20),
                    ..Setup::default()
                },
            )
            .await
        }
    });
    loop {
        let done: u64 = child
            .wait_for("progress", Duration::from_secs(30))
            .unwrap()
            .parse()
            .unwrap();
        if done >= 2 << 20 {
            break;
        }
    }
    // An editor saves the file in place.
    let handle = fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.write_all_at(b"edited", SIZE / 2).unwrap();
    handle
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    drop(handle);
    let sent = runtime.block_on(sending).unwrap();
    assert!(
        matches!(
            &sent,
            Err(TransferError::Local(LocalError::SourceChanged(_)))
        ),
        "{sent:?}"
    );
    let outcome = child.outcome(Duration::from_secs(30));
    assert!(
        outcome.as_ref().is_err_and(|e| e.contains("SourceChanged")),
        "{outcome:?}"
    );
    child.wait();
    assert!(!dest.path().join("draft.bin").exists());

    // The next run sees a new source: the old partial data is discarded, the new file arrives.
    let (child, port) = start_receiver(dest.path(), &Setup::default());
    runtime
        .block_on(send_to(port, &file, &Setup::default()))
        .unwrap();
    let report = child.outcome(Duration::from_secs(60)).unwrap();
    child.wait();
    assert_eq!(report.bytes_resumed, 0);
    assert_eq!(hash_file(&dest.path().join("draft.bin")), hash_file(&file));
    assert!(leftovers(dest.path()).is_empty());
}

#[test]
fn sender_killed_and_restarted_resumes() {
    if is_child() {
        return;
    }
    const SIZE: u64 = 48 << 20;
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let file = src.path().join("photo-library.bin");
    random_file(&file, SIZE, 14);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let setup = Setup {
        checkpoint_ms: Some(40),
        ..Setup::default()
    };
    let mut kept_progress = 0u64;
    for round in 0..3 {
        let (listener, port) = runtime.block_on(listen());
        let receiver = Receiver::new(setup.receiver_config(dest.path()));
        let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut serving = runtime.spawn(serve_one(listener, receiver, setup.clone(), {
            let progress = progress.clone();
            Arc::new(move |done| progress.store(done, std::sync::atomic::Ordering::Relaxed))
        }));
        let sender = ChildProc::start(
            "child",
            "send",
            &[
                ("TETHER_T_SRC", file.display().to_string()),
                ("TETHER_T_PORT", port.to_string()),
            ],
            &Setup {
                rate: Some(32 << 20),
                ..Setup::default()
            },
        );
        let start = Instant::now();
        let goal = kept_progress + (3 << 20);
        while progress.load(std::sync::atomic::Ordering::Relaxed) < goal {
            assert!(
                start.elapsed() < Duration::from_secs(30) && !serving.is_finished(),
                "round {round} stalled at {} of {goal}: {:?}",
                progress.load(std::sync::atomic::Ordering::Relaxed),
                serving
                    .is_finished()
                    .then(|| runtime.block_on(&mut serving))
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(60)); // let a checkpoint happen
        sender.kill();
        let received = runtime.block_on(serving).unwrap();
        assert!(
            matches!(&received, Err(e) if e.is_resumable()),
            "{received:?}"
        );
        kept_progress = progress.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!dest.path().join("photo-library.bin").exists());
    }
    let (listener, port) = runtime.block_on(listen());
    let receiver = Receiver::new(setup.receiver_config(dest.path()));
    let serving = runtime.spawn(serve_one(
        listener,
        receiver,
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sender = ChildProc::start(
        "child",
        "send",
        &[
            ("TETHER_T_SRC", file.display().to_string()),
            ("TETHER_T_PORT", port.to_string()),
        ],
        &Setup::default(),
    );
    let report = runtime.block_on(serving).unwrap().unwrap();
    sender.outcome(Duration::from_secs(60)).unwrap();
    sender.wait();
    assert_eq!(
        hash_file(&dest.path().join("photo-library.bin")),
        hash_file(&file)
    );
    assert!(report.bytes_resumed >= 8 << 20, "{report:?}");
    assert_eq!(report.bytes_resumed + report.bytes_transferred, SIZE);
}

/// Names of the files directly in `dir` that are not the engine's own.
fn placed_files(dir: &Path) -> Vec<String> {
    let Ok(listing) = fs::read_dir(dir) else {
        return Vec::new();
    };
    listing
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.contains(".tether-"))
        .collect()
}

#[test]
fn a_thousand_small_files_cut_midway_are_each_placed_once_and_whole() {
    if is_child() {
        return;
    }
    const FILES: u64 = 1000;
    const SIZE: u64 = 4096;
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let share = src.path().join("small");
    fs::create_dir(&share).unwrap();
    for i in 0..FILES {
        random_file(&share.join(format!("f{i:04}.bin")), SIZE, 5000 + i);
    }
    let receiver_setup = Setup {
        checkpoint_ms: Some(40),
        progress_ms: Some(5),
        ..Setup::default()
    };
    // Throttled so that the cut lands with part of the files in place.
    let sender_setup = Setup {
        rate: Some(1 << 20),
        ..Setup::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (child, port) = start_receiver(dest.path(), &receiver_setup);
    let sending = runtime.spawn({
        let share = share.clone();
        async move { send_to(port, &share, &sender_setup).await }
    });
    let received = dest.path().join("small");
    let start = Instant::now();
    while placed_files(&received).len() < 100 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} files placed",
            placed_files(&received).len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill();
    let sent = runtime.block_on(sending).unwrap();
    assert!(
        matches!(&sent, Err(e) if e.is_resumable()),
        "the cut did not land mid-transfer: {sent:?}"
    );
    // Every file at a target path is whole; none of a one-chunk file's resume records exist.
    let before = placed_files(&received);
    assert!(
        before.len() > 50 && (before.len() as u64) < FILES,
        "{}",
        before.len()
    );
    for name in &before {
        assert_eq!(
            hash_file(&received.join(name)),
            hash_file(&share.join(name)),
            "{name}"
        );
    }
    let records = fs::read_dir(&received)
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().contains(".tether-resume")
        })
        .count();
    assert_eq!(records, 0, "one-chunk files keep no resume record");

    // Resume: only the files not in place cross the link, each placed once.
    let (child, port) = start_receiver(dest.path(), &receiver_setup);
    let sent = runtime
        .block_on(send_to(port, &share, &Setup::default()))
        .unwrap();
    let report = child.outcome(Duration::from_secs(120)).unwrap();
    child.wait();
    let kept = before.len() as u64 * SIZE;
    assert_eq!(report.bytes_resumed, kept, "{report:?}");
    assert_eq!(report.bytes_transferred, FILES * SIZE - kept, "{report:?}");
    assert_eq!(sent.bytes_transferred, FILES * SIZE - kept, "{sent:?}");
    assert_eq!(placed_files(&received).len() as u64, FILES);
    for i in 0..FILES {
        let name = format!("f{i:04}.bin");
        assert_eq!(
            hash_file(&received.join(&name)),
            hash_file(&share.join(&name)),
            "{name}"
        );
    }
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
}
