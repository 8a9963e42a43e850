//! Collecting what interrupted transfers left in a receive directory: the partial files
//! (`.name.tether-partial`) and resume records (`.name.tether-resume`, `.name.tether-resume.tmp`)
//! of transfers idle for longer than a bound, or sent by a device that is no longer paired.
//!
//! The walk never leaves the directory it is given and never follows a symlink: every
//! directory is opened relative to its parent's handle with `O_NOFOLLOW | O_DIRECTORY`, every
//! name is looked at with `lstat` semantics, and only regular files with those names are
//! removed (the name itself, by `unlinkat` on the parent's handle). A completed file, anything
//! else in the tree, and anything a symlink points to are never touched.
//!
//! A file's leftovers go together: its partial file, its record and the record's replacement.
//! They are idle when the newest of their modification times is older than the bound (a running
//! transfer writes the partial file and saves the record every half second); the record names
//! the sending device (records written before it did name none, and one-chunk files keep no
//! record: those go by their age alone).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tether_identity::{ErrorChain, NodeId};

use crate::error::LocalError;
use crate::path::{MAX_DEPTH, PARTIAL_SUFFIX, RECORD_SUFFIX, RECORD_TMP_SUFFIX};
use crate::resume::ResumeRecord;

/// Default [`Leftovers::idle`]: 7 days.
pub const DEFAULT_LEFTOVER_IDLE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How directories are opened: never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// What to collect, and whether to remove it or only list it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leftovers {
    /// Leftovers untouched for longer than this are collected. Default 7 days.
    pub idle: Duration,
    /// The time to measure idleness from (now, but a test may say otherwise).
    pub now: SystemTime,
    /// Only list what would be removed.
    pub dry_run: bool,
}

impl Default for Leftovers {
    fn default() -> Self {
        Leftovers {
            idle: DEFAULT_LEFTOVER_IDLE,
            now: SystemTime::now(),
            dry_run: false,
        }
    }
}

impl Leftovers {
    /// Sets [`idle`](Self::idle).
    pub fn idle(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// Sets [`now`](Self::now).
    pub fn now(mut self, now: SystemTime) -> Self {
        self.now = now;
        self
    }

    /// Sets [`dry_run`](Self::dry_run).
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }

