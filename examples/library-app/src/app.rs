//! [`LibraryApp`]: the store, the network service and the app's answers, wired together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tether::StreamExt;
use tether::{
    DeviceId, DeviceName, EventStream, LibraryAnnounce, LibraryInfo, LibraryRequest, NetworkEvent,
    NetworkMessage, NetworkingService, NodeId, PullEvent, PullOptions, SyncEntry, SyncRequest,
    TransferHandle, TransferOptions, Uuid,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::presence::{self, OpenLibrary, PresenceServer};
use crate::pull::{EntryPull, OpenLibraryFiles};
use crate::sync::{DEFAULT_PAGE_SIZE, LibraryHandler, check_page};
use crate::{AppError, AppEvent, AskTheUser, ConsentRequests, Library, Store, StoreError};

/// The most pages one sync may take (a peer promising more forever is cut off).
pub const MAX_SYNC_PAGES: usize = 100_000;
/// How many app events a slow reader may fall behind before it misses some.
const APP_EVENT_BUFFER: usize = 256;
/// How many consent questions may wait for the UI at once.
const PENDING_QUESTIONS: usize = 8;

/// How to start a [`LibraryApp`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppConfig {
    /// Where the app keeps its store (`library.redb`) and the network service its data
    /// (`network/`).
    pub data_dir: PathBuf,
    /// This device's name, shown to devices it pairs with.
    pub device_name: Option<DeviceName>,
    /// Where accepted pushed files go; default `<data_dir>/inbox`.
    pub receive_dir: Option<PathBuf>,
    /// The most entries per `SyncResponse` this device sends.
    pub page_size: usize,
    /// Whether to announce and look for devices in the local-only discovery directory
    /// (pairing by ticket needs none).
    pub discovery: bool,
}

impl AppConfig {
    /// The defaults, with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            device_name: None,
            receive_dir: None,
            page_size: DEFAULT_PAGE_SIZE,
            discovery: true,
        }
    }

    /// Sets the device name.
    pub fn device_name(mut self, name: DeviceName) -> Self {
        self.device_name = Some(name);
        self
    }

    /// Sets the page size of this device's sync answers.
    pub fn page_size(mut self, page_size: usize) -> Self {
        self.page_size = page_size;
        self
    }

    /// Turns the local discovery directory on or off.
    pub fn discovery(mut self, on: bool) -> Self {
        self.discovery = on;
        self
    }
}

/// What one [`LibraryApp::sync_library`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// The entries received, in the order they came (ascending HLC).
    pub entries: Vec<SyncEntry>,
    /// How many `SyncResponse` pages they came in.
    pub pages: usize,
    /// How many of them changed the local store (newer than what it held).
    pub applied: usize,
}

/// The app: a store of libraries, and a Tether service that serves them to paired devices.
#[derive(Debug)]
pub struct LibraryApp {
    service: NetworkingService,
    store: Arc<Store>,
    peers: Arc<Mutex<HashMap<NodeId, Vec<LibraryInfo>>>>,
    events: broadcast::Sender<AppEvent>,
    listener: JoinHandle<()>,
}

