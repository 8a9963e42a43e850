//! The receiver's file operations, each on a bare name relative to its directory's handle (see
//! `dest.rs`), so no later swap of a directory for a symlink redirects one of them.
//!
//! * Every file is opened with `O_NOFOLLOW` (and `O_NONBLOCK`, so a FIFO planted at a name
//!   never blocks) and used only if it is a regular file.
//! * A partial file is created afresh with `O_CREAT | O_EXCL`: whatever was at its name (a link,
//!   stale data) is removed first, the name itself and never what it points to, so nothing that
//!   existed is ever truncated or written. It is preallocated to full size (so a full disk shows
//!   up before data is accepted) and written at chunk offsets. Its identity (device and inode) is
//!   noted; a partial file opened again later ([`reopen_partial`]) must be that same inode, and a
//!   kept one (a resume) a regular file with one link, so a file or link swapped in meanwhile is
//!   refused, never written through.
//! * Finalising sets the partial file's modification time and syncs it through its handle,
//!   renames it over the target in one step within its directory (refusing to replace an
//!   existing file unless overwriting is on), then checks that the target is the inode that was
//!   verified: a partial file swapped in before the rename is refused, never reported. The
//!   directory is synced before the file counts as in place, so the target only ever holds
//!   nothing, the old file, or the whole new one, and a file reported in place survives a crash.
//!   Done in batches, each directory is synced once per batch after all of the batch's renames.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use parking_lot::Mutex;
use rustix::fs::{AtFlags, FallocateFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use crate::error::LocalError;
use crate::path::{PARTIAL_SUFFIX, RECORD_SUFFIX, RECORD_TMP_SUFFIX, RelPath};

/// Flags of every file the receiver opens: never through a symlink, never blocking on a FIFO.
pub(crate) const FILE_FLAGS: OFlags = OFlags::NOFOLLOW
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// Attempts at creating a file whose name someone keeps taking.
const CREATE_ATTEMPTS: usize = 3;

/// Where one file's pieces live: its directory (relative to the destination) and its name; the
/// partial file `.name.tether-partial`, the resume record `.name.tether-resume` and its
/// replacement `.name.tether-resume.tmp` sit beside the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePaths {
    /// The final path, for reports and messages.
    pub(crate) target: PathBuf,
    /// The directory, relative to the destination (`""`: the destination itself).
    pub(crate) dir: String,
    /// The final name.
    pub(crate) name: String,
}

impl FilePaths {
    /// The paths for `rel` under `root`.
    pub(crate) fn new(root: &Path, rel: &RelPath) -> Self {
        FilePaths {
            target: rel.under(root),
            dir: rel
                .parent()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            name: rel.file_name().to_owned(),
        }
    }

    /// The partial file's name.
    pub(crate) fn partial_name(&self) -> String {
        format!(".{}{PARTIAL_SUFFIX}", self.name)
    }

    /// The resume record's name.
    pub(crate) fn record_name(&self) -> String {
        format!(".{}{RECORD_SUFFIX}", self.name)
    }

    /// The name the resume record is written under before it replaces the old one.
    pub(crate) fn record_tmp_name(&self) -> String {
        format!(".{}{RECORD_TMP_SUFFIX}", self.name)
    }

    /// The directory holding all four, for messages.
    pub(crate) fn dir_path(&self) -> &Path {
        self.target.parent().unwrap_or(Path::new("."))
    }

    /// The partial file's path, for messages.
    pub(crate) fn partial(&self) -> PathBuf {
        self.dir_path().join(self.partial_name())
    }

    /// The resume record's path, for messages.
    pub(crate) fn record(&self) -> PathBuf {
        self.dir_path().join(self.record_name())
    }
}

/// What is at a name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Absent,
    /// A regular file of this size.
    File(u64),
    /// A directory, symlink or special file.
    Other,
}

/// What is at `name` in `dir`, without following a symlink (`path` for messages).
pub(crate) fn existing(dir: &OwnedFd, name: &str, path: &Path) -> Result<Existing, LocalError> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile => {
            Ok(Existing::File(u64::try_from(stat.st_size).unwrap_or(0)))
        }
        Ok(_) => Ok(Existing::Other),
        Err(Errno::NOENT) => Ok(Existing::Absent),
        Err(e) => Err(LocalError::io("inspecting", path, e.into())),
    }
}

