//! Protocol edges through the in-memory pair (`common/pair.rs`): frames dropped, duplicated,
//! reordered or corrupted between the two ends, a control stream cut mid-transfer, and an abort
//! from either side. No sockets, no child processes, no sleeps.
//!
//! With one lane and one file of `CHUNKS` chunks, the control stream carries, to the receiver:
//! 0 `Offer`, 1 `Manifest`, 2 `ChunkHashes`, 3 `FileResponse`, then chunk `i` as frame `4 + i`;
//! to the sender: 0 `Accept`, 1 `Plan`, 2 `FileRequest` (or `Want`), 3 `Complete`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    clippy::panic
)]

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::pair::{Fault, Outcome, Pair, Script, Way};
use common::{Setup, hash_file, leftovers, random_file};
use tether_transfer::{AbortCode, CHUNK_SIZE, PeerError, TransferError, TransferReport};

const CHUNK: u64 = CHUNK_SIZE as u64;
const CHUNKS: u64 = 8;
const SIZE: u64 = CHUNKS * CHUNK - 1000;

/// The control frame (to the receiver) that carries chunk `index`.
fn chunk_frame(index: u64) -> usize {
    4 + usize::try_from(index).unwrap()
}

/// A source file of `SIZE` bytes and an empty destination.
fn files() -> (tempfile::TempDir, PathBuf, tempfile::TempDir) {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f.bin");
    random_file(&file, SIZE, 11);
    (src, file, tempfile::tempdir().unwrap())
}

/// One lane, short timers: a stall is found within a fraction of a second.
fn setup() -> Setup {
    Setup {
        stall_ms: Some(300),
        progress_ms: Some(20),
        checkpoint_ms: Some(20),
        ..Setup::default()
    }
}

fn ok(result: &Result<TransferReport, TransferError>) -> &TransferReport {
    result.as_ref().unwrap_or_else(|e| panic!("{e:?}"))
}

/// Both sides done, the target identical to the source, every byte accounted once.
fn assert_complete(outcome: &Outcome, source: &Path, dest: &Path) {
    let (sent, received) = (ok(&outcome.sent), ok(&outcome.received));
    assert_eq!(hash_file(&dest.join("f.bin")), hash_file(source));
    assert!(leftovers(dest).is_empty(), "{:?}", leftovers(dest));
    for report in [sent, received] {
        assert_eq!(
            report.bytes_resumed + report.bytes_transferred,
            SIZE,
            "{report:?}"
        );
    }
}

fn assert_not_placed(dest: &Path) {
    assert!(!dest.join("f.bin").exists(), "a file was put in place");
}

#[tokio::test]
async fn a_clean_run_passes_every_chunk_once() {
    let (_src, file, dest) = files();
    let outcome = Pair::new(setup()).run(&file, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    assert_eq!(outcome.data_frames(), CHUNKS as usize);
    assert_eq!(
        outcome.messages(Way::ToSender),
        ["Accept", "Plan", "FileRequest", "Complete"]
    );
    assert_eq!(
        outcome.messages(Way::ToReceiver),
        ["Offer", "Manifest", "ChunkHashes", "FileResponse"]
    );
}

/// A data frame lost on the way: the receiver does not ask for it again within the run; the
/// run stalls (resumable), and the next run asks for that chunk alone.
#[tokio::test]
async fn a_dropped_data_frame_stalls_and_the_resume_fetches_only_it() {
    let (_src, file, dest) = files();
    let script = Script::default().at(0, Way::ToReceiver, chunk_frame(2), Fault::Drop);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    let received = outcome.received.as_ref().unwrap_err();
    let sent = outcome.sent.as_ref().unwrap_err();
    assert!(
        matches!(received, TransferError::Stalled { .. })
            || matches!(
                received,
                TransferError::Peer(PeerError::Aborted {
                    code: AbortCode::Stalled,
                    ..
                })
            ),
        "{received:?}"
    );
    assert!(received.is_resumable() && sent.is_resumable(), "{sent:?}");
    assert_not_placed(dest.path());

    let outcome = Pair::new(setup()).run(&file, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let received = ok(&outcome.received);
    assert_eq!(received.bytes_transferred, CHUNK, "{received:?}");
    assert_eq!(outcome.data_frames(), 1);
    assert!(outcome.messages(Way::ToSender).contains(&"Want".to_owned()));
}

/// A data frame that arrives twice: the second copy was not asked for, and the receiver
/// refuses the run as a protocol breach (not resumable), telling the sender.
#[tokio::test]
async fn a_duplicated_data_frame_is_refused_as_unsolicited() {
    let (_src, file, dest) = files();
    let script = Script::default().at(0, Way::ToReceiver, chunk_frame(1), Fault::Duplicate);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    let received = outcome.received.as_ref().unwrap_err();
    assert!(
        matches!(received, TransferError::Peer(PeerError::Unsolicited { offset, .. }) if *offset == CHUNK),
        "{received:?}"
    );
    assert!(!received.is_resumable());
    let sent = outcome.sent.as_ref().unwrap_err();
    assert!(
        matches!(
            sent,
            TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Protocol,
                ..
            })
        ),
        "{sent:?}"
    );
    assert_not_placed(dest.path());
}

