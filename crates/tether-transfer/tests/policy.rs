//! What a receiver refuses of a paired peer before any data: more than two offers in flight
//! from one device, a manifest that does not arrive in time, a plain offer when it requires
//! encryption, names that collide on case-insensitive or normalising file systems; and how
//! long the peer's free text may be once decoded. Each side is either the real engine or a
//! script writing raw frames, over in-memory streams.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs,
    clippy::panic,
    clippy::needless_pass_by_value
)]

use crate::common;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{node_id, transfer_keys};
use serde_json::{Value, json};
use tether_identity::NodeId;
use tether_transfer::{
    AbortCode, AcceptAll, CHUNK_SIZE, Consent, Decision, Hello, ManifestError, OfferSummary,
    OutgoingTransfer, PeerError, Receiver, ReceiverConfig, RunContext, SendOptions, TransferError,
    TransferReport,
};
use tether_wire::{Frame, FrameKind, read_frame, write_frame};
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

/// The transfer protocol version the scripted senders speak.
const VERSION: u64 = 3;

fn control(value: &Value) -> Frame {
    Frame::new(FrameKind::Control, serde_json::to_vec(value).unwrap()).unwrap()
}

fn offer(id: u128, entries: u64, encrypted: bool) -> Frame {
    let mut body = json!({
        "version": VERSION, "transfer_id": Uuid::from_u128(id), "entries": entries,
        "total_bytes": 0, "chunk_size": CHUNK_SIZE, "compression": "none",
        "encrypted": encrypted, "lanes": 1
    });
    if encrypted {
        body["ciphers"] = json!([1]);
    }
    control(&json!({"type": "Offer", "body": body}))
}

fn dir_entry(id: u128, path: &str) -> Value {
    json!({"id": Uuid::from_u128(id), "path": path, "kind": "dir", "size": 0, "mtime_ns": 0})
}

fn manifest(entries: Vec<Value>) -> Frame {
    control(&json!({"type": "Manifest", "body": {"entries": entries}}))
}

/// Runs `receiver` on one stream from `peer`; the other end is returned for the script.
fn receive_one(
    receiver: &Receiver,
    peer: NodeId,
) -> (
    DuplexStream,
    tokio::task::JoinHandle<Result<TransferReport, TransferError>>,
) {
    let (script, ours) = tokio::io::duplex(1 << 20);
    let receiver = receiver.clone();
    let run = tokio::spawn(async move {
        match tether_transfer::read_hello(ours).await? {
            Hello::Offer(offer) => {
                let mut ctx = RunContext::new();
                if offer.encrypted() {
                    ctx = ctx.keys(transfer_keys(5, false, offer.transfer_id()));
                }
                receiver.receive(offer, peer, ctx).await
            }
            _ => panic!("not an offer"),
        }
    });
    (script, run)
}

/// The control messages the script reads back until the receiver hangs up (or 5 s pass).
async fn replies(stream: &mut DuplexStream) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Ok(Some(frame))) =
        tokio::time::timeout(Duration::from_secs(5), read_frame(stream)).await
    {
        if frame.kind() == FrameKind::Control {
            out.push(serde_json::from_slice(frame.payload()).unwrap());
        }
    }
    out
}

fn decline_code(replies: &[Value]) -> Option<String> {
    replies
        .iter()
        .find(|r| r["type"] == "Decline")
        .map(|r| r["body"]["code"].as_str().unwrap_or_default().to_owned())
}

/// Consent that says when it is asked, then waits until the test lets it answer (accepting).
struct Gate(Arc<Semaphore>, mpsc::UnboundedSender<()>);

impl Consent for Gate {
    fn decide<'a>(
        &'a self,
        _: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            let _ = self.1.send(());
            let _permit = self.0.acquire().await;
            Decision::Accept
        })
    }
}