/// Opens the regular file `name` in `dir` with `flags` added to [`FILE_FLAGS`]: `None` if it is
/// a symlink or not a regular file.
pub(crate) fn open_regular(dir: &OwnedFd, name: &str, flags: OFlags) -> io::Result<Option<File>> {
    let fd = match rustix::fs::openat(dir, name, FILE_FLAGS | flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::LOOP) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Ok(None);
    }
    Ok(Some(file))
}

/// The BLAKE3 hash of the target `paths` names, which was a regular file when looked at.
pub(crate) fn hash_target(dir: &OwnedFd, paths: &FilePaths) -> Result<[u8; 32], LocalError> {
    let path = &paths.target;
    let file = open_regular(dir, &paths.name, OFlags::RDONLY)
        .map_err(|e| LocalError::io("opening", path, e))?
        // Swapped for something else since.
        .ok_or_else(|| LocalError::TargetExists(path.clone()))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .map_err(|e| LocalError::io("reading", path, e))?;
    Ok(*hasher.finalize().as_bytes())
}

/// Which inode a partial file is: noted when it is created, checked whenever it is opened again
/// and once it is renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartialId {
    dev: u64,
    ino: u64,
}

/// The identity of the open partial file at `path`.
pub(crate) fn partial_id(file: &File, path: &Path) -> Result<PartialId, LocalError> {
    let stat = rustix::fs::fstat(file).map_err(|e| LocalError::io("inspecting", path, e.into()))?;
    Ok(PartialId {
        dev: stat.st_dev,
        ino: stat.st_ino,
    })
}

/// Opens an existing partial file again for reading and writing: never through a symlink,
/// never creating one, and only if it is still the inode `id` (a regular file).
pub(crate) fn reopen_partial(
    dir: &OwnedFd,
    paths: &FilePaths,
    id: PartialId,
) -> Result<File, LocalError> {
    let replaced = || LocalError::PartialReplaced(paths.partial());
    let file = match open_regular(dir, &paths.partial_name(), OFlags::RDWR) {
        Ok(Some(file)) => file,
        // Gone, a symlink now, or no longer a regular file: someone else moved it.
        Ok(None) => return Err(replaced()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(replaced()),
        Err(e) => return Err(LocalError::io("opening", paths.partial(), e)),
    };
    if partial_id(&file, &paths.partial())? != id {
        return Err(replaced());
    }
    Ok(file)
}

/// Opens the partial file an earlier attempt left, to keep its verified chunks, and makes room
/// for `size` bytes; `None` if it is missing, a symlink, not a regular file, or has another name
/// too (a hard link to a file elsewhere is never written).
pub(crate) fn open_kept_partial(
    dir: &OwnedFd,
    paths: &FilePaths,
    size: u64,
    keep_free: u64,
) -> Result<Option<File>, LocalError> {
    let file = match open_regular(dir, &paths.partial_name(), OFlags::RDWR) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LocalError::io("opening", paths.partial(), e)),
    };
    let stat = rustix::fs::fstat(&file)
        .map_err(|e| LocalError::io("inspecting", paths.partial(), e.into()))?;
    if stat.st_nlink != 1 {
        return Ok(None);
    }
    // Blocks it holds already need no new room.
    let held = u64::try_from(stat.st_blocks)
        .unwrap_or(0)
        .saturating_mul(512);
    allocate(
        file,
        &paths.partial(),
        size,
        size.saturating_sub(held),
        keep_free,
    )
    .map(Some)
}