/// Chunks may arrive in any order: two swapped on the lane still make the file.
#[tokio::test]
async fn reordered_data_frames_on_one_lane_still_make_the_file() {
    let (_src, file, dest) = files();
    let script = Script::default()
        .at(0, Way::ToReceiver, chunk_frame(0), Fault::Swap)
        .at(0, Way::ToReceiver, chunk_frame(5), Fault::Swap);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    assert_complete(&outcome, &file, dest.path());
    assert_eq!(outcome.data_frames(), CHUNKS as usize);
}

/// A control message passed twice: a second `Plan` after the first request breaks the
/// protocol, and the sender says so.
#[tokio::test]
async fn a_duplicated_plan_is_a_protocol_breach() {
    let (_src, file, dest) = files();
    let script = Script::default().at(0, Way::ToSender, 1, Fault::Duplicate);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    let sent = outcome.sent.as_ref().unwrap_err();
    assert!(
        matches!(sent, TransferError::Peer(PeerError::Protocol(_))),
        "{sent:?}"
    );
    let received = outcome.received.as_ref().unwrap_err();
    assert!(
        matches!(
            received,
            TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Protocol,
                ..
            })
        ),
        "{received:?}"
    );
    assert_not_placed(dest.path());
}

/// The bytes of chunk `index` of `path`.
fn chunk_bytes(path: &Path, index: u64) -> Vec<u8> {
    let data = fs::read(path).unwrap();
    let start = usize::try_from(index * CHUNK).unwrap();
    let end = usize::try_from(((index + 1) * CHUNK).min(SIZE)).unwrap();
    data[start..end].to_vec()
}

/// The partial file the receiver keeps for `f.bin`.
fn partial(dest: &Path) -> PathBuf {
    dest.join(".f.bin.tether-partial")
}

