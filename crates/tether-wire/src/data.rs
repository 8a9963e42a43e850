//! Data frames: file bytes, never JSON.
//!
//! ```text
//! +------------------+--------------+----------+---------------------------------+
//! | entry_id 16 B    | offset u64 BE| flags u8 | bytes (0..=MAX_CHUNK_LEN)       |
//! +------------------+--------------+----------+---------------------------------+
//! ```
//!
//! Flag bit 0 marks the last chunk of the file; the other bits must be zero (a later version that
//! needs a flag gets a new ALPN). The chunk keeps its frame's payload buffer, so decoding a data
//! frame copies nothing.

use uuid::Uuid;

use crate::control::MessageError;
use crate::frame::{DATA_HEADER_LEN, EncodeError, Frame, FrameKind, SEAL_OVERHEAD};
use crate::limits::MAX_CHUNK_LEN;

const FLAG_LAST: u8 = 0x01;

/// A piece of a file: which entry, where in it, and the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct DataChunk {
    entry_id: Uuid,
    offset: u64,
    last: bool,
    /// The whole frame payload: header, then the bytes.
    payload: Vec<u8>,
}

impl DataChunk {
    /// A chunk of `bytes` (at most [`MAX_CHUNK_LEN`]) at `offset` in entry `entry_id`; `last`
    /// marks the end of the file.
    pub fn new(entry_id: Uuid, offset: u64, last: bool, bytes: &[u8]) -> Result<Self, EncodeError> {
        if bytes.len() > MAX_CHUNK_LEN {
            return Err(EncodeError::TooLarge {
                kind: FrameKind::Data,
                len: DATA_HEADER_LEN + bytes.len(),
                cap: FrameKind::Data.max_payload_len(),
            });
        }
        // Room for the seal's tag and counter, so sealing the frame does not reallocate.
        let mut payload = Vec::with_capacity(DATA_HEADER_LEN + bytes.len() + SEAL_OVERHEAD);
        payload.extend_from_slice(entry_id.as_bytes());
        payload.extend_from_slice(&offset.to_be_bytes());
        payload.push(if last { FLAG_LAST } else { 0 });
        payload.extend_from_slice(bytes);
        Ok(DataChunk {
            entry_id,
            offset,
            last,
            payload,
        })
    }

    /// A chunk of `len` bytes (at most [`MAX_CHUNK_LEN`]) built in `buf`, a buffer to reuse
    /// (e.g. a sent frame's [payload](Frame::into_payload)), with its header written: the caller
    /// then writes the bytes in place through [`bytes_mut`](Self::bytes_mut), so a chunk read
    /// from a file is never copied. Until then the bytes are whatever `buf` held (zeros where it
    /// grew); a chunk whose bytes were not all written must not be sent.
    pub fn with_buffer(
        entry_id: Uuid,
        offset: u64,
        last: bool,
        len: usize,
        mut buf: Vec<u8>,
    ) -> Result<Self, EncodeError> {
        if len > MAX_CHUNK_LEN {
            return Err(EncodeError::TooLarge {
                kind: FrameKind::Data,
                len: DATA_HEADER_LEN + len,
                cap: FrameKind::Data.max_payload_len(),
            });
        }
        let total = DATA_HEADER_LEN + len;
        buf.reserve((total + SEAL_OVERHEAD).saturating_sub(buf.len()));
        // Only what grows is zeroed: a reused buffer of the same size costs no pass over it.
        buf.resize(total, 0);
        if let Some(header) = buf.first_chunk_mut::<DATA_HEADER_LEN>() {
            let (id, rest) = header.split_at_mut(16);
            id.copy_from_slice(entry_id.as_bytes());
            let (at, flags) = rest.split_at_mut(8);
            at.copy_from_slice(&offset.to_be_bytes());
            flags.fill(if last { FLAG_LAST } else { 0 });
        }
        Ok(DataChunk {
            entry_id,
            offset,
            last,
            payload: buf,
        })
    }

