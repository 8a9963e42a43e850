//! Batch frames: several whole small files in one data frame.
//!
//! A folder of many small files would otherwise cost one frame per file: one seal, one write,
//! one hand-off to the receiver's worker, one open. A batch is a tether-wire data frame whose
//! [`DataChunk`](tether_wire::DataChunk) names no entry (the nil id) at offset [`BATCH_OFFSET`],
//! which no chunk can have (chunk offsets are multiples of the chunk size); its bytes are
//! pieces, each a whole file of one chunk:
//!
//! ```text
//! +-------------+--------------+-----------------+ ... repeated, at least once
//! | entry_id 16 | len u32 BE   | bytes (len)     |
//! +-------------+--------------+-----------------+
//! ```
//!
//! The whole frame is at most one chunk's bytes ([`MAX_CHUNK_LEN`]), so a batch costs the
//! receiver what a chunk does; each piece is then checked exactly as a chunk at offset 0 of
//! its file would be (asked for, hash, written). A sender batches only when the receiver's
//! `Accept` says `batches` (receivers before batches never see one), and only files whose
//! size is at most [`SMALL_FILE`] and without compression.

use tether_wire::limits::MAX_CHUNK_LEN;
use uuid::Uuid;

/// The offset that marks a data frame as a batch.
pub(crate) const BATCH_OFFSET: u64 = u64::MAX;

/// Bytes of one piece's header.
pub(crate) const PIECE_HEADER_LEN: usize = 16 + 4;

/// Largest file put in a batch: a quarter of the batch, so a batch that starts with a file
/// holds a few more.
pub(crate) const SMALL_FILE: u64 = (MAX_CHUNK_LEN / 4) as u64;

/// Bytes of the piece of a file of `size` bytes in a batch.
pub(crate) fn piece_len(size: u64) -> u64 {
    size.saturating_add(PIECE_HEADER_LEN as u64)
}

/// Whether a batch's pieces total at most what one frame carries.
pub(crate) fn fits(total: u64) -> bool {
    total <= MAX_CHUNK_LEN as u64
}

/// Writes the header of a piece of `len` bytes for `entry_id` at the start of `out` (which has
/// room for [`PIECE_HEADER_LEN`] bytes); the bytes follow it.
pub(crate) fn write_piece_header(out: &mut [u8], entry_id: Uuid, len: u32) {
    if let Some(header) = out.first_chunk_mut::<PIECE_HEADER_LEN>() {
        let (id, at) = header.split_at_mut(16);
        id.copy_from_slice(entry_id.as_bytes());
        at.copy_from_slice(&len.to_be_bytes());
    }
}

/// The pieces of a batch's bytes, in order: entry id and file bytes. A batch that is empty,
/// over a frame's bytes, or whose last piece is cut short is refused, with what was wrong.
pub(crate) fn pieces(bytes: &[u8]) -> Result<Vec<(Uuid, &[u8])>, &'static str> {
    if bytes.is_empty() {
        return Err("empty batch");
    }
    if bytes.len() > MAX_CHUNK_LEN {
        return Err("batch larger than a chunk");
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (header, tail) = rest
            .split_first_chunk::<PIECE_HEADER_LEN>()
            .ok_or("batch piece header cut short")?;
        let (id, len) = header.split_at(16);
        let id = Uuid::from_slice(id).map_err(|_| "batch piece id")?;
        let len = <[u8; 4]>::try_from(len).map_err(|_| "batch piece length")?;
        let len = usize::try_from(u32::from_be_bytes(len)).map_err(|_| "batch piece length")?;
        if len > tail.len() {
            return Err("batch piece longer than the batch");
        }
        let (piece, tail) = tail.split_at(len);
        out.push((id, piece));
        rest = tail;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pieces: &[(u128, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (id, bytes) in pieces {
            let at = out.len();
            out.resize(at + PIECE_HEADER_LEN, 0);
            write_piece_header(&mut out[at..], Uuid::from_u128(*id), bytes.len() as u32);
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn pieces_read_back_in_order() {
        let bytes = batch(&[(1, b"one"), (2, b""), (3, &[9; 5000])]);
        let read = pieces(&bytes).unwrap();
        assert_eq!(read.len(), 3);
        assert_eq!(read[0], (Uuid::from_u128(1), &b"one"[..]));
        assert_eq!(read[1], (Uuid::from_u128(2), &b""[..]));
        assert_eq!(read[2], (Uuid::from_u128(3), &[9u8; 5000][..]));
        assert_eq!(piece_len(3), 23);
    }

    #[test]
    fn hostile_batches_are_refused() {
        assert_eq!(pieces(b""), Err("empty batch"));
        assert_eq!(pieces(&[0; 19]), Err("batch piece header cut short"));
        let mut long = batch(&[(1, b"abc")]);
        long.pop();
        assert_eq!(pieces(&long), Err("batch piece longer than the batch"));
        let mut huge = vec![0u8; PIECE_HEADER_LEN];
        write_piece_header(&mut huge, Uuid::from_u128(1), u32::MAX);
        assert_eq!(pieces(&huge), Err("batch piece longer than the batch"));
        let trailing = [batch(&[(1, b"a")]), vec![7; 3]].concat();
        assert_eq!(pieces(&trailing), Err("batch piece header cut short"));
        assert_eq!(
            pieces(&vec![0; MAX_CHUNK_LEN + 1]),
            Err("batch larger than a chunk")
        );
        assert!(fits(MAX_CHUNK_LEN as u64) && !fits(MAX_CHUNK_LEN as u64 + 1));
    }
}
