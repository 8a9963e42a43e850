//! The transfer history between two real services on loopback: a push and a pull recorded on
//! both devices with their fields, kept across a restart of the service (the same
//! `secrets.redb` opened again), filtered by device; a declined push, a pull of an entry not
//! shared and a cancelled push recorded with their reasons on both sides.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::{Lab, next_event};
use tether::{
    DeviceInfo, NetworkEvent, NetworkingService, PullEvent, PullOptions, ShareProvider,
    SharedEntry, TransferDirection, TransferEvent, TransferOptions, TransferOutcome,
    TransferPathKind, TransferRecord, Uuid,
};

/// Shares one file with every paired device, under [`ENTRY`].
#[derive(Debug)]
struct OneFile(PathBuf);

const ENTRY: Uuid = Uuid::from_u128(0x4157);

impl ShareProvider for OneFile {
    fn resolve(&self, _from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        (entry_id == ENTRY).then(|| SharedEntry::new(self.0.clone()))
    }
}

fn write_file(path: &Path, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect();
    std::fs::write(path, data).unwrap();
}

/// The history of `service`, newest first.
fn history(service: &NetworkingService) -> Vec<TransferRecord> {
    service.transfer_history(None, 100).unwrap()
}

/// Waits (at most 10 s) until `service` holds `count` records; the receiving side commits its
/// record when the transfer ends there, which may be a moment after the sender's end.
async fn history_of_len(service: &NetworkingService, count: usize) -> Vec<TransferRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = history(service);
        if records.len() >= count || Instant::now() > deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fields both sides of one verified transfer agree on.