/// Creates the partial file afresh and makes room for `size` bytes: whatever is at its name is
/// removed (the name, never what a link there points to) and a new file made with `O_EXCL`.
/// `keep_free`: see [`allocate`].
pub(crate) fn create_partial(
    dir: &OwnedFd,
    paths: &FilePaths,
    size: u64,
    keep_free: u64,
) -> Result<File, LocalError> {
    let file = create_new(dir, &paths.partial_name(), &paths.partial())?;
    let allocated = allocate(file, &paths.partial(), size, size, keep_free);
    if allocated.is_err() {
        // Never leave an empty partial file behind for a file that did not get its room.
        let _ = remove_if_exists(dir, &paths.partial_name(), &paths.partial());
    }
    allocated
}

/// Creates `name` in `dir` as a new, empty regular file for reading and writing, removing
/// whatever is at the name first (`path` for messages).
pub(crate) fn create_new(dir: &OwnedFd, name: &str, path: &Path) -> Result<File, LocalError> {
    let flags = FILE_FLAGS | OFlags::RDWR | OFlags::CREATE | OFlags::EXCL;
    for _ in 0..CREATE_ATTEMPTS {
        match rustix::fs::openat(dir, name, flags, Mode::from_raw_mode(0o666)) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(Errno::EXIST) => remove_if_exists(dir, name, path)?,
            Err(e) => return Err(LocalError::io("creating", path, e.into())),
        }
    }
    Err(LocalError::PartialReplaced(path.to_path_buf()))
}

/// Serialises the check of the space reserve and the allocation after it, so transfers running
/// at once in this process never both take the last room above the reserve.
static ALLOCATING: Mutex<()> = Mutex::new(());

/// Preallocates `size` bytes, so a full disk shows up as [`LocalError::DiskFull`] before data;
/// `new` of them are not allocated yet. With `keep_free` > 0 the allocation is refused
/// ([`LocalError::ReserveReached`]) when it would leave fewer bytes free than that: the room
/// is checked again here, at each allocation while receiving, because another program may have
/// filled the disk since the offer was checked.
fn allocate(
    file: File,
    path: &Path,
    size: u64,
    new: u64,
    keep_free: u64,
) -> Result<File, LocalError> {
    let _allocating = ALLOCATING.lock();
    if keep_free > 0 && new > 0 {
        let available = free_space(&file, path)?;
        if new.saturating_add(keep_free) > available {
            tracing::warn!(path = %path.display(), needed = new, available, reserve = keep_free,
                "allocating this file would eat into the space reserve; stopping");
            return Err(LocalError::ReserveReached {
                path: path.to_path_buf(),
                needed: new,
                available,
                reserve: keep_free,
            });
        }
    }
    if size > 0 {
        match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, size) {
            Ok(()) => {}
            Err(Errno::NOSPC) => {
                return Err(LocalError::DiskFull {
                    path: path.to_path_buf(),
                    needed: size,
                    available: free_space(&file, path).unwrap_or(0),
                });
            }
            // File systems without fallocate: a plain length suffices.
            Err(_) => file
                .set_len(size)
                .map_err(|e| LocalError::io("sizing", path, e))?,
        }
    }
    Ok(file)
}

