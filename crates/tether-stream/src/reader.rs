//! The reader's side: [`RemoteFile`], a shared file on a paired device read at any offset, every
//! byte checked against its chunk's BLAKE3 hash before it is returned.

use std::future::Future;
use std::io::SeekFrom;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tether::chunks::{CHUNK_SIZE, chunk_count, chunk_hash, chunk_len, chunk_offset, root_hash};
use tether::{Connection, DeviceHandle};
use tokio::io::{AsyncRead, AsyncSeek, ReadBuf};
use uuid::Uuid;

use crate::STREAM_ALPN;
use crate::cache::{Flights, Lookup, wait};
use crate::error::StreamError;
use crate::wire::{MAX_HASHES_PER_PAGE, MAX_RESPONSE_LEN, Request, Response};

/// How a [`RemoteFile`] reads ahead, caches and waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReaderOptions {
    /// Chunks fetched ahead of the one being read.
    pub read_ahead: u32,
    /// The bytes of verified chunks kept (least recently used dropped first).
    pub cache_bytes: usize,
    /// How long one chunk or hash request may take.
    pub request_timeout: Duration,
    /// How long opening may take (the owner hashes a file on its first open).
    pub open_timeout: Duration,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            read_ahead: 4,
            cache_bytes: 16 << 20,
            request_timeout: Duration::from_secs(15),
            open_timeout: Duration::from_secs(120),
        }
    }
}

/// Opens shared files of a paired device for reading: what [`tether::DeviceHandle`] gains.
#[tether::async_trait]
pub trait OpenRemote {
    /// Opens the entry `entry` the device shares with this one, with default
    /// [`ReaderOptions`].
    async fn open_remote(&self, entry: Uuid) -> Result<RemoteFile, StreamError>;
}

#[tether::async_trait]
impl OpenRemote for DeviceHandle {
    async fn open_remote(&self, entry: Uuid) -> Result<RemoteFile, StreamError> {
        RemoteFile::open(self, entry, ReaderOptions::default()).await
    }
}

/// A file on a paired device: `AsyncRead + AsyncSeek`, every chunk verified before any byte of
/// it is returned (a chunk that fails is [`StreamError::Corrupt`], as an `InvalidData` IO
/// error), the next chunks fetched ahead, and verified chunks cached up to a cap.
///
/// [`RemoteFile::reader_at`] gives another reader of the same file sharing the connection and
/// cache (an HTTP server answers each request with one).
pub struct RemoteFile {
    remote: Arc<Remote>,
    position: u64,
    current: Option<(u64, Bytes)>,
    pending: Option<Fetch>,
}

/// The fetch of the chunk a read waits for.
struct Fetch {
    index: u64,
    future: Pin<Box<dyn Future<Output = Result<Bytes, StreamError>> + Send>>,
}

impl std::fmt::Debug for RemoteFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteFile")
            .field("entry", &self.remote.entry)
            .field("size", &self.remote.size)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// What all readers of one remote file share.
#[derive(Debug)]
struct Remote {
    connection: Connection,
    entry: Uuid,
    size: u64,
    root: [u8; 32],
    options: ReaderOptions,
    chunks: Mutex<Flights<Bytes>>,
    pages: Mutex<Flights<Arc<[[u8; 32]]>>>,
}

impl RemoteFile {
    /// Opens `entry` on `device` (on its own connection, `tether-stream/1`).
    pub async fn open(
        device: &DeviceHandle,
        entry: Uuid,
        options: ReaderOptions,
    ) -> Result<Self, StreamError> {
        let connection = device.connect_protocol(STREAM_ALPN).await?;
        let opened = exchange(&connection, Request::Open { entry }, options.open_timeout).await?;
        let Response::Opened { size, root } = opened else {
            return Err(StreamError::Unexpected(
                "an answer to open that is not opened",
            ));
        };
        let remote = Remote {
            connection,
            entry,
            size,
            root,
            options,
            chunks: Mutex::new(Flights::new(options.cache_bytes)),
            pages: Mutex::new(Flights::new(4 * MAX_HASHES_PER_PAGE as usize * 32)),
        };
        Ok(Self::at(Arc::new(remote), 0))
    }

    fn at(remote: Arc<Remote>, position: u64) -> Self {
        Self {
            remote,
            position,
            current: None,
            pending: None,
        }
    }

