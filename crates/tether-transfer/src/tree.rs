//! Per-chunk hashes that add up to the file's ordinary BLAKE3 hash.
//!
//! BLAKE3 hashes a file as a binary tree of 1 KiB chunks. Because [`CHUNK_SIZE`] is a power of
//! two, each 256 KiB transfer chunk at a 256 KiB-aligned offset is one whole subtree, and its
//! *chaining value* (BLAKE3's interior hash, via `blake3::hazmat`) is what the tree combines. So:
//!
//! * the sender sends one 32-byte hash per chunk (its chaining value; for a one-chunk file, the
//!   file hash itself);
//! * the receiver rebuilds the root from those hashes and checks it equals the manifest's file
//!   hash **before** accepting any data, so a wrong hash list is caught up front;
//! * every arriving (or kept) chunk is checked against its own hash; once all chunks passed, the
//!   file's BLAKE3 hash is proven without reading the file again.
//!
//! The root is the plain `blake3::hash` of the file, the same [`ContentHash`](tether_wire::ContentHash)
//! the rest of Tether uses. The alternative, a separate list of `blake3(chunk)` values, would need
//! its own authentication against the file hash and a second whole-file pass to check it; a
//! bao-style outboard would carry the same information with interior nodes the receiver can
//! recompute. The list costs 32 bytes per 256 KiB (1/8192 of the data).
//!
//! `blake3::hazmat` asserts its preconditions (non-empty subtree, aligned offset, length within
//! the subtree); the functions here check them first and return `None` instead.

use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::chunk::{CHUNK, chunk_count, chunk_len, chunk_offset};

/// A 32-byte chunk hash: a chaining value, or the root for a one-chunk file.
pub(crate) type ChunkHash = [u8; 32];

#[cfg(doc)]
use crate::chunk::CHUNK_SIZE;

/// The hash of chunk `index` of a file of `size` bytes whose bytes are `data`. `None` if `data`
/// is not exactly that chunk's length.
pub fn chunk_hash(size: u64, index: u64, data: &[u8]) -> Option<ChunkHash> {
    if chunk_len(size, index)? != data.len() {
        return None;
    }
    if chunk_count(size) == 1 {
        return Some(*blake3::hash(data).as_bytes());
    }
    let mut hasher = blake3::Hasher::new();
    hasher.set_input_offset(chunk_offset(index));
    hasher.update(data);
    Some(hasher.finalize_non_root())
}

/// The file hash the chunk hashes add up to: `hashes` must hold one hash per chunk, in order.
/// For an empty list this is the hash of the empty file.
pub fn root_hash(hashes: &[ChunkHash]) -> [u8; 32] {
    match hashes {
        [] => *blake3::hash(b"").as_bytes(),
        [only] => *only,
        _ => {
            let (left, right) = hashes.split_at(left_len(hashes.len()));
            *merge_subtrees_root(&subtree(left), &subtree(right), Mode::Hash).as_bytes()
        }
    }
}

/// The chaining value of a non-root subtree made of `hashes` (at least one).
fn subtree(hashes: &[ChunkHash]) -> ChunkHash {
    match hashes {
        [] => [0; 32], // never called with an empty slice: `left_len` keeps both halves non-empty
        [only] => *only,
        _ => {
            let (left, right) = hashes.split_at(left_len(hashes.len()));
            merge_subtrees_non_root(&subtree(left), &subtree(right), Mode::Hash)
        }
    }
}

/// How many chunks go to the left subtree of `n >= 2` chunks: BLAKE3 puts the largest power of
/// two strictly below the input length on the left, which for whole 256 KiB chunks (the last one
/// possibly short) is the largest power of two below `n`.
fn left_len(n: usize) -> usize {
    debug_assert!(n >= 2);
    let below = n.saturating_sub(1).max(1);
    1usize << (usize::BITS - 1 - below.leading_zeros())
}

/// [`CHUNK_SIZE`] as a `usize`, for buffers.
pub(crate) const CHUNK_USIZE: usize = CHUNK as usize;

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn hashes_of(bytes: &[u8]) -> Vec<ChunkHash> {
        let size = bytes.len() as u64;
        bytes
            .chunks(CHUNK_USIZE)
            .enumerate()
            .map(|(i, c)| chunk_hash(size, i as u64, c).unwrap())
            .collect()
    }

    #[test]
    fn root_from_chunk_hashes_is_the_plain_blake3_hash() {
        let c = CHUNK_USIZE;
        for len in [
            0,
            1,
            1023,
            1024,
            c - 1,
            c,
            c + 1,
            2 * c,
            3 * c + 5,
            4 * c,
            5 * c,
            7 * c + 1,
            8 * c,
            9 * c + 77,
        ] {
            let bytes = data(len);
            let hashes = hashes_of(&bytes);
            assert_eq!(hashes.len() as u64, chunk_count(len as u64));
            assert_eq!(
                root_hash(&hashes),
                *blake3::hash(&bytes).as_bytes(),
                "len {len}"
            );
        }
    }

    #[test]
    fn a_changed_chunk_changes_its_hash_only() {
        let mut bytes = data(3 * CHUNK_USIZE);
        let before = hashes_of(&bytes);
        bytes[CHUNK_USIZE + 5] ^= 1;
        let after = hashes_of(&bytes);
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_eq!(before[2], after[2]);
    }

    #[test]
    fn wrong_lengths_are_refused_not_panics() {
        let size = 2 * CHUNK + 3;
        assert!(chunk_hash(size, 0, &data(CHUNK_USIZE - 1)).is_none());
        assert!(chunk_hash(size, 2, &data(4)).is_none());
        assert!(chunk_hash(size, 3, &[]).is_none());
        assert!(chunk_hash(0, 0, &[]).is_none());
        assert!(chunk_hash(size, u64::MAX, &[1]).is_none());
    }

    #[test]
    fn left_len_is_largest_power_of_two_below() {
        assert_eq!(left_len(2), 1);
        assert_eq!(left_len(3), 2);
        assert_eq!(left_len(4), 2);
        assert_eq!(left_len(5), 4);
        assert_eq!(left_len(8), 4);
        assert_eq!(left_len(9), 8);
    }
}
