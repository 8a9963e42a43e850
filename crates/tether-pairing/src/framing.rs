//! Pairing messages on a byte stream: each one is a `u16` big-endian length, then the message
//! (at most [`MAX_MESSAGE_LEN`] bytes).
//!
//! Sans-IO: [`encode_message`] gives the bytes to write; a [`MessageDecoder`] takes bytes from
//! any split of the stream and gives back whole messages. It takes only as many bytes as the
//! current message needs ([`MessageDecoder::needed`]), so its memory is one message at most and
//! a reader that asks for exactly that many never reads into the next message. A length over
//! the cap is refused from the two header bytes, before anything is allocated.
//!
//! With the `tokio` feature, [`read_message`] and [`write_message`] do the same over a tokio
//! `AsyncRead`/`AsyncWrite` stream (a QUIC stream, say).

use crate::message::MAX_MESSAGE_LEN;

/// The length prefix in front of every pairing message: a `u16`, big-endian.
pub const LENGTH_PREFIX_LEN: usize = 2;

/// Why pairing framing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A message (to send, or announced by a length prefix) is longer than any pairing
    /// message may be.
    #[error("pairing message of {len} bytes (at most {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// [`MAX_MESSAGE_LEN`].
        max: usize,
    },
    /// The stream ended before a whole message (`received` bytes of it, prefix included).
    #[error("the stream ended before a whole pairing message ({received} bytes of it)")]
    Truncated {
        /// Bytes of the unfinished message received, length prefix included.
        received: usize,
    },
    /// An earlier call failed; framing cannot resynchronise.
    #[error("the pairing stream already failed to decode")]
    Poisoned,
}

