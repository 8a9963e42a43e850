//! The outbox between two real services on loopback: a send queued for a device that is not
//! running is delivered, verified, once it starts (and leaves the outbox, into the history);
//! the queue is kept across a restart of the sender; a cancelled entry never goes out; a path
//! gone and an unpaired device fail for good, kept for the person to see.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Lab, next_event};
use tether::{
    NetworkEvent, NetworkingService, OutboxEntry, OutboxState, TransferOptions, TransferOutcome,
};

/// A sender whose outbox tries often, and whose dials to a device that is off give up soon
/// (the tests do not wait for the defaults: 30 s, and three tries of 10 s).
async fn laptop(lab: &Lab) -> NetworkingService {
    let mut config = lab.config("laptop");
    config.outbox_retry = Duration::from_millis(200);
    config.connect_timeout = Duration::from_secs(1);
    NetworkingService::start(config).await.unwrap()
}

async fn phone(lab: &Lab, inbox: &Path) -> NetworkingService {
    NetworkingService::start(lab.config("phone").with_receive_dir(inbox))
        .await
        .unwrap()
}

/// The laptop and the phone paired (the phone takes the laptop's files), the phone stopped.
async fn paired_phone_offline(lab: &Lab, inbox: &Path) -> (NetworkingService, tether::NodeId) {
    std::fs::create_dir_all(inbox).unwrap();
    let laptop = laptop(lab).await;
    let phone = phone(lab, inbox).await;
    common::pair(&laptop, &phone).await;
    phone.set_auto_accept(laptop.node_id(), true).unwrap();
    let phone_id = phone.node_id();
    phone.shutdown().await;
    (laptop, phone_id)
}

fn only(entries: &[OutboxEntry]) -> &OutboxEntry {
    assert_eq!(entries.len(), 1, "{entries:?}");
    &entries[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_queued_for_a_device_that_is_off_arrives_when_it_starts() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone_id) = paired_phone_offline(&lab, &inbox).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = lab.root.path().join("notes.bin");
    std::fs::write(&file, &data).unwrap();

    // Queued through a relative-looking path: kept canonical.
    let dotted = lab.root.path().join(".").join("notes.bin");
    let options = TransferOptions::default().retry_for(Duration::from_secs(10));
    let id = laptop
        .queue_send(phone_id, std::slice::from_ref(&dotted), options.clone())
        .await
        .unwrap();
    let entries = laptop.outbox().unwrap();
    let entry = only(&entries);
    assert_eq!(entry.id, id);
    assert_eq!(entry.node_id, phone_id);
    assert_eq!(entry.device_name.as_ref().unwrap().as_str(), "phone");
    assert_eq!(entry.paths, [std::fs::canonicalize(&file).unwrap()]);
    assert_eq!((entry.files, entry.bytes), (1, 300_000));
    assert_eq!(entry.options, options);
    assert_eq!(entry.state, OutboxState::Pending);

    // The sender restarts: the queue is in its store.
    laptop.shutdown().await;
    drop(laptop);
    let laptop = self::laptop(&lab).await;
    assert_eq!(only(&laptop.outbox().unwrap()).id, id);
    // Tried while the phone is off: still pending, with why.
    let tried = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let entries = laptop.outbox().unwrap();
            if only(&entries).last_error.is_some() {
                return entries[0].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the queued send was tried within 30 s");
    eprintln!("while the phone is off: {tried:?}");
    assert_eq!(tried.state, OutboxState::Pending);
    assert!(tried.attempts >= 1);

    let mut events = laptop.subscribe();
    let phone = phone(&lab, &inbox).await;
    let delivered = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await.unwrap() {
                NetworkEvent::QueuedSendDelivered {
                    id: delivered,
                    node_id,
                    report,
                } => return (delivered, node_id, report),
                NetworkEvent::QueuedSendFailed { reason, .. } => panic!("failed: {reason}"),
                _ => {}
            }
        }
    })
    .await
    .expect("delivered within 30 s of the phone's start");
    assert_eq!((delivered.0, delivered.1), (id, phone_id));
    assert_eq!(delivered.2.bytes_verified, 300_000);
    assert_eq!(std::fs::read(inbox.join("notes.bin")).unwrap(), data);
    assert!(laptop.outbox().unwrap().is_empty());
    let history = laptop.transfer_history(Some(phone_id), 10).unwrap();
    assert_eq!(history[0].outcome, TransferOutcome::Verified, "{history:?}");
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_gone_and_unpaired_entries_never_go_out() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone_id) = paired_phone_offline(&lab, &inbox).await;
    let options = TransferOptions::default().retry_for(Duration::from_secs(5));
    let write = |name: &str| {
        let path = lab.root.path().join(name);
        std::fs::write(&path, name.as_bytes()).unwrap();
        path
    };
    // A path that does not exist is refused at once.
    let missing = lab.root.path().join("missing");
    assert!(
        laptop
            .queue_send(phone_id, &[missing], options.clone())
            .await
            .is_err()
    );
    let cancelled = write("cancelled.txt");
    let gone = write("gone.txt");
    let kept = laptop
        .queue_send(phone_id, &[cancelled], options.clone())
        .await
        .unwrap();
    let doomed = laptop
        .queue_send(phone_id, std::slice::from_ref(&gone), options.clone())
        .await
        .unwrap();
    assert!(laptop.cancel_queued(kept).unwrap());
    assert!(!laptop.cancel_queued(kept).unwrap(), "cancelled already");
    std::fs::remove_file(&gone).unwrap();

    let mut events = laptop.subscribe();
    let phone = phone(&lab, &inbox).await;
    let event = next_event(&mut events, |event| {
        matches!(event, NetworkEvent::QueuedSendFailed { .. })
    })
    .await;
    let NetworkEvent::QueuedSendFailed { id, reason, .. } = event else {
        unreachable!()
    };
    eprintln!("a path gone: {reason}");
    assert_eq!(id, doomed);
    let entries = laptop.outbox().unwrap();
    let entry = only(&entries);
    assert_eq!(entry.state, OutboxState::Failed);
    assert_eq!(entry.last_error.as_deref(), Some(reason.as_str()));
    assert!(!inbox.join("cancelled.txt").exists());
    assert!(laptop.cancel_queued(doomed).unwrap());

    // Unpaired: an entry queued before never goes out, though the device is up.
    phone.shutdown().await;
    let late = write("late.txt");
    let queued = laptop.queue_send(phone_id, &[late], options).await.unwrap();
    laptop.unpair(phone_id).unwrap();
    let phone = self::phone(&lab, &inbox).await;
    let event = next_event(&mut events, |event| {
        matches!(event, NetworkEvent::QueuedSendFailed { .. })
    })
    .await;
    let NetworkEvent::QueuedSendFailed { id, reason, .. } = event else {
        unreachable!()
    };
    eprintln!("unpaired: {reason}");
    assert_eq!(id, queued);
    assert!(
        reason.contains("revoked") || reason.contains("not paired"),
        "{reason}"
    );
    assert_eq!(only(&laptop.outbox().unwrap()).state, OutboxState::Failed);
    assert!(!inbox.join("late.txt").exists());
    laptop.shutdown().await;
    phone.shutdown().await;
}
