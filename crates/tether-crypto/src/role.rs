//! `Role`: which end of a session a party is.

/// Which end of a session a party is: the one that sent the first handshake message, or the
/// one that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sent the first handshake message.
    Initiator,
    /// Answered it.
    Responder,
}
