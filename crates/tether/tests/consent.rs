//! Consent to incoming transfers: by default a receiver takes files only from devices it
//! marked auto-accept; an app's own consent sees the offer (device, count, size, top-level
//! names) and its decline reason reaches the sender; a declined offer leaves the receive
//! directory exactly as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Lab, pair};
use tether::{
    Decision, NetworkError, NetworkingService, TransferConsent, TransferError, TransferOffer,
    TransferOptions,
};

/// A source tree: `outbox/` (a file of several chunks, a small one, an empty one in a
/// subdirectory) and `extra.txt` beside it. Returns the two paths to send.
fn write_source(root: &Path) -> Vec<PathBuf> {
    let outbox = root.join("outbox");
    std::fs::create_dir_all(outbox.join("photos/2026")).unwrap();
    std::fs::write(outbox.join("notes.txt"), b"hello from the laptop\n").unwrap();
    std::fs::write(outbox.join("photos/2026/empty.bin"), b"").unwrap();
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(outbox.join("photos/2026/big.bin"), big).unwrap();
    let extra = root.join("extra.txt");
    std::fs::write(&extra, b"one more\n").unwrap();
    vec![outbox, extra]
}

/// Bytes in [`write_source`]'s files.
const SOURCE_BYTES: u64 = 1_000_000 + 22 + 9;

/// Everything under `root`, hidden files included: each path with its kind and, for a file,
/// its bytes' hash.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_owned();
            let what = if meta.is_dir() {
                stack.push(path);
                "dir".to_owned()
            } else if meta.is_file() {
                format!("file {}", blake3::hash(&std::fs::read(&path).unwrap()))
            } else {
                "other".to_owned()
            };
            found.insert(rel, what);
        }
    }
    found
}

/// A receive directory that already holds something.
fn lived_in_inbox(inbox: &Path) {
    std::fs::create_dir_all(inbox.join("old")).unwrap();
    std::fs::write(inbox.join("old/keep.txt"), b"was here before\n").unwrap();
}

async fn send(
    sender: &NetworkingService,
    receiver: &NetworkingService,
    paths: &[PathBuf],
) -> Result<tether::TransferReport, NetworkError> {
    let handle = sender
        .share_with_device(receiver.node_id(), paths, TransferOptions::default())
        .await?;
    tokio::time::timeout(Duration::from_secs(30), handle.finish())
        .await
        .expect("the transfer ended within 30 s")
}

