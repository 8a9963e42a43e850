//! Chunks: the unit of transfer, verification and resume, and a set of chunk indices.
//!
//! A file of `size` bytes is cut into [`CHUNK_SIZE`] pieces; every piece but the last is full.
//! The size is a power of two and at least BLAKE3's 1 KiB chunk, so each piece is exactly one
//! subtree of the file's BLAKE3 tree (see [`tree`](crate::tree)): a piece can be verified on its
//! own against the whole-file hash.

use std::ops::Range;

use tether_wire::limits::MAX_CHUNK_LEN;

/// Bytes in every chunk of a file but the last: 256 KiB. The only place the size is set.
///
/// Measured before settling (see BENCHMARKS.md): larger chunks cannot travel in one wire data
/// frame, and smaller ones cost more per-frame work without helping throughput on loopback.
pub const CHUNK_SIZE: u32 = 256 * 1024;

const _: () = assert!(CHUNK_SIZE as usize == MAX_CHUNK_LEN);
const _: () = assert!(CHUNK_SIZE.is_power_of_two() && CHUNK_SIZE as usize >= blake3::CHUNK_LEN);

/// [`CHUNK_SIZE`] as a `u64`.
pub(crate) const CHUNK: u64 = CHUNK_SIZE as u64;

/// How many chunks a file of `size` bytes has (0 for an empty file).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK)
}

/// Where chunk `index` starts.
pub fn chunk_offset(index: u64) -> u64 {
    index.saturating_mul(CHUNK)
}

/// The length of chunk `index` of a file of `size` bytes, if the file has that chunk.
pub fn chunk_len(size: u64, index: u64) -> Option<usize> {
    let start = index.checked_mul(CHUNK)?;
    if start >= size {
        return None;
    }
    usize::try_from((size - start).min(CHUNK)).ok()
}

/// The chunk index at `offset`, if `offset` is the start of a chunk of a file of `size` bytes.
pub(crate) fn chunk_at(size: u64, offset: u64) -> Option<u64> {
    (offset.is_multiple_of(CHUNK) && offset < size).then_some(offset / CHUNK)
}

/// A set of chunk indices `0..len`, one bit each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkSet {
    len: u64,
    count: u64,
    words: Vec<u64>,
}

impl ChunkSet {
    /// The empty set over `0..len`. `len` must already be bounded by the receiver's limits.
    pub(crate) fn new(len: u64) -> Self {
        let words = usize::try_from(len.div_ceil(64)).unwrap_or(0);
        ChunkSet {
            len,
            count: 0,
            words: vec![0; words],
        }
    }

    /// The set holding all of `0..len`.
    pub(crate) fn full(len: u64) -> Self {
        let mut set = ChunkSet::new(len);
        set.insert_range(0..len);
        set
    }

    /// How many indices the set ranges over.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// How many indices are in the set.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// Whether every index is in the set.
    pub(crate) fn is_full(&self) -> bool {
        self.count == self.len
    }

    fn slot(&self, index: u64) -> Option<(usize, u64)> {
        if index >= self.len {
            return None;
        }
        Some((usize::try_from(index / 64).ok()?, 1u64 << (index % 64)))
    }

    /// Whether `index` is in the set (never for an index out of range).
    pub(crate) fn contains(&self, index: u64) -> bool {
        self.slot(index)
            .and_then(|(word, bit)| self.words.get(word).map(|w| w & bit != 0))
            .unwrap_or(false)
    }

