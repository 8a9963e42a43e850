//! The receive directory as a handle that cannot be escaped, and the directories under it.
//!
//! A transfer opens its destination once ([`Destination::open`]) and from then on names nothing
//! by a path from the root of the file system: every directory under it is opened relative to
//! the destination's handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` (one
//! `openat(O_NOFOLLOW | O_DIRECTORY)` per component where `openat2` is missing), and every file
//! is created, opened, renamed and removed by its bare name relative to its directory's handle
//! (see `disk.rs`). A directory swapped for a symlink after it was checked is therefore never
//! followed: a handle names the directory it was opened on, wherever that is moved, and a
//! directory opened again is looked up beneath the destination with no symlink on the way.
//!
//! Handles are kept in a small cache ([`MAX_OPEN_DIRS`], least recently used closed first),
//! shared by planning, the lanes and the finaliser: files come in manifest order, so a
//! directory's files mostly find its handle there, and a transfer of many directories holds
//! only a few descriptors (a handle in use elsewhere closes when that use ends).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use tether_identity::NodeId;

use crate::error::LocalError;
use crate::path::RelPath;

/// Most directory handles a transfer keeps open between uses.
pub(crate) const MAX_OPEN_DIRS: usize = 16;

/// How every directory is opened: for reading (so it can be synced), never through a symlink.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The destination of one transfer (see the module docs).
#[derive(Debug)]
pub(crate) struct Destination {
    path: PathBuf,
    root: Arc<OwnedFd>,
    open: Mutex<DirCache>,
    /// How files are placed under it.
    placing: Placing,
    /// It is on a file system in memory (tmpfs, ramfs), where a sync costs nothing.
    in_memory: bool,
}

/// What a transfer's file operations need to know besides where: the space reserve each
/// allocation must leave free, and the device sending (noted in resume records).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Placing {
    /// Bytes every allocation must leave free (the space reserve; 0: unchecked).
    pub(crate) keep_free: u64,
    /// The device sending the files.
    pub(crate) sender: Option<NodeId>,
}

/// `statfs`'s `f_type` of tmpfs and of ramfs (linux/magic.h).
const TMPFS_MAGIC: i128 = 0x0102_1994;
const RAMFS_MAGIC: i128 = 0x8584_58f6;

/// Directory handles by relative path, with when each was last used.
#[derive(Debug, Default)]
struct DirCache {
    handles: HashMap<String, (Arc<OwnedFd>, u64)>,
    clock: u64,
}

