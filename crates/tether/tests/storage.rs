//! The receive side's storage rules through two real services on loopback: a paired device's
//! storage quota (kept in the registry, so it survives a restart, and reset by the person),
//! and what interrupted transfers leave, collected when the receiver starts.
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

use common::Lab;
use tether::{
    NetworkingService, NodeId, TransferError, TransferEvent, TransferOptions, TransferReport,
};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Writes `len` bytes of a pattern seeded by `seed` to `dir/name`.
fn file(dir: &Path, name: &str, len: u64, seed: u32) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let data: Vec<u8> = (0..u32::try_from(len).unwrap())
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, data).unwrap();
    path
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn same(a: &Path, b: &Path) {
    assert_eq!(
        blake3::hash(&std::fs::read(a).unwrap()),
        blake3::hash(&std::fs::read(b).unwrap()),
        "{} differs from {}",
        b.display(),
        a.display()
    );
}

async fn receiver(lab: &Lab, inbox: &Path) -> NetworkingService {
    NetworkingService::start(lab.config("phone").with_receive_dir(inbox))
        .await
        .unwrap()
}

async fn send(
    sender: &NetworkingService,
    to: NodeId,
    path: &Path,
) -> Result<TransferReport, tether::NetworkError> {
    tokio::time::timeout(Duration::from_secs(30), async {
        sender
            .share_with_device(to, &[path.to_owned()], TransferOptions::default())
            .await?
            .finish()
            .await
    })
    .await
    .expect("the transfer did not end within 30 s")
}

/// Sends `path` until it goes through: right after a restart the sender may still dial the
/// receiver's old address.
async fn send_until_through(sender: &NetworkingService, to: NodeId, path: &Path) -> TransferReport {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(sender, to, path).await {
            Ok(report) => return report,
            Err(error) if Instant::now() < deadline && !is_quota(&error) => {
                eprintln!("send not through yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the send never went through: {error}"),
        }
    }
}

/// The error and its sources, as one line, each layer once.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    common::checked_chain(error)
}

fn is_quota(error: &tether::NetworkError) -> bool {
    chain(error).contains("storage quota")
}

