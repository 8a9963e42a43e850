//! Criterion benchmarks of Tether's hot functions.
//!
//! The benchmarks live in `benches/`, one file per crate:
//!
//! | bench | command |
//! |---|---|
//! | `crypto` | `cargo bench -p tether-benches --bench crypto` |
//!
//! Results, with the command and machine, go to `BENCHMARKS.md` at the workspace root. This
//! library itself is empty; Cargo needs a target besides the benches.