#[tokio::test]
async fn a_third_offer_from_one_device_is_declined_as_busy() {
    let dest = tempfile::tempdir().unwrap();
    let gate = Arc::new(Semaphore::new(0));
    let (asked_tx, mut asked) = mpsc::unbounded_channel();
    let receiver = Receiver::new(
        ReceiverConfig::new(dest.path())
            .consent(Gate(gate.clone(), asked_tx))
            .check_free_space(false),
    );
    let peer = node_id(1);
    // Two offers wait for consent.
    let mut waiting = Vec::new();
    for n in 0..2u128 {
        let (mut script, run) = receive_one(&receiver, peer);
        write_frame(&mut script, &offer(n + 1, 1, false))
            .await
            .unwrap();
        write_frame(&mut script, &manifest(vec![dir_entry(1, &format!("d{n}"))]))
            .await
            .unwrap();
        waiting.push((script, run));
    }
    // Both are counted once consent is asked about them.
    for _ in 0..2 {
        asked.recv().await.unwrap();
    }
    // The third from the same device is declined at once, with its own code.
    let (mut script, run) = receive_one(&receiver, peer);
    write_frame(&mut script, &offer(3, 1, false)).await.unwrap();
    write_frame(&mut script, &manifest(vec![dir_entry(1, "d2")]))
        .await
        .unwrap();
    let answer = replies(&mut script).await;
    assert_eq!(
        decline_code(&answer).as_deref(),
        Some("busy"),
        "third offer: {answer:?}"
    );
    drop(script);
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the third offer was not answered")
        .unwrap();
    assert!(
        matches!(
            result,
            Err(TransferError::Peer(PeerError::TooManyOffers { .. }))
        ),
        "{result:?}"
    );
    // Another device is not held up by this one's offers.
    let (mut other, other_run) = receive_one(&receiver, node_id(2));
    write_frame(&mut other, &offer(4, 1, false)).await.unwrap();
    write_frame(&mut other, &manifest(vec![dir_entry(1, "e")]))
        .await
        .unwrap();
    // Consent answers: the two waiting offers and the other device's are accepted.
    gate.add_permits(3);
    for (mut script, run) in waiting.into_iter().chain([(other, other_run)]) {
        let answer = replies(&mut script).await;
        assert!(answer.iter().any(|r| r["type"] == "Accept"), "{answer:?}");
        drop(script);
        let _ = run.await.unwrap();
    }
    // Once answered, the device may offer again.
    let (mut script, run) = receive_one(&receiver, peer);
    write_frame(&mut script, &offer(5, 1, false)).await.unwrap();
    write_frame(&mut script, &manifest(vec![dir_entry(1, "d5")]))
        .await
        .unwrap();
    gate.add_permits(1);
    let answer = replies(&mut script).await;
    assert!(answer.iter().any(|r| r["type"] == "Accept"), "{answer:?}");
    drop(script);
    let _ = run.await.unwrap();
}

#[tokio::test]
async fn a_manifest_that_does_not_arrive_in_time_is_refused() {
    let dest = tempfile::tempdir().unwrap();
    let receiver = Receiver::new(
        ReceiverConfig::new(dest.path())
            .consent(AcceptAll)
            .manifest_timeout(Duration::from_millis(300)),
    );
    let (mut script, run) = receive_one(&receiver, node_id(1));
    let started = Instant::now();
    write_frame(&mut script, &offer(1, 2, false)).await.unwrap();
    write_frame(&mut script, &manifest(vec![dir_entry(1, "a")]))
        .await
        .unwrap();
    // The second entry never comes; the stream stays open.
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the receiver waited past its manifest deadline")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(
            result,
            Err(TransferError::Peer(PeerError::Manifest(
                ManifestError::TooSlow { .. }
            )))
        ),
        "{result:?}"
    );
    let answer = replies(&mut script).await;
    assert_eq!(
        decline_code(&answer).as_deref(),
        Some("refused"),
        "{answer:?}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}

async fn send_file(
    receiver: &Receiver,
    source: &std::path::Path,
    options: SendOptions,
) -> (
    Result<TransferReport, TransferError>,
    Result<TransferReport, TransferError>,
) {
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, source.to_path_buf())].into();
    let encrypted = options.encrypt;
    let outgoing = OutgoingTransfer::prepare(&resolver, &[id], options)
        .await
        .unwrap();
    let mut ctx = RunContext::new();
    if encrypted {
        ctx = ctx.keys(transfer_keys(5, true, outgoing.transfer_id()));
    }
    let (sender_end, receiver_end) = tokio::io::duplex(1 << 20);
    let receiving = {
        let receiver = receiver.clone();
        tokio::spawn(async move {
            match tether_transfer::read_hello(receiver_end).await? {
                Hello::Offer(offer) => {
                    let mut ctx = RunContext::new();
                    if offer.encrypted() {
                        ctx = ctx.keys(transfer_keys(5, false, offer.transfer_id()));
                    }
                    receiver.receive(offer, node_id(1), ctx).await
                }
                _ => panic!("not an offer"),
            }
        })
    };
    let sent = outgoing.send(sender_end, Vec::new(), ctx).await;
    (sent, receiving.await.unwrap())
}