fn assert_verified(record: &TransferRecord, direction: TransferDirection, pull: bool) {
    assert_eq!(record.direction, direction, "{record:?}");
    assert_eq!(record.pull, pull, "{record:?}");
    assert_eq!(record.outcome, TransferOutcome::Verified, "{record:?}");
    assert_eq!(record.files, 1, "{record:?}");
    assert_eq!(record.bytes_resumed, Some(0), "{record:?}");
    assert!(!record.resumed());
    assert!(record.encrypted && record.cipher.is_some(), "{record:?}");
    assert_eq!(record.path, TransferPathKind::Direct, "{record:?}");
    let age = SystemTime::now().duration_since(record.started_at).unwrap();
    assert!(age < Duration::from_secs(120), "{record:?}");
    assert!(record.duration < Duration::from_secs(60), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_and_a_pull_are_recorded_on_both_devices_and_kept_across_a_restart() {
    let lab = Lab::new();
    let shared = lab.root.path().join("shared.bin");
    write_file(&shared, 700_000, 1);
    let laptop_config = || {
        lab.config("laptop")
            .with_share_provider(OneFile(shared.clone()))
    };
    let laptop = NetworkingService::start(laptop_config()).await.unwrap();
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let phone = NetworkingService::start(lab.config("phone").with_receive_dir(&inbox))
        .await
        .unwrap();
    common::pair(&laptop, &phone).await;
    phone.set_auto_accept(laptop.node_id(), true).unwrap();

    // A push, laptop → phone.
    let pushed = lab.root.path().join("notes.bin");
    write_file(&pushed, 300_000, 2);
    let mut phone_events = phone.subscribe();
    let report = laptop
        .share_with_device(phone.node_id(), &[pushed], TransferOptions::default())
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    next_event(&mut phone_events, |e| {
        matches!(e, NetworkEvent::TransferReceived { .. })
    })
    .await;
    let sent = history(&laptop);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_verified(&sent[0], TransferDirection::Send, false);
    assert_eq!(sent[0].node_id, phone.node_id());
    assert_eq!(sent[0].device_name.as_ref().unwrap().as_str(), "phone");
    assert_eq!(sent[0].bytes_total, 300_000);
    assert_eq!(sent[0].bytes_transferred, Some(300_000));
    assert_eq!(sent[0].cipher, report.cipher);
    // The receiver's record is committed before `TransferReceived` goes out.
    let received = history(&phone);
    assert_eq!(received.len(), 1, "{received:?}");
    assert_verified(&received[0], TransferDirection::Receive, false);
    assert_eq!(received[0].node_id, laptop.node_id());
    assert_eq!(received[0].device_name.as_ref().unwrap().as_str(), "laptop");
    assert_eq!(received[0].bytes_total, 300_000);
    assert_eq!(received[0].cipher, report.cipher);

    // A pull: the phone asks the laptop for its shared file.
    let mut laptop_events = laptop.subscribe();
    let pulled = phone
        .device(laptop.node_id())
        .unwrap()
        .request_file(
            ENTRY,
            &lab.root.path().join("pulled"),
            PullOptions::default(),
        )
        .await
        .unwrap()
        .finish()
        .await
        .unwrap();
    assert_eq!(pulled.bytes_total, 700_000);
    next_event(&mut laptop_events, |e| {
        matches!(e, NetworkEvent::Pull(PullEvent::Completed { .. }))
    })
    .await;
    let received = history(&phone);
    assert_eq!(received.len(), 2);
    assert_verified(&received[0], TransferDirection::Receive, true);
    assert_eq!(received[0].bytes_transferred, Some(700_000));
    assert!(received[0].id > received[1].id, "newest first");
    let served = history(&laptop);
    assert_eq!(served.len(), 2);
    assert_verified(&served[0], TransferDirection::Send, true);
    assert_eq!(served[0].bytes_total, 700_000);
    assert_eq!(served[1], sent[0]);

    // By device, with a limit; another device has none.
    let only = laptop.transfer_history(Some(phone.node_id()), 1).unwrap();
    assert_eq!(only, served[..1]);
    assert!(
        laptop
            .transfer_history(Some(laptop.node_id()), 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        phone
            .device(laptop.node_id())
            .unwrap()
            .transfer_history(10)
            .unwrap(),
        received
    );

    // The laptop restarts on the same data directory: the same records.
    laptop.shutdown().await;
    let laptop = NetworkingService::start(laptop_config()).await.unwrap();
    assert_eq!(history(&laptop), served);
    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_cancelled_transfers_are_recorded_with_their_reasons() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone) = lab.unmarked_sender_and_receiver(&inbox).await;
    let file = lab.root.path().join("big.bin");
    write_file(&file, 4 << 20, 3);

    // Declined: the phone's default consent takes only marked devices.
    let declined = laptop
        .share_with_device(
            phone.node_id(),
            std::slice::from_ref(&file),
            TransferOptions::default(),
        )
        .await
        .unwrap()
        .finish()
        .await;
    assert!(declined.is_err(), "{declined:?}");
    let sent = history(&laptop);
    let TransferOutcome::Refused { reason } = &sent[0].outcome else {
        panic!("{sent:?}")
    };
    assert!(reason.contains("auto-accept"), "{reason}");
    assert_eq!(sent[0].files, 1);
    assert_eq!(sent[0].bytes_total, 4 << 20);
    assert_eq!(sent[0].bytes_transferred, None);
    let received = history_of_len(&phone, 1).await;
    let TransferOutcome::Refused { reason } = &received[0].outcome else {
        panic!("{received:?}")
    };
    assert!(reason.contains("auto-accept"), "{reason}");
    assert_eq!(received[0].direction, TransferDirection::Receive);

    // A pull of an entry the laptop does not share: refused on both sides.
    let not_shared = phone
        .request_file(
            laptop.node_id(),
            ENTRY,
            &lab.root.path().join("pulled"),
            PullOptions::default(),
        )
        .await
        .unwrap()
        .finish()
        .await;
    assert!(not_shared.is_err());
    let asked = history(&phone);
    assert!(asked[0].pull, "{asked:?}");
    assert!(
        matches!(&asked[0].outcome, TransferOutcome::Refused { .. }),
        "{asked:?}"
    );
    let refused = history_of_len(&laptop, 2).await;
    assert_eq!(
        refused[0].outcome,
        TransferOutcome::Refused {
            reason: "not shared with the device".to_owned()
        }
    );
    assert_eq!(
        (refused[0].direction, refused[0].pull),
        (TransferDirection::Send, true)
    );

    // Cancelled by the sender half way: "cancelled" here, "cancelled by the peer" there.
    phone.set_auto_accept(laptop.node_id(), true).unwrap();
    let mut handle = laptop
        .share_with_device(
            phone.node_id(),
            std::slice::from_ref(&file),
            TransferOptions::default().rate_limit(Some(2 << 20)),
        )
        .await
        .unwrap();
    while let Some(event) = handle.events.recv().await {
        if let TransferEvent::Progress(progress) = event
            && progress.bytes_done > 512 << 10
        {
            handle.cancel();
            break;
        }
    }
    assert!(handle.finish().await.is_err());
    let sent = history(&laptop);
    assert_eq!(
        sent[0].outcome,
        TransferOutcome::Cancelled { by_peer: false },
        "{sent:?}"
    );
    let received = history_of_len(&phone, 3).await;
    eprintln!("the receiver's record of the cancel: {:?}", received[0]);
    assert!(
        matches!(
            &received[0].outcome,
            TransferOutcome::Cancelled { by_peer: true }
                | TransferOutcome::Failed {
                    resumable: true,
                    ..
                }
        ),
        "{received:?}"
    );
    laptop.shutdown().await;
    phone.shutdown().await;
}
