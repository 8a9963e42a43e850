//! The resume record kept beside a partial file.
//!
//! `.name.tether-resume` says which source the partial file `.name.tether-partial` belongs to
//! (size, modification time, BLAKE3 hash, chunk size) and which chunks had been written when it
//! was last saved. It is a hint, not a promise: on resume every chunk it lists is read back and
//! checked against its hash, and only chunks that verify are kept. So the record can be saved
//! often and cheaply (written to a temporary file and renamed over the old one, no fsync): a lost
//! or stale record costs re-fetching, never a wrong byte. A record that does not parse, or
//! describes another version of the source, discards the partial file.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use tether_wire::ContentHash;

use crate::chunk::{CHUNK_SIZE, ChunkSet, chunk_count};
use crate::manifest::ManifestEntry;

const RECORD_VERSION: u32 = 1;

/// Largest record file read back (a 1 TiB file's bitmap is 1 MiB of hex).
const MAX_RECORD_BYTES: u64 = 8 << 20;

/// What a partial file belongs to and which of its chunks were written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ResumeRecord {
    version: u32,
    size: u64,
    mtime_ns: u64,
    hash: ContentHash,
    chunk_size: u32,
    /// Bitmap of written chunks, [`ChunkSet::to_bytes`] as hex.
    have: String,
}

impl ResumeRecord {
    /// A record for `entry` (a file) with `have` written.
    pub(crate) fn new(entry: &ManifestEntry, hash: ContentHash, have: &ChunkSet) -> Self {
        ResumeRecord {
            version: RECORD_VERSION,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            hash,
            chunk_size: CHUNK_SIZE,
            have: hex::encode(have.to_bytes()),
        }
    }

    /// The chunks the record lists, if it describes exactly this version of `entry`'s source.
    pub(crate) fn kept_chunks(&self, entry: &ManifestEntry, hash: ContentHash) -> Option<ChunkSet> {
        let same = self.version == RECORD_VERSION
            && self.size == entry.size
            && self.mtime_ns == entry.mtime_ns
            && self.hash == hash
            && self.chunk_size == CHUNK_SIZE;
        if !same {
            return None;
        }
        let bytes = hex::decode(&self.have).ok()?;
        ChunkSet::from_bytes(chunk_count(entry.size), &bytes)
    }

    /// Reads the record at `path`; `Ok(None)` if there is none or it does not parse.
    pub(crate) fn read(path: &Path) -> io::Result<Option<ResumeRecord>> {
        let file = match fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut json = Vec::new();
        file.take(MAX_RECORD_BYTES + 1).read_to_end(&mut json)?;
        if json.len() as u64 > MAX_RECORD_BYTES {
            return Ok(None);
        }
        Ok(serde_json::from_slice(&json).ok())
    }

    /// Replaces the record at `path` through `tmp`.
    pub(crate) fn write(&self, path: &Path, tmp: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut file = fs::File::create(tmp)?;
        file.write_all(&json)?;
        drop(file);
        fs::rename(tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryKind;
    use uuid::Uuid;

    fn entry(size: u64) -> ManifestEntry {
        ManifestEntry {
            id: Uuid::nil(),
            path: "f".into(),
            kind: EntryKind::File,
            size,
            mtime_ns: 42,
            hash: Some(ContentHash([3; 32])),
        }
    }

    #[test]
    fn record_matches_only_the_same_source() {
        let e = entry(10 * u64::from(CHUNK_SIZE));
        let hash = ContentHash([3; 32]);
        let mut have = ChunkSet::new(10);
        have.insert(2);
        have.insert(9);
        let record = ResumeRecord::new(&e, hash, &have);
        assert_eq!(record.kept_chunks(&e, hash), Some(have));
        assert_eq!(record.kept_chunks(&e, ContentHash([4; 32])), None);
        let mut touched = e.clone();
        touched.mtime_ns += 1;
        assert_eq!(record.kept_chunks(&touched, hash), None);
        let mut grown = e.clone();
        grown.size += 1;
        assert_eq!(record.kept_chunks(&grown, hash), None);
    }

    #[test]
    fn read_write_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".f.tether-resume");
        let tmp = dir.path().join(".f.tether-resume.tmp");
        assert_eq!(ResumeRecord::read(&path).unwrap(), None);
        let e = entry(5);
        let record = ResumeRecord::new(&e, ContentHash([3; 32]), &ChunkSet::full(1));
        record.write(&path, &tmp).unwrap();
        assert!(!tmp.exists());
        assert_eq!(ResumeRecord::read(&path).unwrap(), Some(record));
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(ResumeRecord::read(&path).unwrap(), None);
    }
}