#[tokio::test]
async fn a_receiver_that_requires_encryption_declines_a_plain_offer() {
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("plain.txt");
    std::fs::write(&file, b"not sealed").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let receiver = Receiver::new(
        ReceiverConfig::new(dest.path())
            .consent(AcceptAll)
            .require_encryption(true),
    );
    let (sent, received) = send_file(&receiver, &file, SendOptions::default().encrypt(false)).await;
    assert!(
        matches!(
            &sent,
            Err(TransferError::Peer(PeerError::Declined {
                code: AbortCode::EncryptionRequired,
                ..
            }))
        ),
        "sender: {sent:?}"
    );
    assert!(
        matches!(
            received,
            Err(TransferError::Peer(PeerError::EncryptionRequired))
        ),
        "receiver: {received:?}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    // The same file encrypted is taken.
    let (sent, received) = send_file(&receiver, &file, SendOptions::default()).await;
    sent.unwrap();
    received.unwrap();
    assert_eq!(
        std::fs::read(dest.path().join("plain.txt")).unwrap(),
        b"not sealed"
    );
    // Without the requirement a plain offer is taken.
    let open = Receiver::new(ReceiverConfig::new(dest.path().join("open")).consent(AcceptAll));
    std::fs::create_dir(dest.path().join("open")).unwrap();
    let (sent, received) = send_file(&open, &file, SendOptions::default().encrypt(false)).await;
    sent.unwrap();
    received.unwrap();
}

/// Offers `paths` (directories) to a fresh receiver; its result and the decline code.
async fn offer_paths(paths: &[&str]) -> (Result<TransferReport, TransferError>, Option<String>) {
    let dest = tempfile::tempdir().unwrap();
    let receiver = Receiver::new(
        ReceiverConfig::new(dest.path())
            .consent(AcceptAll)
            .check_free_space(false),
    );
    let (mut script, run) = receive_one(&receiver, node_id(1));
    write_frame(&mut script, &offer(1, paths.len() as u64, false))
        .await
        .unwrap();
    let entries = paths
        .iter()
        .enumerate()
        .map(|(i, p)| dir_entry(i as u128 + 1, p))
        .collect();
    write_frame(&mut script, &manifest(entries)).await.unwrap();
    let answer = replies(&mut script).await;
    drop(script);
    let result = run.await.unwrap();
    if decline_code(&answer).is_some() {
        assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
    }
    (result, decline_code(&answer))
}

#[tokio::test]
async fn names_equal_after_case_folding_are_refused_naming_both() {
    // Each pair, and the two spellings the refusal must name.
    for (a, b, names) in [
        ("Report.pdf", "report.pdf", ["Report.pdf", "report.pdf"]),
        (
            "photos/Straße",
            "photos/STRASSE",
            ["photos/Straße", "photos/STRASSE"],
        ),
        ("ΣΊΣΥΦΟΣ/x", "σίσυφος/y", ["ΣΊΣΥΦΟΣ", "σίσυφος"]),
    ] {
        let (result, code) = offer_paths(&[a, b]).await;
        assert_eq!(code.as_deref(), Some("refused"), "{a} / {b}: {result:?}");
        let error = result.as_ref().unwrap_err();
        tether_identity::assert_no_repeated_layer(error);
        let message = tether_identity::error_chain(error);
        assert!(
            matches!(
                result,
                Err(TransferError::Peer(PeerError::Manifest(
                    ManifestError::Collision { .. }
                )))
            ),
            "{a} / {b}: {message}"
        );
        for name in names {
            assert!(message.contains(&format!("{name:?}")), "{message}");
        }
    }
    // Names that differ after folding pass.
    let (result, code) = offer_paths(&["a/Report.pdf", "a/Report2.pdf", "b/report.pdf"]).await;
    assert_eq!(code, None, "{result:?}");
    result.unwrap();
}

#[tokio::test]
async fn names_equal_after_unicode_normalisation_are_refused_naming_both() {
    // "café" precomposed (NFC) and decomposed (NFD): one name on macOS.
    let nfc = "caf\u{e9}";
    let nfd = "cafe\u{301}";
    for (a, b) in [
        (nfc, nfd),
        ("x/\u{c5}ngstr\u{f6}m", "x/A\u{30a}ngstro\u{308}m"),
    ] {
        let (result, code) = offer_paths(&[a, b]).await;
        assert_eq!(
            code.as_deref(),
            Some("refused"),
            "{a:?} / {b:?}: {result:?}"
        );
        let error = result.as_ref().unwrap_err();
        tether_identity::assert_no_repeated_layer(error);
        let message = tether_identity::error_chain(error);
        assert!(
            matches!(
                result,
                Err(TransferError::Peer(PeerError::Manifest(
                    ManifestError::Collision { .. }
                )))
            ),
            "{message}"
        );
        assert!(
            message.contains(&format!("{a:?}")) && message.contains(&format!("{b:?}")),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_peers_decline_and_abort_text_is_cut_on_receipt() {
    // Just under the 1 MiB control frame cap, in a whole frame.
    let long = "é".repeat(((1 << 20) - 400) / 2);
    let long = long.as_str();
    // A real sender reading a long Decline.
    let src = tempfile::tempdir().unwrap();
    let file = src.path().join("f");
    std::fs::write(&file, b"x").unwrap();
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, file.clone())].into();
    let outgoing =
        OutgoingTransfer::prepare(&resolver, &[id], SendOptions::default().encrypt(false))
            .await
            .unwrap();
    let (sender_end, mut script) = tokio::io::duplex(4 << 20);
    let sending = tokio::spawn(outgoing.send(sender_end, Vec::new(), RunContext::new()));
    // Offer and one manifest page, then the answer.
    for _ in 0..2 {
        read_frame(&mut script).await.unwrap().unwrap();
    }
    let decline =
        control(&json!({"type": "Decline", "body": {"code": "declined", "message": long}}));
    write_frame(&mut script, &decline).await.unwrap();
    script.flush().await.unwrap();
    let sent = sending.await.unwrap();
    match &sent {
        Err(TransferError::Peer(PeerError::Declined { message, .. })) => {
            assert!(
                message.len() <= 1024,
                "Decline kept {} bytes",
                message.len()
            );
        }
        other => panic!("{other:?}"),
    }
    // A real receiver reading a long Abort.
    let dest = tempfile::tempdir().unwrap();
    let receiver = Receiver::new(ReceiverConfig::new(dest.path()).consent(AcceptAll));
    let (mut script, run) = receive_one(&receiver, node_id(1));
    write_frame(&mut script, &offer(1, 2, false)).await.unwrap();
    let abort = control(&json!({"type": "Abort", "body": {"code": "cancelled", "message": long}}));
    write_frame(&mut script, &abort).await.unwrap();
    match run.await.unwrap() {
        Err(TransferError::Peer(PeerError::Aborted { message, .. })) => {
            assert!(message.len() <= 1024, "Abort kept {} bytes", message.len());
        }
        other => panic!("{other:?}"),
    }
    // A message type that does not exist, with a long name: the error quotes at most a bound.
    let (mut script, run) = receive_one(&receiver, node_id(1));
    write_frame(&mut script, &offer(2, 2, false)).await.unwrap();
    let unknown = control(&json!({"type": long, "body": {}}));
    write_frame(&mut script, &unknown).await.unwrap();
    drop(script);
    let error = run.await.unwrap().unwrap_err();
    assert!(
        error.to_string().len() <= 1200,
        "the error holds {} bytes",
        error.to_string().len()
    );
}
