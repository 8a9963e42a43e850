//! The one error type of this crate.

use crate::lengths::TAG_LEN;

/// What went wrong in a cryptographic operation.
///
/// Variants fall in three groups: what the peer (or an attacker on the path) did wrong, what the
/// caller did wrong, and local limits. No message and no `Debug` output ever contains key
/// material; counters and lengths are not secret.
///
/// Errors say *that* authentication failed, never *why* beyond what the caller needs to react
/// (drop the frame, or close the session): a forged frame, a corrupted frame and a frame sealed
/// under another key all give [`CryptoError::Authentication`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    // --- The peer sent something bad. ---
    /// The X25519 exchange gave the all-zero shared secret: the peer's ephemeral key is a
    /// low-order point, so the result would not depend on our secret.
    #[error("the peer's ephemeral key is a low-order point (non-contributory key exchange)")]
    NonContributory,

    /// A frame did not authenticate: it was forged, corrupted, or sealed under another key or
    /// with other associated data or another counter.
    #[error("frame failed authentication")]
    Authentication,

    /// A frame carried a counter that was already accepted (a replay or a duplicate).
    #[error("frame counter {counter} was already received")]
    Replayed {
        /// The counter the frame carried.
        counter: u64,
    },

    /// A frame carried a counter older than the replay window.
    #[error("frame counter {counter} is older than the replay window")]
    TooOld {
        /// The counter the frame carried.
        counter: u64,
    },

    /// A frame carried a counter so far ahead that it would need keys more than
    /// [`crate::MAX_EPOCH_LOOKAHEAD`] rekey epochs ahead of the current one (or `u64::MAX`,
    /// which is never used).
    #[error("frame counter {counter} is too far ahead of the current key epoch")]
    TooFarAhead {
        /// The counter the frame carried.
        counter: u64,
    },

    /// A sealed frame is shorter than its authentication tag.
    #[error("sealed frame of {len} bytes is shorter than the {TAG_LEN}-byte tag")]
    Truncated {
        /// The length of the frame.
        len: usize,
    },

    /// A handshake message had the wrong length for its type.
    #[error("handshake message is {actual} bytes, expected {expected}")]
    MessageLength {
        /// The length this message type has.
        expected: usize,
        /// The length that arrived.
        actual: usize,
    },

    /// A handshake message started with the wrong type byte.
    #[error("handshake message type {found:#04x}, expected {expected:#04x}")]
    MessageType {
        /// The type byte of the expected message.
        expected: u8,
        /// The type byte that arrived.
        found: u8,
    },

    /// The peer's handshake signature does not verify for the node id we expected.
    #[error("handshake signature does not verify for the expected peer")]
    Signature,

    /// The handshake key confirmation failed: the two devices do not share the same pairing
    /// secret, or they disagree about the transcript (a tampered message, or another peer id).
    #[error("handshake key confirmation failed")]
    KeyConfirmation,

    /// The initiator chose an encoding the responder's hello did not offer (or chose one when
    /// no offer was made).
    #[error("the initiator chose encoding {chosen}, which was not offered")]
    UnofferedEncoding {
        /// The id the initiator chose.
        chosen: u8,
    },

    // --- The caller asked for something impossible. ---
    /// Transfer keys for this transfer id were already derived from this session; deriving
    /// them twice would reuse nonces.
    #[error("transfer keys for this transfer id were already derived in this session")]
    TransferIdReused,

    /// An HKDF output length above 255 × 32 bytes was requested.
    #[error("HKDF-SHA256 output of {len} bytes requested, the maximum is 8160")]
    HkdfLength {
        /// The requested length.
        len: usize,
    },

    /// A message and its associated data are longer than these keys seal or open
    /// ([`crate::TransferCipher::max_message_len`]).
    #[error("message too long for these keys")]
    MessageTooLong,

    // --- Local limits. ---
    /// Every counter of this direction has been used; a new session is needed.
    #[error("sending counters are exhausted; start a new session")]
    CounterExhausted,

    /// Too many frames on this session failed authentication; the receiver refuses to try
    /// more (see [`crate::INTEGRITY_LIMIT`]). Close the session.
    #[error("too many forged frames on this session; it must be closed")]
    IntegrityLimit,
}
