//! Tether's wire protocol: every byte two paired devices exchange, and a decoder a hostile peer
//! cannot crash.
//!
//! * **Messages.** [`NetworkMessage`] (one payload struct per kind) inside a [`ControlMessage`]
//!   that adds a [`RequestId`] for request/response correlation. Control messages are JSON or
//!   binary (postcard), whichever [`Encoding`] the connection's session handshake chose.
//!   [`Hlc`] timestamps order sync entries.
//! * **Frames.** `u32` big-endian length, a [`FrameKind`] byte, the payload. Each kind has a cap
//!   (1 MiB of JSON; a 256 KiB [`DataChunk`] of file bytes plus its header; either plus the seal
//!   overhead), checked before anything is allocated. [`FrameDecoder`] and [`FrameEncoder`] are
//!   sans-IO; with the `tokio` feature, `read_frame` (`read_frame_into`, reusing a buffer) and
//!   `write_frame` do the same over any
//!   tokio `AsyncRead`/`AsyncWrite`, such as an iroh QUIC stream. File bytes never pass through
//!   JSON.
//! * **Envelope.** [`Frame::seal`] and [`Frame::open`] encrypt a frame with
//!   `tether_crypto::SessionKeys` (layout below).
//!
//! # Wire layout
//!
//! ```text
//! frame         = length: u32 BE (kind byte + payload) | kind: u8 | payload
//! kind          = 0x01 control | 0x02 data | 0x81 sealed control | 0x82 sealed data
//! control       = JSON {"id": u64 (optional), "once": true (optional), "type": "<MessageKind>", "body": {...}}
//!               | binary flags: u8 | id: varint (if flags bit 0) | kind number: varint | postcard body
//! data          = entry_id: 16 B | offset: u64 BE | flags: u8 (bit 0: last) | bytes (<= 256 KiB)
//! sealed        = ciphertext of the plain payload | tag: 16 B | counter: u64 BE
//! ```
//!
//! A sealed frame's associated data is its own five-byte header, so cutting, padding or
//! relabelling it fails authentication; its counter is the nonce, which the session keys accept
//! once and only within their replay window. The counter comes last so sealing works in place.
//!
//! # Versions, unknown kinds and unknown fields
//!
//! The ALPN names the protocol version (`tether/sync/2`, ...). Within a version:
//!
//! * An **unknown message type** is [`MessageError::UnknownMessage`], carrying the type name (cut
//!   to [`limits::MAX_KIND_ECHO_LEN`] bytes). The frame boundary is intact, so the service answers
//!   with an [`ErrorReply`] of code [`ErrorCode::UnknownMessage`] and the same request id, and
//!   carries on. A peer can thus probe for a feature and fall back.
//! * **Unknown fields are ignored**, at every level. A newer peer may add an optional field
//!   without a new ALPN; an older one simply does not see it. Anything that changes the meaning
//!   of an existing field, or makes a new one mandatory, needs a new ALPN version. Missing or
//!   mistyped known fields are errors. Ignoring costs nothing in safety: the frame cap bounds
//!   what is skipped, and serde_json skips nested values without recursion.
//! * An **unknown error code** decodes as [`ErrorCode::Other`].
//! * An **unknown frame kind**, or unknown flag bits in a data frame, is an error that ends the
//!   stream: binary layouts do not grow within a version.
//! * The **binary control payload** is strict (`binary.rs`): unknown flag bits or bytes after
//!   the body are errors, so it does not grow either; a changed layout is a new [`Encoding`],
//!   which the session handshake negotiates. An unknown kind number is
//!   [`MessageError::UnknownMessageNumber`], answered like an unknown JSON type.
//!
//! # Errors
//!
//! One type per operation, each `#[non_exhaustive]`, each saying whose fault it is:
//! [`FrameError`] and [`MessageError`] are the peer's; [`EncodeError`] and [`SealError`] are the
//! caller's; `ReadError` (feature `tokio`) and [`OpenError`] are mostly the peer's and say so.
//! Each sits beside its operation: the framing's in `frame`, the message's in `control`.
//!
//! # Layers
//!
//! The framing (`limits`, `frame`, `codec`, `envelope`, `io`) does not know the message schema:
//! `frame` imports only `limits`. The schema (`hlc`, `message`) and the control payload
//! (`control`, which adds [`ControlMessage::to_frame`] and [`FrameEncoder::push_control`], and
//! `binary` with `encoding` for the binary form) sit on top of it.
//!
//! # Example
//!
//! ```
//! use tether_wire::{
//!     ControlMessage, FrameDecoder, FrameEncoder, FrameKind, Ping, RequestId,
//! };
//!
//! let mut encoder = FrameEncoder::new();
//! let ping = ControlMessage::with_id(RequestId(1), Ping { timestamp_ms: 1_780_000_000_000 });
//! encoder.push_control(&ping)?;
//! let bytes = encoder.take();
//!
//! let mut decoder = FrameDecoder::new();
//! let mut input = &bytes[..];
//! while let Some(frame) = decoder.decode(&mut input)? {
//!     assert_eq!(frame.kind(), FrameKind::Control);
//!     assert_eq!(ControlMessage::decode(frame.payload())?, ping);
//! }
//! decoder.finish()?; // the stream may end here
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod binary;
mod codec;
mod content_hash;
mod control;
mod data;
mod encoding;
mod envelope;
mod frame;
mod hex_bytes;
mod hlc;
#[cfg(feature = "tokio")]
mod io;
pub mod limits;
mod message;

pub use codec::{FrameDecoder, FrameEncoder};
pub use content_hash::ContentHash;
pub use control::{ControlMessage, MessageError, RequestId};
pub use data::DataChunk;
pub use encoding::Encoding;
pub use envelope::{OpenError, SealError};
pub use frame::{
    COUNTER_LEN, DATA_HEADER_LEN, EncodeError, FRAME_HEADER_LEN, Frame, FrameError, FrameKind,
    LimitError, MAX_PAYLOAD_LEN, SEAL_OVERHEAD,
};
pub use hlc::{Hlc, HlcError, MAX_DRIFT_MS};
#[cfg(feature = "tokio")]
pub use io::{ReadError, read_frame, read_frame_into, write_frame};
pub use message::{
    ErrorCode, ErrorReply, FileRequest, FileResponse, LibraryAnnounce, LibraryInfo, LibraryRequest,
    MessageKind, NameUpdate, NetworkMessage, Ping, Pong, SyncEntry, SyncRequest, SyncResponse,
    Text,
};