impl LibraryApp {
    /// Opens the store and starts the service: local only, the app's device id, its
    /// request handler, consent and presence protocol. Returns the app and the questions its
    /// UI must answer about pushed files.
    pub async fn start(config: AppConfig) -> Result<(Self, ConsentRequests), AppError> {
        let receive_dir = config
            .receive_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("inbox"));
        for dir in [&config.data_dir, &receive_dir] {
            std::fs::create_dir_all(dir).map_err(|source| AppError::Directory {
                path: dir.clone(),
                source,
            })?;
        }
        let path = config.data_dir.join("library.redb");
        let store = Arc::new(
            tokio::task::spawn_blocking(move || Store::open(&path))
                .await
                .map_err(AppError::Task)??,
        );
        let (consent, questions) = AskTheUser::new(PENDING_QUESTIONS);
        let discovery = config.discovery;
        let mut builder = NetworkingService::builder(config.data_dir.join("network"))
            .local_only()
            .device_id(DeviceId::from_uuid(store.device_id()))
            // An example's throwaway devices: the key file is not sealed with a passphrase.
            .insecure_key_file()
            .request_handler(LibraryHandler::new(Arc::clone(&store), config.page_size))
            .consent(consent)
            .protocol(PresenceServer::new(Arc::clone(&store)))
            .share_provider(OpenLibraryFiles::new(Arc::clone(&store)))
            .receive_dir(receive_dir);
        if !discovery {
            builder = builder.loopback_discovery(None);
        }
        if let Some(name) = config.device_name {
            builder = builder.device_name(name);
        }
        // Subscribed before the service starts: no announcement is missed.
        let network_events = builder.events();
        let service = builder.spawn().await?;
        let peers = Arc::default();
        let events = broadcast::channel(APP_EVENT_BUFFER).0;
        let listener = tokio::spawn(listen(network_events, Arc::clone(&peers), events.clone()));
        let app = Self {
            service,
            store,
            peers,
            events,
            listener,
        };
        Ok((app, questions))
    }

    /// The network service (pairing, devices, raw messages).
    pub fn service(&self) -> &NetworkingService {
        &self.service
    }

    /// The local store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The app's events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AppEvent> {
        self.events.subscribe()
    }

    /// Creates an open library.
    pub async fn create_library(&self, name: &str) -> Result<Library, AppError> {
        let name = name.to_owned();
        self.blocking(move |store| store.create_library(&name))
            .await
    }

    /// Opens or closes a library here (what the presence protocol reports).
    pub async fn set_open(&self, library_id: Uuid, open: bool) -> Result<(), AppError> {
        self.blocking(move |store| store.set_open(library_id, open))
            .await
    }

    /// Adds the file at `source` to a library as `path`.
    pub async fn add_file(
        &self,
        library_id: Uuid,
        path: &str,
        source: &Path,
    ) -> Result<SyncEntry, AppError> {
        let (path, source) = (path.to_owned(), source.to_owned());
        self.blocking(move |store| store.add_file(library_id, &path, &source, now_ms()))
            .await
    }

    /// Records the deletion of an entry.
    pub async fn delete_entry(&self, entry_id: Uuid) -> Result<SyncEntry, AppError> {
        self.blocking(move |store| store.delete_entry(entry_id, now_ms()))
            .await
    }

    /// The libraries `device` announced last (empty before its first announcement).
    pub fn peer_libraries(&self, device: &NodeId) -> Vec<LibraryInfo> {
        self.peers.lock().get(device).cloned().unwrap_or_default()
    }

    /// Announces this device's libraries to every paired device; returns the devices that
    /// could not be told, with why.
    pub async fn announce(&self) -> Result<Vec<(NodeId, AppError)>, AppError> {
        let announce = self.announcement().await?;
        let mut failed = Vec::new();
        for device in self.service.devices() {
            if device.paired.is_none() {
                continue;
            }
            if let Err(error) = self
                .send_announcement(device.node_id, announce.clone())
                .await
            {
                failed.push((device.node_id, error));
            }
        }
        Ok(failed)
    }

    /// Announces this device's libraries to one paired device.
    pub async fn announce_to(&self, device: NodeId) -> Result<(), AppError> {
        let announce = self.announcement().await?;
        self.send_announcement(device, announce).await
    }

    /// Asks `device` about one of its libraries (a `LibraryRequest`).
    pub async fn ask_library(
        &self,
        device: NodeId,
        library_id: Uuid,
    ) -> Result<LibraryInfo, AppError> {
        let request = NetworkMessage::LibraryRequest(LibraryRequest { library_id });
        let answer = self.service.device(device)?.send_message(request).await?;
        match answer {
            NetworkMessage::LibraryAnnounce(LibraryAnnounce { libraries }) => libraries
                .into_iter()
                .find(|library| library.id == library_id)
                .ok_or_else(|| AppError::unexpected(device, "LibraryRequest", "another library")),
            other => Err(AppError::unexpected(
                device,
                "LibraryRequest",
                other.kind().as_str(),
            )),
        }
    }

    /// Pulls what changed in a library on `device` since the last sync from it, page by page,
    /// and merges it into the local store (last writer wins by HLC). A library new here is
    /// asked about first and kept closed.
    pub async fn sync_library(
        &self,
        device: NodeId,
        library_id: Uuid,
    ) -> Result<SyncReport, AppError> {
        let handle = self.service.device(device)?;
        if self
            .blocking(move |store| store.library(library_id))
            .await?
            .is_none()
        {
            let info = self.ask_library(device, library_id).await?;
            let library = Library {
                id: library_id,
                name: info.name,
                open: false,
            };
            self.blocking(move |store| store.put_library(&library))
                .await?;
        }
        let mut after = self
            .blocking(move |store| store.cursor(&device, library_id))
            .await?;
        let mut report = SyncReport::default();
        loop {
            if report.pages == MAX_SYNC_PAGES {
                return Err(AppError::TooManyPages(device.fmt_short()));
            }
            let request = NetworkMessage::SyncRequest(SyncRequest { library_id, after });
            let page = match handle.send_message(request).await? {
                NetworkMessage::SyncResponse(page) => page,
                other => {
                    return Err(AppError::unexpected(
                        device,
                        "SyncRequest",
                        other.kind().as_str(),
                    ));
                }
            };
            let next =
                check_page(library_id, after, &page).map_err(|source| AppError::BadPage {
                    device: device.fmt_short(),
                    source,
                })?;
            let entries = page.entries.clone();
            report.applied += self
                .blocking(move |store| {
                    store.merge_remote(&device, library_id, &entries, next, now_ms())
                })
                .await?;
            report.pages += 1;
            report.entries.extend(page.entries);
            after = next;
            if !page.has_more {
                return Ok(report);
            }
        }
    }

    /// Asks `device` which libraries are open on it (the presence protocol).
    pub async fn open_libraries_of(&self, device: NodeId) -> Result<Vec<OpenLibrary>, AppError> {
        Ok(presence::open_libraries(&self.service, device).await?)
    }

    /// Pushes an entry's file to `device`, which asks its user (or accepts at once if it
    /// marked this device auto-accept). The handle reports progress and ends with the
    /// receiver's verified report, or the receiver's refusal.
    pub async fn push_entry(
        &self,
        device: NodeId,
        entry_id: Uuid,
    ) -> Result<TransferHandle, AppError> {
        let stored = self
            .blocking(move |store| store.entry(entry_id))
            .await?
            .ok_or(StoreError::UnknownEntry(entry_id))?;
        let source = stored.source.ok_or(AppError::NoLocalFile(entry_id))?;
        let handle = self
            .service
            .share_with_device(device, &[source], TransferOptions::default())
            .await?;
        Ok(handle)
    }

    /// Pulls an entry's file from `device` into the directory `into_dir` (created if missing),
    /// under the name the device gives it. The entry must be in the local store (synced from
    /// that device, say) with a content hash.
    ///
    /// Progress comes as [`AppEvent::PullProgress`]; [`EntryPull::finish`] checks the file's
    /// BLAKE3 against the entry's hash and records it as this device's copy, which
    /// [`OpenLibraryFiles`](crate::OpenLibraryFiles) then shares onwards. A device that does not
    /// share the entry ends it with [`NetworkError::NotShared`](tether::NetworkError::NotShared)
    /// and nothing is written. Pulling again into the same directory after a cancel or a lost
    /// link resumes from what was verified.
    pub async fn pull_entry(
        &self,
        device: NodeId,
        entry_id: Uuid,
        into_dir: &Path,
        options: PullOptions,
    ) -> Result<EntryPull, AppError> {
        let stored = self
            .blocking(move |store| store.entry(entry_id))
            .await?
            .ok_or(StoreError::UnknownEntry(entry_id))?;
        if stored.entry.deleted || stored.entry.hash.is_none() {
            return Err(AppError::NothingToPull(entry_id));
        }
        let handle = self
            .service
            .device(device)?
            .request_file(entry_id, into_dir, options)
            .await?;
        Ok(EntryPull::start(
            device,
            stored.entry,
            handle,
            Arc::clone(&self.store),
            self.events.clone(),
        ))
    }

    /// Shuts the service down (its protocols first) and stops listening.
    pub async fn shutdown(&self) {
        self.service.shutdown().await;
        self.listener.abort();
    }

    async fn announcement(&self) -> Result<LibraryAnnounce, AppError> {
        let libraries = self
            .blocking(|store| {
                let mut infos = Vec::new();
                for library in store.libraries()? {
                    infos.extend(store.library_info(library.id)?);
                }
                Ok(infos)
            })
            .await?;
        Ok(LibraryAnnounce { libraries })
    }

    async fn send_announcement(
        &self,
        device: NodeId,
        announce: LibraryAnnounce,
    ) -> Result<(), AppError> {
        let message = NetworkMessage::LibraryAnnounce(announce);
        match self.service.device(device)?.send_message(message).await? {
            NetworkMessage::Ack => Ok(()),
            other => Err(AppError::unexpected(
                device,
                "LibraryAnnounce",
                other.kind().as_str(),
            )),
        }
    }

    /// Runs a store operation off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        operation: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AppError> {
        let store = Arc::clone(&self.store);
        let result = tokio::task::spawn_blocking(move || operation(&store))
            .await
            .map_err(AppError::Task)?;
        Ok(result?)
    }
}

