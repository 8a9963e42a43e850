//! An example app on Tether that does with the network what Spacedrive's core does.
//!
//! It depends on the facade `tether` alone. [`LibraryApp::start`] opens a redb [`Store`] of
//! libraries and entries and builds the service with `NetworkingService::builder(..)`:
//! always local only, the app's own device id, [`LibraryHandler`] answering `SyncRequest`
//! and `LibraryRequest` from the store, [`AskTheUser`] deciding on pushed files by asking the
//! UI, [`OpenLibraryFiles`] saying which files paired devices may pull, and [`PresenceServer`]
//! on its own ALPN ([`PRESENCE_ALPN`]).
//!
//! * **Announce.** [`LibraryApp::announce`] sends a `LibraryAnnounce` to every paired device;
//!   announcements from others arrive as [`AppEvent::LibrariesAnnounced`].
//! * **Sync.** [`LibraryApp::sync_library`] pulls a peer's entries changed after the cursor
//!   kept for that peer, page by page in HLC order, checks each page ([`check_page`]) and
//!   merges it (last writer wins by HLC).
//! * **Push with consent.** [`LibraryApp::push_entry`] sends an entry's file; the receiver's
//!   [`ConsentRequests`] get a [`ConsentRequest`] to accept or decline.
//! * **Pull by entry id.** [`LibraryApp::pull_entry`] asks a device for an entry's file,
//!   reports progress as [`AppEvent::PullProgress`], checks the file against the entry's
//!   BLAKE3 hash and records it, so [`OpenLibraryFiles`] (what this device shares) serves it
//!   onwards.
//! * **Presence.** [`LibraryApp::open_libraries_of`] asks a device which libraries are open.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tether_example_library_app::AppError> {
//! use tether_example_library_app::{AppConfig, LibraryApp};
//!
//! let (app, mut questions) = LibraryApp::start(AppConfig::new("/tmp/library-app")).await?;
//! let photos = app.create_library("Photos").await?;
//! app.add_file(photos.id, "beach.jpg", "/tmp/beach.jpg".as_ref()).await?;
//! app.announce().await?;
//! while let Some(question) = questions.next().await {
//!     question.decline("not now");
//! }
//! # Ok(()) }
//! ```

mod app;
mod consent;
mod error;
mod event;
mod presence;
mod pull;
mod store;
mod sync;

pub use app::{AppConfig, LibraryApp, MAX_SYNC_PAGES, SyncReport};
pub use consent::{AskTheUser, ConsentRequest, ConsentRequests, NOBODY_TO_ASK};
pub use error::{AppError, PageError, PresenceError, StoreError};
pub use event::AppEvent;
pub use presence::{
    MAX_LIBRARIES, MAX_NAME_LEN, OpenLibrary, PRESENCE_ALPN, PresenceServer, open_libraries,
};
pub use pull::{EntryPull, OpenLibraryFiles, PulledFile};
pub use store::{Library, MAX_LIBRARY_NAME_LEN, Store, StoredEntry};
pub use sync::{DEFAULT_PAGE_SIZE, LibraryHandler, MAX_PAGE_SIZE, check_page};
