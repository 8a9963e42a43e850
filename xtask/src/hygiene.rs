//! Two house rules CI holds the tree to: no function over [`MAX_FUNCTION_LINES`] lines in
//! library and binary code, and commit subjects of at most [`MAX_SUBJECT_LEN`] characters.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The longest function allowed outside tests (clippy's `too_many_lines`; the threshold is
/// `too-many-lines-threshold` in clippy.toml).
pub(crate) const MAX_FUNCTION_LINES: usize = 80;

/// The longest commit subject allowed; the detail goes in the body.
pub(crate) const MAX_SUBJECT_LEN: usize = 72;

/// Commits after this one are held to [`MAX_SUBJECT_LEN`]; older history is left as it is.
const SUBJECTS_CHECKED_AFTER: &str = "1a80462d";

/// `cargo clippy` on library and binary targets with `too_many_lines` denied.
pub(crate) fn long_functions() -> Command {
    crate::cargo(&[
        "clippy",
        "--workspace",
        "--lib",
        "--bins",
        "--locked",
        "--",
        "-D",
        "clippy::too_many_lines",
    ])
}

/// Fails when a commit after [`SUBJECTS_CHECKED_AFTER`] has a subject longer than
/// [`MAX_SUBJECT_LEN`] characters. A clone without that commit (a shallow one) is not checked.
pub(crate) fn commit_subjects(root: &Path) -> Result<()> {
    eprintln!("xtask: == commit subjects of at most {MAX_SUBJECT_LEN} characters ==");
    let known = Command::new("git")
        .args([
            "cat-file",
            "-e",
            &format!("{SUBJECTS_CHECKED_AFTER}^{{commit}}"),
        ])
        .current_dir(root)
        .status();
    if !known.is_ok_and(|status| status.success()) {
        eprintln!("xtask: {SUBJECTS_CHECKED_AFTER} is not in this clone; subjects not checked");
        return Ok(());
    }
    let output = Command::new("git")
        .args([
            "log",
            "--format=%h %s",
            &format!("{SUBJECTS_CHECKED_AFTER}..HEAD"),
        ])
        .current_dir(root)
        .output()
        .context("running git log")?;
    if !output.status.success() {
        bail!(
            "git log failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let log = String::from_utf8_lossy(&output.stdout);
    let long = too_long(&log);
    if !long.is_empty() {
        bail!(
            "commit subjects over {MAX_SUBJECT_LEN} characters:\n{}",
            long.join("\n")
        );
    }
    Ok(())
}

/// The lines of `git log --format='%h %s'` whose subject is over [`MAX_SUBJECT_LEN`] characters.
fn too_long(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let subject = line.split_once(' ').map_or("", |(_, subject)| subject);
            subject.chars().count() > MAX_SUBJECT_LEN
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_of_73_characters_is_too_long_and_72_is_not() {
        let ok = format!("abc1234 {}", "a".repeat(72));
        let long = format!("def5678 {}", "é".repeat(73));
        let log = format!("{ok}\n{long}\n");
        assert_eq!(too_long(&log), vec![long.as_str()]);
    }
}
