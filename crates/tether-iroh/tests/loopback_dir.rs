//! The loopback discovery directory: made private by us, or refused when someone else could
//! reach into it (another user's directory, one open to others, a symbolic link).
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::os::unix::fs::PermissionsExt;

use tether_iroh::{LoopbackDirProblem, LoopbackDiscovery};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_missing_loopback_directory_is_created_0700() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tether-loopback");
    let discovery = LoopbackDiscovery::new(&dir).unwrap();
    assert_eq!(discovery.dir(), dir);
    assert_eq!(mode(&dir), 0o700);
    // Our own private directory is used again as it is.
    LoopbackDiscovery::new(&dir).unwrap();
}

#[test]
fn a_loopback_directory_open_to_others_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tether-loopback");
    std::fs::create_dir(&dir).unwrap();
    for open in [0o777, 0o750, 0o701] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
        let error =
            LoopbackDiscovery::new(&dir).expect_err("a directory open to others is refused");
        let text = error.to_string();
        assert!(text.contains(&dir.display().to_string()), "{text}");
        assert!(
            matches!(error.problem, LoopbackDirProblem::OpenToOthers { mode } if mode == open),
            "{error:?}"
        );
        assert!(
            error.problem.to_string().contains("0700"),
            "{}",
            error.problem
        );
        // Refused, not quietly repaired: someone else may already have planted records in it.
        assert_eq!(mode(&dir), open);
    }
}

#[test]
fn a_symlinked_loopback_directory_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let target = root.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o700)).unwrap();
    let link = root.path().join("tether-loopback");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let error = LoopbackDiscovery::new(&link).expect_err("a symlink is refused");
    let text = error.to_string();
    assert!(text.contains(&link.display().to_string()), "{text}");
    assert!(
        matches!(error.problem, LoopbackDirProblem::Symlink),
        "{error:?}"
    );
    // A file where the directory should be is refused too.
    let file = root.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let error = LoopbackDiscovery::new(&file).expect_err("a file is refused");
    assert!(
        matches!(error.problem, LoopbackDirProblem::NotADirectory),
        "{error:?}"
    );
}

/// Another user's directory (only root can make one here, by handing it to `nobody`).
#[test]
fn another_users_loopback_directory_is_refused() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: only root can give a directory to another user");
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("tether-loopback");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    let error = LoopbackDiscovery::new(&dir).expect_err("a foreign directory is refused");
    assert!(
        matches!(
            error.problem,
            LoopbackDirProblem::NotOwned {
                owner: 65534,
                user: 0
            }
        ),
        "{error:?}"
    );
}
