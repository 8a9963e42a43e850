//! Tether's transfer engine: files and directories from one device to another over any async
//! byte stream, verified chunk by chunk, resumable after a cut link or a restart of either side,
//! and never leaving a partial or mixed file at a target path.
//!
//! The engine knows nothing about iroh: the service opens a QUIC bidirectional stream (ALPN
//! `tether/transfer/1`) and hands it over as any tokio `AsyncRead + AsyncWrite + Unpin + Send`
//! ([`ByteStream`]). Tests use TCP on 127.0.0.1 between processes, and an in-memory pair over
//! `tokio::io::duplex` whose relays drop, duplicate, reorder, corrupt or cut frames.
//!
//! # Using it
//!
//! **Sender.** The application maps its entry ids to paths with an [`EntryResolver`] ([`entry_id`]
//! names a path by its hash); [`OutgoingTransfer::prepare`] walks and hashes them;
//! [`OutgoingTransfer::send`] runs the protocol over a control stream plus optional extra streams
//! ("lanes").
//!
//! **Receiver.** One [`Receiver`] per destination directory, configured with a [`Consent`]
//! policy and [`Limits`]. For every incoming stream, [`read_hello`] says whether it offers a
//! transfer ([`Receiver::receive`] runs it) or is a lane of a running one ([`Receiver::attach`]).
//!
//! Both runs take a [`RunContext`]: the transfer's secret (from `SessionKeys::transfer_secret`
//! with the transfer id) when encrypting, a channel for [`TransferEvent`]s, a cancellation
//! token, and shared [`RateLimiter`]s for a global bandwidth limit. Both return a
//! [`TransferReport`], which names the [`TransferCipher`] the two sides agreed on.
//!
//! ```no_run
//! # async fn demo(control: tokio::net::TcpStream, peer_stream: tokio::net::TcpStream,
//! #     peer: tether_identity::NodeId) -> Result<(), tether_transfer::TransferError> {
//! use std::collections::HashMap;
//! use tether_transfer::{
//!     AcceptAll, Hello, OutgoingTransfer, Receiver, ReceiverConfig, RunContext, SendOptions,
//! };
//!
//! // Sender: share one directory, unencrypted (the transport's TLS still protects it).
//! let id = uuid::Uuid::new_v4();
//! let shared: HashMap<_, _> = [(id, "/home/me/Photos".into())].into();
//! let outgoing = OutgoingTransfer::prepare(&shared, &[id], SendOptions::default().encrypt(false)).await?;
//! let report = outgoing.send(control, Vec::new(), RunContext::new()).await?;
//!
//! // Receiver: accept everything into ~/Downloads.
//! let receiver = Receiver::new(ReceiverConfig::new("/home/me/Downloads").consent(AcceptAll));
//! match tether_transfer::read_hello(peer_stream).await? {
//!     Hello::Offer(offer) => { receiver.receive(offer, peer, RunContext::new()).await?; }
//!     Hello::Lane(lane) => receiver.attach(lane, peer)?,
//!     _ => {}
//! }
//! # Ok(()) }
//! ```
//!
//! # Protocol `tether/transfer/1`
//!
//! Frames are tether-wire's: control messages as JSON in control frames, file bytes in data
//! frames ([`tether_wire::DataChunk`]: entry id, offset, bytes), sealed per lane when encrypted.
//! A receiver whose `Accept` says `batches` may be sent *batch frames*: one data frame (for the
//! nil entry at offset `u64::MAX`, which no chunk has) holding several whole files of at most
//! 64 KiB each, `entry id | length u32 | bytes` per file, at most 256 KiB in all; each file in it
//! is checked as the chunk at offset 0 of its file would be.
//!
//! ```text
//! sender                                           receiver
//!   Offer {version 3, id, entries, bytes, chunk size, zstd?, encrypted?, ciphers, lanes,
//!          wants?, plan?} ─►
//!   Manifest {entries} ... (paged, ≤ 256 KiB each) ─►  check paths, limits, space, ciphers;
//!                                                    ask consent
//!                                    ◄─ Accept {cipher, batches?} | Decline {code, message}
//!   ChunkHashes {entry, first, hex} ... ─►           check they add up to each file hash;
//!                                                    verify kept partial chunks
//!   (each extra stream) Lane {id, index} ─►
//!                                    ◄─ Plan {files, bytes}   (if the offer says plan)
//!                        ◄─ FileRequest {entry, resume_from} | Want {entry, chunk ranges}
//!                           | Wants {[Want; ≤ 1024], ≤ 4096 ranges in all} ...
//!                           (a window at a time: ≤ 64 MiB and ≤ 4,096 files outstanding,
//!                            asked while the receiver reads the data)
//!   FileResponse {entry, size, hash, chunk_size, offset} ─►  (answers a FileRequest)
//!   data frames on every lane, in any order ─►       verify each chunk, write at its offset;
//!   (batch frames: several small files in one,       fsync + rename each complete file
//!    if the Accept says batches)
//!                                    ◄─ Complete {files, bytes verified}
//!   either side, any time after the offer: Abort {code, message}
//! ```
//!
//! **Pull.** A device may instead *ask* for an entry by id ([`request_pull`]): it opens the
//! stream and sends `Pull {entry_id, resume_from}` (≤ 256 bytes of JSON, no path) first; the
//! sharer, which resolves the id through its own mapping for that device, answers
//! `Decline {not_shared | busy | internal | bandwidth_quota}` or goes on with the `Offer` above on the same
//! stream, itself the sender (no extra lanes). The requester's [`PulledEntry`] consent takes
//! only the entry asked for.
//!
//! ```text
//! requester                                        sharer
//!   Pull {entry_id, resume_from} ─►                resolve the id for this device
//!                            ◄─ Decline {code, message}                    (refused; end)
//!                            ◄─ Offer ... (then the sequence above, sharer = sender)
//! ```
//!
//! **Cipher.** When encrypted, `ciphers` lists the wire ids of the AEADs the sender accepts, most
//! preferred first (by default AES-256-GCM first when its CPU has AES instructions, else
//! ChaCha20-Poly1305 first); the receiver takes the first it accepts, or ChaCha20-Poly1305 when
//! it lacks AES instructions itself, and names it in `Accept`. Both then derive the transfer's
//! keys from its secret under that cipher (the derivation labels name the cipher), and each
//! lane's keys from those. An empty, over-long (more than 8), duplicated or unknown list is
//! declined, and an answer naming a cipher that was not offered aborts the sender, each with a
//! [`CipherError`]. With `encrypted: false` there is no list and no cipher.
//!
//! # Guarantees
//!
//! * **Integrity.** Each 256 KiB chunk ([`CHUNK_SIZE`]) is checked on arrival against its
//!   BLAKE3 subtree hash; the hashes are checked up front to add up to the file's BLAKE3 hash,
//!   so a file whose chunks all passed *is* the file the manifest names (see `tree.rs`).
//! * **Atomicity.** Data goes to `.name.tether-partial` beside the target, preallocated; a
//!   complete file is fsynced, renamed over the target in one step (never over an existing file
//!   unless [`ReceiverConfig::overwrite`]), and the directory fsynced.
//! * **Resume.** `.name.tether-resume` records the source's size, mtime and hash and which chunks
//!   were written (saved every [`ReceiverConfig::checkpoint_interval`] and on every clean stop).
//!   On the next run (after a cut link, a cancel, or a SIGKILL of either side) the listed chunks
//!   are re-verified and only the rest, and any that fail, are fetched; `FileRequest { entry_id,
//!   resume_from }` asks for a file's tail, `Want` for scattered chunks (and for a file of one
//!   chunk); a sender whose offer says `wants: true` is sent the `Want`s of up to 1,024 files
//!   in one `Wants` message (a sender without it, one `Want` per file). A source that changed
//!   (size, mtime or hash) discards the partial file. A sender notices its own source changing
//!   mid-transfer and aborts; nothing is finalised. A file of one chunk (or none) has nothing
//!   to resume inside it: it keeps no record, its partial file is created only once its chunk
//!   verified, and a cut refetches it whole; files already in place are never fetched again.
//!   Completed files are put in place in batches (their syncs on several threads, then the
//!   renames, then one sync per directory) before any of them is reported.
//! * **Scope.** The receiver writes only inside its destination: hostile names ([`RelPath`]),
//!   symlinks or files on the way, existing targets, and offers larger than the free space are
//!   refused before `Accept`. After that it works only relative to directory handles opened
//!   beneath the destination with no symlink on the way, creates its files `O_EXCL |
//!   O_NOFOLLOW`, and checks that each renamed target is the inode it verified, so a directory
//!   or file swapped for a link meanwhile never redirects a write. The sender reads only what
//!   its [`EntryResolver`] returned, never follows links inside shared directories, and serves
//!   only the entries of its manifest.
//! * **Never silent.** A run whose streams move no bytes for a few seconds says what it waits
//!   for ([`TransferEvent::Waiting`]); past [`SendOptions::stall_timeout`] /
//!   [`ReceiverConfig::stall_timeout`] (60 s) it ends with [`TransferError::Stalled`], which is
//!   resumable.
//! * **Bounded memory.** Every list a peer sends is capped ([`Limits`], the 1 MiB control frame);
//!   a manifest is held in memory linear in its size (each name once) until consent, within
//!   [`ReceiverConfig::manifest_timeout`], at most [`ReceiverConfig::max_offers_per_peer`]
//!   offers per device at once; a peer's free text is cut to 1 KiB as it is decoded; a
//!   receiver keeps 32 bytes per chunk (1/8192 of the data) plus a few chunks per lane.
//! * **Policy.** [`ReceiverConfig::require_encryption`] declines plain offers; names that one
//!   case-insensitive or normalising file system would take for one are refused.
//!
//! # Performance
//!
//! Each lane runs its chunk work (read, compress, seal; open, verify, write) on one long-lived
//! blocking thread, pipelined with its stream. On this 2-core machine, loopback TCP, 256 MiB
//! (see BENCHMARKS.md): about 0.9x a plain `tokio::io::copy` file to file without encryption.
//! Sealing costs most with ChaCha20-Poly1305 (about 1 GiB/s per core); AES-256-GCM, chosen where
//! both CPUs have AES instructions, seals at about 2.2 GiB/s. Extra lanes help only when a side
//! has cores to spare; the service can open one or two for large transfers.
//!
//! Linux (and other Unix) only: positional IO, `openat2` (or `O_NOFOLLOW` walks), `fallocate`,
//! `renameat2`.