    /// The file bytes, to write in place (see [`with_buffer`](Self::with_buffer)).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        self.payload.get_mut(DATA_HEADER_LEN..).unwrap_or_default()
    }

    /// Reads a data frame. Fails on another kind of frame (a sealed one must be
    /// [opened](Frame::open) first) or a malformed header.
    pub fn decode(frame: Frame) -> Result<Self, MessageError> {
        if frame.kind() != FrameKind::Data {
            return Err(MessageError::WrongKind {
                expected: FrameKind::Data,
                got: frame.kind(),
            });
        }
        let payload = frame.into_payload();
        let short = || MessageError::MalformedData {
            reason: "shorter than the data header",
        };
        let (id, rest) = payload.split_first_chunk::<16>().ok_or_else(short)?;
        let (offset, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let (&flags, _) = rest.split_first().ok_or_else(short)?;
        if flags & !FLAG_LAST != 0 {
            return Err(MessageError::MalformedData {
                reason: "unknown flag bits",
            });
        }
        let entry_id = Uuid::from_bytes(*id);
        let offset = u64::from_be_bytes(*offset);
        Ok(DataChunk {
            entry_id,
            offset,
            last: flags & FLAG_LAST != 0,
            payload,
        })
    }

    /// The entry the bytes belong to.
    pub fn entry_id(&self) -> Uuid {
        self.entry_id
    }

    /// Where the bytes start in the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Whether this is the file's last chunk.
    pub fn is_last(&self) -> bool {
        self.last
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        self.payload.get(DATA_HEADER_LEN..).unwrap_or_default()
    }

    /// The data frame carrying this chunk.
    pub fn into_frame(self) -> Frame {
        Frame::from_parts(FrameKind::Data, self.payload)
    }
}

impl std::fmt::Debug for DataChunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataChunk")
            .field("entry_id", &self.entry_id)
            .field("offset", &self.offset)
            .field("last", &self.last)
            .field("len", &self.bytes().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_written_in_place_equals_one_copied() {
        let id = Uuid::from_u128(0x99);
        // A reused buffer, longer than the new chunk and full of old bytes.
        let old = vec![0xAB; DATA_HEADER_LEN + 300];
        let mut chunk = DataChunk::with_buffer(id, 4096, true, 5, old).unwrap();
        chunk.bytes_mut().copy_from_slice(b"hello");
        let copied = DataChunk::new(id, 4096, true, b"hello").unwrap();
        assert_eq!(chunk, copied);
        assert_eq!(chunk.clone().into_frame(), copied.clone().into_frame());
        assert_eq!(DataChunk::decode(chunk.into_frame()).unwrap(), copied);
        // A fresh buffer grows, with room for a seal.
        let mut grown = DataChunk::with_buffer(id, 0, false, 1000, Vec::new()).unwrap();
        assert_eq!(grown.bytes_mut().len(), 1000);
        let payload = grown.into_frame().into_payload();
        assert!(payload.capacity() >= DATA_HEADER_LEN + 1000 + SEAL_OVERHEAD);
        assert!(DataChunk::with_buffer(id, 0, false, MAX_CHUNK_LEN + 1, Vec::new()).is_err());
    }

    #[test]
    fn round_trip_through_a_frame() {
        let id = Uuid::from_u128(0x1234);
        let chunk = DataChunk::new(id, 1 << 40, true, b"hello").unwrap();
        let frame = chunk.clone().into_frame();
        assert_eq!(frame.payload().len(), DATA_HEADER_LEN + 5);
        let back = DataChunk::decode(frame).unwrap();
        assert_eq!(back, chunk);
        assert_eq!(
            (back.entry_id(), back.offset(), back.is_last()),
            (id, 1 << 40, true)
        );
        assert_eq!(back.bytes(), b"hello");
    }

    #[test]
    fn full_chunk_fits_and_one_more_byte_does_not() {
        let id = Uuid::nil();
        let chunk = DataChunk::new(id, 0, false, &vec![7; MAX_CHUNK_LEN]).unwrap();
        assert_eq!(
            chunk.into_frame().payload().len(),
            FrameKind::Data.max_payload_len()
        );
        assert!(DataChunk::new(id, 0, false, &vec![7; MAX_CHUNK_LEN + 1]).is_err());
    }

    #[test]
    fn malformed_headers_rejected() {
        let short = Frame::new(FrameKind::Data, vec![0; DATA_HEADER_LEN - 1]).unwrap();
        assert!(matches!(
            DataChunk::decode(short),
            Err(MessageError::MalformedData { .. })
        ));
        let mut flags = vec![0; DATA_HEADER_LEN];
        flags[DATA_HEADER_LEN - 1] = 0x02;
        let bad_flags = Frame::new(FrameKind::Data, flags).unwrap();
        assert!(matches!(
            DataChunk::decode(bad_flags),
            Err(MessageError::MalformedData { .. })
        ));
        let control = Frame::new(FrameKind::Control, vec![0; DATA_HEADER_LEN]).unwrap();
        assert!(matches!(
            DataChunk::decode(control),
            Err(MessageError::WrongKind { .. })
        ));
    }
}
