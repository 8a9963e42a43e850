//! The receiver's file-system operations, all confined to the destination directory.
//!
//! * Directories are created one component at a time; an existing component must be a real
//!   directory (checked with `lstat`), so a symlink planted in the destination is never followed.
//! * Partial files are opened with `O_NOFOLLOW` beside their target, preallocated to full size
//!   (so a full disk shows up before data is accepted), and written at chunk offsets. Their
//!   descriptors are not kept for the whole transfer: each partial file's identity (device and
//!   inode) is noted when it is created, and a file opened again later ([`reopen_partial`]) goes
//!   through the same `O_NOFOLLOW` open, without creating anything, and must be that same inode,
//!   so a file or link swapped in meanwhile is refused, never written through.
//! * Finalising sets the partial file's modification time and syncs it, renames it over the
//!   target in one step (refusing to replace an existing file unless overwriting is on) and
//!   syncs the directory before the file counts as in place, so the target path only ever holds
//!   nothing, the old file, or the whole new one, and a file reported in place survives a crash.
//!   Done in batches, each directory is synced once per batch after all of the batch's renames.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use rustix::fs::{FallocateFlags, OFlags, RenameFlags};

use crate::error::LocalError;
use crate::path::{PARTIAL_SUFFIX, RECORD_SUFFIX, RECORD_TMP_SUFFIX, RelPath};

/// Where one file's pieces live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilePaths {
    /// The final name.
    pub(crate) target: PathBuf,
    /// `.name.tether-partial` beside it.
    pub(crate) partial: PathBuf,
    /// `.name.tether-resume` beside it.
    pub(crate) record: PathBuf,
    /// `.name.tether-resume.tmp`, the record being replaced.
    pub(crate) record_tmp: PathBuf,
}

impl FilePaths {
    /// The paths for `rel` under `root`.
    pub(crate) fn new(root: &Path, rel: &RelPath) -> Self {
        let target = rel.under(root);
        let dir = target
            .parent()
            .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
        let name = rel.file_name();
        FilePaths {
            partial: dir.join(format!(".{name}{PARTIAL_SUFFIX}")),
            record: dir.join(format!(".{name}{RECORD_SUFFIX}")),
            record_tmp: dir.join(format!(".{name}{RECORD_TMP_SUFFIX}")),
            target,
        }
    }

    /// The directory holding all four.
    pub(crate) fn dir(&self) -> &Path {
        self.target.parent().unwrap_or(Path::new("."))
    }
}

/// Creates `rel` (a directory path) under `root`, refusing to pass through anything that is not
/// a real directory. Adds the directories it created to `created`, outermost first.
pub(crate) fn ensure_dir(
    root: &Path,
    rel: &RelPath,
    created: &mut Vec<PathBuf>,
) -> Result<(), LocalError> {
    let mut path = root.to_path_buf();
    for component in rel.components() {
        path.push(component);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(LocalError::NotADirectory(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LocalError::io("inspecting", &path, e)),
        }
        match fs::create_dir(&path) {
            Ok(()) => created.push(path.clone()),
            // Created meanwhile: check again what it is.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    return Err(LocalError::NotADirectory(path));
                }
            }
            Err(e) => return Err(LocalError::io("creating directory", &path, e)),
        }
    }
    Ok(())
}

/// Checks that every directory from `root` down to `rel`'s parent that exists is a real
/// directory (not a symlink or a file); missing ones will be created later. Returns whether the
/// parent exists (when it does not, nothing under it does either).
pub(crate) fn check_dirs(root: &Path, rel: &RelPath) -> Result<bool, LocalError> {
    let mut path = root.to_path_buf();
    if let Some(parent) = rel.parent() {
        for component in parent.components() {
            path.push(component);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(LocalError::NotADirectory(path)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(LocalError::io("inspecting", &path, e)),
            }
        }
    }
    Ok(true)
}

/// Checks that `path` is a real directory or does not exist.
pub(crate) fn check_dir_or_absent(path: &Path) -> Result<(), LocalError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(LocalError::NotADirectory(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LocalError::io("inspecting", path, e)),
    }
}

/// What is at a target path now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Absent,
    /// A regular file of this size.
    File(u64),
    /// A directory, symlink or special file.
    Other,
}

/// What is at `path`, without following a symlink.
pub(crate) fn existing(path: &Path) -> Result<Existing, LocalError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_file() => Ok(Existing::File(meta.len())),
        Ok(_) => Ok(Existing::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Absent),
        Err(e) => Err(LocalError::io("inspecting", path, e)),
    }
}

/// The BLAKE3 hash of the file at `path`.
pub(crate) fn hash_file(path: &Path) -> Result<[u8; 32], LocalError> {
    let file = open_nofollow(path, false).map_err(|e| LocalError::io("opening", path, e))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(file)
        .map_err(|e| LocalError::io("reading", path, e))?;
    Ok(*hasher.finalize().as_bytes())
}

