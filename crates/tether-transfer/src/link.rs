//! The byte streams a transfer runs over, and framed reads and writes with errors sorted by fault.
//!
//! A transfer uses one control stream and optionally more data-only streams ("lanes"), each any
//! tokio `AsyncRead + AsyncWrite` (an iroh QUIC bidirectional stream in the service; TCP or a Unix
//! socket in tests). Frames are tether-wire's; a stream that ends or fails is a
//! [`TransferError::Link`] (resumable), a stream that breaks the framing is the peer's fault.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tether_crypto::{SessionKeys, TransferCipher};
use tether_identity::error_chain;
use tether_wire::{Frame, FrameError, FrameKind, ReadError, read_frame_into, write_frame};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::Mutex as AsyncMutex;

use crate::error::{PeerError, TransferError, UsageError};
use crate::protocol::{Abort, AbortCode, Message, cut_message};
use crate::stall::{Activity, Metered};
use crate::throttle::{RateLimiter, acquire_all};

/// How long a stream's closing (the last message and the end of the stream) may take.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// A bidirectional byte stream a transfer can run over. Implemented for every type that has the
/// bounds; iroh's QUIC streams joined with `tokio::io::join`, `TcpStream` and `UnixStream` all do.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ByteStream for T {}

/// Splits a stream into halves, boxed so that streams of any type fit one session; every read
/// and write that moves bytes is noted in `activity`.
#[allow(clippy::type_complexity)] // two halves of one boxed stream; a name would hide them
pub(crate) fn split<S: ByteStream>(
    stream: S,
    activity: &Arc<Activity>,
) -> (
    ReadHalf<Box<dyn ByteStream>>,
    WriteHalf<Box<dyn ByteStream>>,
) {
    tokio::io::split(Box::new(Metered::new(stream, activity.clone())) as Box<dyn ByteStream>)
}

/// Bytes of a frame written at a time when a rate limit applies: a slow limit then still moves
/// bytes every few seconds (16 KiB at 4 KiB/s), so the peer never takes it for a stall.
const PACED_PIECE: usize = 16 << 10;

/// Writes one frame and flushes, waiting on `limiters` for every piece of it first.
pub(crate) async fn write_paced<W>(
    writer: &mut W,
    frame: &Frame,
    limiters: &[RateLimiter],
) -> Result<(), TransferError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    if limiters.is_empty() {
        return send_frame(writer, frame).await;
    }
    let header = frame.header();
    acquire_all(limiters, header.len() as u64).await;
    writer
        .write_all(&header)
        .await
        .map_err(TransferError::Link)?;
    for piece in frame.payload().chunks(PACED_PIECE) {
        acquire_all(limiters, piece.len() as u64).await;
        writer.write_all(piece).await.map_err(TransferError::Link)?;
    }
    writer.flush().await.map_err(TransferError::Link)
}

/// The write half of a transfer's control stream, shared by the session's control messages
/// and lane 0's data frames. Remembers whether a frame was cut off half-written, after which
/// nothing more may be appended.
#[derive(Clone)]
pub(crate) struct ControlWriter {
    half: Arc<AsyncMutex<WriteHalf<Box<dyn ByteStream>>>>,
    torn: Arc<AtomicBool>,
}

impl ControlWriter {
    pub(crate) fn new(half: WriteHalf<Box<dyn ByteStream>>) -> Self {
        ControlWriter {
            half: Arc::new(AsyncMutex::new(half)),
            torn: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Writes one frame and flushes.
    pub(crate) async fn send_frame(&self, frame: &Frame) -> Result<(), TransferError> {
        self.send_paced(frame, &[]).await
    }

    /// Writes one frame and flushes, paced by `limiters` (see [`write_paced`]).
    pub(crate) async fn send_paced(
        &self,
        frame: &Frame,
        limiters: &[RateLimiter],
    ) -> Result<(), TransferError> {
        let mut half = self.half.lock().await;
        if self.torn.load(Ordering::Acquire) {
            return Err(TransferError::Link(io::Error::other("a frame was cut off")));
        }
        // Stays set if this future is dropped mid-frame.
        self.torn.store(true, Ordering::Release);
        write_paced(&mut *half, frame, limiters).await?;
        self.torn.store(false, Ordering::Release);
        Ok(())
    }

    /// Writes one control message and flushes.
    pub(crate) async fn send(&self, message: &Message) -> Result<(), TransferError> {
        self.send_frame(&message.to_frame()?).await
    }

    /// Best effort, bounded in time: sends `last` (if any) and ends the stream.
    pub(crate) async fn close(&self, last: Option<&Message>) {
        let close = async {
            if let Some(message) = last {
                let _ = self.send(message).await;
            }
            let _ = self.half.lock().await.shutdown().await;
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub(crate) async fn read_frame_from<R>(reader: &mut R) -> Result<Option<Frame>, TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    read_frame_reusing(reader, Vec::new()).await
}

/// Reads one frame into `buf`'s allocation (see [`read_frame_into`]); `Ok(None)` at a clean
/// end of stream.
pub(crate) async fn read_frame_reusing<R>(
    reader: &mut R,
    buf: Vec<u8>,
) -> Result<Option<Frame>, TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    match read_frame_into(reader, buf).await {
        Ok(frame) => Ok(frame),
        Err(ReadError::Io(e)) => Err(TransferError::Link(e)),
        // A frame cut off by the end of the stream is a lost link, not a lie.
        Err(ReadError::Frame(FrameError::Truncated { .. })) => Err(eof()),
        Err(e) => Err(PeerError::Frame(error_chain(&e)).into()),
    }
}

/// Reads one control message; the end of the stream is a lost link.
pub(crate) async fn read_message<R>(reader: &mut R) -> Result<Message, TransferError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let frame = read_frame_from(reader).await?.ok_or_else(eof)?;
    Ok(Message::from_frame(&frame)?)
}

/// Writes one frame and flushes.
pub(crate) async fn send_frame<W>(writer: &mut W, frame: &Frame) -> Result<(), TransferError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    write_frame(writer, frame)
        .await
        .map_err(TransferError::Link)?;
    writer.flush().await.map_err(TransferError::Link)
}

/// Writes one control message and flushes.
pub(crate) async fn send_message<W>(writer: &mut W, message: &Message) -> Result<(), TransferError>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    send_frame(writer, &message.to_frame()?).await
}

