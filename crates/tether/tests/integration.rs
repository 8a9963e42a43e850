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

mod app_discovery;
mod builder;
mod consent;
mod device_handle;
mod dht_discovery;
mod encoding;
mod folders;
mod gate;
mod global_discovery;
mod history;
mod idle;
mod lifecycle;
mod liveness;
mod many_peers;
mod mdns;
mod messages;
mod names;
mod outbox;
mod pairing;
mod pull;
mod relay;
mod requests;
mod restart;
mod retry;
mod revocation;
mod storage;
mod text;
mod transfer;
