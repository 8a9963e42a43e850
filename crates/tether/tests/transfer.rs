//! Files between two paired services over the pooled connection: a directory, encrypted and
//! not, verified byte for byte, and a resumed send after a cancel.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stderr
)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Lab, next_event, pair};
use tether::{NetworkEvent, NetworkingService, TransferCipher, TransferOptions};

fn write_tree(root: &Path) {
    std::fs::create_dir_all(root.join("photos/2026")).unwrap();
    std::fs::write(root.join("notes.txt"), b"hello from the laptop\n").unwrap();
    std::fs::write(root.join("photos/2026/empty.bin"), b"").unwrap();
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("photos/2026/big.bin"), big).unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    for rel in ["notes.txt", "photos/2026/empty.bin", "photos/2026/big.bin"] {
        let left = std::fs::read(a.join(rel)).unwrap();
        let right = std::fs::read(b.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(blake3::hash(&left), blake3::hash(&right), "{rel} differs");
    }
}

async fn two(lab: &Lab) -> (NetworkingService, NetworkingService, std::path::PathBuf) {
    let inbox = lab.root.path().join("inbox");
    let (sender, receiver) = lab.sender_and_receiver(&inbox).await;
    (sender, receiver, inbox)
}

/// Sends a tree; `cipher` is `None` for a plain transfer, else the one cipher offered.
async fn send_tree(cipher: Option<TransferCipher>) {
    let lab = Lab::new();
    let (sender, receiver, inbox) = two(&lab).await;
    let source = lab.root.path().join("outbox");
    write_tree(&source);

    let mut events = receiver.subscribe();
    let handle = sender
        .share_with_device(
            receiver.node_id(),
            std::slice::from_ref(&source),
            TransferOptions::default()
                .encrypt(cipher.is_some())
                .ciphers(cipher.into_iter().collect::<Vec<_>>()),
        )
        .await
        .unwrap();
    let report = handle.finish().await.unwrap();
    assert_eq!(report.cipher, cipher);
    assert_eq!(report.files, 3);
    assert_eq!(report.bytes_total, 3_000_000 + 22);
    assert_eq!(report.bytes_verified, report.bytes_total);
    assert_eq!(report.path, tether_transfer_path_direct());

    let received = next_event(&mut events, |e| {
        matches!(e, NetworkEvent::TransferReceived { .. })
    })
    .await;
    let NetworkEvent::TransferReceived { from, report } = received else {
        unreachable!()
    };
    assert_eq!(from, sender.node_id());
    assert_eq!(report.bytes_verified, 3_000_022);
    assert_eq!(report.cipher, cipher);
    same_tree(&source, &inbox.join("outbox"));
    sender.shutdown().await;
    receiver.shutdown().await;
}

