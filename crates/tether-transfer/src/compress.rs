//! Optional zstd compression, chosen per transfer and applied per chunk only where it pays.
//!
//! The wire's data frame has no spare flag bit (unknown bits are refused) and its payload cap is
//! exactly one raw chunk, so a per-chunk encoding byte would not fit a full chunk. The encoding is
//! therefore implied by the length: the receiver knows every chunk's plain length from the
//! manifest, and a compressed chunk is only ever sent when it is *shorter* than that. So
//!
//! * `len == plain length` → the bytes are raw;
//! * `len < plain length` → the bytes are one zstd frame, decompressed into exactly the plain
//!   length (never more: a decompression bomb fails instead of allocating).
//!
//! zstd over gzip (the seed's choice): at level 1 it compresses several times faster for a
//! similar ratio. Chunks that do not shrink are sent raw, and after a run of such chunks the
//! sender only probes one chunk in [`PROBE_EVERY`], so incompressible files cost little CPU.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

/// zstd level: the fastest standard level; compression must not slow a LAN transfer down.
const LEVEL: i32 = 1;

/// After this many chunks in a row that did not shrink, a file is treated as incompressible...
pub(crate) const GIVE_UP_AFTER: u32 = 4;
/// ...and only one chunk in this many is still tried.
pub(crate) const PROBE_EVERY: u64 = 32;

/// How a transfer may encode chunk bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Compression {
    /// Always raw.
    #[default]
    None,
    /// zstd per chunk, where it pays.
    Zstd,
    /// A value this version does not know (refused by the receiver).
    #[serde(other)]
    Unknown,
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `plain` compressed, if that makes it strictly shorter.
pub(crate) fn compress(plain: &[u8]) -> Option<Vec<u8>> {
    let mut out = vec![0u8; plain.len().checked_sub(1)?];
    let written = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        // An error here is most often "destination too small": the chunk does not pay.
        slot.as_mut()?.compress_to_buffer(plain, &mut out[..]).ok()
    })?;
    out.truncate(written);
    Some(out)
}

/// Why chunk bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Longer than the chunk's plain length.
    #[error("chunk of {got} bytes where at most {expected} were expected")]
    TooLong {
        /// Bytes received.
        got: usize,
        /// The chunk's plain length.
        expected: usize,
    },
    /// Shorter than the plain length but compression is off for this transfer.
    #[error("short chunk ({got} of {expected} bytes) in an uncompressed transfer")]
    Short {
        /// Bytes received.
        got: usize,
        /// The chunk's plain length.
        expected: usize,
    },
    /// Not a zstd frame that decompresses to exactly the plain length.
    #[error("bad compressed chunk: {0}")]
    Zstd(String),
}

/// The plain bytes of a chunk whose plain length is `expected`.
///
/// Returns `Ok(None)` when `bytes` are raw already (the caller keeps them), `Ok(Some(plain))`
/// when they were decompressed.
pub(crate) fn decode(
    compression: Compression,
    bytes: &[u8],
    expected: usize,
) -> Result<Option<Vec<u8>>, DecodeError> {
    let got = bytes.len();
    if got == expected {
        return Ok(None);
    }
    if got > expected {
        return Err(DecodeError::TooLong { got, expected });
    }
    if compression != Compression::Zstd {
        return Err(DecodeError::Short { got, expected });
    }
    let mut plain = vec![0u8; expected];
    let written = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::new().map_err(|e| DecodeError::Zstd(e.to_string()))?,
            );
        }
        match slot.as_mut() {
            Some(d) => d
                .decompress_to_buffer(bytes, &mut plain[..])
                .map_err(|e| DecodeError::Zstd(e.to_string())),
            None => Err(DecodeError::Zstd("no decompressor".into())),
        }
    })?;
    if written != expected {
        return Err(DecodeError::Zstd(format!(
            "decompressed to {written} bytes, expected {expected}"
        )));
    }
    Ok(Some(plain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_chunks_shrink_and_come_back() {
        let plain = vec![b'a'; 256 << 10];
        let packed = compress(&plain).unwrap();
        assert!(packed.len() < 1024);
        assert_eq!(
            decode(Compression::Zstd, &packed, plain.len()).unwrap(),
            Some(plain.clone())
        );
        assert_eq!(
            decode(Compression::Zstd, &plain, plain.len()).unwrap(),
            None
        );
    }

    #[test]
    fn incompressible_chunks_stay_raw() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..65_536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(compress(&noise), None);
        assert_eq!(compress(&[]), None);
    }

    #[test]
    fn hostile_inputs_fail_cleanly() {
        let bomb = compress(&vec![0u8; 256 << 10]).unwrap();
        // Claims to be a 1 KiB chunk but decompresses to 256 KiB: refused, not allocated.
        assert!(matches!(
            decode(Compression::Zstd, &bomb, 1024),
            Err(DecodeError::Zstd(_))
        ));
        // Decompresses to less than the plain length.
        let small = compress(&vec![0u8; 4096]).unwrap();
        assert!(decode(Compression::Zstd, &small, 8192).is_err());
        assert!(decode(Compression::Zstd, b"garbage", 100).is_err());
        assert!(matches!(
            decode(Compression::None, b"short", 100),
            Err(DecodeError::Short { .. })
        ));
        assert!(matches!(
            decode(Compression::Zstd, &[0; 11], 10),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
