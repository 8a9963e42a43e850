//! The owner's side: [`StreamServer`] answers paired devices' requests for what the app
//! shares with them.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::Mutex;
use tether::chunks::{FileHashes, chunk_count, chunk_len, chunk_offset, file_hashes};
use tether::{
    Connection, ErrorChain, NetworkProtocol, NodeId, PairedPeer, ProtocolError, RecvStream,
    SendStream, ShareProvider,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::STREAM_ALPN;
use crate::cache::Lru;
use crate::wire::{MAX_REQUEST_LEN, Refusal, Request, Response};

/// What a paired device can make the owner do, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamLimits {
    /// Requests one device has answered at once, over all its connections; more wait unread
    /// (each has a file open while it is answered).
    pub requests_per_device: usize,
    /// Files hashed at once for all devices (hashing reads the whole file).
    pub hashing_at_once: usize,
    /// The largest file streamed (its hash list is 32 bytes per 256 KiB).
    pub max_file_size: u64,
    /// The bytes of hash lists kept for files opened before.
    pub hash_cache_bytes: usize,
    /// How long a request may take to arrive once its stream is open.
    pub request_timeout: Duration,
    /// How long an answer may take to be written.
    pub answer_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            requests_per_device: 8,
            hashing_at_once: 1,
            max_file_size: 64 << 30,
            hash_cache_bytes: 32 << 20,
            request_timeout: Duration::from_secs(10),
            answer_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `tether-stream/1`: random-access reads of the files a [`ShareProvider`] shares with
/// each paired device, the same provider (and so never more) than pulls read through.
///
/// Register it with the service's builder (`.protocol(server)`) or
/// [`tether::NetworkingService::register_protocol`]. Each request is resolved through the
/// provider again, so a share withdrawn stops at once.
#[derive(Debug, Clone)]
pub struct StreamServer {
    inner: Arc<ServerInner>,
}

#[derive(Debug)]
struct ServerInner {
    provider: Arc<dyn ShareProvider>,
    limits: StreamLimits,
    per_device: Mutex<HashMap<NodeId, Arc<Semaphore>>>,
    hashing: Semaphore,
    hashes: Mutex<Lru<FileKey, Arc<FileHashes>>>,
}

/// A file as hashed: its path, size and modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileKey {
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
}

impl StreamServer {
    /// Serves what `provider` shares, within the default [`StreamLimits`].
    pub fn new(provider: Arc<dyn ShareProvider>) -> Self {
        Self::with_limits(provider, StreamLimits::default())
    }

    /// Serves what `provider` shares, within `limits`.
    pub fn with_limits(provider: Arc<dyn ShareProvider>, limits: StreamLimits) -> Self {
        Self {
            inner: Arc::new(ServerInner {
                provider,
                limits,
                per_device: Mutex::default(),
                hashing: Semaphore::new(limits.hashing_at_once.max(1)),
                hashes: Mutex::new(Lru::new(limits.hash_cache_bytes)),
            }),
        }
    }
}

#[tether::async_trait]
impl NetworkProtocol for StreamServer {
    fn alpn(&self) -> &'static [u8] {
        STREAM_ALPN
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        let permits = self.inner.device_permits(peer.node_id);
        let peer = Arc::new(peer);
        let mut answering = JoinSet::new();
        loop {
            // A place first: beyond the cap, the device's streams wait unaccepted.
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let Ok((send, recv)) = connection.accept_bi().await else {
                break;
            };
            let inner = Arc::clone(&self.inner);
            let peer = Arc::clone(&peer);
            answering.spawn(async move {
                inner.answer_stream(&peer, send, recv).await;
                drop(permit);
            });
            while answering.try_join_next().is_some() {}
        }
        answering.abort_all();
        Ok(())
    }
}