/// A chunk whose bytes were changed on the way fails verification: the run ends (the peer's
/// fault, not resumable), the bad bytes are never written, and a resume makes the right file.
#[tokio::test]
async fn a_corrupted_data_frame_is_refused_and_never_written() {
    let (_src, file, dest) = files();
    let script = Script::default().at(0, Way::ToReceiver, chunk_frame(2), Fault::Corrupt);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    let received = outcome.received.as_ref().unwrap_err();
    assert!(
        matches!(
            received,
            TransferError::Peer(PeerError::ChunkMismatch { index: 2, .. })
        ),
        "{received:?}"
    );
    assert!(!received.is_resumable());
    assert_not_placed(dest.path());
    let mut bad = chunk_bytes(&file, 2);
    *bad.last_mut().unwrap() ^= 1;
    if partial(dest.path()).exists() {
        assert_ne!(
            chunk_bytes(&partial(dest.path()), 2),
            bad,
            "corrupt bytes written"
        );
    }

    let outcome = Pair::new(setup()).run(&file, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
}

/// The same with sealed frames: a flipped byte fails authentication.
#[tokio::test]
async fn a_corrupted_sealed_frame_fails_authentication() {
    let (_src, file, dest) = files();
    let setup = Setup {
        key_seed: Some(5),
        ..setup()
    };
    let script = Script::default().at(0, Way::ToReceiver, chunk_frame(3), Fault::Corrupt);
    let outcome = Pair::new(setup.clone())
        .script(script)
        .run(&file, dest.path())
        .await;
    let received = outcome.received.as_ref().unwrap_err();
    assert!(
        matches!(received, TransferError::Peer(PeerError::Seal(_))),
        "{received:?}"
    );
    assert_not_placed(dest.path());
    let outcome = Pair::new(setup).run(&file, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
}

/// The control stream cut after three chunks: both sides report a lost link (resumable); the
/// next run completes with the right bytes, counting each byte once as resumed or transferred.
#[tokio::test]
async fn a_cut_control_stream_resumes_to_the_right_bytes() {
    let (_src, file, dest) = files();
    let script = Script::default().at(0, Way::ToReceiver, chunk_frame(3), Fault::Cut);
    let outcome = Pair::new(setup())
        .script(script)
        .run(&file, dest.path())
        .await;
    for result in [&outcome.sent, &outcome.received] {
        let error = result.as_ref().unwrap_err();
        assert!(matches!(error, TransferError::Link(_)), "{error:?}");
        assert!(error.is_resumable());
    }
    assert_eq!(outcome.data_frames(), 3);
    assert_not_placed(dest.path());

    let outcome = Pair::new(setup()).run(&file, dest.path()).await;
    assert_complete(&outcome, &file, dest.path());
    let received = ok(&outcome.received);
    assert_eq!(received.bytes_resumed % CHUNK, 0, "{received:?}");
    assert!(received.bytes_resumed <= 3 * CHUNK, "{received:?}");
    assert_eq!(
        outcome.data_frames() as u64,
        CHUNKS - received.bytes_resumed / CHUNK
    );
}

/// The sender cancels mid-transfer: it reports `Cancelled`, the receiver the sender's reason.
/// (A cancel that comes as the last chunks arrive may still see a file placed: a batch being put
/// in place is finished, and the run then reports the cancel. Holding a chunk back keeps that
/// race out of these two tests.)
#[tokio::test]
async fn the_senders_cancel_reaches_the_receiver() {
    let (_src, file, dest) = files();
    let pair = Pair::new(setup());
    let cancel = pair.sender_cancel.clone();
    // Chunk 2 is held back as the cancel fires: the file cannot complete, however late the
    // cancel is seen.
    let script = Script::default().at(
        0,
        Way::ToReceiver,
        chunk_frame(2),
        Fault::DropThen(Arc::new(move || cancel.cancel())),
    );
    let outcome = pair.script(script).run(&file, dest.path()).await;
    let sent = outcome.sent.as_ref().unwrap_err();
    assert!(matches!(sent, TransferError::Cancelled), "{sent:?}");
    let received = outcome.received.as_ref().unwrap_err();
    assert!(
        matches!(
            received,
            TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Cancelled,
                ..
            })
        ),
        "{received:?}"
    );
    assert!(received.is_resumable());
    assert_not_placed(dest.path());
}

/// The receiver cancels mid-transfer: it reports `Cancelled`, the sender the receiver's reason.
#[tokio::test]
async fn the_receivers_cancel_reaches_the_sender() {
    let (_src, file, dest) = files();
    let pair = Pair::new(setup());
    let cancel = pair.receiver_cancel.clone();
    // Chunk 2 is held back as the cancel fires: the file cannot complete, however late the
    // cancel is seen.
    let script = Script::default().at(
        0,
        Way::ToReceiver,
        chunk_frame(2),
        Fault::DropThen(Arc::new(move || cancel.cancel())),
    );
    let outcome = pair.script(script).run(&file, dest.path()).await;
    let received = outcome.received.as_ref().unwrap_err();
    assert!(matches!(received, TransferError::Cancelled), "{received:?}");
    let sent = outcome.sent.as_ref().unwrap_err();
    assert!(
        matches!(
            sent,
            TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Cancelled,
                ..
            })
        ),
        "{sent:?}"
    );
    assert!(sent.is_resumable());
    assert_not_placed(dest.path());
}
