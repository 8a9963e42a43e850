//! The messages of `tether-stream/1`, encoded and decoded without IO.
//!
//! One request per bidirectional stream: the reader writes a [`Request`] and finishes its side;
//! the owner answers with one [`Response`] and finishes. Integers are big-endian.
//!
//! | request | layout |
//! |---|---|
//! | open | `0x01`, entry id (16) |
//! | hashes | `0x02`, entry id (16), root (32), first chunk `u64`, count `u32` |
//! | read | `0x03`, entry id (16), root (32), chunk `u64` |
//!
//! | response | layout |
//! |---|---|
//! | opened | `0x81`, size `u64`, root (32) |
//! | hashes | `0x82`, first chunk `u64`, count `u32`, count × 32 bytes |
//! | chunk | `0x83`, chunk `u64`, length `u32`, the bytes |
//! | refused | `0xff`, [`Refusal`] code `u8` |
//!
//! Every length is checked against its cap ([`MAX_HASHES_PER_PAGE`], [`MAX_CHUNK_LEN`]) before
//! anything is allocated, and a message must be exactly as long as its fields say.

use bytes::Bytes;
use uuid::Uuid;

/// The longest chunk in an answer: tether's `CHUNK_SIZE` (256 KiB; the crate checks they
/// agree). Spelled out so this module stands alone (the fuzz target builds it without the
/// facade).
pub const MAX_CHUNK_LEN: u32 = 256 * 1024;
/// The most chunk hashes one answer carries (128 KiB of hashes, 1 GiB of file).
pub const MAX_HASHES_PER_PAGE: u32 = 4096;
/// The longest request.
pub const MAX_REQUEST_LEN: usize = 1 + 16 + 32 + 8 + 4;
/// The longest response: a full chunk and its header.
pub const MAX_RESPONSE_LEN: usize = 1 + 8 + 4 + MAX_CHUNK_LEN as usize;

const OPEN: u8 = 0x01;
const HASHES: u8 = 0x02;
const READ: u8 = 0x03;
const OPENED: u8 = 0x81;
const HASH_PAGE: u8 = 0x82;
const CHUNK: u8 = 0x83;
const REFUSED: u8 = 0xff;

/// What a reader asks the owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The size and BLAKE3 hash of a shared file.
    Open {
        /// The entry id the owner's share provider resolves.
        entry: Uuid,
    },
    /// Chunk hashes `first..first + count` of the file whose hash is `root`.
    Hashes {
        /// The entry.
        entry: Uuid,
        /// The file hash [`Response::Opened`] gave.
        root: [u8; 32],
        /// The first chunk.
        first: u64,
        /// How many, at most [`MAX_HASHES_PER_PAGE`].
        count: u32,
    },
    /// The bytes of one chunk of the file whose hash is `root`.
    Read {
        /// The entry.
        entry: Uuid,
        /// The file hash [`Response::Opened`] gave.
        root: [u8; 32],
        /// The chunk.
        chunk: u64,
    },
}

/// What the owner answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The file as it is now.
    Opened {
        /// Its size in bytes.
        size: u64,
        /// Its BLAKE3 hash.
        root: [u8; 32],
    },
    /// A run of chunk hashes.
    Hashes {
        /// The first chunk's index.
        first: u64,
        /// One hash per chunk, in order.
        hashes: Vec<[u8; 32]>,
    },
    /// One chunk's bytes.
    Chunk {
        /// Its index.
        index: u64,
        /// Its bytes, at most [`MAX_CHUNK_LEN`].
        data: Bytes,
    },
    /// The owner will not answer this request.
    Refused(Refusal),
}

/// Why the owner refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The entry is not shared with this device (or does not exist).
    #[error("not shared with this device")]
    NotShared,
    /// The entry is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file is larger than the owner streams.
    #[error("too large to stream")]
    TooLarge,
    /// The file changed since it was opened.
    #[error("the file changed")]
    Changed,
    /// A chunk or hash beyond the end of the file.
    #[error("beyond the end of the file")]
    OutOfRange,
    /// Too much asked at once.
    #[error("too busy")]
    Busy,
    /// The owner could not read the file.
    #[error("the owner could not read the file")]
    Unreadable,
    /// The request broke the protocol's rules.
    #[error("malformed request")]
    Malformed,
}

