//! Relative paths from a peer's manifest, checked before they touch a file system.
//!
//! A manifest path is `/`-separated and relative to the receiver's destination. [`RelPath::parse`]
//! accepts it only if every component is an ordinary name on every platform Tether runs on, so
//! that joining it to the destination can never leave the destination or name a device:
//!
//! * no absolute paths, empty components, `.` or `..`;
//! * no `\` (a separator on Windows) or `:` (drive letters, NTFS streams), no control characters;
//! * no Windows device names (`CON`, `PRN`, `AUX`, `NUL`, `COM0`–`COM9`, `LPT0`–`LPT9`,
//!   `CONIN$`, `CONOUT$`, with any extension, any case), and no trailing dot or space (Windows
//!   strips them, so `a.` and `a` would be one file);
//! * no names ending in the engine's own suffixes (`.tether-partial`, `.tether-resume`), so a peer
//!   cannot name or clobber another file's partial data;
//! * at most [`MAX_COMPONENT_LEN`] bytes per component (room for the partial-file affixes inside
//!   the usual 255-byte limit), [`MAX_PATH_LEN`] in all, [`MAX_DEPTH`] components.
//!
//! Symlinks are a property of the receiving disk, not of the name: the receiver opens each
//! directory beneath its destination with no symlink on the way and works relative to its
//! handle (see `receive::dest`).

use std::path::{Path, PathBuf};

/// Longest path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 200;
/// Longest path, in bytes.
pub const MAX_PATH_LEN: usize = 4096;
/// Most components in a path.
pub const MAX_DEPTH: usize = 64;

/// Suffixes of the engine's own files beside a target; refused in peer-supplied names.
pub(crate) const PARTIAL_SUFFIX: &str = ".tether-partial";
pub(crate) const RECORD_SUFFIX: &str = ".tether-resume";
pub(crate) const RECORD_TMP_SUFFIX: &str = ".tether-resume.tmp";

const DEVICE_NAMES: [&str; 6] = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

/// Why a peer-supplied path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path is empty or has an empty component (`a//b`, trailing `/`).
    #[error("empty path component")]
    Empty,
    /// The path starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// A `.` or `..` component.
    #[error("`.` or `..` component")]
    DotComponent,
    /// A character no portable name may hold: `\`, `:` or a control character.
    #[error("forbidden character {0:?}")]
    ForbiddenChar(char),
    /// A Windows device name such as `CON` or `nul.txt`.
    #[error("device name {0:?}")]
    DeviceName(String),
    /// A component ending in a dot or a space.
    #[error("name ends in a dot or space")]
    TrailingDotOrSpace,
    /// A name ending in one of the engine's own suffixes.
    #[error("name uses a reserved suffix")]
    ReservedSuffix,
    /// Too long or too deep.
    #[error("path too long or too deep")]
    TooLong,
}

