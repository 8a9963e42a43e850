//! Errors, one enum per operation, split by whose fault a failure is.
//!
//! - [`PairingError`] ends a handshake. [`PairingError::WrongCode`], [`PairingError::Expired`],
//!   [`PairingError::CodeUsed`] and [`PairingError::CodeBurned`] are what a user needs to hear;
//!   [`Misbehavior`] says what a peer did wrong; [`Refusal`] is the initiator protecting itself;
//!   [`UsageError`] is the caller's bug.
//! - [`CodeError`] and [`TicketError`] are about text a user typed or pasted.
//! - [`MessageError`] is a pairing message that does not decode.
//!
//! Errors name what went wrong, never a secret, a key or which part of a MAC failed.

use std::fmt;

use crate::kinds::{AbortReason, MessageKind};

/// Why a pairing handshake ended without pairing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairingError {
    /// The two sides did not hold the same code (or ticket): a typo, a code for another
    /// device, or someone in the middle. The code is now burned on the initiator.
    #[error(
        "the pairing code did not match; check it and try again with a new code \
         (if you typed it correctly, another device may be interfering)"
    )]
    WrongCode,
    /// The code's lifetime ended before the handshake finished.
    #[error("the pairing code has expired; create a new one")]
    Expired,
    /// The code was already used by a device that knew it; codes are single use.
    #[error("this pairing code has already been used; create a new one")]
    CodeUsed,
    /// A wrong code was tried against this code, so it was cancelled.
    #[error(
        "this pairing code was cancelled after a wrong attempt; create a new one \
         (if nobody mistyped it, another device may have tried to guess it)"
    )]
    CodeBurned,
    /// The initiator is not taking new attempts right now.
    #[error("pairing refused: {0}")]
    Refused(Refusal),
    /// The peer sent something the protocol does not allow.
    #[error("the other device broke the pairing protocol")]
    PeerMisbehaved(#[from] Misbehavior),
    /// The peer ended the handshake and said why.
    #[error("the other device ended pairing: {0}")]
    PeerAborted(AbortReason),
    /// The caller used the API wrongly; no message from the peer caused this.
    #[error("pairing API misuse")]
    Usage(#[from] UsageError),
    /// A local invariant failed: a bug in this crate or a dependency, never the peer's doing.
    #[error("internal pairing error: {0}")]
    Internal(&'static str),
}

/// Why the initiator turned an attempt away before any cryptography ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// As many handshakes as allowed are already in progress.
    #[error("{max} pairing attempts are already in progress")]
    TooManyPending {
        /// The configured limit.
        max: usize,
    },
    /// Too many attempts started in the last minute.
    #[error("more than {max_per_minute} pairing attempts in the last minute")]
    RateLimited {
        /// The configured limit.
        max_per_minute: usize,
    },
    /// The initiator said it is busy (seen by the joiner).
    #[error("the other device is busy with other pairing attempts; try again shortly")]
    InitiatorBusy,
}

/// What a peer did that the protocol does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misbehavior {
    /// A message did not decode.
    #[error("malformed message")]
    Malformed(#[from] MessageError),
    /// A well-formed message arrived at the wrong point of the handshake.
    #[error("expected {expected}, received {received}")]
    UnexpectedMessage {
        /// What this side was waiting for.
        expected: &'static str,
        /// What arrived.
        received: MessageKind,
    },
    /// A message named a session that is not in progress with this peer (for example one
    /// replayed from an earlier session).
    #[error("message for a session that is not in progress")]
    UnknownSession,
    /// A hello for another code's rendezvous slot, or for a ticket when a code is active (or
    /// the reverse).
    #[error("the hello is for a different code or ticket")]
    WrongRendezvous,
    /// The PAKE message is not a valid group element of the right kind.
    #[error("invalid PAKE message")]
    InvalidPakeMessage,
    /// An encrypted payload did not decrypt under the session key.
    #[error("an encrypted payload failed authentication")]
    SealedPayload,
    /// The device info inside the handshake is not valid.
    #[error("invalid device info")]
    InvalidDeviceInfo,
    /// The device info claims a key other than the one the transport authenticated.
    #[error("the device info claims a key other than the connection's authenticated endpoint id")]
    ClaimedKeyMismatch,
    /// The device info's name reads as a node-id or device-id prefix, so the device could pass
    /// for another one where devices are picked by name or id.
    #[error(
        "its name {name:?} reads like a device id, so it could pass for another device; \
         it must be renamed before it can pair"
    )]
    IdLikeName {
        /// The name it brought.
        name: String,
    },
    /// The transcript signature does not verify with the peer's key.
    #[error("the transcript signature does not verify")]
    BadSignature,
}

