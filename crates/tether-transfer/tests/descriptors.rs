//! Open-file bounds: a directory of many multi-chunk files received, and sent, by a child
//! process whose soft `RLIMIT_NOFILE` is far below the number of files. The engine must keep only
//! a bounded number of files open, whatever the directory's size.
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

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{
    ChildProc, NOFILE_VAR, Setup, leftovers, listen, random_file, send_to, serve_one, tree_hashes,
};
use tether_transfer::{CHUNK_SIZE, Receiver};

/// The soft descriptor limit the child runs under.
const LOW_LIMIT: u64 = 128;
/// A limit below what even the bounded receiver needs (its 64 cached partial files).
const TOO_LOW_LIMIT: u64 = 40;
/// Files in the directory: over twice the limit.
const FILES: u64 = 300;
/// Each file is two chunks (256 KiB + 44 KiB).
const FILE_SIZE: u64 = 300 << 10;

/// Starts a receiving child for `dest` under the soft descriptor limit `limit`; its port.
fn start_receiver(dest: &Path, limit: Option<u64>, setup: &Setup) -> (ChildProc, u16) {
    let mut vars = vec![("TETHER_T_DEST", dest.display().to_string())];
    if let Some(limit) = limit {
        vars.push((NOFILE_VAR, limit.to_string()));
    }
    let child = ChildProc::start("child", "receive", &vars, setup);
    let port = child
        .wait_for("port", Duration::from_secs(60))
        .expect("child receiver did not start")
        .parse()
        .unwrap();
    (child, port)
}

fn is_child() -> bool {
    std::env::var(common::ROLE).is_ok()
}

/// `FILES` files of `FILE_SIZE` bytes in `dir/tree`.
fn many_files(dir: &Path) -> std::path::PathBuf {
    assert!(FILE_SIZE > CHUNK_SIZE as u64 && FILE_SIZE <= 2 * CHUNK_SIZE as u64);
    let tree = dir.join("tree");
    std::fs::create_dir(&tree).unwrap();
    for i in 0..FILES {
        random_file(&tree.join(format!("f{i:03}.bin")), FILE_SIZE, 500 + i);
    }
    tree
}

#[test]
fn receiver_under_a_low_descriptor_limit_receives_hundreds_of_two_chunk_files() {
    if is_child() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let tree = many_files(src.path());
    let setup = Setup {
        lanes: 4,
        ..Setup::default()
    };
    let (child, port) = start_receiver(dest.path(), Some(LOW_LIMIT), &setup);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sent = runtime.block_on(send_to(port, &tree, &setup));
    let received = child.outcome(Duration::from_secs(120));
    child.wait();
    let report = received.unwrap_or_else(|e| panic!("receiver failed: {e}; sender: {sent:?}"));
    sent.unwrap();
    assert_eq!(report.files, FILES);
    assert_eq!(tree_hashes(&tree), tree_hashes(&dest.path().join("tree")));
    assert!(
        leftovers(dest.path()).is_empty(),
        "{:?}",
        leftovers(dest.path())
    );
}

#[test]
fn sender_under_a_low_descriptor_limit_sends_hundreds_of_two_chunk_files() {
    if is_child() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let tree = many_files(src.path());
    let setup = Setup {
        lanes: 4,
        ..Setup::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
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
            ("TETHER_T_SRC", tree.display().to_string()),
            ("TETHER_T_PORT", port.to_string()),
            (NOFILE_VAR, LOW_LIMIT.to_string()),
        ],
        &setup,
    );
    let sent = sender.outcome(Duration::from_secs(120));
    sender.wait();
    let received = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), serving)
            .await
            .expect("receiver hung")
            .unwrap()
    });
    let report = sent.unwrap_or_else(|e| panic!("sender failed: {e}; receiver: {received:?}"));
    received.unwrap();
    assert_eq!(report.files, FILES);
    assert_eq!(tree_hashes(&tree), tree_hashes(&dest.path().join("tree")));
    assert!(leftovers(dest.path()).is_empty());
}

#[test]
fn running_out_of_descriptors_is_a_typed_error_that_places_nothing_half_and_resumes() {
    if is_child() {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let dest = tempfile::tempdir().unwrap();
    let tree = many_files(src.path());
    let setup = Setup {
        lanes: 4,
        ..Setup::default()
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (child, port) = start_receiver(dest.path(), Some(TOO_LOW_LIMIT), &setup);
    let sent = runtime.block_on(send_to(port, &tree, &setup));
    // The child reports an error (a panic would end it without an outcome).
    let received = child.outcome(Duration::from_secs(120));
    child.wait();
    let error = received.expect_err("the receiver cannot have finished under this limit");
    assert!(error.contains("TooManyOpenFiles"), "{error}");
    assert!(sent.is_err());
    // Whatever is at a target is the whole file.
    let sources = tree_hashes(&tree);
    let placed = tree_hashes(&dest.path().join("tree"));
    for (name, hash) in &placed {
        if !name.contains(".tether-") {
            assert_eq!(sources.get(name), Some(hash), "{name} placed but not whole");
        }
    }
    eprintln!(
        "under {TOO_LOW_LIMIT} descriptors: {} of {FILES} files placed before: {error}",
        placed.keys().filter(|n| !n.contains(".tether-")).count()
    );

    // With descriptors to spare, the same transfer resumes and completes.
    let (child, port) = start_receiver(dest.path(), None, &setup);
    let sent = runtime.block_on(send_to(port, &tree, &setup));
    let report = child.outcome(Duration::from_secs(120)).unwrap();
    child.wait();
    sent.unwrap();
    assert_eq!(report.files, FILES);
    assert_eq!(sources, tree_hashes(&dest.path().join("tree")));
    assert!(leftovers(dest.path()).is_empty());
}