/// The sender's view of a declined offer: the receiver's reason.
fn declined_reason(result: Result<tether::TransferReport, NetworkError>) -> String {
    if let Err(error) = &result {
        common::checked_chain(error);
    }
    match result {
        Err(NetworkError::Transfer(TransferError::Peer(error))) => {
            let text = error.to_string();
            assert!(text.starts_with("declined"), "{text}");
            text
        }
        other => panic!("expected a declined transfer, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_unmarked_device_is_declined_and_nothing_is_written() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    lived_in_inbox(&inbox);
    let (sender, receiver) = lab.unmarked_sender_and_receiver(&inbox).await;
    let paths = write_source(lab.root.path());
    let before = tree(&inbox);

    let reason = declined_reason(send(&sender, &receiver, &paths).await);
    eprintln!("sender saw: {reason}");
    assert!(reason.contains("auto-accept"), "{reason}");
    assert_eq!(tree(&inbox), before, "a declined offer changed the inbox");
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_marked_device_is_accepted_until_the_mark_is_taken_back() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (sender, receiver) = lab.unmarked_sender_and_receiver(&inbox).await;
    let paths = write_source(lab.root.path());

    receiver.set_auto_accept(sender.node_id(), true).unwrap();
    let report = send(&sender, &receiver, &paths).await.unwrap();
    assert_eq!(report.bytes_verified, SOURCE_BYTES);
    assert_eq!(
        std::fs::read(inbox.join("extra.txt")).unwrap(),
        b"one more\n"
    );

    receiver.set_auto_accept(sender.node_id(), false).unwrap();
    std::fs::write(&paths[1], b"changed\n").unwrap();
    let before = tree(&inbox);
    declined_reason(send(&sender, &receiver, &paths).await);
    assert_eq!(tree(&inbox), before);
    // Only a paired device can be marked.
    assert!(matches!(
        receiver.set_auto_accept(receiver.node_id(), true),
        Err(NetworkError::DeviceNotPaired(_))
    ));
    sender.shutdown().await;
    receiver.shutdown().await;
}

/// An app's consent: records every offer, answers with `answer`.
#[derive(Debug, Clone)]
struct Recording {
    offers: Arc<Mutex<Vec<TransferOffer>>>,
    answer: Decision,
}

impl TransferConsent for Recording {
    fn decide<'a>(
        &'a self,
        offer: &'a TransferOffer,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        self.offers.lock().unwrap().push(offer.clone());
        Box::pin(std::future::ready(self.answer.clone()))
    }
}

/// A sender and a receiver whose app consent is `consent`; the sender is marked auto-accept,
/// which the app's consent may overrule.
async fn with_app_consent(
    lab: &Lab,
    inbox: &Path,
    consent: Recording,
) -> (NetworkingService, NetworkingService) {
    std::fs::create_dir_all(inbox).unwrap();
    let sender = lab.start("laptop").await;
    let config = lab
        .config("phone")
        .with_receive_dir(inbox)
        .with_consent(consent);
    let receiver = NetworkingService::start(config).await.unwrap();
    pair(&sender, &receiver).await;
    receiver.set_auto_accept(sender.node_id(), true).unwrap();
    (sender, receiver)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_consent_sees_the_offer_and_its_reason_reaches_the_sender() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    lived_in_inbox(&inbox);
    let consent = Recording {
        offers: Arc::default(),
        answer: Decision::Decline("no room for holiday photos right now".to_owned()),
    };
    let (sender, receiver) = with_app_consent(&lab, &inbox, consent.clone()).await;
    let paths = write_source(lab.root.path());
    let before = tree(&inbox);

    let reason = declined_reason(send(&sender, &receiver, &paths).await);
    assert!(
        reason.contains("no room for holiday photos right now"),
        "{reason}"
    );
    assert_eq!(tree(&inbox), before, "a declined offer changed the inbox");

    let offers = consent.offers.lock().unwrap().clone();
    let [offer] = offers.as_slice() else {
        panic!("one offer expected: {offers:?}")
    };
    let laptop = sender.device_info();
    assert_eq!(offer.node_id, sender.node_id());
    assert_eq!(offer.device_id, laptop.device_id);
    assert_eq!(offer.device_name.as_str(), "laptop");
    assert!(offer.auto_accept);
    assert_eq!(offer.files, 4);
    assert_eq!(offer.total_bytes, SOURCE_BYTES);
    let mut top_level = offer.top_level.clone();
    top_level.sort();
    assert_eq!(top_level, ["extra.txt", "outbox"]);
    assert!(offer.encrypted);
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apps_consent_can_choose_the_destination() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    lived_in_inbox(&inbox);
    let chosen = lab.root.path().join("chosen");
    std::fs::create_dir_all(&chosen).unwrap();
    let consent = Recording {
        offers: Arc::default(),
        answer: Decision::AcceptInto(chosen.clone()),
    };
    let (sender, receiver) = with_app_consent(&lab, &inbox, consent).await;
    let paths = write_source(lab.root.path());
    let before = tree(&inbox);

    let report = send(&sender, &receiver, &paths).await.unwrap();
    assert_eq!(report.bytes_verified, SOURCE_BYTES);
    assert_eq!(tree(&inbox), before, "the default destination was written");
    assert_eq!(tree(&chosen.join("outbox")), tree(&paths[0]));
    assert_eq!(
        std::fs::read(chosen.join("extra.txt")).unwrap(),
        b"one more\n"
    );
    let top: Vec<_> = tree(&chosen)
        .into_keys()
        .filter(|path| path.components().count() == 1)
        .collect();
    assert_eq!(top, [Path::new("extra.txt"), Path::new("outbox")]);
    sender.shutdown().await;
    receiver.shutdown().await;
}