/// The caller used the API in a way it does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// The local device info names a key other than the local identity's.
    #[error("the local device info's public key is not the local identity's node id")]
    DeviceInfoKeyMismatch,
    /// The local device info does not fit in a pairing message.
    #[error("the local device info is too large to send ({len} bytes, at most {max})")]
    DeviceInfoTooLarge {
        /// Its encoded length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer's node id is this device's own.
    #[error("a device cannot pair with itself")]
    PeerIsSelf,
    /// A configuration value is out of range.
    #[error("invalid pairing configuration: {0}")]
    InvalidConfig(&'static str),
}

/// Why a pairing message did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The message ended before a field did.
    #[error("message is truncated")]
    Truncated,
    /// The message is longer than any pairing message may be.
    #[error("message has {len} bytes, at most {max} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message is for a protocol version this build does not speak.
    #[error("unsupported pairing protocol version {0}")]
    UnsupportedVersion(u8),
    /// The message type byte is not one we know.
    #[error("unknown pairing message type {0}")]
    UnknownKind(u8),
    /// A field holds a value the protocol does not allow.
    #[error("invalid field: {0}")]
    InvalidField(&'static str),
    /// Bytes follow the end of the message.
    #[error("unexpected bytes after the message")]
    TrailingBytes,
}

/// Why a pairing code did not parse.
///
/// [`CodeError::UnknownWord`] lists words close to one the user typed. Show it to the user;
/// do not log it, since it narrows down a secret word.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// The text is far longer than any code.
    #[error("that is too long to be a pairing code (at most {max} characters)")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// The code has the wrong number of words.
    #[error("a pairing code has {expected} words, this has {found}")]
    WordCount {
        /// Words in a code.
        expected: usize,
        /// Words found.
        found: usize,
    },
    /// A word is not on the word list. Nothing was sent, so no attempt was spent.
    #[error("word {position} is not a code word{}", SuggestionList(.suggestions))]
    UnknownWord {
        /// Which word, counting from 1.
        position: usize,
        /// The closest words on the list, closest first; empty if none is close.
        suggestions: Vec<&'static str>,
    },
}

impl fmt::Debug for CodeError {
    // Same as Display: the derived Debug would be no more informative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeError({self})")
    }
}

struct SuggestionList<'a>(&'a [&'static str]);

impl fmt::Display for SuggestionList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut words = self.0.iter();
        if let Some(first) = words.next() {
            write!(f, "; did you mean \"{first}\"")?;
            for word in words {
                write!(f, " or \"{word}\"")?;
            }
            f.write_str("?")?;
        }
        Ok(())
    }
}

/// Why a pairing ticket did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// The text does not start with `tether1`.
    #[error("a pairing ticket starts with \"tether1\"")]
    MissingPrefix,
    /// The text or its bytes are longer than any ticket.
    #[error("that is too long to be a pairing ticket")]
    TooLong,
    /// The text is not base32.
    #[error("the ticket contains characters that are not part of a ticket")]
    Encoding,
    /// The checksum does not match: the ticket was cut short or altered when copied.
    #[error("the ticket is damaged (checksum mismatch); copy it again")]
    Checksum,
    /// The ticket is from a newer version of Tether.
    #[error("unsupported ticket version {0}; update Tether")]
    UnsupportedVersion(u8),
    /// The ticket ended before a field did.
    #[error("the ticket is truncated")]
    Truncated,
    /// Bytes follow the end of the ticket.
    #[error("unexpected bytes after the ticket")]
    TrailingBytes,
    /// The node id is not a valid public key.
    #[error("the ticket's node id is not a valid key")]
    InvalidNodeId,
    /// The relay URL is empty, not http(s), or contains spaces or control characters.
    #[error("the ticket's relay URL is not a valid http(s) URL")]
    InvalidRelayUrl,
    /// More direct addresses than a ticket may carry.
    #[error("a ticket carries at most {max} direct addresses")]
    TooManyAddresses {
        /// The limit.
        max: usize,
    },
    /// An address is neither IPv4 nor IPv6.
    #[error("the ticket holds an address of unknown type")]
    InvalidAddress,
    /// The slot is not a word-list index.
    #[error("the ticket's slot is out of range")]
    InvalidSlot,
}

/// A handshake step that failed: the error for this side, and the message (an abort) to send
/// so that the peer's side ends with a matching error instead of waiting for a timeout.
///
/// After a failure the session is over; send [`Failure::message_for_peer`] if there is one,
/// then close the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    error: PairingError,
    message_for_peer: Option<Vec<u8>>,
}

impl Failure {
    pub(crate) fn new(error: PairingError, message_for_peer: Option<Vec<u8>>) -> Self {
        Self {
            error,
            message_for_peer,
        }
    }

    /// Why the handshake ended.
    pub fn error(&self) -> &PairingError {
        &self.error
    }

    /// Bytes to send to the peer before closing, if any.
    pub fn message_for_peer(&self) -> Option<&[u8]> {
        self.message_for_peer.as_deref()
    }

    /// The error, dropping the message for the peer.
    pub fn into_error(self) -> PairingError {
        self.error
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

/// Shows as its error does, so its source is the error's source (not the error itself, which
/// would print the same text twice in a chain).
impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let malformed = || Misbehavior::Malformed(MessageError::Truncated);
        let errors: Vec<Box<dyn std::error::Error>> = vec![
            Box::new(PairingError::PeerMisbehaved(malformed())),
            Box::new(PairingError::Usage(UsageError::PeerIsSelf)),
            Box::new(malformed()),
            Box::new(Failure::new(
                PairingError::PeerMisbehaved(malformed()),
                None,
            )),
            Box::new(Failure::new(PairingError::WrongCode, None)),
        ];
        for error in &errors {
            assert_no_repeated_layer(error.as_ref());
        }
        assert_eq!(
            error_chain(&Failure::new(
                PairingError::PeerMisbehaved(malformed()),
                None
            )),
            "the other device broke the pairing protocol: malformed message: message is truncated"
        );
    }
}