/// Sends `path` until the receiver answers; returns its refusal. Other failures (the sender
/// still dialling an old address after a restart) are tried again.
async fn refused(sender: &NetworkingService, to: NodeId, path: &Path) -> tether::NetworkError {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match send(sender, to, path).await {
            Ok(report) => panic!("an offer over the quota went through: {report:?}"),
            Err(error) if is_quota(&error) => return error,
            Err(error) if Instant::now() < deadline => {
                eprintln!("no answer yet: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("never refused for the quota: {}", chain(&error)),
        }
    }
}

/// The bytes the receiver counts against `device`'s quota, as its registry keeps them.
fn stored_bytes(receiver: &NetworkingService, device: NodeId) -> u64 {
    receiver
        .devices()
        .into_iter()
        .find(|d| d.node_id == device)
        .and_then(|d| d.paired)
        .expect("the device is paired")
        .stored_bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_declines_what_does_not_fit_survives_a_restart_and_resets() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (sender, phone) = lab.sender_and_receiver(&inbox).await;
    let laptop = sender.node_id();
    let phone_id = phone.node_id();
    // What `tether trust laptop --quota 1MiB` does.
    phone.set_storage_quota(laptop, Some(MIB)).unwrap();
    let outbox = lab.root.path().join("outbox");
    let first = file(&outbox, "first.bin", 600 * KIB, 1);
    let second = file(&outbox, "second.bin", 600 * KIB, 2);

    let report = send(&sender, phone_id, &first).await.unwrap();
    assert_eq!(report.bytes_verified, 600 * KIB);
    same(&first, &inbox.join("first.bin"));
    assert_eq!(stored_bytes(&phone, laptop), 600 * KIB);

    // Over the quota: declined before a byte is written, and the sender is told why.
    let error = refused(&sender, phone_id, &second).await;
    let said = chain(&error);
    eprintln!("the sender was told: {said}");
    assert!(said.contains("quota"), "{said}");
    assert!(
        said.contains(&format!("{} of {} used", 600 * KIB, MIB)),
        "{said}"
    );
    assert_eq!(
        names(&inbox),
        ["first.bin"],
        "nothing of the declined offer"
    );
    assert_eq!(
        stored_bytes(&phone, laptop),
        600 * KIB,
        "a refusal counts nothing"
    );

    // The count is kept with the device: a restarted receiver still refuses.
    phone.shutdown().await;
    drop(phone);
    let phone = receiver(&lab, &inbox).await;
    assert_eq!(phone.node_id(), phone_id);
    assert_eq!(
        stored_bytes(&phone, laptop),
        600 * KIB,
        "the count survived"
    );
    let error = refused(&sender, phone_id, &second).await;
    assert!(chain(&error).contains("quota"));
    assert_eq!(names(&inbox), ["first.bin"]);

    // What `tether trust laptop --quota-reset` does: the next one fits.
    phone.reset_stored_bytes(laptop).unwrap();
    assert_eq!(stored_bytes(&phone, laptop), 0);
    let report = send_until_through(&sender, phone_id, &second).await;
    assert_eq!(report.bytes_verified, 600 * KIB);
    same(&second, &inbox.join("second.bin"));
    assert_eq!(names(&inbox), ["first.bin", "second.bin"]);
    assert_eq!(stored_bytes(&phone, laptop), 600 * KIB);

    sender.shutdown().await;
    phone.shutdown().await;
}

/// Big enough to take a few seconds at the rate below, in many chunks.
const BIG: u64 = 24_000_000;

/// Starts a throttled send of `path` and returns once more than a quarter of it is sent.
async fn send_a_quarter(
    sender: &NetworkingService,
    to: NodeId,
    path: &Path,
) -> tether::TransferHandle {
    let options = TransferOptions::default().rate_limit(Some(8 * MIB));
    let mut handle = sender
        .share_with_device(to, &[path.to_owned()], options)
        .await
        .unwrap();
    while let Some(event) = handle.events.recv().await {
        if let TransferEvent::Progress(progress) = event
            && progress.bytes_done > BIG / 4
        {
            return handle;
        }
    }
    panic!("the transfer ended before a quarter was sent");
}

/// Cuts a real transfer of `path` to `to` by shutting the sender down a quarter of the way,
/// and waits until the receiver left the partial file and resume record of `name` in `inbox`.
async fn cut(sender: NetworkingService, to: NodeId, path: &Path, inbox: &Path, name: &str) {
    let handle = send_a_quarter(&sender, to, path).await;
    sender.shutdown().await;
    drop(sender);
    let broken = tokio::time::timeout(Duration::from_secs(20), handle.finish())
        .await
        .unwrap();
    assert!(broken.is_err(), "{broken:?}");
    let left = leftovers_of(name);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !left.iter().all(|leftover| inbox.join(leftover).exists()) {
        assert!(
            Instant::now() < deadline,
            "no leftovers of {name}: {:?}",
            names(inbox)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The partial file and the resume record a cut transfer of `name` leaves.
fn leftovers_of(name: &str) -> [String; 2] {
    [
        format!(".{name}.tether-partial"),
        format!(".{name}.tether-resume"),
    ]
}

/// Sets `path`'s modification time `age` into the past.
fn age(path: &Path, age: Duration) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - age)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_removes_old_and_unpaired_leftovers_and_keeps_the_rest() {
    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone) = lab.sender_and_receiver(&inbox).await;
    let (laptop_id, phone_id) = (laptop.node_id(), phone.node_id());
    let outbox = lab.root.path().join("outbox");
    let old = file(&outbox, "old.bin", BIG, 1);
    let fresh = file(&outbox, "fresh.bin", BIG, 2);
    let placed = file(&outbox, "placed.bin", 100 * KIB, 3);
    let tablets = file(&outbox, "tablets.bin", BIG, 4);

    // A file placed long ago is never a leftover, however old.
    send(&laptop, phone_id, &placed).await.unwrap();
    age(&inbox.join("placed.bin"), 30 * DAY);

    // Two transfers cut by shutting the laptop down mid-way.
    cut(laptop, phone_id, &old, &inbox, "old.bin").await;
    let laptop = lab.start("laptop").await;
    assert_eq!(laptop.node_id(), laptop_id);
    cut(laptop, phone_id, &fresh, &inbox, "fresh.bin").await;

    // One from a tablet, which is then unpaired.
    let tablet = lab.start("tablet").await;
    let tablet_id = tablet.node_id();
    common::pair(&tablet, &phone).await;
    phone.set_auto_accept(tablet_id, true).unwrap();
    cut(tablet, phone_id, &tablets, &inbox, "tablets.bin").await;
    phone.unpair(tablet_id).unwrap();

    phone.shutdown().await;
    drop(phone);
    // The old transfer was last touched 8 days ago (beyond the default 7).
    for leftover in leftovers_of("old.bin") {
        age(&inbox.join(leftover), 8 * DAY);
    }

    let phone = receiver(&lab, &inbox).await;
    let [fresh_partial, fresh_record] = leftovers_of("fresh.bin");
    let mut kept = vec![fresh_partial, fresh_record, "placed.bin".to_owned()];
    kept.sort();
    assert_eq!(
        names(&inbox),
        kept,
        "only the fresh leftovers and the file stay"
    );
    same(&placed, &inbox.join("placed.bin"));

    // What stayed still resumes.
    let laptop = lab.start("laptop").await;
    let report = send_until_through(&laptop, phone_id, &fresh).await;
    assert!(report.bytes_resumed > 0, "{report:?}");
    same(&fresh, &inbox.join("fresh.bin"));

    laptop.shutdown().await;
    phone.shutdown().await;
}

/// Bandwidth quotas: a push over the sender's send quota is refused before a byte moves, with
/// the quota, the use and the reset in the error; one over the receiver's receive quota is
/// declined on offer, and the sender is told so with its own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_a_bandwidth_quota_is_refused_before_it_starts_on_either_side() {
    use tether::errors::PeerError;
    use tether::{AbortCode, BandwidthQuota, NetworkError, QuotaDirection, QuotaPeriod};

    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone) = lab.sender_and_receiver(&inbox).await;
    let (laptop_id, phone_id) = (laptop.node_id(), phone.node_id());
    let outbox = lab.root.path().join("outbox");
    let two = file(&outbox, "two.bin", 2 * MIB, 7);
    let one_a_day = BandwidthQuota::new(MIB, QuotaPeriod::Day);

    // The laptop's own send quota: refused here, nothing opened or sent.
    laptop
        .set_bandwidth_quota(phone_id, QuotaDirection::Send, Some(one_a_day))
        .unwrap();
    let before = SystemTime::now();
    let error = send(&laptop, phone_id, &two).await.unwrap_err();
    eprintln!("the sender refused: {error}");
    let NetworkError::BandwidthQuota(exceeded) = &error else {
        panic!("not a quota refusal: {}", chain(&error));
    };
    assert_eq!(exceeded.node_id, phone_id);
    assert_eq!(exceeded.device, "phone");
    assert_eq!(exceeded.direction, QuotaDirection::Send);
    assert_eq!(exceeded.quota, one_a_day);
    assert_eq!(exceeded.used, 0);
    assert_eq!(exceeded.needed, Some(2 * MIB));
    assert!(
        exceeded.resets_at >= before + DAY,
        "{:?}",
        exceeded.resets_at
    );
    let said = error.to_string();
    assert!(
        said.starts_with("sending to phone would pass its quota of 1 MiB a day (0 B used; resets "),
        "{said}"
    );
    let usage = laptop.bandwidth(phone_id).unwrap().send;
    assert_eq!((usage.used, usage.resets_at), (0, None), "nothing counted");
    assert!(
        !inbox.exists() || names(&inbox).is_empty(),
        "nothing arrived"
    );

    // The phone's receive quota: the offer is declined, and the laptop hears why.
    laptop
        .set_bandwidth_quota(phone_id, QuotaDirection::Send, None)
        .unwrap();
    phone
        .set_bandwidth_quota(laptop_id, QuotaDirection::Receive, Some(one_a_day))
        .unwrap();
    let error = send(&laptop, phone_id, &two).await.unwrap_err();
    eprintln!("the receiver declined: {}", chain(&error));
    let NetworkError::Transfer(TransferError::Peer(PeerError::Declined { code, message })) = &error
    else {
        panic!("not the receiver's refusal: {}", chain(&error));
    };
    assert_eq!(*code, AbortCode::BandwidthQuota);
    assert!(
        message.contains("bandwidth quota") && message.contains(&format!(" of {MIB} used")),
        "{message}"
    );
    assert!(
        !inbox.exists() || names(&inbox).is_empty(),
        "nothing arrived"
    );

    laptop.shutdown().await;
    phone.shutdown().await;
}