impl Refusal {
    fn code(self) -> u8 {
        match self {
            Self::NotShared => 1,
            Self::NotAFile => 2,
            Self::TooLarge => 3,
            Self::Changed => 4,
            Self::OutOfRange => 5,
            Self::Busy => 6,
            Self::Unreadable => 7,
            Self::Malformed => 8,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::NotShared,
            2 => Self::NotAFile,
            3 => Self::TooLarge,
            4 => Self::Changed,
            5 => Self::OutOfRange,
            6 => Self::Busy,
            7 => Self::Unreadable,
            8 => Self::Malformed,
            _ => return None,
        })
    }
}

/// Why bytes are not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its fields say.
    #[error("truncated message")]
    Truncated,
    /// Bytes after the last field.
    #[error("trailing bytes after the message")]
    Trailing,
    /// An unknown message or refusal code.
    #[error("unknown message kind {0:#04x}")]
    UnknownKind(u8),
    /// A count or length above its cap.
    #[error("a length above its cap")]
    TooLong,
}

impl Request {
    /// The request's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_REQUEST_LEN);
        match self {
            Self::Open { entry } => {
                out.push(OPEN);
                out.extend_from_slice(entry.as_bytes());
            }
            Self::Hashes {
                entry,
                root,
                first,
                count,
            } => {
                out.push(HASHES);
                out.extend_from_slice(entry.as_bytes());
                out.extend_from_slice(root);
                out.extend_from_slice(&first.to_be_bytes());
                out.extend_from_slice(&count.to_be_bytes());
            }
            Self::Read { entry, root, chunk } => {
                out.push(READ);
                out.extend_from_slice(entry.as_bytes());
                out.extend_from_slice(root);
                out.extend_from_slice(&chunk.to_be_bytes());
            }
        }
        out
    }

    /// Reads a whole request.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut input = Input(bytes);
        let request = match input.byte()? {
            OPEN => Self::Open {
                entry: input.uuid()?,
            },
            HASHES => {
                let entry = input.uuid()?;
                let root = input.array()?;
                let first = input.u64()?;
                let count = input.u32()?;
                if count > MAX_HASHES_PER_PAGE {
                    return Err(WireError::TooLong);
                }
                Self::Hashes {
                    entry,
                    root,
                    first,
                    count,
                }
            }
            READ => Self::Read {
                entry: input.uuid()?,
                root: input.array()?,
                chunk: input.u64()?,
            },
            other => return Err(WireError::UnknownKind(other)),
        };
        input.end()?;
        Ok(request)
    }
}

impl Response {
    /// The response's bytes. A page or chunk longer than its cap is the caller's bug; it is
    /// encoded as given and the reader refuses it.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Self::Opened { size, root } => {
                let mut out = vec![OPENED];
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(root);
                out
            }
            Self::Hashes { first, hashes } => {
                let mut out = Vec::with_capacity(13 + hashes.len() * 32);
                out.push(HASH_PAGE);
                out.extend_from_slice(&first.to_be_bytes());
                let count = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                for hash in hashes {
                    out.extend_from_slice(hash);
                }
                out
            }
            Self::Chunk { index, data } => {
                let mut out = Vec::with_capacity(13 + data.len());
                out.push(CHUNK);
                out.extend_from_slice(&index.to_be_bytes());
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(data);
                out
            }
            Self::Refused(refusal) => vec![REFUSED, refusal.code()],
        }
    }

    /// Reads a whole response. A chunk's bytes are a slice of `bytes`, not a copy.
    pub fn decode(bytes: &Bytes) -> Result<Self, WireError> {
        let mut input = Input(bytes);
        let response = match input.byte()? {
            OPENED => Self::Opened {
                size: input.u64()?,
                root: input.array()?,
            },
            HASH_PAGE => {
                let first = input.u64()?;
                let count = input.u32()?;
                if count > MAX_HASHES_PER_PAGE {
                    return Err(WireError::TooLong);
                }
                let mut hashes = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    hashes.push(input.array()?);
                }
                Self::Hashes { first, hashes }
            }
            CHUNK => {
                let index = input.u64()?;
                let len = input.u32()?;
                if len > MAX_CHUNK_LEN {
                    return Err(WireError::TooLong);
                }
                let start = bytes.len() - input.0.len();
                input.take(len as usize)?;
                let data = bytes.slice(start..start + len as usize);
                Self::Chunk { index, data }
            }
            REFUSED => {
                let code = input.byte()?;
                Self::Refused(Refusal::from_code(code).ok_or(WireError::UnknownKind(code))?)
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        input.end()?;
        Ok(response)
    }
}

