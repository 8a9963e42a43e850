//! Why a transfer stops: the [`Abort`] message body and its [`AbortCode`], and how a peer's free
//! text is cut to size. A leaf: the errors and the protocol both use it, it uses neither.

use serde::{Deserialize, Serialize};

/// Longest [`Abort::message`] or `Decline::message`, in bytes: longer text from a peer is cut
/// to it as it is decoded.
pub(crate) const MAX_MESSAGE_LEN: usize = 1024;

/// Body of [`Message::Abort`](crate::protocol::Message::Abort).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Abort {
    /// Why, for programs.
    pub(crate) code: AbortCode,
    /// Why, for people; untrusted text, cut to [`MAX_MESSAGE_LEN`] bytes when decoded.
    #[serde(deserialize_with = "cut_on_decode")]
    pub(crate) message: String,
}

/// Why a transfer was declined or aborted. On the wire a `snake_case` string; a code this
/// version does not know reads as [`AbortCode::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AbortCode {
    /// The user or policy refused the transfer.
    Declined,
    /// The transfer was cancelled.
    Cancelled,
    /// A source file changed while it was being sent.
    SourceChanged,
    /// The receiver has no room for the files.
    NoSpace,
    /// The offer is over the receiver's limits or not acceptable.
    Refused,
    /// The peer broke the protocol.
    Protocol,
    /// The side that aborted failed for its own reasons.
    Internal,
    /// Nothing moved for longer than the side that aborted waits; the transfer can resume.
    Stalled,
    /// The receiver is already answering as many offers from this device as it takes at once;
    /// offer again once one of them is answered.
    Busy,
    /// The receiver takes only encrypted transfers, and the offer was plain.
    EncryptionRequired,
    /// Answers a pull request: the sharer shares no entry with that id with the requesting
    /// device (or shares nothing at all).
    NotShared,
    /// The transfer would pass (or reached) a bandwidth quota the side that refused keeps for
    /// the other device; it may be sent again once the quota's period resets or it is raised
    /// (what was received is kept, so it resumes). Older versions read it as [`Self::Other`].
    BandwidthQuota,
    /// A code this version does not know. Never sent.
    #[serde(other)]
    Other,
}

/// Cuts untrusted text to [`MAX_MESSAGE_LEN`] bytes on a character boundary.
pub(crate) fn cut_message(text: &str) -> String {
    let mut end = text.len().min(MAX_MESSAGE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// Reads a peer's free text, cut to [`MAX_MESSAGE_LEN`] bytes (the frame cap bounds what is
/// read before the cut).
pub(crate) fn cut_on_decode<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    if text.len() <= MAX_MESSAGE_LEN {
        return Ok(text);
    }
    Ok(cut_message(&text))
}