/// The [`Message::Abort`] that tells the peer why this side stops, if it should be told.
pub(crate) fn abort_for(error: &TransferError) -> Option<Message> {
    let code = match error {
        TransferError::Link(_) => return None,
        TransferError::Peer(PeerError::Aborted { .. } | PeerError::Declined { .. }) => return None,
        TransferError::Cancelled => AbortCode::Cancelled,
        TransferError::Stalled { .. } => AbortCode::Stalled,
        TransferError::Declined(_) => AbortCode::Declined,
        TransferError::Peer(_) => AbortCode::Protocol,
        TransferError::Local(crate::LocalError::SourceChanged(_)) => AbortCode::SourceChanged,
        TransferError::Local(local) if local.is_no_room() => AbortCode::NoSpace,
        TransferError::Local(_) | TransferError::Usage(_) => AbortCode::Internal,
    };
    // Local paths stay local: the peer learns the kind of failure, not our file system.
    let message = match error {
        TransferError::Local(local) => local.peer_message(),
        other => cut_message(&other.to_string()),
    };
    Some(Message::Abort(Abort { code, message }))
}

/// How long, after a lost link, the peer's own account of why it stopped is awaited. A peer
/// that aborts sends an `Abort` and closes; the close can reach another stream (or this stream's
/// write side, as a reset) before the `Abort` is read, and "broken pipe" would hide "cancelled".
pub(crate) const PEER_REASON_GRACE: Duration = Duration::from_secs(1);

/// Whether `error` is a lost link, which the peer's reason, if it comes, explains better.
pub(crate) fn is_link(error: &TransferError) -> bool {
    matches!(error, TransferError::Link(_))
}

/// Whether `error` is the peer's own account of why it stopped.
pub(crate) fn is_peer_reason(error: &TransferError) -> bool {
    matches!(
        error,
        TransferError::Peer(PeerError::Aborted { .. } | PeerError::Declined { .. })
    )
}

pub(crate) fn eof() -> TransferError {
    TransferError::Link(io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "stream ended before the transfer finished",
    ))
}

/// How one lane's data frames are protected: sealed with that lane's keys, or plain.
///
/// Each lane has its own keys, derived from the per-transfer keys with a lane label and the
/// agreed cipher, so lanes never share a nonce counter and their frames can be opened
/// independently.
#[derive(Debug)]
pub(crate) struct LaneCipher {
    keys: Option<Mutex<SessionKeys>>,
}

impl LaneCipher {
    /// The cipher of lane `index`: derived from `transfer` if the transfer is encrypted.
    pub(crate) fn derive(
        transfer: Option<&mut SessionKeys>,
        index: u8,
    ) -> Result<LaneCipher, TransferError> {
        let keys = match transfer {
            None => None,
            Some(keys) => {
                let mut label = *b"tether-lane-\0\0\0\0";
                if let Some(last) = label.last_mut() {
                    *last = index;
                }
                let cipher: TransferCipher = keys.cipher();
                let lane = keys
                    .transfer_keys(&label, cipher)
                    .map_err(|_| UsageError::BadOption("transfer keys were used before"))?;
                Some(Mutex::new(lane))
            }
        };
        Ok(LaneCipher { keys })
    }

    /// Seals a plain data frame (or passes it through when the transfer is plain).
    pub(crate) fn seal(&self, frame: Frame) -> Result<Frame, TransferError> {
        match &self.keys {
            None => Ok(frame),
            Some(keys) => {
                let mut keys = keys.lock();
                frame
                    .seal(&mut keys)
                    .map_err(|e| UsageError::BadOption(seal_error(&e)).into())
            }
        }
    }

    /// Opens a data frame: sealed frames only when encrypted, plain ones only when not.
    pub(crate) fn open(&self, frame: Frame) -> Result<Frame, PeerError> {
        match (&self.keys, frame.kind()) {
            (None, FrameKind::Data) => Ok(frame),
            (Some(keys), FrameKind::SealedData) => {
                let mut keys = keys.lock();
                frame
                    .open(&mut keys)
                    .map_err(|e| PeerError::Seal(error_chain(&e)))
            }
            (None, _) => Err(PeerError::Protocol("expected a plain data frame")),
            (Some(_), _) => Err(PeerError::Seal(
                "plain frame in an encrypted transfer".into(),
            )),
        }
    }
}

fn seal_error(_: &tether_wire::SealError) -> &'static str {
    "sealing failed (counter exhausted)"
}