/// Bytes available to this user on the file system of `fd` (`path` for messages).
pub(crate) fn free_space(fd: impl std::os::fd::AsFd, path: &Path) -> Result<u64, LocalError> {
    let stat = rustix::fs::fstatvfs(fd)
        .map_err(|e| LocalError::io("checking free space", path, e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Removes `name` from `dir` if it is there (a link itself, never what it points to).
pub(crate) fn remove_if_exists(dir: &OwnedFd, name: &str, path: &Path) -> Result<(), LocalError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(LocalError::io("removing", path, e.into())),
    }
}

/// Puts a complete, verified partial file in place (see the module docs): [`seal`], [`place`],
/// then [`sync_dir`] and [`drop_records`]. The receiver runs these steps over batches of files
/// (every file sealed, then every rename, then each directory synced once) so a batch of small
/// files costs one directory sync per directory, not one per file.
#[cfg(test)]
pub(crate) fn finalize(
    dir: &OwnedFd,
    file: &File,
    paths: &FilePaths,
    mtime_ns: u64,
    overwrite: bool,
) -> Result<(), LocalError> {
    seal(file, paths, mtime_ns)?;
    place(dir, paths, partial_id(file, &paths.partial())?, overwrite)?;
    sync_dir(dir, paths.dir_path())?;
    drop_records(dir, paths)
}

/// Sets the partial file's modification time and makes its contents durable: after this a
/// rename can never expose a partial file, even across a crash.
pub(crate) fn seal(file: &File, paths: &FilePaths, mtime_ns: u64) -> Result<(), LocalError> {
    if mtime_ns > 0 {
        let modified = UNIX_EPOCH + Duration::from_nanos(mtime_ns);
        if let Err(e) = file.set_modified(modified) {
            tracing::debug!(path = %paths.partial().display(), %e, "could not set the modification time");
        }
    }
    file.sync_all()
        .map_err(|e| LocalError::io("syncing", paths.partial(), e))
}

/// Renames the sealed partial file `id` over its target in one step within `dir` (refusing to
/// replace an existing file unless `overwrite`), then checks that the target is `id`: anything
/// else renamed in its place (the partial file was swapped) is refused, never reported. Durable
/// only once the directory is synced.
pub(crate) fn place(
    dir: &OwnedFd,
    paths: &FilePaths,
    id: PartialId,
    overwrite: bool,
) -> Result<(), LocalError> {
    let partial = paths.partial_name();
    let flags = if overwrite {
        RenameFlags::empty()
    } else {
        RenameFlags::NOREPLACE
    };
    let renamed = rustix::fs::renameat_with(dir, &partial, dir, &paths.name, flags);
    match renamed {
        Ok(()) => {}
        Err(Errno::EXIST) => return Err(LocalError::TargetExists(paths.target.clone())),
        // File systems without RENAME_NOREPLACE: check, then rename.
        Err(Errno::INVAL | Errno::NOSYS) if !overwrite => {
            if existing(dir, &paths.name, &paths.target)? != Existing::Absent {
                return Err(LocalError::TargetExists(paths.target.clone()));
            }
            rustix::fs::renameat(dir, &partial, dir, &paths.name)
                .map_err(|e| LocalError::io("renaming into place", &paths.target, e.into()))?;
        }
        Err(e) => {
            return Err(LocalError::io(
                "renaming into place",
                &paths.target,
                e.into(),
            ));
        }
    }
    let placed = rustix::fs::statat(dir, &paths.name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| LocalError::io("inspecting", &paths.target, e.into()))?;
    if placed.st_dev != id.dev || placed.st_ino != id.ino {
        tracing::warn!(path = %paths.target.display(),
            "the partial file was replaced before it was put in place; not reported");
        return Err(LocalError::PartialReplaced(paths.partial()));
    }
    Ok(())
}

/// Removes a placed file's resume records (after its directory is synced).
pub(crate) fn drop_records(dir: &OwnedFd, paths: &FilePaths) -> Result<(), LocalError> {
    remove_if_exists(dir, &paths.record_name(), &paths.record())?;
    remove_if_exists(dir, &paths.record_tmp_name(), &paths.record())
}

/// Makes a directory's entries durable (`path` for messages).
pub(crate) fn sync_dir(dir: &OwnedFd, path: &Path) -> Result<(), LocalError> {
    rustix::fs::fsync(dir).map_err(|e| LocalError::io("syncing directory", path, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receive::dest::Destination;
    use std::fs;
    use std::os::unix::fs::{FileExt, symlink};

    fn setup(rel: &str) -> (tempfile::TempDir, Destination, FilePaths) {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination::open(dir.path()).unwrap();
        let paths = FilePaths::new(dir.path(), &RelPath::parse(rel).unwrap());
        (dir, dest, paths)
    }

    #[test]
    fn partial_files_are_made_afresh_and_finalize_atomically() {
        let (dir, dest, paths) = setup("f.txt");
        let root = dest.root();
        assert_eq!(paths.partial(), dir.path().join(".f.txt.tether-partial"));
        // A symlink at the partial name is removed, never followed nor truncated.
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary");
        fs::write(&canary, b"canary").unwrap();
        symlink(&canary, paths.partial()).unwrap();
        let file = create_partial(root, &paths, 4, 0).unwrap();
        assert_eq!(fs::read(&canary).unwrap(), b"canary");
        file.write_all_at(b"data", 0).unwrap();
        fs::write(paths.record(), b"{}").unwrap();
        finalize(root, &file, &paths, 1_700_000_000_000_000_000, false).unwrap();
        assert_eq!(fs::read(&paths.target).unwrap(), b"data");
        assert!(!paths.partial().exists() && !paths.record().exists());
        let modified = fs::metadata(&paths.target).unwrap().modified().unwrap();
        assert_eq!(
            modified,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000)
        );
        // A second file for the same target is refused unless overwriting.
        let file = create_partial(root, &paths, 3, 0).unwrap();
        assert!(matches!(
            finalize(root, &file, &paths, 0, false),
            Err(LocalError::TargetExists(_))
        ));
        finalize(root, &file, &paths, 0, true).unwrap();
        assert_eq!(fs::read(&paths.target).unwrap(), vec![0; 3]);
        assert!(free_space(root, dir.path()).unwrap() > 0);
    }

    #[test]
    fn a_partial_file_swapped_before_the_rename_is_not_placed() {
        let (dir, dest, paths) = setup("f");
        let root = dest.root();
        let file = create_partial(root, &paths, 4, 0).unwrap();
        let id = partial_id(&file, &paths.partial()).unwrap();
        seal(&file, &paths, 0).unwrap();
        fs::rename(paths.partial(), dir.path().join("moved")).unwrap();
        symlink("/etc/passwd", paths.partial()).unwrap();
        assert!(matches!(
            place(root, &paths, id, false),
            Err(LocalError::PartialReplaced(_))
        ));
    }

    #[test]
    fn kept_partial_files_must_be_regular_with_one_link() {
        let (dir, dest, paths) = setup("f");
        let root = dest.root();
        assert!(open_kept_partial(root, &paths, 4, 0).unwrap().is_none());
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"mine").unwrap();
        fs::hard_link(&elsewhere, paths.partial()).unwrap();
        assert!(open_kept_partial(root, &paths, 4, 0).unwrap().is_none());
        fs::remove_file(paths.partial()).unwrap();
        symlink(&elsewhere, paths.partial()).unwrap();
        assert!(open_kept_partial(root, &paths, 4, 0).unwrap().is_none());
        fs::remove_file(paths.partial()).unwrap();
        rustix::fs::mknodat(
            root,
            paths.partial_name(),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        assert!(open_kept_partial(root, &paths, 4, 0).unwrap().is_none());
        assert_eq!(fs::read(&elsewhere).unwrap(), b"mine");
    }

    #[test]
    fn reopening_a_partial_file_needs_the_same_inode_and_no_symlink() {
        let (dir, dest, paths) = setup("f");
        let root = dest.root();
        let file = create_partial(root, &paths, 4, 0).unwrap();
        let id = partial_id(&file, &paths.partial()).unwrap();
        drop(file);
        let again = reopen_partial(root, &paths, id).unwrap();
        again.write_all_at(b"ab", 1).unwrap();
        assert_eq!(fs::read(paths.partial()).unwrap(), b"\0ab\0");
        drop(again);

        // Swapped for another file: refused, and left alone.
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"mine").unwrap();
        fs::rename(paths.partial(), dir.path().join("moved")).unwrap();
        fs::hard_link(&elsewhere, paths.partial()).unwrap();
        assert!(matches!(
            reopen_partial(root, &paths, id),
            Err(LocalError::PartialReplaced(_))
        ));
        // Swapped for a symlink to the original: refused without following it.
        fs::remove_file(paths.partial()).unwrap();
        symlink(dir.path().join("moved"), paths.partial()).unwrap();
        assert!(matches!(
            reopen_partial(root, &paths, id),
            Err(LocalError::PartialReplaced(_))
        ));
        // Gone: refused, nothing created.
        fs::remove_file(paths.partial()).unwrap();
        assert!(matches!(
            reopen_partial(root, &paths, id),
            Err(LocalError::PartialReplaced(_))
        ));
        assert!(!paths.partial().exists());
        assert_eq!(fs::read(&elsewhere).unwrap(), b"mine");
    }
}
