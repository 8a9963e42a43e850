//! A transfer interrupted by shutting one side's service down, then sent again after that side
//! started afresh on the same data directory (and receive directory): it resumes from what the
//! receiver verified, the file arrives whole and verified, and no partial file is left.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Lab, pair};
use tether::{NetworkingService, NodeId, TransferEvent, TransferOptions, TransferReport};

const SIZE: u32 = 24_000_000;

fn source(lab: &Lab) -> (PathBuf, Vec<u8>) {
    let path = lab.root.path().join("big");
    let data: Vec<u8> = (0..SIZE)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    (path, data)
}

async fn receiver(lab: &Lab, inbox: &Path) -> NetworkingService {
    NetworkingService::start(lab.config("phone").with_receive_dir(inbox))
        .await
        .unwrap()
}

/// Starts a throttled send and returns once more than a quarter of it is verified-sent.
async fn send_a_quarter(
    sender: &NetworkingService,
    to: NodeId,
    path: &Path,
) -> tether::TransferHandle {
    let options = TransferOptions::default().rate_limit(Some(8 * 1024 * 1024));
    let mut handle = sender
        .share_with_device(to, &[path.to_owned()], options)
        .await
        .unwrap();
    while let Some(event) = handle.events.recv().await {
        if let TransferEvent::Progress(progress) = event
            && progress.bytes_done > u64::from(SIZE) / 4
        {
            return handle;
        }
    }
    panic!("the transfer ended before a quarter was sent");
}

/// Sends `path` again until it goes through: right after a restart the sender may still dial
/// the old address, or the receiver may still hold the target for the broken transfer.
async fn send_again(sender: &NetworkingService, to: NodeId, path: &Path) -> TransferReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = async {
            sender
                .share_with_device(to, &[path.to_owned()], TransferOptions::default())
                .await?
                .finish()
                .await
        };
        match attempt.await {
            Ok(report) => return report,
            Err(error) if Instant::now() < deadline => {
                eprintln!("resend not through yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the resend never went through: {error}"),
        }
    }
}

/// The file arrived whole, and nothing but the file is in the inbox (no partial file, no
/// resume record).
fn arrived(inbox: &Path, data: &[u8]) {
    assert_eq!(
        blake3::hash(&std::fs::read(inbox.join("big")).unwrap()),
        blake3::hash(data)
    );
    let names: Vec<String> = std::fs::read_dir(inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["big".to_owned()], "leftovers in the inbox");
}

fn resumed(report: &TransferReport) {
    eprintln!(
        "resumed: {} of {} bytes were already verified; {} bytes sent",
        report.bytes_resumed, report.bytes_total, report.bytes_transferred
    );
    assert_eq!(report.bytes_total, u64::from(SIZE));
    assert!(report.bytes_resumed > 0, "{report:?}");
    assert!(report.bytes_transferred < u64::from(SIZE), "{report:?}");
    assert_eq!(report.bytes_verified, u64::from(SIZE), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_resumes_after_the_receiver_restarts() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let sender = lab.start("laptop").await;
    let phone = receiver(&lab, &inbox).await;
    pair(&sender, &phone).await;
    phone.set_auto_accept(sender.node_id(), true).unwrap();
    let phone_id = phone.node_id();
    let (path, data) = source(&lab);

    let handle = send_a_quarter(&sender, phone_id, &path).await;
    phone.shutdown().await;
    drop(phone);
    let broken = tokio::time::timeout(Duration::from_secs(20), handle.finish())
        .await
        .unwrap();
    assert!(broken.is_err(), "{broken:?}");
    assert!(!inbox.join("big").exists(), "no partial file at the target");

    let phone = receiver(&lab, &inbox).await;
    assert_eq!(phone.node_id(), phone_id);
    let report = send_again(&sender, phone_id, &path).await;
    resumed(&report);
    arrived(&inbox, &data);
    sender.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_resumes_after_the_sender_restarts() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let sender = lab.start("laptop").await;
    let phone = receiver(&lab, &inbox).await;
    pair(&sender, &phone).await;
    phone.set_auto_accept(sender.node_id(), true).unwrap();
    let sender_id = sender.node_id();
    let (path, data) = source(&lab);

    let handle = send_a_quarter(&sender, phone.node_id(), &path).await;
    sender.shutdown().await;
    drop(sender);
    let broken = tokio::time::timeout(Duration::from_secs(20), handle.finish())
        .await
        .unwrap();
    assert!(broken.is_err(), "{broken:?}");
    assert!(!inbox.join("big").exists(), "no partial file at the target");

    let sender = lab.start("laptop").await;
    assert_eq!(sender.node_id(), sender_id);
    let report = send_again(&sender, phone.node_id(), &path).await;
    resumed(&report);
    arrived(&inbox, &data);
    sender.shutdown().await;
    phone.shutdown().await;
}