    /// Another reader of the same file, at `position`, sharing this one's connection and cache.
    pub fn reader_at(&self, position: u64) -> Self {
        Self::at(Arc::clone(&self.remote), position)
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.remote.size
    }

    /// The file's BLAKE3 hash, as the owner gave it when it was opened.
    pub fn hash(&self) -> [u8; 32] {
        self.remote.root
    }

    /// The verified bytes of chunk `index` (from the cache, or fetched).
    pub async fn chunk(&self, index: u64) -> Result<Bytes, StreamError> {
        Arc::clone(&self.remote).chunk(index).await
    }

    /// Starts fetching chunk `index` for the read at the current position, and the next ones.
    fn start(&mut self, index: u64) {
        let remote = Arc::clone(&self.remote);
        self.pending = Some(Fetch {
            index,
            future: Box::pin(Arc::clone(&remote).chunk(index)),
        });
        let last = chunk_count(remote.size);
        for ahead in 1..=u64::from(remote.options.read_ahead) {
            let next = index.saturating_add(ahead);
            if next >= last {
                break;
            }
            remote.prefetch(next);
        }
    }
}

impl AsyncRead for RemoteFile {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.position >= this.remote.size || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let index = this.position / u64::from(CHUNK_SIZE);
            if let Some((at, data)) = &this.current
                && *at == index
            {
                let offset = usize::try_from(this.position - chunk_offset(index)).unwrap_or(0);
                let available = data.get(offset..).unwrap_or_default();
                let n = available.len().min(buf.remaining());
                let Some(bytes) = available.get(..n).filter(|bytes| !bytes.is_empty()) else {
                    return Poll::Ready(Err(StreamError::Unexpected("a short chunk").into()));
                };
                buf.put_slice(bytes);
                this.position += n as u64;
                return Poll::Ready(Ok(()));
            }
            if this
                .pending
                .as_ref()
                .is_none_or(|fetch| fetch.index != index)
            {
                this.start(index);
            }
            let Some(fetch) = this.pending.as_mut() else {
                continue;
            };
            match fetch.future.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(fetched) => {
                    this.pending = None;
                    this.current = Some((index, fetched?));
                }
            }
        }
    }
}

impl AsyncSeek for RemoteFile {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> std::io::Result<()> {
        let this = self.get_mut();
        let target = match position {
            SeekFrom::Start(at) => Some(at),
            SeekFrom::End(delta) => this.remote.size.checked_add_signed(delta),
            SeekFrom::Current(delta) => this.position.checked_add_signed(delta),
        };
        this.position = target.ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a seek before the start of the file",
            )
        })?;
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Poll::Ready(Ok(self.position))
    }
}

impl Remote {
    /// Chunk `index`, verified: from the cache, from a fetch under way, or fetched now (on a
    /// task of its own, so a dropped read leaves it to finish for the cache).
    async fn chunk(self: Arc<Self>, index: u64) -> Result<Bytes, StreamError> {
        let lookup = self.chunks.lock().lookup(index);
        match lookup {
            Lookup::Hit(data) => Ok(data),
            Lookup::Wait(outcome) => wait(outcome).await,
            Lookup::Start(sender, outcome) => {
                let remote = Arc::clone(&self);
                tokio::spawn(async move {
                    let fetched = remote.fetch_chunk(index).await;
                    let weight = fetched.as_ref().map_or(0, Bytes::len);
                    remote.chunks.lock().finish(index, &fetched, weight);
                    let _ = sender.send(Some(fetched));
                });
                wait(outcome).await
            }
        }
    }

    /// Starts fetching chunk `index` unless it is cached or under way.
    fn prefetch(self: &Arc<Self>, index: u64) {
        if self.chunks.lock().known(index) {
            return;
        }
        let remote = Arc::clone(self);
        tokio::spawn(async move {
            let _ = remote.chunk(index).await;
        });
    }