/// Appends `message`, framed, to `out`. A message over [`MAX_MESSAGE_LEN`] is refused and `out`
/// is left as it was.
pub fn encode_message_into(message: &[u8], out: &mut Vec<u8>) -> Result<(), FramingError> {
    let too_long = FramingError::TooLong {
        len: message.len(),
        max: MAX_MESSAGE_LEN,
    };
    if message.len() > MAX_MESSAGE_LEN {
        return Err(too_long);
    }
    let len = u16::try_from(message.len()).map_err(|_| too_long)?;
    out.reserve(LENGTH_PREFIX_LEN + message.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(message);
    Ok(())
}

/// `message`, framed: the bytes to write to the stream.
///
/// ```
/// use tether_pairing::{MessageDecoder, encode_message};
///
/// let bytes = encode_message(b"hello")?;
/// assert_eq!(bytes, b"\x00\x05hello");
///
/// let mut decoder = MessageDecoder::new();
/// let (first, second) = bytes.split_at(3); // any split works
/// let mut input = first;
/// assert_eq!(decoder.decode(&mut input)?, None);
/// let mut input = second;
/// assert_eq!(decoder.decode(&mut input)?, Some(b"hello".to_vec()));
/// decoder.finish()?;
/// # Ok::<(), tether_pairing::FramingError>(())
/// ```
pub fn encode_message(message: &[u8]) -> Result<Vec<u8>, FramingError> {
    let mut out = Vec::new();
    encode_message_into(message, &mut out)?;
    Ok(out)
}

/// Incremental decoder of framed pairing messages.
#[derive(Debug, Default)]
pub struct MessageDecoder {
    state: State,
}

#[derive(Debug)]
enum State {
    /// `filled` bytes of the length prefix so far.
    Prefix {
        prefix: [u8; LENGTH_PREFIX_LEN],
        filled: usize,
    },
    /// Collecting a message of `len` bytes.
    Body { len: usize, message: Vec<u8> },
    /// An error was returned; nothing more is decoded.
    Failed,
}

impl Default for State {
    fn default() -> Self {
        Self::Prefix {
            prefix: [0; LENGTH_PREFIX_LEN],
            filled: 0,
        }
    }
}

impl MessageDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from the front of `input` and returns the next whole message, or `None` once
    /// `input` is used up without completing one. Call it again while `input` is not empty.
    ///
    /// After an error every later call returns [`FramingError::Poisoned`].
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FramingError> {
        let result = self.step(input);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, FramingError> {
        loop {
            match &mut self.state {
                State::Failed => return Err(FramingError::Poisoned),
                State::Prefix { prefix, filled } => {
                    let space = prefix.get_mut(*filled..).unwrap_or_default();
                    let n = space.len().min(input.len());
                    let (now, rest) = input.split_at(n);
                    if let Some(dst) = space.get_mut(..n) {
                        dst.copy_from_slice(now);
                    }
                    *input = rest;
                    *filled += n;
                    if *filled < LENGTH_PREFIX_LEN {
                        return Ok(None);
                    }
                    let len = usize::from(u16::from_be_bytes(*prefix));
                    if len > MAX_MESSAGE_LEN {
                        return Err(FramingError::TooLong {
                            len,
                            max: MAX_MESSAGE_LEN,
                        });
                    }
                    // `len` is at most the cap (checked above), so this allocation is bounded.
                    self.state = State::Body {
                        len,
                        message: Vec::with_capacity(len),
                    };
                }
                State::Body { len, message } => {
                    let wanted = *len - message.len();
                    let (now, rest) = input.split_at(wanted.min(input.len()));
                    message.extend_from_slice(now);
                    *input = rest;
                    if message.len() < *len {
                        return Ok(None);
                    }
                    let message = std::mem::take(message);
                    self.state = State::default();
                    return Ok(Some(message));
                }
            }
        }
    }

    /// How many more bytes the current message needs before [`decode`](Self::decode) can say
    /// more: the rest of its length prefix, then the rest of its body. A reader that reads at
    /// most this many never takes bytes that follow the message. Zero after an error.
    pub fn needed(&self) -> usize {
        match &self.state {
            State::Prefix { filled, .. } => LENGTH_PREFIX_LEN - filled,
            State::Body { len, message } => len - message.len(),
            State::Failed => 0,
        }
    }

    /// Whether the decoder is between messages (so the stream may end here).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Prefix { filled: 0, .. })
    }

    /// Bytes of an unfinished message held so far, length prefix included.
    pub fn buffered_len(&self) -> usize {
        match &self.state {
            State::Prefix { filled, .. } => *filled,
            State::Body { message, .. } => LENGTH_PREFIX_LEN + message.len(),
            State::Failed => 0,
        }
    }

    /// Call when the stream ends: fails with [`FramingError::Truncated`] if it ended inside a
    /// message.
    pub fn finish(&self) -> Result<(), FramingError> {
        match self.state {
            State::Failed => Err(FramingError::Poisoned),
            _ if self.is_idle() => Ok(()),
            _ => Err(FramingError::Truncated {
                received: self.buffered_len(),
            }),
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::stream::{StreamError, read_message, write_message};

#[cfg(feature = "tokio")]
mod stream {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    use super::{FramingError, MessageDecoder, encode_message};

    /// Why reading or writing a framed pairing message failed.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum StreamError {
        /// The stream failed.
        #[error("the pairing stream failed")]
        Io(#[source] std::io::Error),
        /// The bytes are not a framed pairing message, or the stream ended inside one.
        #[error(transparent)]
        Framing(#[from] FramingError),
    }

    /// Reads the next pairing message from `reader`, and not a byte more. A stream that ends
    /// first is [`FramingError::Truncated`] (with 0 bytes when it ended between messages).
    pub async fn read_message<R>(reader: &mut R) -> Result<Vec<u8>, StreamError>
    where
        R: AsyncRead + Unpin + ?Sized,
    {
        let mut decoder = MessageDecoder::new();
        loop {
            let mut chunk = vec![0u8; decoder.needed()];
            let n = reader.read(&mut chunk).await.map_err(StreamError::Io)?;
            if n == 0 {
                return Err(FramingError::Truncated {
                    received: decoder.buffered_len(),
                }
                .into());
            }
            chunk.truncate(n);
            let mut input = chunk.as_slice();
            if let Some(message) = decoder.decode(&mut input)? {
                return Ok(message);
            }
        }
    }

    /// Writes `message`, framed, to `writer` (one write of prefix and message together).
    pub async fn write_message<W>(writer: &mut W, message: &[u8]) -> Result<(), StreamError>
    where
        W: AsyncWrite + Unpin + ?Sized,
    {
        let bytes = encode_message(message)?;
        writer.write_all(&bytes).await.map_err(StreamError::Io)
    }
}