    /// Collects the leftovers under `root` (see the module docs); `paired` says whether a
    /// device is still paired. Files that cannot be removed are logged and skipped.
    pub fn collect(
        &self,
        root: &Path,
        paired: &dyn Fn(&NodeId) -> bool,
    ) -> Result<Collected, LocalError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let top = rustix::fs::open(root, flags, Mode::empty())
            .map_err(|e| LocalError::io("opening", root, e.into()))?;
        let mut collected = Collected::default();
        let mut stack = vec![(top, root.to_path_buf(), 0usize)];
        while let Some((dir, path, depth)) = stack.pop() {
            let groups = match self.scan(&dir, &path, depth, &mut stack) {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::warn!(error = %ErrorChain(&error), "could not look through a directory; skipped");
                    continue;
                }
            };
            for (name, group) in groups {
                let reason = self.verdict(&dir, &name, &group, paired);
                let Some(reason) = reason else {
                    continue;
                };
                for (file, bytes) in group.files {
                    let file_path = path.join(&file);
                    if !self.dry_run {
                        match rustix::fs::unlinkat(&dir, file.as_str(), AtFlags::empty()) {
                            Ok(()) | Err(Errno::NOENT) => {}
                            Err(e) => {
                                tracing::warn!(path = %file_path.display(), error = %e,
                                    "could not remove a leftover");
                                continue;
                            }
                        }
                    }
                    collected.bytes = collected.bytes.saturating_add(bytes);
                    collected.files.push(Leftover {
                        path: file_path,
                        bytes,
                        reason,
                    });
                }
            }
        }
        Ok(collected)
    }

    /// Lists one directory: its subdirectories go on `stack`, its leftovers come back grouped
    /// by the name of the file they belong to.
    fn scan(
        &self,
        dir: &OwnedFd,
        path: &Path,
        depth: usize,
        stack: &mut Vec<(OwnedFd, PathBuf, usize)>,
    ) -> Result<BTreeMap<String, Group>, LocalError> {
        let listing = rustix::fs::Dir::read_from(dir)
            .map_err(|e| LocalError::io("listing", path, e.into()))?;
        let mut groups: BTreeMap<String, Group> = BTreeMap::new();
        for entry in listing {
            let entry = entry.map_err(|e| LocalError::io("listing", path, e.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let Ok(name) = std::str::from_utf8(name) else {
                continue; // never one of ours: every name Tether writes is UTF-8
            };
            let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(LocalError::io("inspecting", path.join(name), e.into())),
            };
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory if depth < MAX_DEPTH => {
                    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => stack.push((fd, path.join(name), depth + 1)),
                        Err(e) => tracing::debug!(path = %path.join(name).display(), error = %e,
                            "not looking inside"),
                    }
                }
                FileType::RegularFile => {
                    let Some(base) = leftover_of(name) else {
                        continue;
                    };
                    let modified = UNIX_EPOCH
                        + Duration::new(
                            u64::try_from(stat.st_mtime).unwrap_or(0),
                            u32::try_from(stat.st_mtime_nsec).unwrap_or(0),
                        );
                    let bytes = u64::try_from(stat.st_blocks)
                        .unwrap_or(0)
                        .saturating_mul(512)
                        .max(u64::try_from(stat.st_size).unwrap_or(0).min(4096));
                    let group = groups.entry(base.to_owned()).or_default();
                    group.newest = group.newest.max(modified);
                    group.files.push((name.to_owned(), bytes));
                }
                // Symlinks, special files, directories past the depth bound: never ours.
                _ => {}
            }
        }
        Ok(groups)
    }

    /// Why the leftovers of `name` go, or `None` if they stay.
    fn verdict(
        &self,
        dir: &OwnedFd,
        name: &str,
        group: &Group,
        paired: &dyn Fn(&NodeId) -> bool,
    ) -> Option<Reason> {
        let record = format!(".{name}{RECORD_SUFFIX}");
        let sender = group
            .files
            .iter()
            .any(|(file, _)| *file == record)
            .then(|| ResumeRecord::read(dir, &record).ok().flatten())
            .flatten()
            .and_then(|r| r.sent_by());
        if let Some(sender) = sender.filter(|sender| !paired(sender)) {
            return Some(Reason::Unpaired(sender));
        }
        let idle = self.now.duration_since(group.newest).unwrap_or_default();
        (idle > self.idle).then_some(Reason::Idle(idle))
    }
}

/// The leftovers of one file in one directory.
#[derive(Debug)]
struct Group {
    /// Names and bytes on disk.
    files: Vec<(String, u64)>,
    /// The newest modification time among them.
    newest: SystemTime,
}

impl Default for Group {
    fn default() -> Self {
        Group {
            files: Vec::new(),
            newest: UNIX_EPOCH,
        }
    }
}

/// The file a leftover's name belongs to: `x` for `.x.tether-partial`, `.x.tether-resume`
/// and `.x.tether-resume.tmp`.
fn leftover_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix('.')?;
    [RECORD_TMP_SUFFIX, RECORD_SUFFIX, PARTIAL_SUFFIX]
        .iter()
        .find_map(|suffix| rest.strip_suffix(suffix))
        .filter(|base| !base.is_empty())
}

/// What [`Leftovers::collect`] removed (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Collected {
    /// Each file.
    pub files: Vec<Leftover>,
    /// Bytes on disk they held.
    pub bytes: u64,
}

/// One removed (or removable) file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leftover {
    /// Where it is.
    pub path: PathBuf,
    /// Bytes on disk it held.
    pub bytes: u64,
    /// Why it goes.
    pub reason: Reason,
}

/// Why a leftover goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// Untouched for this long.
    Idle(Duration),
    /// Its record names this device, which is no longer paired.
    Unpaired(NodeId),
}