    /// Asks for chunk `index` and its hash at once; the bytes only if they match the hash.
    async fn fetch_chunk(self: &Arc<Self>, index: u64) -> Result<Bytes, StreamError> {
        let request = Request::Read {
            entry: self.entry,
            root: self.root,
            chunk: index,
        };
        let timeout = self.options.request_timeout;
        let (expected, answer) = tokio::join!(
            self.chunk_hash(index),
            exchange(&self.connection, request, timeout)
        );
        let expected = expected?;
        let Response::Chunk { index: got, data } = answer? else {
            return Err(StreamError::Unexpected(
                "an answer to read that is not a chunk",
            ));
        };
        if got != index || chunk_len(self.size, index) != Some(data.len()) {
            return Err(StreamError::Unexpected(
                "another chunk than the one asked for",
            ));
        }
        if chunk_hash(self.size, index, &data) != Some(expected) {
            return Err(StreamError::Corrupt { chunk: index });
        }
        Ok(data)
    }

    /// The hash of chunk `index`, from its page of hashes.
    async fn chunk_hash(self: &Arc<Self>, index: u64) -> Result<[u8; 32], StreamError> {
        let per_page = u64::from(MAX_HASHES_PER_PAGE);
        let page = Arc::clone(self).page(index / per_page).await?;
        let at = usize::try_from(index % per_page).unwrap_or(usize::MAX);
        page.get(at).copied().ok_or(StreamError::Unexpected(
            "a page of hashes without the chunk's",
        ))
    }

    /// Page `number` of the chunk hashes, fetched once.
    async fn page(self: Arc<Self>, number: u64) -> Result<Arc<[[u8; 32]]>, StreamError> {
        let lookup = self.pages.lock().lookup(number);
        match lookup {
            Lookup::Hit(page) => Ok(page),
            Lookup::Wait(outcome) => wait(outcome).await,
            Lookup::Start(sender, outcome) => {
                let remote = Arc::clone(&self);
                tokio::spawn(async move {
                    let fetched: Result<Arc<[[u8; 32]]>, _> =
                        remote.fetch_page(number).await.map(Arc::from);
                    let weight = fetched.as_ref().map_or(0, |page| page.len() * 32);
                    remote.pages.lock().finish(number, &fetched, weight);
                    let _ = sender.send(Some(fetched));
                });
                wait(outcome).await
            }
        }
    }

    /// Asks for page `number` of the hashes. A list that is the whole file's must add up to
    /// the file's hash.
    async fn fetch_page(&self, number: u64) -> Result<Vec<[u8; 32]>, StreamError> {
        let per_page = u64::from(MAX_HASHES_PER_PAGE);
        let total = chunk_count(self.size);
        let first = number.saturating_mul(per_page);
        let count = total.saturating_sub(first).min(per_page);
        let request = Request::Hashes {
            entry: self.entry,
            root: self.root,
            first,
            count: u32::try_from(count).unwrap_or(MAX_HASHES_PER_PAGE),
        };
        let answer = exchange(&self.connection, request, self.options.request_timeout).await?;
        let Response::Hashes { first: got, hashes } = answer else {
            return Err(StreamError::Unexpected(
                "an answer to hashes that is not hashes",
            ));
        };
        if got != first || hashes.len() as u64 != count {
            return Err(StreamError::Unexpected(
                "other hashes than the ones asked for",
            ));
        }
        if total <= per_page && root_hash(&hashes) != self.root {
            return Err(StreamError::Unexpected(
                "hashes that do not add up to the file's hash",
            ));
        }
        Ok(hashes)
    }
}

/// One request on a stream of its own, and its answer, within `timeout`. A refusal is
/// [`StreamError::Refused`].
async fn exchange(
    connection: &Connection,
    request: Request,
    timeout: Duration,
) -> Result<Response, StreamError> {
    // A failed stream may mean the owner's gate turned us away: say so.
    let link = |error: &dyn std::fmt::Display| match tether::gate::refusal(connection) {
        Some(refused) => StreamError::from(refused),
        None => StreamError::Link(error.to_string()),
    };
    let asked = async {
        let (mut send, mut recv) = connection.open_bi().await.map_err(|e| link(&e))?;
        send.write_all(&request.encode())
            .await
            .map_err(|e| link(&e))?;
        send.finish().map_err(|e| link(&e))?;
        let bytes = recv
            .read_to_end(MAX_RESPONSE_LEN)
            .await
            .map_err(|e| link(&e))?;
        Response::decode(&Bytes::from(bytes)).map_err(StreamError::Malformed)
    };
    match tokio::time::timeout(timeout, asked).await {
        Ok(Ok(Response::Refused(refusal))) => Err(StreamError::Refused(refusal)),
        Ok(answer) => answer,
        Err(_) => Err(StreamError::TimedOut(timeout)),
    }
}
