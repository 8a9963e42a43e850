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

use tether::{DeviceName, ErrorCode, Hlc, NetworkError, TransferEvent};
use tether_example_library_app::{
    AppConfig, AppError, AppEvent, ConsentRequest, ConsentRequests, LibraryApp, OpenLibrary,
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
    let unknown = phone.ask_library(laptop_id, tether::Uuid::new_v4()).await;
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
        .and_then(|source| source.downcast_ref::<tether::errors::TransferError>());
    assert!(
        matches!(
            declined,
            Some(tether::errors::TransferError::Peer(tether::errors::PeerError::Declined { message, .. }))
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
