//! The service's data directory on disk.

use crate::NetworkError;

/// Creates `dir` (and its parents) if missing, readable by this user only.
pub(super) fn create_private_dir(dir: &std::path::Path) -> Result<(), NetworkError> {
    std::fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
        path: dir.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| NetworkError::Io {
                path: dir.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}
