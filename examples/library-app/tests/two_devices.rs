//! Two instances of the app on 127.0.0.1, each in its own temporary directory, paired by
//! ticket (no discovery at all), checked step by step.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tether::{
    DeviceName, ErrorCode, Hlc, NetworkError, PullOptions, TransferError, TransferEvent, Uuid,
};
use tether_example_library_app::{
    AppConfig, AppError, AppEvent, ConsentRequest, ConsentRequests, LibraryApp, OpenLibrary,
    StoreError,
};

/// Every wait in these tests ends within this (events are awaited, never slept for).
const WITHIN: Duration = Duration::from_secs(10);

struct Device {
    app: LibraryApp,
    questions: ConsentRequests,
}

struct TwoDevices {
    root: tempfile::TempDir,
    laptop: Device,
    phone: Device,
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(WITHIN, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {WITHIN:?}"))
}

async fn start(root: &Path, name: &str, page_size: usize) -> Device {
    let config = AppConfig::new(root.join(name))
        .device_name(DeviceName::new(name).unwrap())
        .page_size(page_size)
        .discovery(false);
    let (app, questions) = LibraryApp::start(config).await.unwrap();
    Device { app, questions }
}

/// A laptop and a phone, paired by ticket; the laptop answers sync with `page_size` entries
/// per page.
async fn two_devices(page_size: usize) -> TwoDevices {
    let root = tempfile::tempdir().unwrap();
    let laptop = start(root.path(), "laptop", page_size).await;
    let phone = start(root.path(), "phone", page_size).await;
    let mut invite = laptop.app.service().start_pairing_with_ticket().unwrap();
    phone
        .app
        .service()
        .join_pairing(&invite.code)
        .await
        .unwrap();
    within("pairing", invite.paired()).await.unwrap();
    TwoDevices {
        root,
        laptop,
        phone,
    }
}

impl TwoDevices {
    /// A file of `len` bytes in the test's directory.
    fn file(&self, name: &str, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let path = self.root.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    async fn shutdown(self) {
        self.laptop.app.shutdown().await;
        self.phone.app.shutdown().await;
    }
}

async fn next_question(questions: &mut ConsentRequests) -> ConsentRequest {
    within("a consent question", questions.next())
        .await
        .expect("the app is gone")
}

#[tokio::test(flavor = "multi_thread")]
async fn announcements_arrive_and_a_library_can_be_asked_about() {
    let devices = two_devices(128).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let laptop_id = laptop.service().node_id();
    let photos = laptop.create_library("Photos").await.unwrap();
    let (file, _) = devices.file("a.jpg", 10);
    laptop.add_file(photos.id, "a.jpg", &file).await.unwrap();
    let last = laptop.add_file(photos.id, "b.jpg", &file).await.unwrap();

    let mut events = phone.subscribe();
    assert!(laptop.announce().await.unwrap().is_empty());
    let announced = within("the announcement", async {
        loop {
            if let AppEvent::LibrariesAnnounced { from, libraries } = events.recv().await.unwrap()
                && from == laptop_id
            {
                return libraries;
            }
        }
    })
    .await;
    assert_eq!(announced.len(), 1);
    assert_eq!(announced[0].id, photos.id);
    assert_eq!(announced[0].name, "Photos");
    assert_eq!(announced[0].entry_count, 2);
    assert_eq!(announced[0].updated, last.hlc);
    assert_eq!(phone.peer_libraries(&laptop_id), announced);

    // A `LibraryRequest` is answered by the laptop's handler from its store.
    let info = phone.ask_library(laptop_id, photos.id).await.unwrap();
    assert_eq!(info, announced[0]);
    let unknown = phone.ask_library(laptop_id, Uuid::new_v4()).await;
    assert!(
        matches!(
            unknown,
            Err(AppError::Network(NetworkError::Rejected {
                code: ErrorCode::NotFound,
                ..
            }))
        ),
        "{unknown:?}"
    );
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_comes_in_pages_in_hlc_order_then_only_what_changed() {
    const ENTRIES: usize = 10;
    const PAGE: usize = 4;
    let devices = two_devices(PAGE).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let laptop_id = laptop.service().node_id();
    let photos = laptop.create_library("Photos").await.unwrap();
    let mut added = Vec::new();
    for i in 0..ENTRIES {
        let (file, _) = devices.file(&format!("{i}.jpg"), i + 1);
        added.push(
            laptop
                .add_file(photos.id, &format!("{i}.jpg"), &file)
                .await
                .unwrap(),
        );
    }

    let first = phone.sync_library(laptop_id, photos.id).await.unwrap();
    assert_eq!(first.pages, ENTRIES.div_ceil(PAGE));
    assert_eq!(first.applied, ENTRIES);
    assert_eq!(first.entries, added);
    assert!(
        first
            .entries
            .windows(2)
            .all(|pair| pair[0].hlc < pair[1].hlc)
    );
    // The phone now keeps the library (closed) and its entries, in the same order.
    let mirrored = phone.store().library(photos.id).unwrap().unwrap();
    assert_eq!((mirrored.name.as_str(), mirrored.open), ("Photos", false));
    let (kept, more) = phone
        .store()
        .changes_after(photos.id, Hlc::ZERO, 100)
        .unwrap();
    assert!(!more);
    assert_eq!(kept, added);

    // A new change on the laptop: the next sync returns it alone.
    let (file, _) = devices.file("new.jpg", 3);
    let new = laptop.add_file(photos.id, "new.jpg", &file).await.unwrap();
    let second = phone.sync_library(laptop_id, photos.id).await.unwrap();
    assert_eq!(second.entries, std::slice::from_ref(&new));
    assert_eq!((second.pages, second.applied), (1, 1));

    // Nothing changed: nothing comes.
    let third = phone.sync_library(laptop_id, photos.id).await.unwrap();
    assert!(third.entries.is_empty());

    // The phone's clock moved past what it saw: its own changes sort after the laptop's.
    let (file, _) = devices.file("phone.jpg", 3);
    let local = phone.add_file(photos.id, "phone.jpg", &file).await.unwrap();
    assert!(local.hlc > new.hlc);
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_presence_protocol_answers_with_the_open_libraries() {
    let devices = two_devices(128).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let photos = laptop.create_library("Photos").await.unwrap();
    let archive = laptop.create_library("Archive").await.unwrap();
    laptop.set_open(archive.id, false).await.unwrap();

    let open = phone
        .open_libraries_of(laptop.service().node_id())
        .await
        .unwrap();
    assert_eq!(
        open,
        [OpenLibrary {
            id: photos.id,
            name: "Photos".to_owned()
        }]
    );
    // The phone has no library open: its answer is empty.
    let open = laptop
        .open_libraries_of(phone.service().node_id())
        .await
        .unwrap();
    assert!(open.is_empty());
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_file_arrives_only_when_the_user_accepts() {
    let mut devices = two_devices(128).await;
    let laptop = &devices.laptop.app;
    let phone_id = devices.phone.app.service().node_id();
    let inbox = devices
        .phone
        .app
        .service()
        .receive_dir()
        .unwrap()
        .to_owned();
    let photos = laptop.create_library("Photos").await.unwrap();
    let (file, bytes) = devices.file("beach.jpg", 300 * 1024);
    let beach = laptop
        .add_file(photos.id, "beach.jpg", &file)
        .await
        .unwrap();
    let (file, _) = devices.file("secret.txt", 1000);
    let secret = laptop
        .add_file(photos.id, "secret.txt", &file)
        .await
        .unwrap();
    let mut events = devices.phone.app.subscribe();

    // Accepted: the bytes arrive, verified, and the phone's app hears of it.
    let mut handle = laptop.push_entry(phone_id, beach.entry_id).await.unwrap();
    let question = next_question(&mut devices.phone.questions).await;
    assert_eq!(question.offer.node_id, laptop.service().node_id());
    assert_eq!(question.offer.files, 1);
    assert_eq!(question.offer.total_bytes, bytes.len() as u64);
    assert_eq!(question.offer.top_level, ["beach.jpg"]);
    question.accept();
    let mut progressed = false;
    while let Some(event) = within("transfer progress", handle.events.recv()).await {
        progressed |= matches!(
            event,
            TransferEvent::Progress(_) | TransferEvent::Started { .. }
        );
    }
    assert!(progressed, "the sender saw no progress");
    let report = within("the accepted push", handle.finish()).await.unwrap();
    assert_eq!(report.bytes_total, bytes.len() as u64);
    let received = within("the phone's report", async {
        loop {
            if let AppEvent::FilesReceived { report, .. } = events.recv().await.unwrap() {
                return report;
            }
        }
    })
    .await;
    assert_eq!(received.transfer_id, report.transfer_id);
    assert_eq!(std::fs::read(inbox.join("beach.jpg")).unwrap(), bytes);

    // Declined: the sender is told why, and nothing is written.
    let before = listing(&inbox);
    let handle = laptop.push_entry(phone_id, secret.entry_id).await.unwrap();
    let question = next_question(&mut devices.phone.questions).await;
    assert_eq!(question.offer.top_level, ["secret.txt"]);
    question.decline("not on my phone");
    let refused = within("the declined push", handle.finish())
        .await
        .unwrap_err();
    let declined = std::error::Error::source(&refused)
        .and_then(|source| source.downcast_ref::<TransferError>());
    assert!(
        matches!(
            declined,
            Some(TransferError::Peer(tether::errors::PeerError::Declined { message, .. }))
                if message == "not on my phone"
        ),
        "{}",
        tether::error_chain(&refused)
    );
    assert_eq!(listing(&inbox), before);
    assert!(!inbox.join("secret.txt").exists());

    // An entry learnt from a peer has no file here: nothing to push.
    let foreign = devices
        .phone
        .app
        .sync_library(laptop.service().node_id(), photos.id)
        .await
        .unwrap();
    let pushed = devices
        .phone
        .app
        .push_entry(laptop.service().node_id(), foreign.entries[0].entry_id)
        .await;
    assert!(
        matches!(pushed, Err(AppError::NoLocalFile(_))),
        "{pushed:?}"
    );
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pulled_entry_arrives_verified_with_progress_and_is_shared_onwards() {
    let devices = two_devices(128).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let (laptop_id, phone_id) = (laptop.service().node_id(), phone.service().node_id());
    let photos = laptop.create_library("Photos").await.unwrap();
    let (file, bytes) = devices.file("film.bin", 6 << 20);
    let film = laptop.add_file(photos.id, "film.bin", &file).await.unwrap();
    phone.sync_library(laptop_id, photos.id).await.unwrap();
    let mut progress = phone.subscribe();
    let mut served = laptop.subscribe();

    // Slowed to about 0.4 s, so the 100 ms progress ticks come.
    let into = devices.root.path().join("phone-pulled");
    let slow = PullOptions::default().rate_limit(Some(16 << 20));
    let pull = phone
        .pull_entry(laptop_id, film.entry_id, &into, slow)
        .await
        .unwrap();
    let pulled = within("the pull", pull.finish()).await.unwrap();
    assert_eq!(pulled.path, into.join("film.bin"));
    assert_eq!(std::fs::read(&pulled.path).unwrap(), bytes);
    assert_eq!(pulled.entry, film);
    assert_eq!(pulled.report.bytes_total, bytes.len() as u64);
    let percentages = pull_progress(&mut progress, film.entry_id);
    assert!(!percentages.is_empty(), "no progress reported");
    assert!(percentages.windows(2).all(|pair| pair[0] <= pair[1]));
    assert!(percentages.iter().all(|p| (0.0..=100.0).contains(p)));
    // Checked against the synced hash, then recorded as the phone's copy.
    let kept = phone.store().entry(film.entry_id).unwrap().unwrap();
    assert_eq!(kept.source.as_deref(), Some(pulled.path.as_path()));
    assert_eq!(kept.entry, film, "recording the copy is not a change");
    let (to, report) = within("the laptop's report", async {
        loop {
            if let AppEvent::EntryServed {
                to,
                entry_id,
                report,
            } = served.recv().await.unwrap()
                && entry_id == film.entry_id
            {
                return (to, report);
            }
        }
    })
    .await;
    assert_eq!((to, report.bytes_total), (phone_id, bytes.len() as u64));

    // Onwards: the phone keeps the library closed, so it serves none of its files...
    let back = devices.root.path().join("laptop-pulled");
    let pull = laptop
        .pull_entry(phone_id, film.entry_id, &back, PullOptions::default())
        .await
        .unwrap();
    let refused = within("the refused pull", pull.finish()).await.unwrap_err();
    assert!(
        matches!(refused, AppError::Network(NetworkError::NotShared { entry_id }) if entry_id == film.entry_id),
        "{refused:?}"
    );
    assert!(listing(&back).is_empty());
    // ...until it opens it: then the pulled copy is served like a file added there.
    phone.set_open(photos.id, true).await.unwrap();
    let pull = laptop
        .pull_entry(phone_id, film.entry_id, &back, PullOptions::default())
        .await
        .unwrap();
    let again = within("the onward pull", pull.finish()).await.unwrap();
    assert_eq!(std::fs::read(&again.path).unwrap(), bytes);
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn entries_not_shared_are_refused_and_a_changed_file_fails_the_hash_check() {
    let devices = two_devices(128).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let laptop_id = laptop.service().node_id();
    let photos = laptop.create_library("Photos").await.unwrap();
    let archive = laptop.create_library("Archive").await.unwrap();
    let (file, _) = devices.file("keep.jpg", 64 * 1024);
    let keep = laptop.add_file(photos.id, "keep.jpg", &file).await.unwrap();
    let (gone_file, _) = devices.file("gone.jpg", 1000);
    let gone = laptop
        .add_file(photos.id, "gone.jpg", &gone_file)
        .await
        .unwrap();
    let (old_file, _) = devices.file("old.txt", 1000);
    let old = laptop
        .add_file(archive.id, "old.txt", &old_file)
        .await
        .unwrap();
    phone.sync_library(laptop_id, photos.id).await.unwrap();
    phone.sync_library(laptop_id, archive.id).await.unwrap();
    // After the sync, the laptop closes the archive and deletes an entry: the phone's store
    // still lists both, the laptop shares neither.
    laptop.set_open(archive.id, false).await.unwrap();
    laptop.delete_entry(gone.entry_id).await.unwrap();

    let into = devices.root.path().join("phone-pulled");
    for entry in [&old, &gone] {
        let pull = phone
            .pull_entry(laptop_id, entry.entry_id, &into, PullOptions::default())
            .await
            .unwrap();
        let refused = within("a refused pull", pull.finish()).await.unwrap_err();
        assert!(
            matches!(refused, AppError::Network(NetworkError::NotShared { entry_id }) if entry_id == entry.entry_id),
            "{refused:?}"
        );
    }
    // An id the laptop's store does not hold (asked through the facade: the app would not
    // ask for an entry its own store lacks).
    let unknown = Uuid::new_v4();
    let handle = phone
        .service()
        .device(laptop_id)
        .unwrap()
        .request_file(unknown, &into, PullOptions::default())
        .await
        .unwrap();
    let refused = within("the unknown id", handle.finish()).await.unwrap_err();
    assert!(
        matches!(refused, NetworkError::NotShared { entry_id } if entry_id == unknown),
        "{refused:?}"
    );
    assert!(listing(&into).is_empty(), "something was written");
    assert!(matches!(
        phone.pull_entry(laptop_id, unknown, &into, PullOptions::default()).await,
        Err(AppError::Store(StoreError::UnknownEntry(id))) if id == unknown
    ));

    // The laptop's file changed behind its store's back: the bytes arrive, but they are not
    // the entry the phone synced, so they are not recorded as its copy.
    let mut changed = std::fs::read(&file).unwrap();
    changed[0] ^= 0xff;
    std::fs::write(&file, changed).unwrap();
    let pull = phone
        .pull_entry(laptop_id, keep.entry_id, &into, PullOptions::default())
        .await
        .unwrap();
    let mismatch = within("the changed file", pull.finish()).await.unwrap_err();
    assert!(
        matches!(&mismatch, AppError::HashMismatch { entry_id, path } if *entry_id == keep.entry_id && *path == into.join("keep.jpg")),
        "{mismatch:?}"
    );
    let kept = phone.store().entry(keep.entry_id).unwrap().unwrap();
    assert_eq!(kept.source, None);
    devices.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_pull_resumes_from_what_it_verified() {
    let devices = two_devices(128).await;
    let (laptop, phone) = (&devices.laptop.app, &devices.phone.app);
    let laptop_id = laptop.service().node_id();
    let photos = laptop.create_library("Photos").await.unwrap();
    let (file, bytes) = devices.file("disk.img", 8 << 20);
    let disk = laptop.add_file(photos.id, "disk.img", &file).await.unwrap();
    phone.sync_library(laptop_id, photos.id).await.unwrap();
    let mut progress = phone.subscribe();

    // About 2 s at 4 MiB/s: cancelled once past 40 %.
    let into = devices.root.path().join("phone-pulled");
    let slow = PullOptions::default().rate_limit(Some(4 << 20));
    let pull = phone
        .pull_entry(laptop_id, disk.entry_id, &into, slow)
        .await
        .unwrap();
    within("40 % of the pull", async {
        loop {
            if let AppEvent::PullProgress { percentage, .. } = progress.recv().await.unwrap()
                && percentage >= 40.0
            {
                return;
            }
        }
    })
    .await;
    pull.cancel();
    let cut = within("the cancelled pull", pull.finish())
        .await
        .unwrap_err();
    assert!(
        matches!(
            cut,
            AppError::Network(NetworkError::Transfer(TransferError::Cancelled))
        ),
        "{cut:?}"
    );
    assert!(!into.join("disk.img").exists());
    assert_eq!(
        phone.store().entry(disk.entry_id).unwrap().unwrap().source,
        None
    );

    let pull = phone
        .pull_entry(laptop_id, disk.entry_id, &into, PullOptions::default())
        .await
        .unwrap();
    let pulled = within("the resumed pull", pull.finish()).await.unwrap();
    assert_eq!(std::fs::read(&pulled.path).unwrap(), bytes);
    let report = &pulled.report;
    assert!(report.bytes_resumed > 0, "{report:?}");
    assert_eq!(
        report.bytes_resumed + report.bytes_transferred,
        bytes.len() as u64,
        "{report:?}"
    );
    devices.shutdown().await;
}

/// The percentages of a pull's progress events already received, in order.
fn pull_progress(events: &mut tokio::sync::broadcast::Receiver<AppEvent>, entry: Uuid) -> Vec<f64> {
    let mut percentages = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let AppEvent::PullProgress {
            entry_id,
            percentage,
            ..
        } = event
        {
            assert_eq!(entry_id, entry);
            percentages.push(percentage);
        }
    }
    percentages
}

/// Everything under `dir`, hidden files included, as sorted relative paths.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path.clone());
            }
            found.push(path.strip_prefix(dir).unwrap().to_owned());
        }
    }
    found.sort();
    found
}