/// Turns the service's events into the app's: announcements are remembered per device.
async fn listen(
    mut network: EventStream,
    peers: Arc<Mutex<HashMap<NodeId, Vec<LibraryInfo>>>>,
    events: broadcast::Sender<AppEvent>,
) {
    while let Some(event) = network.next().await {
        let event = match event {
            NetworkEvent::MessageReceived {
                from,
                message: NetworkMessage::LibraryAnnounce(announce),
            } => {
                peers.lock().insert(from, announce.libraries.clone());
                AppEvent::LibrariesAnnounced {
                    from,
                    libraries: announce.libraries,
                }
            }
            NetworkEvent::Pull(PullEvent::Completed {
                from,
                entry_id,
                report,
            }) => AppEvent::EntryServed {
                to: from,
                entry_id,
                report,
            },
            NetworkEvent::TransferReceived { from, report } => {
                AppEvent::FilesReceived { from, report }
            }
            NetworkEvent::Unpaired { node_id } => {
                peers.lock().remove(&node_id);
                continue;
            }
            NetworkEvent::Lagged { missed } => {
                tracing::warn!(missed, "the app fell behind the network's events");
                continue;
            }
            _ => continue,
        };
        // Nobody listening is fine.
        let _ = events.send(event);
    }
}

/// The wall clock in milliseconds since the Unix epoch, for new HLC timestamps.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
