//! What the lab says to a device agent, one JSON object per line on the agent's stdin.
//!
//! The agent answers each request with one line carrying the request's `id` and `ok` (`true`
//! with the command's figures, or `false` with an `error`); it also prints unsolicited lines
//! with an `event` field (discoveries, pairings, connections, transfer progress).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One request: an id the answer repeats, and the command.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Repeated in the answer.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// The commands a device agent understands. Devices are named by their node id (hex).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Show a pairing code (or a ticket); answers with the code at once and prints a
    /// `paired` event when a device joins.
    PairInit {
        /// A ticket (address and full-entropy secret) instead of a word code.
        ticket: bool,
    },
    /// Join the device showing `code` (found through discovery, or a ticket).
    Join {
        /// The word code or ticket.
        code: String,
    },
    /// Send `count` numbered messages (`start..start + count`), one after another, each
    /// waiting for its acknowledgement.
    SendMessages {
        /// The paired device.
        to: String,
        /// The first number.
        start: u64,
        /// How many.
        count: u64,
    },
    /// How the numbered messages received so far compare with `start..start + count`.
    Messages {
        /// The first number the sender sent.
        start: u64,
        /// How many it sent.
        count: u64,
    },
    /// Send a file with the default options (extra streams picked from the round trip); answers
    /// when the receiver has verified it (or the transfer failed).
    SendFile {
        /// The paired device.
        to: String,
        /// The file.
        path: PathBuf,
    },
    /// Sends a file as [`Command::SendFile`] does, over `lanes` extra QUIC streams beside the
    /// control stream.
    SendFileLanes {
        /// The paired device.
        to: String,
        /// The file.
        path: PathBuf,
        /// Extra data streams.
        lanes: u8,
    },
    /// The BLAKE3 hash of a file.
    Hash {
        /// The file.
        path: PathBuf,
    },
    /// The live connection's path, round trip and counters.
    Conn {
        /// The paired device.
        to: String,
    },
    /// Connect (if needed) and wait until the connection's path is direct.
    WaitDirect {
        /// The paired device.
        to: String,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// An encrypted round trip.
    Ping {
        /// The paired device.
        to: String,
    },
    /// The node ids seen by discovery so far.
    Discovered,
    /// Share a file with paired devices for streaming (`tether-stream`); answers with its
    /// entry id.
    Share {
        /// The file.
        path: PathBuf,
    },
    /// Open a file `from` shares as a stream and time it: the first byte, a seek near its
    /// end, and `ffprobe` reading it through the local HTTP server.
    StreamFigures {
        /// The sharing device.
        from: String,
        /// The entry id [`Command::Share`] answered.
        entry: String,
    },
    /// Stop the service and exit.
    Shutdown,
}