/// What is left to read of a message.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], WireError> {
        if self.0.len() < len {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        self.take(N)?.try_into().map_err(|_| WireError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn uuid(&mut self) -> Result<Uuid, WireError> {
        Ok(Uuid::from_bytes(self.array()?))
    }

    fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use proptest::prelude::*;

    use super::*;

    fn uuid() -> impl Strategy<Value = Uuid> {
        any::<[u8; 16]>().prop_map(Uuid::from_bytes)
    }

    fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            uuid().prop_map(|entry| Request::Open { entry }),
            (
                uuid(),
                any::<[u8; 32]>(),
                any::<u64>(),
                0..=MAX_HASHES_PER_PAGE
            )
                .prop_map(|(entry, root, first, count)| Request::Hashes {
                    entry,
                    root,
                    first,
                    count
                }),
            (uuid(), any::<[u8; 32]>(), any::<u64>())
                .prop_map(|(entry, root, chunk)| Request::Read { entry, root, chunk }),
        ]
    }

    fn response() -> impl Strategy<Value = Response> {
        prop_oneof![
            (any::<u64>(), any::<[u8; 32]>())
                .prop_map(|(size, root)| Response::Opened { size, root }),
            (
                any::<u64>(),
                prop::collection::vec(any::<[u8; 32]>(), 0..40)
            )
                .prop_map(|(first, hashes)| Response::Hashes { first, hashes }),
            (any::<u64>(), prop::collection::vec(any::<u8>(), 0..3000)).prop_map(
                |(index, data)| Response::Chunk {
                    index,
                    data: data.into()
                }
            ),
            (1u8..=8).prop_map(|code| Response::Refused(Refusal::from_code(code).unwrap())),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(request in request()) {
            let bytes = request.encode();
            prop_assert!(bytes.len() <= MAX_REQUEST_LEN);
            prop_assert_eq!(Request::decode(&bytes), Ok(request));
        }

        #[test]
        fn responses_round_trip(response in response()) {
            let bytes = response.encode();
            prop_assert_eq!(Response::decode(&bytes.into()), Ok(response));
        }

        #[test]
        fn any_bytes_decode_or_fail_cleanly(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&bytes);
            let _ = Response::decode(&bytes.into());
        }
    }

    #[test]
    fn caps_are_checked_before_reading_on() {
        let mut page = vec![HASH_PAGE];
        page.extend_from_slice(&0u64.to_be_bytes());
        page.extend_from_slice(&(MAX_HASHES_PER_PAGE + 1).to_be_bytes());
        assert_eq!(Response::decode(&page.into()), Err(WireError::TooLong));
        let mut chunk = vec![CHUNK];
        chunk.extend_from_slice(&0u64.to_be_bytes());
        chunk.extend_from_slice(&(MAX_CHUNK_LEN + 1).to_be_bytes());
        assert_eq!(Response::decode(&chunk.into()), Err(WireError::TooLong));
        let mut short = Response::Chunk {
            index: 0,
            data: Bytes::from_static(b"abc"),
        }
        .encode();
        short.pop();
        assert_eq!(Response::decode(&short.into()), Err(WireError::Truncated));
        let mut long = Request::Open { entry: Uuid::nil() }.encode();
        long.push(0);
        assert_eq!(Request::decode(&long), Err(WireError::Trailing));
        assert_eq!(
            Response::decode(&vec![REFUSED, 99].into()),
            Err(WireError::UnknownKind(99))
        );
    }
}
