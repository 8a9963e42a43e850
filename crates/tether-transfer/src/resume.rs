//! The resume record kept beside a partial file.
//!
//! `.name.tether-resume` says which source the partial file `.name.tether-partial` belongs to
//! (size, modification time, BLAKE3 hash, chunk size) and which chunks had been written when it
//! was last saved. It is a hint, not a promise: on resume every chunk it lists is read back and
//! checked against its hash, and only chunks that verify are kept. So the record can be saved
//! often and cheaply (written to a temporary file and renamed over the old one, no fsync): a lost
//! or stale record costs re-fetching, never a wrong byte. A record that does not parse, or
//! describes another version of the source, discards the partial file.
//!
//! Both names are used relative to their directory's handle: a record is read only if it is a
//! regular file (a symlink or FIFO at its name counts as no record), and written to a new file
//! made with `O_CREAT | O_EXCL | O_NOFOLLOW` (whatever was at the temporary name removed first,
//! never followed), then renamed over the old record, which replaces a link there, not what it
//! points to.

use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::OFlags;

use serde::{Deserialize, Serialize};
use tether_identity::NodeId;
use tether_wire::ContentHash;

use crate::chunk::{CHUNK_SIZE, ChunkSet, chunk_count};
use crate::error::LocalError;
use crate::manifest::ManifestEntry;
use crate::receive::disk::{create_new, open_regular};

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
    /// The device sending it, so the partial data of a device no longer paired can be
    /// collected (absent in records written before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sender: Option<NodeId>,
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
            sender: None,
        }
    }

    /// Notes the device sending the file.
    pub(crate) fn sender(mut self, sender: Option<NodeId>) -> Self {
        self.sender = sender;
        self
    }

    /// The device that was sending the file, when the record says.
    pub(crate) fn sent_by(&self) -> Option<NodeId> {
        self.sender
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

    /// Reads the record `name` in `dir`; `Ok(None)` if there is none, it is not a regular file,
    /// or it does not parse.
    pub(crate) fn read(dir: &OwnedFd, name: &str) -> io::Result<Option<ResumeRecord>> {
        let file = match open_regular(dir, name, OFlags::RDONLY) {
            Ok(Some(file)) => file,
            Ok(None) => return Ok(None),
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

    /// Replaces the record `name` in `dir` through the new file `tmp` (`path`, the record's
    /// path, for messages).
    pub(crate) fn write(
        &self,
        dir: &OwnedFd,
        name: &str,
        tmp: &str,
        path: &Path,
    ) -> Result<(), LocalError> {
        let failed = |e: io::Error| LocalError::io("writing", path, e);
        let json = serde_json::to_vec(self).map_err(|e| failed(io::Error::other(e)))?;
        let mut file = create_new(dir, tmp, path)?;
        file.write_all(&json).map_err(failed)?;
        drop(file);
        rustix::fs::renameat(dir, tmp, dir, name).map_err(|e| failed(e.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::EntryKind;
    use std::fs;
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
    fn read_write_garbage_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let handle =
            rustix::fs::open(dir.path(), OFlags::RDONLY, rustix::fs::Mode::empty()).unwrap();
        let (name, tmp) = (".f.tether-resume", ".f.tether-resume.tmp");
        let path = dir.path().join(name);
        assert_eq!(ResumeRecord::read(&handle, name).unwrap(), None);
        let e = entry(5);
        let record = ResumeRecord::new(&e, ContentHash([3; 32]), &ChunkSet::full(1));
        record.write(&handle, name, tmp, &path).unwrap();
        assert!(!dir.path().join(tmp).exists());
        assert_eq!(
            ResumeRecord::read(&handle, name).unwrap(),
            Some(record.clone())
        );
        fs::write(&path, b"{not json").unwrap();
        assert_eq!(ResumeRecord::read(&handle, name).unwrap(), None);

        // Links at both names: neither is followed, read or written through.
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary");
        fs::write(&canary, b"canary").unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&canary, &path).unwrap();
        std::os::unix::fs::symlink(&canary, dir.path().join(tmp)).unwrap();
        assert_eq!(ResumeRecord::read(&handle, name).unwrap(), None);
        record.write(&handle, name, tmp, &path).unwrap();
        assert_eq!(fs::read(&canary).unwrap(), b"canary");
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(ResumeRecord::read(&handle, name).unwrap(), Some(record));
    }
}
