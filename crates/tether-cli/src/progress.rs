//! A send's progress on the terminal: two bars (overall and the current file) with rate and
//! ETA on a terminal; a plain line every few seconds when stdout is not one; JSON lines with
//! `--json`.
#![allow(clippy::print_stdout)] // a command-line tool prints

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::output::{Output, terminal_safe};

/// How often a plain or JSON progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);
const JSON_EVERY: Duration = Duration::from_secs(1);
/// The longest ETA shown (a year, as the engine gives); a longer one is unknown.
const MAX_ETA_SECONDS: f64 = 365.0 * 24.0 * 60.0 * 60.0;

#[derive(Debug)]
pub(crate) struct ProgressView {
    out: Output,
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    last_line: Option<Instant>,
}

impl ProgressView {
    /// Starts showing a transfer described by a `started` record.
    pub(crate) fn new(out: Output, started: &Value) -> Self {
        let total = started["bytes_total"].as_u64().unwrap_or(0);
        let resumed = started["bytes_resumed"].as_u64().unwrap_or(0);
        let bars = (!out.is_json() && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(style(
                "{prefix:<5} [{bar:24}] {bytes:>9}/{total_bytes:<9} {msg}",
            ));
            overall.set_prefix("total");
            overall.set_position(resumed);
            let file = multi.add(ProgressBar::new(0));
            file.set_style(style(
                "{prefix:<5} [{bar:24}] {bytes:>9}/{total_bytes:<9} {wide_msg}",
            ));
            file.set_prefix("file");
            (multi, overall, file)
        });
        Self {
            out,
            bars,
            last_line: None,
        }
    }

    /// Shows a `progress` record.
    pub(crate) fn update(&mut self, progress: &Value) {
        let done = progress["bytes_done"].as_u64().unwrap_or(0);
        let total = progress["bytes_total"].as_u64().unwrap_or(0);
        let rate = known_rate(progress["rate"].as_f64());
        let eta = known_eta(progress["eta_s"].as_f64());
        let summary = rate_and_eta(rate, eta);
        if let Some((_, overall, file)) = &self.bars {
            overall.set_length(total);
            overall.set_position(done);
            overall.set_message(summary);
            if let Some(path) = progress["file"].as_str() {
                file.set_length(progress["file_size"].as_u64().unwrap_or(0));
                file.set_position(progress["file_done"].as_u64().unwrap_or(0));
                // A file name may hold anything a file system allows.
                file.set_message(terminal_safe(&tail(path, 30), false).into_owned());
            }
            return;
        }
        let every = if self.out.is_json() {
            JSON_EVERY
        } else {
            PLAIN_EVERY
        };
        if self.last_line.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        self.last_line = Some(Instant::now());
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        let mut record = progress.clone();
        if let Value::Object(map) = &mut record {
            map.insert("rate".to_owned(), rate.into());
            map.insert("eta_s".to_owned(), eta.into());
        }
        self.out.line(
            "progress",
            &format!(
                "{percent:5.1}%  {} of {}  {summary}",
                bytes(done),
                bytes(total)
            ),
            record,
        );
    }

    pub(crate) fn finish(self) {
        if let Some((multi, overall, file)) = self.bars {
            file.finish_and_clear();
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

/// The progress of a send to several devices: one bar per device on a terminal (one
/// `MultiProgress`), a plain line per device every few seconds when stdout is not one, and the
/// JSON `progress` records (which name their device) at most once a second per device.
#[derive(Debug)]
pub(crate) struct DevicesView {
    out: Output,
    multi: Option<MultiProgress>,
    devices: Vec<(String, Option<ProgressBar>, Option<Instant>)>,
}

impl DevicesView {
    pub(crate) fn new(out: Output) -> Self {
        let multi = (!out.is_json() && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Self {
            out,
            multi,
            devices: Vec::new(),
        }
    }

    /// Starts a device's bar from its `started` record.
    pub(crate) fn start(&mut self, device: &str, started: &Value) {
        let total = started["bytes_total"].as_u64().unwrap_or(0);
        let resumed = started["bytes_resumed"].as_u64().unwrap_or(0);
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(total));
            bar.set_style(style(
                "{prefix:<12} [{bar:24}] {bytes:>9}/{total_bytes:<9} {msg}",
            ));
            bar.set_prefix(terminal_safe(&tail(device, 12), false).into_owned());
            bar.set_position(resumed);
            bar
        });
        self.devices.retain(|(name, _, _)| name != device);
        self.devices.push((device.to_owned(), bar, None));
    }

    /// Shows a device's `progress` record.
    pub(crate) fn update(&mut self, device: &str, progress: &Value) {
        let Some((_, bar, last)) = self.devices.iter_mut().find(|(name, _, _)| name == device)
        else {
            return;
        };
        let done = progress["bytes_done"].as_u64().unwrap_or(0);
        let total = progress["bytes_total"].as_u64().unwrap_or(0);
        let summary = rate_and_eta(
            known_rate(progress["rate"].as_f64()),
            known_eta(progress["eta_s"].as_f64()),
        );
        if let Some(bar) = bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(summary);
            return;
        }
        let every = if self.out.is_json() {
            JSON_EVERY
        } else {
            PLAIN_EVERY
        };
        if last.is_some_and(|last| last.elapsed() < every) {
            return;
        }
        *last = Some(Instant::now());
        let percent = if total == 0 {
            100.0
        } else {
            done as f64 * 100.0 / total as f64
        };
        self.out.line(
            "progress",
            &format!(
                "{device}: {percent:5.1}%  {} of {}  {summary}",
                bytes(done),
                bytes(total)
            ),
            progress.clone(),
        );
    }

    /// Shows a line above the bars.
    pub(crate) fn line(&self, event: &str, text: &str, record: Value) {
        match &self.multi {
            Some(multi) => multi.suspend(|| self.out.line(event, text, record)),
            None => self.out.line(event, text, record),
        }
    }

    pub(crate) fn finish(self) {
        for (_, bar, _) in self.devices {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        if let Some(multi) = self.multi {
            let _ = multi.clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The last `max` characters of `path`, with an ellipsis when cut.
fn tail(path: &str, max: usize) -> String {
    let count = path.chars().count();
    if count <= max {
        return path.to_owned();
    }
    let kept: String = path.chars().skip(count - max + 1).collect();
    format!("…{kept}")
}

/// A rate in bytes per second, when it is a finite, non-negative number.
fn known_rate(rate: Option<f64>) -> Option<f64> {
    rate.filter(|rate| rate.is_finite() && *rate >= 0.0)
}

/// An ETA in seconds, when it is a finite, non-negative number of at most a year.
fn known_eta(seconds: Option<f64>) -> Option<f64> {
    seconds.filter(|s| s.is_finite() && *s >= 0.0 && *s <= MAX_ETA_SECONDS)
}

/// Rate and ETA for people: `1.5 MiB/s ETA 3m05s`; a rate or ETA that is unknown, not a
/// number, negative, or (the ETA) longer than a year shows as `-`.
pub(crate) fn rate_and_eta(rate: Option<f64>, eta_seconds: Option<f64>) -> String {
    format!(
        "{}/s ETA {}",
        known_rate(rate).map_or_else(|| "-".to_owned(), |rate| bytes(rate as u64)),
        known_eta(eta_seconds).map_or_else(|| "-".to_owned(), duration),
    )
}

/// Bytes for people: `1.5 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {name}")
    }
}

/// Seconds for people: `42s`, `3m05s`, `1h02m`, `3d04h` (negative and NaN are `0s`).
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else if s < 48 * 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{:02}h", s / 86400, (s % 86400) / 3600)
    }
}