/// A quota reached part-way (set while a transfer runs) stops the transfer resumably with the
/// quota's error; raising the quota and sending again resumes from what the receiver kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_that_reaches_its_quota_stops_and_resumes_once_it_is_raised() {
    use tether::{BandwidthQuota, NetworkError, QuotaDirection, QuotaPeriod};

    let lab = Lab::new();
    let inbox = lab.root.path().join("inbox");
    let (laptop, phone) = lab.sender_and_receiver(&inbox).await;
    let phone_id = phone.node_id();
    let outbox = lab.root.path().join("outbox");
    let big = file(&outbox, "big.bin", BIG, 9);

    let handle = send_a_quarter(&laptop, phone_id, &big).await;
    let quota = BandwidthQuota::new(8 * MIB, QuotaPeriod::Day);
    laptop
        .set_bandwidth_quota(phone_id, QuotaDirection::Send, Some(quota))
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(30), handle.finish())
        .await
        .unwrap()
        .unwrap_err();
    eprintln!("stopped: {stopped}");
    let NetworkError::BandwidthQuota(reached) = &stopped else {
        panic!("not the quota: {}", chain(&stopped));
    };
    assert_eq!(reached.direction, QuotaDirection::Send);
    assert_eq!(reached.needed, None, "reached part-way");
    assert_eq!(reached.used, 8 * MIB);
    let usage = laptop.bandwidth(phone_id).unwrap().send;
    assert_eq!(usage.used, 8 * MIB);
    assert!(usage.resets_at.is_some());
    assert!(!inbox.join("big.bin").exists());

    // Raised: sending again resumes what the phone kept, and verifies.
    let raised = BandwidthQuota::new(100 * MIB, QuotaPeriod::Day);
    laptop
        .set_bandwidth_quota(phone_id, QuotaDirection::Send, Some(raised))
        .unwrap();
    let report = send_until_through(&laptop, phone_id, &big).await;
    eprintln!(
        "resumed: {} of {} bytes kept, {} sent",
        report.bytes_resumed, report.bytes_total, report.bytes_transferred
    );
    assert!(report.bytes_resumed > 0, "{report:?}");
    same(&big, &inbox.join("big.bin"));
    let used = laptop.bandwidth(phone_id).unwrap().send.used;
    assert!(
        used >= report.bytes_transferred && used < BIG,
        "{used} counted for {} sent",
        report.bytes_transferred
    );

    laptop.shutdown().await;
    phone.shutdown().await;
}