/// Opens `path` for reading (and writing, creating it, if `write`), never through a symlink.
pub(crate) fn open_nofollow(path: &Path, write: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    if write {
        options.write(true).create(true);
    }
    let flags = i32::try_from(OFlags::NOFOLLOW.bits()).unwrap_or(0);
    options.custom_flags(flags).open(path)
}

/// Which inode a partial file is: noted when it is created, checked whenever it is opened again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartialId {
    dev: u64,
    ino: u64,
}

/// The identity of the open partial file at `path`.
pub(crate) fn partial_id(file: &File, path: &Path) -> Result<PartialId, LocalError> {
    let meta = file
        .metadata()
        .map_err(|e| LocalError::io("inspecting", path, e))?;
    Ok(PartialId {
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Opens an existing partial file again for reading and writing: never through a symlink,
/// never creating one, and only if it is still the inode `id` (a regular file).
pub(crate) fn reopen_partial(path: &Path, id: PartialId) -> Result<File, LocalError> {
    let flags = i32::try_from(OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        // Gone, or a symlink now (ELOOP under O_NOFOLLOW): someone else moved it.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Err(LocalError::PartialReplaced(path.to_path_buf()));
        }
        Err(e) => return Err(LocalError::io("opening", path, e)),
    };
    let meta = file
        .metadata()
        .map_err(|e| LocalError::io("inspecting", path, e))?;
    if !meta.is_file() || meta.dev() != id.dev || meta.ino() != id.ino {
        return Err(LocalError::PartialReplaced(path.to_path_buf()));
    }
    Ok(file)
}

/// Opens (creating if needed) the partial file and makes room for `size` bytes.
pub(crate) fn open_partial(path: &Path, size: u64) -> Result<File, LocalError> {
    let file = open_nofollow(path, true).map_err(|e| LocalError::io("opening", path, e))?;
    reserve(file, path, size)
}

/// Creates the partial file afresh (emptying whatever is there, never through a symlink) and
/// makes room for `size` bytes: a one-chunk file's, once its chunk has verified.
pub(crate) fn create_partial(path: &Path, size: u64) -> Result<File, LocalError> {
    let flags = i32::try_from(OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| LocalError::io("creating", path, e))?;
    reserve(file, path, size)
}

/// Preallocates `size` bytes, so a full disk shows up as [`LocalError::DiskFull`] before data.
fn reserve(file: File, path: &Path, size: u64) -> Result<File, LocalError> {
    if size > 0 {
        match rustix::fs::fallocate(&file, FallocateFlags::empty(), 0, size) {
            Ok(()) => {}
            Err(rustix::io::Errno::NOSPC) => {
                return Err(LocalError::DiskFull {
                    path: path.to_path_buf(),
                    needed: size,
                    available: free_space(path.parent().unwrap_or(path)).unwrap_or(0),
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

/// Bytes available to this user at `dir`.
pub(crate) fn free_space(dir: &Path) -> Result<u64, LocalError> {
    let stat = rustix::fs::statvfs(dir)
        .map_err(|e| LocalError::io("checking free space", dir, e.into()))?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Removes `path` if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<(), LocalError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LocalError::io("removing", path, e)),
    }
}

/// Puts a complete, verified partial file in place (see the module docs): [`seal`], [`place`],
/// then [`sync_dir`] and [`drop_records`]. The receiver runs these steps over batches of files
/// (every file sealed, then every rename, then each directory synced once) so a batch of small
/// files costs one directory sync per directory, not one per file.
#[cfg(test)]
pub(crate) fn finalize(
    file: &File,
    paths: &FilePaths,
    mtime_ns: u64,
    overwrite: bool,
) -> Result<(), LocalError> {
    seal(file, paths, mtime_ns)?;
    place(paths, overwrite)?;
    sync_dir(paths.dir())?;
    drop_records(paths)
}

/// Sets the partial file's modification time and makes its contents durable: after this a
/// rename can never expose a partial file, even across a crash.
pub(crate) fn seal(file: &File, paths: &FilePaths, mtime_ns: u64) -> Result<(), LocalError> {
    if mtime_ns > 0 {
        let modified = UNIX_EPOCH + Duration::from_nanos(mtime_ns);
        if let Err(e) = file.set_modified(modified) {
            tracing::debug!(path = %paths.partial.display(), %e, "could not set the modification time");
        }
    }
    file.sync_all()
        .map_err(|e| LocalError::io("syncing", &paths.partial, e))
}

/// Renames a sealed partial file over its target in one step (refusing to replace an existing
/// file unless `overwrite`). Durable only once its directory is synced.
pub(crate) fn place(paths: &FilePaths, overwrite: bool) -> Result<(), LocalError> {
    if overwrite {
        fs::rename(&paths.partial, &paths.target)
            .map_err(|e| LocalError::io("renaming into place", &paths.target, e))
    } else {
        rename_noreplace(&paths.partial, &paths.target)
    }
}

/// Removes a placed file's resume records (after its directory is synced).
pub(crate) fn drop_records(paths: &FilePaths) -> Result<(), LocalError> {
    remove_if_exists(&paths.record)?;
    remove_if_exists(&paths.record_tmp)
}

/// Renames without replacing an existing target.
fn rename_noreplace(from: &Path, to: &Path) -> Result<(), LocalError> {
    let cwd = rustix::fs::CWD;
    match rustix::fs::renameat_with(cwd, from, cwd, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::EXIST) => Err(LocalError::TargetExists(to.to_path_buf())),
        // File systems without RENAME_NOREPLACE: check, then rename.
        Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
            if existing(to)? != Existing::Absent {
                return Err(LocalError::TargetExists(to.to_path_buf()));
            }
            fs::rename(from, to).map_err(|e| LocalError::io("renaming into place", to, e))
        }
        Err(e) => Err(LocalError::io("renaming into place", to, e.into())),
    }
}

/// Makes a directory's entries durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LocalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LocalError::io("syncing directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirs_are_created_but_never_through_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut created = Vec::new();
        ensure_dir(root, &RelPath::parse("a/b/c").unwrap(), &mut created).unwrap();
        assert!(root.join("a/b/c").is_dir());
        assert_eq!(
            created,
            vec![root.join("a"), root.join("a/b"), root.join("a/b/c")]
        );
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let err = ensure_dir(root, &RelPath::parse("link/x").unwrap(), &mut created).unwrap_err();
        assert!(matches!(err, LocalError::NotADirectory(p) if p == root.join("link")));
        assert!(!outside.path().join("x").exists());
        fs::write(root.join("file"), b"").unwrap();
        assert!(ensure_dir(root, &RelPath::parse("file/x").unwrap(), &mut created).is_err());
        assert!(check_dirs(root, &RelPath::parse("link/f").unwrap()).is_err());
        assert!(check_dirs(root, &RelPath::parse("a/b/f").unwrap()).unwrap());
        assert!(!check_dirs(root, &RelPath::parse("a/new/f").unwrap()).unwrap());
    }

    #[test]
    fn partial_files_refuse_symlinks_and_finalize_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let rel = RelPath::parse("f.txt").unwrap();
        let paths = FilePaths::new(dir.path(), &rel);
        assert_eq!(paths.partial, dir.path().join(".f.txt.tether-partial"));
        std::os::unix::fs::symlink("/etc/passwd", &paths.partial).unwrap();
        assert!(open_partial(&paths.partial, 4).is_err());
        fs::remove_file(&paths.partial).unwrap();
        let file = open_partial(&paths.partial, 4).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&file, b"data", 0).unwrap();
        fs::write(&paths.record, b"{}").unwrap();
        finalize(&file, &paths, 1_700_000_000_000_000_000, false).unwrap();
        assert_eq!(fs::read(&paths.target).unwrap(), b"data");
        assert!(!paths.partial.exists() && !paths.record.exists());
        let modified = fs::metadata(&paths.target).unwrap().modified().unwrap();
        assert_eq!(
            modified,
            UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000)
        );
        // A second file for the same target is refused unless overwriting.
        let file = open_partial(&paths.partial, 3).unwrap();
        assert!(matches!(
            finalize(&file, &paths, 0, false),
            Err(LocalError::TargetExists(_))
        ));
        finalize(&file, &paths, 0, true).unwrap();
        assert_eq!(fs::read(&paths.target).unwrap(), vec![0; 3]);
        assert!(free_space(dir.path()).unwrap() > 0);
    }

    #[test]
    fn reopening_a_partial_file_needs_the_same_inode_and_no_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let paths = FilePaths::new(dir.path(), &RelPath::parse("f").unwrap());
        let file = open_partial(&paths.partial, 4).unwrap();
        let id = partial_id(&file, &paths.partial).unwrap();
        drop(file);
        let again = reopen_partial(&paths.partial, id).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&again, b"ab", 1).unwrap();
        assert_eq!(fs::read(&paths.partial).unwrap(), b"\0ab\0");
        drop(again);

        // Swapped for another file: refused, and left alone.
        let elsewhere = dir.path().join("elsewhere");
        fs::write(&elsewhere, b"mine").unwrap();
        fs::rename(&paths.partial, dir.path().join("moved")).unwrap();
        fs::hard_link(&elsewhere, &paths.partial).unwrap();
        assert!(matches!(
            reopen_partial(&paths.partial, id),
            Err(LocalError::PartialReplaced(_))
        ));
        // Swapped for a symlink to the original: refused without following it.
        fs::remove_file(&paths.partial).unwrap();
        std::os::unix::fs::symlink(dir.path().join("moved"), &paths.partial).unwrap();
        assert!(matches!(
            reopen_partial(&paths.partial, id),
            Err(LocalError::PartialReplaced(_))
        ));
        // Gone: refused, nothing created.
        fs::remove_file(&paths.partial).unwrap();
        assert!(matches!(
            reopen_partial(&paths.partial, id),
            Err(LocalError::PartialReplaced(_))
        ));
        assert!(!paths.partial.exists());
        assert_eq!(fs::read(&elsewhere).unwrap(), b"mine");
    }
}