/// Whether `path`'s file name is a leftover's (for listings).
pub fn is_leftover_name(path: &Path) -> bool {
    path.file_name()
        .map(OsStr::as_bytes)
        .and_then(|name| std::str::from_utf8(name).ok())
        .and_then(leftover_of)
        .is_some()
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::{NetworkIdentity, NodeId};
    use tether_wire::ContentHash;
    use uuid::Uuid;

    use super::{Leftovers, Reason};
    use crate::chunk::ChunkSet;
    use crate::manifest::{EntryKind, ManifestEntry};
    use crate::receive::dest::Destination;
    use crate::resume::ResumeRecord;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    fn node(seed: u64) -> NodeId {
        NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed)).node_id()
    }

    /// Leaves what a transfer of `name` cut off in `dir` leaves: a partial file of 1 MiB and a
    /// record naming `sender`, both last touched `age` ago.
    fn leave(dir: &Path, name: &str, sender: NodeId, age: Duration) {
        let partial = dir.join(format!(".{name}.tether-partial"));
        fs::write(&partial, vec![7u8; 1 << 20]).unwrap();
        let entry = ManifestEntry {
            id: Uuid::nil(),
            path: name.into(),
            kind: EntryKind::File,
            size: 4 << 20,
            mtime_ns: 1,
            hash: Some(ContentHash([1; 32])),
        };
        let handle = Destination::open(dir).unwrap();
        let record = format!(".{name}.tether-resume");
        ResumeRecord::new(&entry, ContentHash([1; 32]), &ChunkSet::new(16))
            .sender(Some(sender))
            .write(
                handle.root(),
                &record,
                &format!(".{name}.tether-resume.tmp"),
                &dir.join(&record),
            )
            .unwrap();
        for file in [partial, dir.join(record)] {
            let when = SystemTime::now() - age;
            fs::File::options()
                .write(true)
                .open(file)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn old_and_unpaired_leftovers_go_fresh_ones_and_files_stay() {
        let root = tempfile::tempdir().unwrap();
        let sub = root.path().join("photos");
        fs::create_dir(&sub).unwrap();
        let (paired, gone) = (node(1), node(2));
        leave(root.path(), "old.bin", paired, 8 * DAY);
        leave(&sub, "fresh.bin", paired, DAY);
        leave(&sub, "unpaired.bin", gone, Duration::ZERO);
        // A completed file, however old, is never a leftover.
        let done = sub.join("done.bin");
        fs::write(&done, b"done").unwrap();
        fs::File::options()
            .write(true)
            .open(&done)
            .unwrap()
            .set_modified(SystemTime::now() - 30 * DAY)
            .unwrap();
        let is_paired = |id: &NodeId| *id == paired;

        // A dry run lists and removes nothing.
        let rules = Leftovers::default().now(SystemTime::now());
        let listed = rules
            .dry_run(true)
            .collect(root.path(), &is_paired)
            .unwrap();
        assert_eq!(listed.files.len(), 4, "{listed:?}");
        assert!(listed.bytes >= 2 << 20);
        assert_eq!(names(root.path()).len(), 3);

        let collected = rules.collect(root.path(), &is_paired).unwrap();
        assert_eq!(collected, listed);
        assert!(
            collected
                .files
                .iter()
                .any(|f| f.reason == Reason::Unpaired(gone))
        );
        assert!(
            collected
                .files
                .iter()
                .any(|f| matches!(f.reason, Reason::Idle(idle) if idle > 7 * DAY))
        );
        assert_eq!(names(root.path()), ["photos"]);
        assert_eq!(
            names(&sub),
            [
                ".fresh.bin.tether-partial",
                ".fresh.bin.tether-resume",
                "done.bin"
            ]
        );
        // Nothing is left to collect.
        let again = Leftovers::default()
            .collect(root.path(), &is_paired)
            .unwrap();
        assert!(again.files.is_empty());
    }

    #[test]
    fn planted_symlinks_are_never_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let gone = node(2);
        // Old leftovers outside, reachable only through symlinks planted in the tree.
        leave(outside.path(), "victim.bin", gone, 30 * DAY);
        let victim = outside.path().join(".victim.bin.tether-partial");
        symlink(outside.path(), root.path().join("linked-dir")).unwrap();
        symlink(&victim, root.path().join(".x.tether-partial")).unwrap();
        symlink(
            outside.path().join(".victim.bin.tether-resume"),
            root.path().join(".x.tether-resume"),
        )
        .unwrap();
        let collected = Leftovers::default()
            .collect(root.path(), &|_| false)
            .unwrap();
        assert!(collected.files.is_empty(), "{collected:?}");
        assert_eq!(names(outside.path()).len(), 2);
        assert_eq!(fs::read(&victim).unwrap().len(), 1 << 20);
        assert_eq!(names(root.path()).len(), 3);
    }
}
