//! The one-byte enumerations of the pairing messages: which message a byte string is
//! ([`MessageKind`]), which credential a session proves ([`CredentialKind`]) and why a side
//! ended a session ([`AbortReason`]). Their byte values are part of the wire format
//! ([`crate::PairingMessage`]) and never change.

use std::fmt;

/// Which pairing message a byte string is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// Joiner → initiator: opens a session with the joiner's PAKE message.
    Hello,
    /// Initiator → joiner: the initiator's PAKE message.
    Reply,
    /// Joiner → initiator: the joiner's key confirmation and sealed device info.
    JoinerConfirm,
    /// Initiator → joiner: the initiator's key confirmation, sealed device info and signature.
    InitiatorConfirm,
    /// Joiner → initiator: the joiner's sealed transcript signature.
    JoinerSignature,
    /// Either way: the sender ended the session.
    Abort,
}

impl MessageKind {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::Hello => 1,
            Self::Reply => 2,
            Self::JoinerConfirm => 3,
            Self::InitiatorConfirm => 4,
            Self::JoinerSignature => 5,
            Self::Abort => 6,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether a session is proving a word code or a ticket's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CredentialKind {
    /// A [`crate::PairingCode`].
    Code,
    /// A [`crate::PairingTicket`].
    Ticket,
}

impl CredentialKind {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::Code => 1,
            Self::Ticket => 2,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Code),
            2 => Some(Self::Ticket),
            _ => None,
        }
    }
}

/// Why a side ended a session, as told to the other side in an `Abort` message.
///
/// An abort is only ever a courtesy: it makes the other side fail sooner and with the right
/// words. It cannot make anything succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AbortReason {
    /// The key confirmation failed: the codes differ.
    WrongCode,
    /// The code expired.
    Expired,
    /// The code was already used.
    CodeUsed,
    /// The code was burned by an earlier wrong attempt.
    CodeBurned,
    /// The initiator is refusing new attempts for now.
    Busy,
    /// The hello named another code's slot.
    WrongRendezvous,
    /// The other side sent something the protocol does not allow.
    ProtocolError,
    /// The user cancelled.
    Cancelled,
}

impl AbortReason {
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::WrongCode => 1,
            Self::Expired => 2,
            Self::CodeUsed => 3,
            Self::CodeBurned => 4,
            Self::Busy => 5,
            Self::WrongRendezvous => 6,
            Self::ProtocolError => 7,
            Self::Cancelled => 8,
        }
    }

    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::WrongCode,
            2 => Self::Expired,
            3 => Self::CodeUsed,
            4 => Self::CodeBurned,
            5 => Self::Busy,
            6 => Self::WrongRendezvous,
            7 => Self::ProtocolError,
            8 => Self::Cancelled,
            _ => return None,
        })
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongCode => "the pairing code did not match",
            Self::Expired => "the pairing code expired",
            Self::CodeUsed => "the pairing code was already used",
            Self::CodeBurned => "the pairing code was cancelled after a wrong attempt",
            Self::Busy => "busy",
            Self::WrongRendezvous => "no such pairing code here",
            Self::ProtocolError => "protocol error",
            Self::Cancelled => "cancelled",
        })
    }
}
