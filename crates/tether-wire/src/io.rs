//! Thin async helpers: one frame from an [`AsyncRead`], one frame to an [`AsyncWrite`].
//!
//! They use the same header check as [`FrameDecoder`](crate::FrameDecoder): the payload buffer is
//! allocated only after the length has been checked against the kind's cap. iroh's QUIC streams
//! implement both traits, as does `tokio::io::duplex` for tests.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::frame::{FRAME_HEADER_LEN, Frame, FrameError, parse_header};

/// Reads one frame. `Ok(None)` means the stream ended cleanly between frames; ending inside a
/// frame is [`FrameError::Truncated`].
///
/// Not cancel-safe: if the future is dropped part-way, the stream is mid-frame and must be closed.
pub async fn read_frame<R>(reader: &mut R) -> Result<Option<Frame>, ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    read_frame_into(reader, Vec::new()).await
}

/// Reads one frame into `buf`, whose old contents are discarded and whose allocation is kept
/// when it is large enough: a reader that hands each frame's payload back
/// ([`Frame::into_payload`]) reads a stream of large frames without allocating (or faulting in)
/// a fresh buffer per frame. Otherwise as [`read_frame`]; the buffer grows only after the
/// header's length has been checked against the kind's cap.
///
/// Not cancel-safe: if the future is dropped part-way, the stream is mid-frame and must be closed.
pub async fn read_frame_into<R>(
    reader: &mut R,
    mut buf: Vec<u8>,
) -> Result<Option<Frame>, ReadError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut header = [0u8; FRAME_HEADER_LEN];
    let mut filled = 0;
    while filled < FRAME_HEADER_LEN {
        let n = reader
            .read(header.get_mut(filled..).unwrap_or_default())
            .await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Truncated { received: filled }.into());
        }
        filled += n;
    }
    let (kind, len) = parse_header(header)?;
    buf.clear();
    buf.reserve_exact(len);
    let got = (&mut *reader)
        .take(len as u64)
        .read_to_end(&mut buf)
        .await?;
    if got < len {
        return Err(FrameError::Truncated {
            received: FRAME_HEADER_LEN + got,
        }
        .into());
    }
    Ok(Some(Frame::from_parts(kind, buf)))
}

/// Writes one frame (header, then payload). Does not flush.
pub async fn write_frame<W>(writer: &mut W, frame: &Frame) -> std::io::Result<()>
where
    W: AsyncWrite + Unpin + ?Sized,
{
    writer.write_all(&frame.header()).await?;
    writer.write_all(frame.payload()).await
}

/// Reading a frame from an async stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The peer broke the framing (including closing the stream inside a frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The stream itself failed.
    #[error("reading the stream failed")]
    Io(#[from] std::io::Error),
}

impl ReadError {
    /// Whether the peer is to blame (it broke the framing) rather than the transport or this side.
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, Self::Frame(_))
    }
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;
    use crate::codec::FrameEncoder;
    use crate::frame::FrameKind;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::new(FrameKind::Control, br#"{"type":"Ack"}"#.to_vec()).unwrap(),
            Frame::new(FrameKind::Data, vec![1; 70_000]).unwrap(),
            Frame::new(FrameKind::SealedData, vec![]).unwrap(),
        ]
    }

    #[tokio::test]
    async fn write_then_read_over_a_small_pipe() {
        // A 64-byte pipe forces many partial reads and writes.
        let (mut a, mut b) = tokio::io::duplex(64);
        let sent = frames();
        let writer = {
            let sent = sent.clone();
            async move {
                for frame in &sent {
                    write_frame(&mut a, frame).await.unwrap();
                }
                drop(a);
            }
        };
        let reader = async move {
            let mut got = Vec::new();
            while let Some(frame) = read_frame(&mut b).await.unwrap() {
                got.push(frame);
            }
            got
        };
        let ((), got) = tokio::join!(writer, reader);
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn read_frame_into_reuses_the_buffer_and_drops_its_old_bytes() {
        let mut encoder = FrameEncoder::new();
        frames().iter().for_each(|frame| encoder.push(frame));
        let bytes = encoder.take();
        let mut input = &bytes[..];
        let mut buf = vec![7u8; 100_000];
        let allocation = buf.as_ptr();
        let mut got = Vec::new();
        while let Some(frame) = read_frame_into(&mut input, buf).await.unwrap() {
            // Every frame lands in the one allocation (each is smaller than its capacity).
            assert_eq!(frame.payload().as_ptr(), allocation);
            got.push(frame.clone());
            buf = frame.into_payload();
        }
        assert_eq!(got, frames());
        // A buffer too small for the frame grows to it.
        let mut input = &bytes[..];
        let first = read_frame_into(&mut input, Vec::with_capacity(1)).await;
        assert_eq!(first.unwrap().unwrap(), frames()[0]);
    }

    #[tokio::test]
    async fn truncated_and_oversized_streams_are_errors() {
        let mut encoder = FrameEncoder::new();
        frames().iter().for_each(|frame| encoder.push(frame));
        let bytes = encoder.take();

        for cut in [2, FRAME_HEADER_LEN + 3, bytes.len() - 1] {
            let mut input = &bytes[..cut];
            let mut last = read_frame(&mut input).await;
            while let Ok(Some(_)) = last {
                last = read_frame(&mut input).await;
            }
            let err = last.unwrap_err();
            assert!(err.is_peer_fault());
            assert!(
                matches!(err, ReadError::Frame(FrameError::Truncated { .. })),
                "{err}"
            );
        }

        let mut huge = &[0xff, 0xff, 0xff, 0xff, 0x01][..];
        let err = read_frame(&mut huge).await.unwrap_err();
        assert!(matches!(err, ReadError::Frame(FrameError::TooLarge { .. })));
    }

    #[test]
    fn read_errors_print_their_source_once() {
        let errors = [
            ReadError::Frame(FrameError::Empty),
            ReadError::Io(std::io::Error::other("reset")),
        ];
        for error in &errors {
            assert_no_repeated_layer(error);
        }
        let read = ReadError::Io(std::io::Error::other("reset"));
        assert_eq!(error_chain(&read), "reading the stream failed: reset");
    }
}
