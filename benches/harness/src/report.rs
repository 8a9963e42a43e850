//! What a run reports: the table's rows, notes and sections, the figures' formats, and the
//! Markdown they become.

use std::fmt::Write as _;

use crate::lab::{GIB, MIB};
use crate::stats::Spread;

/// One figure against its baseline.
pub(crate) struct Row {
    pub(crate) figure: String,
    pub(crate) candidate: String,
    pub(crate) baseline: String,
    pub(crate) ratio: Option<Spread>,
    pub(crate) target: String,
    pub(crate) met: Option<bool>,
}

/// What the parts write: the table's rows, notes under it and extra sections.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) rows: Vec<Row>,
    pub(crate) notes: Vec<String>,
    pub(crate) extra: String,
}

impl Report {
    /// The report in Markdown: `mode` (one line on how the run went), the table, the extra
    /// sections and the notes.
    pub(crate) fn markdown(&self, mode: &str) -> String {
        let mut md = format!("{mode}\n\n");
        let _ = writeln!(
            md,
            "| figure | Tether median [min, max] | baseline in the same run | ratio median [min, max] | target | met |\n|---|---|---|---|---|---|"
        );
        for row in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                row.figure,
                row.candidate,
                row.baseline,
                row.ratio
                    .map_or("—".into(), |r| r.show(|x| format!("{x:.2}×"))),
                row.target,
                match row.met {
                    Some(true) => "met",
                    Some(false) => "**missed**",
                    None => "reported",
                }
            );
        }
        md.push_str(&self.extra);
        if !self.notes.is_empty() {
            md.push('\n');
            for note in &self.notes {
                let _ = writeln!(md, "- {note}");
            }
        }
        md
    }
}

pub(crate) fn mib_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / MIB as f64 / seconds
}

pub(crate) fn size_name(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

pub(crate) fn ms(seconds: f64) -> String {
    if seconds < 0.01 {
        format!("{:.3} ms", seconds * 1e3)
    } else {
        format!("{:.1} ms", seconds * 1e3)
    }
}

pub(crate) fn rate(x: f64) -> String {
    format!("{x:.0} MiB/s")
}

/// Per-repetition ratios candidate/baseline (both lists in repetition order).
pub(crate) fn ratios(candidate: &[f64], baseline: &[f64]) -> Vec<f64> {
    candidate.iter().zip(baseline).map(|(c, b)| c / b).collect()
}