    /// Adds `index`; returns whether it was newly added (false if present or out of range).
    pub(crate) fn insert(&mut self, index: u64) -> bool {
        let Some((word, bit)) = self.slot(index) else {
            return false;
        };
        match self.words.get_mut(word) {
            Some(w) if *w & bit == 0 => {
                *w |= bit;
                self.count += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes `index`; returns whether it was present.
    pub(crate) fn remove(&mut self, index: u64) -> bool {
        let Some((word, bit)) = self.slot(index) else {
            return false;
        };
        match self.words.get_mut(word) {
            Some(w) if *w & bit != 0 => {
                *w &= !bit;
                self.count -= 1;
                true
            }
            _ => false,
        }
    }

    /// Adds every index of `range` that is in bounds.
    pub(crate) fn insert_range(&mut self, range: Range<u64>) {
        for index in range.start..range.end.min(self.len) {
            self.insert(index);
        }
    }

    /// The indices in the set, ascending.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        (0..self.len).filter(|&index| self.contains(index))
    }

    /// The indices *not* in the set, as ascending maximal ranges.
    pub(crate) fn missing_ranges(&self) -> Vec<Range<u64>> {
        let mut ranges = Vec::new();
        let mut start = None;
        for index in 0..self.len {
            match (self.contains(index), start) {
                (false, None) => start = Some(index),
                (true, Some(s)) => {
                    ranges.push(s..index);
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            ranges.push(s..self.len);
        }
        ranges
    }

    /// The set as little-endian bytes (bit `i` of byte `i / 8` is index `i`), for resume records.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let bytes = usize::try_from(self.len.div_ceil(8)).unwrap_or(0);
        self.words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .take(bytes)
            .collect()
    }

    /// Reads [`to_bytes`](Self::to_bytes) output for a set over `0..len`. `None` if the length does
    /// not match or bits beyond `len` are set.
    pub(crate) fn from_bytes(len: u64, bytes: &[u8]) -> Option<Self> {
        if u64::try_from(bytes.len()).ok()? != len.div_ceil(8) {
            return None;
        }
        let mut set = ChunkSet::new(len);
        for (byte_index, &byte) in bytes.iter().enumerate() {
            for bit in 0..8u64 {
                if byte & (1 << bit) != 0 {
                    let index = u64::try_from(byte_index).ok()? * 8 + bit;
                    if !set.insert(index) {
                        return None;
                    }
                }
            }
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_math() {
        assert_eq!(chunk_count(0), 0);
        assert_eq!(chunk_count(1), 1);
        assert_eq!(chunk_count(CHUNK), 1);
        assert_eq!(chunk_count(CHUNK + 1), 2);
        assert_eq!(chunk_len(0, 0), None);
        assert_eq!(chunk_len(10, 0), Some(10));
        assert_eq!(chunk_len(CHUNK + 10, 0), Some(CHUNK_SIZE as usize));
        assert_eq!(chunk_len(CHUNK + 10, 1), Some(10));
        assert_eq!(chunk_len(CHUNK + 10, 2), None);
        assert_eq!(chunk_len(u64::MAX, u64::MAX), None);
        assert_eq!(chunk_at(CHUNK + 10, CHUNK), Some(1));
        assert_eq!(chunk_at(CHUNK + 10, 5), None);
        assert_eq!(chunk_at(CHUNK, CHUNK), None);
    }

    #[test]
    fn set_operations() {
        let mut set = ChunkSet::new(130);
        assert!(set.insert(0));
        assert!(!set.insert(0));
        assert!(set.insert(129));
        assert!(!set.insert(130));
        set.insert_range(5..8);
        assert_eq!(set.count(), 5);
        assert_eq!(set.iter().collect::<Vec<_>>(), vec![0, 5, 6, 7, 129]);
        assert_eq!(set.missing_ranges(), vec![1..5, 8..129]);
        assert!(set.remove(6));
        assert!(!set.remove(6));
        assert_eq!(set.missing_ranges(), vec![1..5, 6..7, 8..129]);
        assert!(ChunkSet::full(70).is_full());
        assert_eq!(ChunkSet::full(3).missing_ranges(), vec![]);
        assert_eq!(ChunkSet::new(3).missing_ranges(), vec![0..3]);
    }

    #[test]
    fn bytes_round_trip_and_reject_stray_bits() {
        let mut set = ChunkSet::new(70);
        for i in [0, 9, 63, 64, 69] {
            set.insert(i);
        }
        let bytes = set.to_bytes();
        assert_eq!(bytes.len(), 9);
        assert_eq!(ChunkSet::from_bytes(70, &bytes), Some(set));
        let mut stray = bytes.clone();
        stray[8] |= 0x80; // index 71, beyond the length
        assert_eq!(ChunkSet::from_bytes(70, &stray), None);
        assert_eq!(
            ChunkSet::from_bytes(71, &bytes),
            Some(ChunkSet::from_bytes(71, &bytes).unwrap())
        );
        assert_eq!(ChunkSet::from_bytes(80, &bytes), None);
    }
}
