//! Reading the `--json` output of the `tether` binary, for the end-to-end tests.
#![allow(dead_code, clippy::panic)]

pub(crate) mod node;

use serde_json::Value;

/// Every JSON line of a command's standard output (other lines are skipped).
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The first line whose `event` is `name`.
pub(crate) fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l["event"] == name)
        .unwrap_or_else(|| panic!("no {name} in {lines:?}"))
}

/// A command's standard error, after checking that no line of it (the one-sentence error
/// with its causes) repeats a run of its `: `-separated layers right after itself.
pub(crate) fn error_text(output: &std::process::Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    for line in text.lines() {
        tether::assert_no_repeated_segment(line);
    }
    text
}
