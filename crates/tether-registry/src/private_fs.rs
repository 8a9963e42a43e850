//! Private, durable files: the data directory (mode 0700), files only the owner can read (mode
//! 0600), and atomic, no-clobber creation.
//!
//! A file is created by writing a temporary file in the same directory, `fsync`ing it, moving
//! it into place with a rename that refuses to replace an existing file, and `fsync`ing the
//! directory so the new name survives a power cut. A crash leaves either no file or the whole
//! file, never a part of one; at worst a stray temporary file, which the next start removes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data directory: only the owner may list or enter it.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file this crate writes: only the owner may read or write it.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Bits that would let someone other than the owner at a file.
const GROUP_OTHER: u32 = 0o077;

/// Creates `dir` (and missing parents) with mode 0700, or narrows an existing directory that
/// others could read to 0700, with a warning.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => tighten(dir, meta.permissions().mode(), DIR_MODE),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "the data directory path is not a directory",
        )),
        Err(error) if error.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir),
        Err(error) => Err(error),
    }
}

/// Narrows an existing file that others could read to mode 0600, with a warning.
pub(crate) fn ensure_private_file(path: &Path) -> io::Result<()> {
    let mode = fs::metadata(path)?.permissions().mode();
    tighten(path, mode, FILE_MODE)
}

fn tighten(path: &Path, mode: u32, wanted: u32) -> io::Result<()> {
    if mode & GROUP_OTHER == 0 {
        return Ok(());
    }
    tracing::warn!(
        path = %path.display(),
        mode = format_args!("{:o}", mode & 0o7777),
        "others could read this private path; narrowing its mode to {wanted:o}"
    );
    fs::set_permissions(path, fs::Permissions::from_mode(wanted))
}

/// Creates an empty file with mode 0600, failing if it exists. For redb, which then fills it.
pub(crate) fn create_private_empty(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)?;
    sync_parent(path)
}

/// Atomically creates `path` holding `bytes`, with mode 0600. Fails with
/// [`io::ErrorKind::AlreadyExists`] if the file exists: an existing file is never replaced.
pub(crate) fn create_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_of(path)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist_noclobber(path).map_err(|error| error.error)?;
    sync_dir(dir)
}

/// Atomically replaces the file `path` with one holding `bytes`, mode 0600: a temporary file
/// beside it is written and `fsync`ed, renamed over `path`, and the directory `fsync`ed. A
/// crash at any point leaves either the old file or the new one, whole, at `path` (and at
/// worst a stray temporary file, which [`remove_stale_temp_files`] removes). `step` names the
/// points between the steps for [`pause_point`] in test builds.
pub(crate) fn replace_atomically(path: &Path, bytes: &[u8], step: &str) -> io::Result<()> {
    let dir = parent_of(path)?;
    let mut temp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(".tmp")
        .permissions(fs::Permissions::from_mode(FILE_MODE))
        .tempfile_in(dir)?;
    let (first, second) = bytes.split_at(bytes.len() / 2);
    temp.write_all(first)?;
    temp.flush()?;
    pause_point(step, "temp-partial");
    temp.write_all(second)?;
    temp.as_file().sync_all()?;
    pause_point(step, "temp-synced");
    temp.persist(path).map_err(|error| error.error)?;
    pause_point(step, "renamed");
    sync_dir(dir)?;
    pause_point(step, "done");
    Ok(())
}

/// Test builds only (cargo feature `test-hooks`): when the environment variable
/// `TETHER_TEST_PAUSE_AT` names this point (`STEP:STAGE`), says so on stderr and waits for
/// ever, so that a test can kill the process at a known point of a multi-step write.
#[cfg(feature = "test-hooks")]
pub(crate) fn pause_point(step: &str, stage: &str) {
    let point = format!("{step}:{stage}");
    if std::env::var("TETHER_TEST_PAUSE_AT").is_ok_and(|wanted| wanted == point) {
        let mut stderr = io::stderr();
        let _ = writeln!(stderr, "tether-test-hook: paused at {point}");
        let _ = stderr.flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// Without the `test-hooks` feature, nothing.
#[cfg(not(feature = "test-hooks"))]
pub(crate) fn pause_point(_step: &str, _stage: &str) {}

/// Removes temporary files a crash left behind by [`create_atomically`] for `path`.
pub(crate) fn remove_stale_temp_files(path: &Path) -> io::Result<()> {
    let dir = parent_of(path)?;
    let prefix = temp_prefix(path);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(&prefix) && name.ends_with(".tmp") {
            tracing::debug!(
                file = name,
                "removing a temporary file left by an interrupted write"
            );
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

fn parent_of(path: &Path) -> io::Result<&Path> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => Ok(dir),
        Some(_) => Ok(Path::new(".")),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a file path needs a parent directory",
        )),
    }
}

fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent_of(path)?)
}

/// Makes a directory's entries (a new or renamed file) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn creates_private_dir_and_file() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        create_atomically(&file, b"hello").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"hello");
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn never_replaces_an_existing_file() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        create_atomically(&file, b"first").unwrap();
        let error = create_atomically(&file, b"second").unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&file).unwrap(), b"first");
        // The failed attempt left no temporary file behind.
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn replaces_a_file_whole_with_mode_0600() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f");
        create_atomically(&file, b"first").unwrap();
        replace_atomically(&file, b"the second one", "test").unwrap();
        assert_eq!(fs::read(&file).unwrap(), b"the second one");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn narrows_open_modes() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn removes_only_own_stale_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("device.key");
        fs::write(root.path().join(".device.key.abc.tmp"), b"x").unwrap();
        fs::write(root.path().join(".other.abc.tmp"), b"x").unwrap();
        remove_stale_temp_files(&file).unwrap();
        assert!(!root.path().join(".device.key.abc.tmp").exists());
        assert!(root.path().join(".other.abc.tmp").exists());
    }
}