mod abort;
mod batch;
mod chunk;
mod collect;
mod compress;
mod consent;
mod error;
mod link;
mod manifest;
mod name_tree;
mod negotiate;
mod options;
mod path;
mod progress;
mod protocol;
mod pull;
mod receive;
mod resume;
mod send;
mod source;
mod stall;
mod storage;
mod throttle;
mod tree;

pub use abort::AbortCode;
pub use chunk::{CHUNK_SIZE, chunk_count, chunk_len, chunk_offset};
pub use collect::{
    Collected, DEFAULT_LEFTOVER_IDLE, Leftover, Leftovers, Reason, is_leftover_name,
};
pub use compress::{Compression, DecodeError};
pub use consent::{
    AcceptAll, Consent, Decision, DeclineAll, MAX_REASON_LEN, OfferSummary, TrustedPeers,
};
pub use error::{LocalError, PeerError, TransferError, UsageError};
pub use link::ByteStream;
pub use manifest::{EntryKind, Limits, Manifest, ManifestEntry, ManifestError};
pub use negotiate::CipherError;
pub use options::{MAX_LANES, ReceiverConfig, RunContext, SendOptions};
pub use path::{MAX_COMPONENT_LEN, MAX_DEPTH, MAX_PATH_LEN, PathError, RelPath};
pub use progress::{
    Direction, FileProgress, PathKind, Progress, SendTally, TransferEvent, TransferReport, Waiting,
};
pub use pull::{DECLINE_WRITE_TIMEOUT, IncomingPull, PulledEntry, request_pull};
pub use receive::{Hello, IncomingLane, IncomingOffer, Receiver, read_hello};
pub use source::{EntryResolver, FileHashes, OutgoingTransfer, entry_id, file_hashes};
pub use storage::{
    BudgetRefusal, DEFAULT_RESERVE_MOST, DEFAULT_RESERVE_PERCENT, NoBudget, NoQuota, QuotaRefusal,
    ReceiveBudget, Reserve, StorageQuota,
};
pub use tether_crypto::TransferCipher;
pub use throttle::{RateLimiter, TokenBucket};
pub use tokio_util::sync::CancellationToken;
pub use tree::{chunk_hash, root_hash};
