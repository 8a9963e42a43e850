//! Streaming a file that lives on another device: play a video from the laptop on the desk.
//!
//! A protocol written the way a third party would write one, on Tether's extension points
//! alone: [`StreamServer`] is a [`tether::NetworkProtocol`] on its own ALPN ([`STREAM_ALPN`]),
//! so Tether's gate turns away every device that is not paired before it runs, and it serves
//! only what the app's [`tether::ShareProvider`] shares with the asking device (the same
//! provider pulls read through, so streaming never exposes more than a pull would).
//!
//! * **Owner.** Register a [`StreamServer`] with the service's builder. On the first open of
//!   a file it hashes it per 256 KiB chunk (tether's own chunk hashes, [`tether::chunks`]) and
//!   keeps the list, bounded ([`StreamLimits`]); each request is one stream, at most
//!   [`StreamLimits::requests_per_device`] answered at once per device.
//! * **Reader.** [`OpenRemote::open_remote`] on a [`tether::DeviceHandle`] gives a
//!   [`RemoteFile`]: `AsyncRead + AsyncSeek`, which fetches hash pages and chunks on streams of
//!   their own, verifies every chunk against its hash before returning any byte of it (a chunk
//!   that fails is [`StreamError::Corrupt`], never data), reads ahead, and caches verified
//!   chunks up to a cap ([`ReaderOptions`]). Every request has a deadline.
//! * **Players.** [`HttpServer`] serves a [`RemoteFile`] on 127.0.0.1 with `Range` support, at
//!   a URL holding a random token; `tether stream DEVICE PATH` runs it.
//!
//! The wire format is in [`wire`].
//!
//! ```no_run
//! # async fn demo(laptop: tether::DeviceHandle, entry: uuid::Uuid) -> Result<(), Box<dyn std::error::Error>> {
//! use tether_stream::{HttpServer, OpenRemote};
//! use tokio::io::{AsyncReadExt, AsyncSeekExt};
//!
//! let mut file = laptop.open_remote(entry).await?;
//! file.seek(std::io::SeekFrom::End(-1024)).await?;
//! let mut tail = Vec::new();
//! file.read_to_end(&mut tail).await?; // verified bytes only
//!
//! let server = HttpServer::start(file.reader_at(0), "film.mp4", 0).await?;
//! println!("play {}", server.url());
//! # Ok(()) }
//! ```

mod cache;
mod error;
mod http;
mod owner;
mod reader;
pub mod wire;

pub use error::StreamError;
pub use http::{HttpServer, MAX_HTTP_CONNECTIONS};
pub use owner::{StreamLimits, StreamServer};
pub use reader::{OpenRemote, ReaderOptions, RemoteFile};

const _: () = assert!(wire::MAX_CHUNK_LEN == tether::chunks::CHUNK_SIZE);

/// The protocol's ALPN, with its version.
pub const STREAM_ALPN: &[u8] = b"tether-stream/1";
