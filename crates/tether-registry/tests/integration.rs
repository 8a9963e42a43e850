//! The crate's integration tests, one module per file, linked into one test binary
//! (one link and one executable instead of one per file: CI's time and disk).
//! Run one file's tests with `cargo test -p CRATE --test integration FILE::`.
// What the files allowed as crate roots, for the helpers they share.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

mod common;

mod crash;
mod history;
mod key_manager;
mod outbox;
mod registry;
mod store;