/// Parses a size: a number with an optional unit, as [`parse_rate`] reads them (`10GiB`,
/// `500M`, `750000`).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    if text.trim().ends_with("/s") {
        return Err(format!(
            "invalid size {text:?}: give a size such as 10GiB or 500M"
        ));
    }
    parse_rate(text)
        .map_err(|_| format!("invalid size {text:?}: give a size such as 10GiB or 500M"))
}

/// Parses a share (`5%`, up to 100) into a reserve, or a number with `absolute`.
fn parse_share(
    text: &str,
    absolute: impl Fn(&str) -> Result<u64, String>,
) -> Result<tether::Reserve, String> {
    match text.trim().strip_suffix('%') {
        Some(number) => match number.trim().parse::<u8>() {
            Ok(percent) if percent <= 100 => Ok(tether::Reserve::Percent(percent)),
            _ => Err(format!(
                "invalid share {text:?}: give a whole percent from 0% to 100%"
            )),
        },
        None => absolute(text).map(tether::Reserve::Absolute),
    }
}

/// Parses a space reserve: a size (`2GiB`) or a share of the file system (`5%`).
pub(crate) fn parse_reserve(text: &str) -> Result<tether::Reserve, String> {
    parse_share(text, parse_size)
}

/// Parses an inode reserve: a count (`10000`) or a share of the inodes (`5%`).
pub(crate) fn parse_inode_reserve(text: &str) -> Result<tether::Reserve, String> {
    parse_share(text, |n| {
        n.trim()
            .parse::<u64>()
            .map_err(|_| format!("invalid inode count {n:?}: give a number or a percent"))
    })
}