fn tether_transfer_path_direct() -> tether::TransferPathKind {
    tether::TransferPathKind::Direct
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_arrives_verified_with_encryption() {
    send_tree(Some(TransferCipher::Aes256Gcm)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_arrives_verified_under_chacha20_poly1305() {
    send_tree(Some(TransferCipher::ChaCha20Poly1305)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_arrives_verified_without_the_extra_layer() {
    send_tree(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_without_a_receive_directory_refuses_transfers() {
    let lab = Lab::new();
    let a = lab.start("a").await;
    let b = lab.start("b").await;
    pair(&a, &b).await;
    let source = lab.root.path().join("outbox");
    write_tree(&source);
    let handle = a
        .share_with_device(b.node_id(), &[source], TransferOptions::default())
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), handle.finish())
        .await
        .unwrap();
    assert!(result.is_err(), "{result:?}");
    common::checked_chain(result.as_ref().unwrap_err());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_send_resumes_from_what_was_verified() {
    let lab = Lab::new();
    let (sender, receiver, inbox) = two(&lab).await;
    let source = lab.root.path().join("big");
    let data: Vec<u8> = (0..24_000_000u32)
        .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
        .collect();
    std::fs::write(&source, &data).unwrap();

    // Slow enough to cancel half way.
    let options = TransferOptions::default().rate_limit(Some(8 * 1024 * 1024));
    let mut handle = sender
        .share_with_device(receiver.node_id(), std::slice::from_ref(&source), options)
        .await
        .unwrap();
    while let Some(event) = handle.events.recv().await {
        if let tether::TransferEvent::Progress(progress) = event
            && progress.bytes_done > 6_000_000
        {
            handle.cancel();
            break;
        }
    }
    assert!(handle.finish().await.is_err());
    assert!(!inbox.join("big").exists(), "no partial file at the target");

    // The receiver notices the cancel when the stream ends; until then the target is busy and
    // a new offer for it is declined. A person would press "send" again: so does the test.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let report = loop {
        let handle = sender
            .share_with_device(
                receiver.node_id(),
                std::slice::from_ref(&source),
                TransferOptions::default(),
            )
            .await
            .unwrap();
        match handle.finish().await {
            Ok(report) => break report,
            Err(error) if std::time::Instant::now() < deadline => {
                eprintln!("resend refused for now: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("the resend never went through: {error}"),
        }
    };
    assert!(report.bytes_resumed > 0, "{report:?}");
    assert!(report.bytes_transferred < 24_000_000, "{report:?}");
    assert_eq!(
        blake3::hash(&std::fs::read(inbox.join("big")).unwrap()),
        blake3::hash(&data)
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receiving_app_sees_the_offer_its_progress_and_a_failure() {
    use n0_future::StreamExt;
    use tether::TransferEvent;

    let lab = Lab::new();
    let (sender, receiver, _inbox) = two(&lab).await;
    let source = lab.root.path().join("outbox");
    write_tree(&source);
    let mut events = receiver.events();

    // Slowed so that progress is reported on the way.
    let options = TransferOptions::default().rate_limit(Some(6_000_000));
    let handle = sender
        .share_with_device(
            receiver.node_id(),
            std::slice::from_ref(&source),
            options.clone(),
        )
        .await
        .unwrap();
    handle.finish().await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            let end = matches!(event, NetworkEvent::TransferReceived { .. });
            seen.push(event);
            if end {
                break;
            }
        }
    })
    .await
    .expect("no TransferReceived");
    let kinds: Vec<&'static str> = seen
        .iter()
        .filter_map(|event| match event {
            NetworkEvent::TransferOffered {
                entries,
                bytes,
                from,
                ..
            } => {
                assert_eq!((*entries, *bytes, *from), (6, 3_000_022, sender.node_id()));
                Some("offered")
            }
            NetworkEvent::IncomingTransfer { event, .. } => match event {
                TransferEvent::Started { .. } => Some("started"),
                TransferEvent::Progress(_) => Some("progress"),
                TransferEvent::FileDone { .. } => Some("file"),
                _ => None,
            },
            NetworkEvent::TransferReceived { .. } => Some("received"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds.first(), Some(&"offered"), "{kinds:?}");
    assert_eq!(kinds.get(1), Some(&"started"), "{kinds:?}");
    assert!(kinds.contains(&"progress"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "file").count(),
        3,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"received"), "{kinds:?}");

    // A transfer the sender cancels half-way fails on the receiving side too, resumably.
    std::fs::write(source.join("more.bin"), vec![7u8; 4_000_000]).unwrap();
    let slow = TransferOptions::default().rate_limit(Some(1_000_000));
    let handle = sender
        .share_with_device(receiver.node_id(), std::slice::from_ref(&source), slow)
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(20), async {
        let mut cancelled = false;
        while let Some(event) = events.next().await {
            match event {
                NetworkEvent::IncomingTransfer {
                    event: TransferEvent::Progress(_),
                    ..
                } if !cancelled => {
                    handle.cancel();
                    cancelled = true;
                }
                NetworkEvent::TransferFailed {
                    resumable, from, ..
                } => {
                    return (from, resumable);
                }
                _ => {}
            }
        }
        panic!("the events ended");
    })
    .await
    .expect("no TransferFailed after the sender cancelled");
    assert_eq!(failed, (sender.node_id(), true));
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_file_of_a_resent_folder_is_reported_to_the_receiving_app() {
    use tether::{StreamExt, TransferEvent};

    let lab = Lab::new();
    let (sender, receiver, _inbox) = two(&lab).await;
    let source = lab.root.path().join("many");
    std::fs::create_dir_all(&source).unwrap();
    for i in 0..300 {
        std::fs::write(source.join(format!("{i:03}.txt")), format!("file {i}\n")).unwrap();
    }
    let send = || {
        sender.share_with_device(
            receiver.node_id(),
            std::slice::from_ref(&source),
            TransferOptions::default(),
        )
    };
    // The sender's `finish` can return before the receiver reports the end of the first
    // transfer, so the events are taken before it, and the first report is waited for.
    let mut events = receiver.events();
    send().await.unwrap().finish().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            if let NetworkEvent::TransferReceived { .. } = event {
                break;
            }
        }
    })
    .await
    .expect("no TransferReceived for the first send");

    // Sent again: every file is already in place, and each is reported at once, in a burst.
    send().await.unwrap().finish().await.unwrap();
    let mut files = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = events.next().await {
            match event {
                NetworkEvent::IncomingTransfer {
                    event: TransferEvent::FileDone { .. },
                    ..
                } => files += 1,
                NetworkEvent::TransferReceived { .. } => break,
                _ => {}
            }
        }
    })
    .await
    .expect("no TransferReceived");
    assert_eq!(files, 300, "file events were lost");
    sender.shutdown().await;
    receiver.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrying_send_waits_for_a_receiver_that_went_away_and_its_wait_can_be_cancelled() {
    let lab = Lab::new();
    let (sender, receiver, _inbox) = two(&lab).await;
    let source = lab.root.path().join("big");
    std::fs::write(&source, vec![7u8; 8_000_000]).unwrap();
    let options = TransferOptions::default()
        .rate_limit(Some(2 * 1024 * 1024))
        .retry_for(Duration::from_secs(60));
    let mut handle = sender
        .share_with_device(receiver.node_id(), std::slice::from_ref(&source), options)
        .await
        .unwrap();
    loop {
        if let Some(tether::TransferEvent::Progress(progress)) = handle.events.recv().await
            && progress.bytes_done > 1_000_000
        {
            break;
        }
    }
    let gone = receiver.node_id();
    receiver.shutdown().await;

    // The lost link is waited out, not reported: the handle says it retries.
    let retrying = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match handle.events.recv().await {
                Some(event @ tether::TransferEvent::Retrying { .. }) => break event,
                Some(_) => {}
                None => panic!("the events ended without a retry"),
            }
        }
    })
    .await
    .expect("no Retrying event within 20 s");
    let tether::TransferEvent::Retrying {
        peer,
        attempt,
        reason,
        retry_in,
    } = retrying
    else {
        unreachable!()
    };
    assert_eq!((peer, attempt), (gone, 1));
    assert!(reason.contains("link lost"), "{reason}");
    assert!(retry_in <= Duration::from_secs(2), "{retry_in:?}");

    // Cancelling ends the wait (or the redial under way) at once.
    handle.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(5), handle.finish())
        .await
        .expect("the cancelled wait did not end within 5 s");
    assert!(
        matches!(
            ended,
            Err(tether::NetworkError::Transfer(
                tether::TransferError::Cancelled
            ))
        ),
        "{ended:?}"
    );
    sender.shutdown().await;
}