impl ServerInner {
    fn device_permits(&self, device: NodeId) -> Arc<Semaphore> {
        let mut per_device = self.per_device.lock();
        let permits = per_device
            .entry(device)
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.requests_per_device.max(1))));
        Arc::clone(permits)
    }

    /// Reads one request from a stream (within the deadline), answers it and finishes.
    async fn answer_stream(&self, peer: &PairedPeer, mut send: SendStream, mut recv: RecvStream) {
        let read = tokio::time::timeout(
            self.limits.request_timeout,
            recv.read_to_end(MAX_REQUEST_LEN),
        )
        .await;
        let response = match read {
            Ok(Ok(bytes)) => match Request::decode(&bytes) {
                Ok(request) => self.answer(peer, request).await,
                Err(error) => {
                    debug!(%error, "a malformed stream request");
                    Response::Refused(Refusal::Malformed)
                }
            },
            Ok(Err(error)) => {
                debug!(%error, "a stream request could not be read");
                Response::Refused(Refusal::Malformed)
            }
            Err(_) => {
                debug!("a stream request did not arrive in time");
                return;
            }
        };
        let bytes = response.encode();
        let written = tokio::time::timeout(self.limits.answer_timeout, async {
            send.write_all(&bytes).await?;
            send.finish().map_err(ProtocolError::other)
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(error = %ErrorChain(&error), "a stream answer was not sent"),
            Err(_) => debug!("a stream answer took too long to send"),
        }
    }

    async fn answer(&self, peer: &PairedPeer, request: Request) -> Response {
        let entry = match request {
            Request::Open { entry }
            | Request::Hashes { entry, .. }
            | Request::Read { entry, .. } => entry,
        };
        let Some(shared) = self.provider.resolve(&peer.device, entry) else {
            return Response::Refused(Refusal::NotShared);
        };
        let hashes = match self.hashes(shared.path()).await {
            Ok(hashes) => hashes,
            Err(refusal) => return Response::Refused(refusal),
        };
        let answered = match request {
            Request::Open { .. } => Ok(Response::Opened {
                size: hashes.size,
                root: hashes.root,
            }),
            Request::Hashes {
                root, first, count, ..
            } => page(&hashes, root, first, count),
            Request::Read { root, chunk, .. } => {
                read_chunk(shared.path().to_path_buf(), hashes, root, chunk).await
            }
        };
        answered.unwrap_or_else(Response::Refused)
    }

    /// The file's chunk hashes: cached while its size and modification time stay the same,
    /// else hashed again (one file at a time).
    async fn hashes(&self, path: &Path) -> Result<Arc<FileHashes>, Refusal> {
        let metadata = std::fs::metadata(path).map_err(|error| {
            debug!(%error, "a shared file could not be inspected");
            Refusal::Unreadable
        })?;
        if !metadata.is_file() {
            return Err(Refusal::NotAFile);
        }
        if metadata.len() > self.limits.max_file_size {
            return Err(Refusal::TooLarge);
        }
        let key = FileKey {
            path: path.to_path_buf(),
            size: metadata.len(),
            modified: metadata.modified().ok(),
        };
        if let Some(hashes) = self.hashes.lock().get(&key) {
            return Ok(hashes);
        }
        let _turn = self.hashing.acquire().await.map_err(|_| Refusal::Busy)?;
        // Another request may have hashed it while this one waited.
        if let Some(hashes) = self.hashes.lock().get(&key) {
            return Ok(hashes);
        }
        let owned = path.to_path_buf();
        let hashed = tokio::task::spawn_blocking(move || file_hashes(&owned))
            .await
            .map_err(|_| Refusal::Unreadable)?
            .map_err(|error| {
                warn!(error = %ErrorChain(&error), "a shared file could not be hashed");
                Refusal::Unreadable
            })?;
        if hashed.size > self.limits.max_file_size {
            return Err(Refusal::TooLarge);
        }
        let hashed = Arc::new(hashed);
        let key = FileKey {
            path: path.to_path_buf(),
            size: hashed.size,
            modified: hashed.modified,
        };
        let weight = hashed.hashes.len() * 32;
        self.hashes.lock().insert(key, Arc::clone(&hashed), weight);
        Ok(hashed)
    }
}

/// Hashes `first..first + count` (fewer at the end of the file).
fn page(hashes: &FileHashes, root: [u8; 32], first: u64, count: u32) -> Result<Response, Refusal> {
    if root != hashes.root {
        return Err(Refusal::Changed);
    }
    let total = chunk_count(hashes.size);
    if first >= total {
        return Err(Refusal::OutOfRange);
    }
    let start = usize::try_from(first).map_err(|_| Refusal::OutOfRange)?;
    let end = start
        .saturating_add(count as usize)
        .min(hashes.hashes.len());
    let run = hashes.hashes.get(start..end).ok_or(Refusal::OutOfRange)?;
    Ok(Response::Hashes {
        first,
        hashes: run.to_vec(),
    })
}

/// Reads chunk `index` of the file at `path`, if it is still the file `hashes` describe (same
/// size and modification time). The bytes are not checked here: the reader checks them.
async fn read_chunk(
    path: PathBuf,
    hashes: Arc<FileHashes>,
    root: [u8; 32],
    index: u64,
) -> Result<Response, Refusal> {
    if root != hashes.root {
        return Err(Refusal::Changed);
    }
    let len = chunk_len(hashes.size, index).ok_or(Refusal::OutOfRange)?;
    tokio::task::spawn_blocking(move || {
        let file = File::open(&path).map_err(|_| Refusal::Unreadable)?;
        let metadata = file.metadata().map_err(|_| Refusal::Unreadable)?;
        if metadata.len() != hashes.size || metadata.modified().ok() != hashes.modified {
            return Err(Refusal::Changed);
        }
        let mut data = vec![0u8; len];
        file.read_exact_at(&mut data, chunk_offset(index))
            .map_err(|_| Refusal::Changed)?;
        Ok(Response::Chunk {
            index,
            data: Bytes::from(data),
        })
    })
    .await
    .map_err(|_| Refusal::Unreadable)?
}