impl Destination {
    /// Opens the destination directory at `path` (which the person chose; a symlink there is
    /// followed, once).
    pub(crate) fn open(path: &Path) -> Result<Self, LocalError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let root = rustix::fs::open(path, flags, Mode::empty())
            .map_err(|e| LocalError::io("opening the destination", path, e.into()))?;
        let in_memory = rustix::fs::fstatfs(&root)
            .is_ok_and(|stat| matches!(i128::from(stat.f_type), TMPFS_MAGIC | RAMFS_MAGIC));
        Ok(Destination {
            path: path.to_path_buf(),
            root: Arc::new(root),
            open: Mutex::new(DirCache::default()),
            placing: Placing::default(),
            in_memory,
        })
    }

    /// Whether the destination is on a file system in memory (tmpfs, ramfs), where syncing a
    /// file costs nothing and so is not worth a thread of its own.
    pub(crate) fn in_memory(&self) -> bool {
        self.in_memory
    }

    /// Sets how files are placed under the destination.
    pub(crate) fn set_placing(&mut self, placing: Placing) {
        self.placing = placing;
    }

    /// How files are placed under the destination.
    pub(crate) fn placing(&self) -> Placing {
        self.placing
    }

    /// The destination's path, for messages and reports.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The destination's own handle.
    pub(crate) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// The directory `rel` (`""`: the destination itself) if it exists as a real directory
    /// reached through real directories only; `None` if it (or a directory above it) does not
    /// exist.
    pub(crate) fn find(&self, rel: &str) -> Result<Option<Arc<OwnedFd>>, LocalError> {
        if rel.is_empty() {
            return Ok(Some(self.root.clone()));
        }
        if let Some(handle) = self.cached(rel) {
            return Ok(Some(handle));
        }
        match self.open_beneath(rel) {
            Ok(fd) => Ok(Some(self.keep(rel, fd))),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR | Errno::XDEV) => Err(self.not_a_directory(rel)),
            Err(e) => Err(LocalError::io(
                "opening directory",
                self.display(rel),
                e.into(),
            )),
        }
    }

    /// The directory `rel`, which planning made or found; an error if it is gone or is no
    /// longer a real directory.
    pub(crate) fn dir(&self, rel: &str) -> Result<Arc<OwnedFd>, LocalError> {
        self.find(rel)?.ok_or_else(|| {
            LocalError::io(
                "opening directory",
                self.display(rel),
                std::io::ErrorKind::NotFound.into(),
            )
        })
    }

    /// Creates `rel` (a directory path) where missing, one component at a time relative to its
    /// parent's handle, refusing to pass through anything that is not a real directory; its
    /// handle. Adds the directories it created to `created`, outermost first.
    pub(crate) fn ensure(
        &self,
        rel: &RelPath,
        created: &mut Vec<RelPath>,
    ) -> Result<Arc<OwnedFd>, LocalError> {
        if let Some(handle) = self.find(rel.as_str())? {
            return Ok(handle);
        }
        let parent = match rel.parent() {
            Some(parent) => self.ensure(&parent, created)?,
            None => self.root.clone(),
        };
        let name = rel.file_name();
        match rustix::fs::mkdirat(&*parent, name, Mode::from_raw_mode(0o777)) {
            Ok(()) => created.push(rel.clone()),
            // Made meanwhile: what it is is checked as it is opened.
            Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(LocalError::io(
                    "creating directory",
                    self.display(rel.as_str()),
                    e.into(),
                ));
            }
        }
        match rustix::fs::openat(&*parent, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(self.keep(rel.as_str(), fd)),
            Err(Errno::LOOP | Errno::NOTDIR) => Err(self.not_a_directory(rel.as_str())),
            Err(e) => Err(LocalError::io(
                "opening directory",
                self.display(rel.as_str()),
                e.into(),
            )),
        }
    }

    /// Removes the directories in `created` (innermost first) that are still empty, each by
    /// name relative to its parent's handle.
    pub(crate) fn remove_empty(&self, created: &[RelPath]) {
        for rel in created.iter().rev() {
            let parent = rel
                .parent()
                .map_or(Ok(Some(self.root.clone())), |p| self.find(p.as_str()));
            if let Ok(Some(parent)) = parent {
                self.forget(rel.as_str());
                let _ =
                    rustix::fs::unlinkat(&*parent, rel.file_name(), rustix::fs::AtFlags::REMOVEDIR);
            }
        }
    }

    /// `rel` under the destination, for messages.
    pub(crate) fn display(&self, rel: &str) -> PathBuf {
        let mut path = self.path.clone();
        if !rel.is_empty() {
            path.extend(rel.split('/'));
        }
        path
    }

    /// Opens `rel` beneath the destination with no symlink anywhere on the way.
    fn open_beneath(&self, rel: &str) -> Result<OwnedFd, Errno> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use rustix::fs::ResolveFlags;
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            // EAGAIN: a rename elsewhere raced the lookup; try again, then walk.
            for _ in 0..3 {
                match rustix::fs::openat2(&*self.root, rel, DIR_FLAGS, Mode::empty(), resolve) {
                    Err(Errno::AGAIN) => {}
                    // Kernels before 5.6 (or without these flags), or a sandbox filtering it.
                    Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => break,
                    result => return result,
                }
            }
        }
        self.walk(rel).map_err(|(_, e)| e)
    }

    /// Opens `rel` one component at a time, each relative to the one before and never through
    /// a symlink; on failure, how many components were opened and why the next was not.
    fn walk(&self, rel: &str) -> Result<OwnedFd, (usize, Errno)> {
        let mut components = rel.split('/').enumerate();
        let Some((_, first)) = components.next() else {
            return Err((0, Errno::INVAL));
        };
        let mut fd =
            rustix::fs::openat(&*self.root, first, DIR_FLAGS, Mode::empty()).map_err(|e| (0, e))?;
        for (depth, component) in components {
            fd = rustix::fs::openat(&fd, component, DIR_FLAGS, Mode::empty())
                .map_err(|e| (depth, e))?;
        }
        Ok(fd)
    }

    /// [`LocalError::NotADirectory`] naming the first component of `rel` that is not a real
    /// directory (found by walking again: an error path only).
    fn not_a_directory(&self, rel: &str) -> LocalError {
        let depth = match self.walk(rel) {
            Err((depth, _)) => depth,
            // Fixed meanwhile: name the whole path.
            Ok(_) => usize::MAX,
        };
        let culprit: Vec<&str> = rel.split('/').take(depth.saturating_add(1)).collect();
        LocalError::NotADirectory(self.display(&culprit.join("/")))
    }

    fn cached(&self, rel: &str) -> Option<Arc<OwnedFd>> {
        let mut cache = self.open.lock();
        cache.clock += 1;
        let now = cache.clock;
        let (handle, used) = cache.handles.get_mut(rel)?;
        *used = now;
        Some(handle.clone())
    }

    /// Keeps `fd` as `rel`'s handle, closing the least recently used beyond the bound.
    fn keep(&self, rel: &str, fd: OwnedFd) -> Arc<OwnedFd> {
        let handle = Arc::new(fd);
        let evicted = {
            let mut cache = self.open.lock();
            cache.clock += 1;
            let now = cache.clock;
            let evicted = if cache.handles.len() >= MAX_OPEN_DIRS {
                let oldest = cache
                    .handles
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(rel, _)| rel.clone());
                oldest.and_then(|rel| cache.handles.remove(&rel))
            } else {
                None
            };
            cache.handles.insert(rel.to_owned(), (handle.clone(), now));
            evicted
        };
        // Closed outside the lock.
        drop(evicted);
        handle
    }

    fn forget(&self, rel: &str) {
        let removed = self.open.lock().handles.remove(rel);
        drop(removed);
    }

    /// How many handles are kept.
    #[cfg(test)]
    pub(crate) fn cached_count(&self) -> usize {
        self.open.lock().handles.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn rel(path: &str) -> RelPath {
        RelPath::parse(path).unwrap()
    }

    #[test]
    fn dirs_are_created_but_never_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dest = Destination::open(root).unwrap();
        let mut created = Vec::new();
        dest.ensure(&rel("a/b/c"), &mut created).unwrap();
        assert!(root.join("a/b/c").is_dir());
        assert_eq!(created, vec![rel("a"), rel("a/b"), rel("a/b/c")]);
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.join("link")).unwrap();
        let err = dest.ensure(&rel("link/x"), &mut created).unwrap_err();
        assert!(matches!(err, LocalError::NotADirectory(p) if p == root.join("link")));
        assert!(!outside.path().join("x").exists());
        fs::write(root.join("file"), b"").unwrap();
        let err = dest.ensure(&rel("file/x"), &mut created).unwrap_err();
        assert!(matches!(err, LocalError::NotADirectory(p) if p == root.join("file")));
        symlink(outside.path(), root.join("a/b/deep")).unwrap();
        let err = dest.find("a/b/deep/x").unwrap_err();
        assert!(matches!(err, LocalError::NotADirectory(p) if p == root.join("a/b/deep")));
        assert!(dest.find("a/b").unwrap().is_some());
        assert!(dest.find("a/new").unwrap().is_none());
        assert!(dest.find("a/new/deeper").unwrap().is_none());
    }

    #[test]
    fn the_walk_without_openat2_refuses_symlinks_too() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dest = Destination::open(root).unwrap();
        fs::create_dir_all(root.join("a/b")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir(outside.path().join("x")).unwrap();
        symlink(outside.path(), root.join("a/link")).unwrap();
        fs::write(root.join("a/file"), b"").unwrap();
        assert!(dest.walk("a/b").is_ok());
        // Refused at the link (ELOOP, or ENOTDIR as Linux answers O_DIRECTORY | O_NOFOLLOW),
        // though outside/x exists.
        for path in ["a/link/x", "a/link"] {
            let refused = dest.walk(path).err();
            assert!(
                matches!(refused, Some((1, Errno::LOOP | Errno::NOTDIR))),
                "{path}: {refused:?}"
            );
        }
        assert_eq!(dest.walk("a/file/x").err(), Some((1, Errno::NOTDIR)));
        assert_eq!(dest.walk("a/none/x").err(), Some((1, Errno::NOENT)));
    }

    #[test]
    fn a_handle_follows_its_directory_not_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let dest = Destination::open(root).unwrap();
        let handle = dest.ensure(&rel("a"), &mut Vec::new()).unwrap();
        // Swapped for a symlink to outside after it was made: the handle still names it.
        let outside = tempfile::tempdir().unwrap();
        fs::rename(root.join("a"), root.join("held")).unwrap();
        symlink(outside.path(), root.join("a")).unwrap();
        let cached = dest.dir("a").unwrap();
        rustix::fs::mkdirat(&*cached, "x", Mode::from_raw_mode(0o700)).unwrap();
        assert!(root.join("held/x").is_dir());
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
        drop((handle, cached));
        // Opened again (not cached): the symlink is refused.
        dest.forget("a");
        assert!(matches!(dest.dir("a"), Err(LocalError::NotADirectory(_))));
    }

    #[test]
    fn the_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::open(dir.path()).unwrap();
        let mut created = Vec::new();
        for i in 0..3 * MAX_OPEN_DIRS {
            dest.ensure(&rel(&format!("d{i}/e")), &mut created).unwrap();
        }
        assert_eq!(dest.cached_count(), MAX_OPEN_DIRS);
        assert_eq!(created.len(), 6 * MAX_OPEN_DIRS);
        dest.remove_empty(&created);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