/// Parses a rate: a number with an optional unit (`k`, `M`, `G` are powers of 1000; `KiB`,
/// `MiB`, `GiB` powers of 1024; a trailing `B` and `/s` are optional): `10M`, `500KiB`,
/// `2MB/s`, `750000`.
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid rate {text:?}: give bytes per second with an optional unit, e.g. 10M, 500KiB or 2MB/s"
        )
    };
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix("/s").unwrap_or(trimmed).trim_end();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let rate = value * multiplier;
    if !rate.is_finite() || rate < 1.0 || rate > u64::MAX as f64 {
        return Err(format!(
            "invalid rate {text:?}: it must be at least 1 byte per second"
        ));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Numbers from the edges of `f64` as well as anywhere in it.
    fn any_number() -> impl Strategy<Value = Option<f64>> {
        prop::option::of(prop_oneof![
            prop::sample::select(vec![
                0.0,
                -0.0,
                f64::MIN_POSITIVE / 2.0,
                5e-324,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                -1.0,
                f64::MAX,
                u64::MAX as f64,
                MAX_ETA_SECONDS,
            ]),
            prop::num::f64::ANY,
        ])
    }

    #[test]
    fn rates_parse_with_and_without_units() {
        assert_eq!(parse_rate("10M"), Ok(10_000_000));
        assert_eq!(parse_rate("500KiB"), Ok(512_000));
        assert_eq!(parse_rate("2MB/s"), Ok(2_000_000));
        assert_eq!(parse_rate("1.5k"), Ok(1500));
        assert_eq!(parse_rate("750000"), Ok(750_000));
        assert_eq!(parse_rate(" 1 GiB/s "), Ok(1 << 30));
        for bad in ["", "fast", "10X", "-5M", "0", "M", "1..2M"] {
            let error = parse_rate(bad).unwrap_err();
            assert!(error.contains("rate"), "{bad}: {error}");
        }
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(42.0), "42s");
        assert_eq!(duration(185.0), "3m05s");
        assert_eq!(duration(3720.0), "1h02m");
        assert_eq!(duration(273_600.0), "3d04h");
        assert_eq!(bytes(u64::MAX), "16.0 EiB");
        assert_eq!(tail("abcdefgh", 5), "…efgh");
    }

    #[test]
    fn a_stalled_transfer_shows_an_unknown_eta() {
        // The rate decayed towards zero: an ETA of 13 digits of hours is unknown.
        assert_eq!(
            rate_and_eta(Some(1e-9), Some(2_790_802_446_858_705.0 * 3600.0)),
            "0 B/s ETA -"
        );
        assert_eq!(rate_and_eta(Some(f64::NAN), Some(f64::NAN)), "-/s ETA -");
        assert_eq!(rate_and_eta(Some(-1.0), Some(-1.0)), "-/s ETA -");
        assert_eq!(rate_and_eta(None, None), "-/s ETA -");
        assert_eq!(
            rate_and_eta(Some(1536.0), Some(MAX_ETA_SECONDS)),
            "1.5 KiB/s ETA 365d00h"
        );
    }

    #[test]
    fn a_json_progress_line_carries_no_absurd_rate_or_eta() {
        let mut view = ProgressView::new(
            Output::new(true),
            &serde_json::json!({ "bytes_total": 100, "bytes_resumed": 0 }),
        );
        // Prints to stdout; what matters is that it does not panic.
        view.update(&serde_json::json!({
            "bytes_done": 50,
            "bytes_total": 100,
            "rate": 1e-300,
            "eta_s": 1e19,
        }));
        view.finish();
        assert_eq!(known_eta(Some(1e19)), None);
        assert_eq!(known_rate(Some(f64::INFINITY)), None);
    }

    proptest! {
        #[test]
        fn rates_and_etas_read_well_whatever_the_numbers(rate in any_number(), eta in any_number()) {
            let text = rate_and_eta(rate, eta);
            // `1023.9 KiB/s ETA 365d00h` is the longest there is.
            prop_assert!(text.chars().count() <= 24, "{text}");
        }

        #[test]
        fn sizes_read_well_up_to_the_largest(n in prop_oneof![Just(u64::MAX), any::<u64>()]) {
            let text = bytes(n);
            prop_assert!(text.chars().count() <= 10, "{text}");
        }

        #[test]
        fn any_duration_formats(seconds in any_number()) {
            let _ = duration(seconds.unwrap_or(0.0));
        }
    }
}