/// A checked relative path (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    /// Checks `path` from a peer.
    pub fn parse(path: &str) -> Result<RelPath, PathError> {
        if path.len() > MAX_PATH_LEN {
            return Err(PathError::TooLong);
        }
        if path.starts_with('/') {
            return Err(PathError::Absolute);
        }
        let mut depth = 0;
        for component in path.split('/') {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(PathError::TooLong);
            }
            check_component(component)?;
        }
        Ok(RelPath(path.to_owned()))
    }

    /// The path as sent, `/`-separated.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, first to last.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The path under `root`, built component by component.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(self.components());
        path
    }

    /// The last component.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The parent path, or `None` for a top-level name.
    pub fn parent(&self) -> Option<RelPath> {
        self.0
            .rsplit_once('/')
            .map(|(parent, _)| RelPath(parent.to_owned()))
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn check_component(name: &str) -> Result<(), PathError> {
    if name.is_empty() {
        return Err(PathError::Empty);
    }
    if name == "." || name == ".." {
        return Err(PathError::DotComponent);
    }
    if name.len() > MAX_COMPONENT_LEN {
        return Err(PathError::TooLong);
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| c == '\\' || c == ':' || c.is_control())
    {
        return Err(PathError::ForbiddenChar(bad));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(PathError::TrailingDotOrSpace);
    }
    if [PARTIAL_SUFFIX, RECORD_SUFFIX, RECORD_TMP_SUFFIX]
        .iter()
        .any(|suffix| name.ends_with(suffix))
    {
        return Err(PathError::ReservedSuffix);
    }
    if is_device_name(name) {
        return Err(PathError::DeviceName(name.to_owned()));
    }
    Ok(())
}

/// Whether Windows would treat `name` as a device: the part before the first dot, with trailing
/// spaces removed, is a reserved name in any case (`COM1`, `lpt9`, `Nul .txt`, `COM²`).
fn is_device_name(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end_matches(' ');
    let upper = stem.to_uppercase();
    if DEVICE_NAMES.contains(&upper.as_str()) {
        return true;
    }
    for prefix in ["COM", "LPT"] {
        if let Some(rest) = upper.strip_prefix(prefix) {
            let mut chars = rest.chars();
            if let (Some(c), None) = (chars.next(), chars.next())
                && (c.is_ascii_digit() || matches!(c, '¹' | '²' | '³'))
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_paths_pass() {
        for ok in [
            "a",
            "a/b/c.txt",
            ".hidden",
            "photos/2024/IMG_0001.JPG",
            "über/naïve résumé.pdf",
            "what?.txt",
            "con-tract.txt",
            "COM10",
            "CONSOLE",
            "a..b",
        ] {
            assert_eq!(RelPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn hostile_paths_refused() {
        let cases: &[(&str, PathError)] = &[
            ("", PathError::Empty),
            ("a//b", PathError::Empty),
            ("a/", PathError::Empty),
            ("/etc/passwd", PathError::Absolute),
            ("..", PathError::DotComponent),
            ("a/../../b", PathError::DotComponent),
            ("./a", PathError::DotComponent),
            ("..\\..\\windows", PathError::ForbiddenChar('\\')),
            ("C:evil", PathError::ForbiddenChar(':')),
            ("a\0b", PathError::ForbiddenChar('\0')),
            ("line\nbreak", PathError::ForbiddenChar('\n')),
            ("trailing.", PathError::TrailingDotOrSpace),
            ("trailing ", PathError::TrailingDotOrSpace),
            (".x.tether-partial", PathError::ReservedSuffix),
            ("d/.x.tether-resume", PathError::ReservedSuffix),
        ];
        for (path, want) in cases {
            assert_eq!(RelPath::parse(path).unwrap_err(), *want, "{path:?}");
        }
        for device in [
            "CON",
            "con",
            "nul.txt",
            "Nul .tar.gz",
            "dir/AUX",
            "COM1",
            "lpt9.log",
            "COM²",
            "CONIN$",
            "conout$.x",
            "prn",
        ] {
            assert!(
                matches!(RelPath::parse(device), Err(PathError::DeviceName(_))),
                "{device}"
            );
        }
        assert_eq!(
            RelPath::parse(&"x".repeat(MAX_COMPONENT_LEN + 1)).unwrap_err(),
            PathError::TooLong
        );
        assert_eq!(
            RelPath::parse(&vec!["d"; MAX_DEPTH + 1].join("/")).unwrap_err(),
            PathError::TooLong
        );
        assert!(RelPath::parse(&vec!["d"; MAX_DEPTH].join("/")).is_ok());
    }

    #[test]
    fn helpers() {
        let path = RelPath::parse("a/b/c.txt").unwrap();
        assert_eq!(path.file_name(), "c.txt");
        assert_eq!(path.parent().unwrap().as_str(), "a/b");
        assert_eq!(RelPath::parse("top").unwrap().parent(), None);
        assert_eq!(
            path.under(Path::new("/dest")),
            PathBuf::from("/dest/a/b/c.txt")
        );
    }
}
