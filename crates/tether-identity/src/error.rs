//! The one error type of this crate.

/// What went wrong while parsing, loading or verifying identity data.
///
/// Every variant describes bad input (from a peer, a file or a user); nothing in this crate fails
/// for local reasons. Messages never include secret bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// A stored secret key had the wrong length.
    #[error("a secret key is 32 bytes, this one has {actual}")]
    SecretKeyLength {
        /// How many bytes were given.
        actual: usize,
    },
    /// The bytes are not a valid Ed25519 public key (not a curve point, or the wrong length).
    #[error("not a valid Ed25519 public key")]
    InvalidPublicKey,
    /// A node id in text form was neither 64 hex characters nor 52 base32 characters.
    #[error("a node id is 64 hex or 52 base32 characters")]
    NodeIdText,
    /// A signature was malformed or does not verify for this key, context and message.
    #[error("signature does not verify")]
    BadSignature,
    /// A signature in text or bytes had the wrong length or encoding.
    #[error("a signature is 64 bytes (128 hex characters)")]
    SignatureEncoding,
    /// A device id was not a UUID.
    #[error("a device id is a UUID, e.g. 67e55044-10b1-426f-9247-bb680e5fe0c8")]
    DeviceIdText,
    /// A device name broke one of the naming rules.
    #[error("invalid device name")]
    DeviceName(#[from] DeviceNameError),
    /// A peer's device info claims a public key other than the one its connection proved.
    #[error("device info claims key {claimed} but the connection authenticated {authenticated}")]
    ClaimedKeyMismatch {
        /// The key written in the device info.
        claimed: String,
        /// The key the transport authenticated.
        authenticated: String,
    },
}

/// Why a device name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceNameError {
    /// The name is empty or only whitespace.
    #[error("it is empty")]
    Empty,
    /// The name has more characters than allowed.
    #[error("it has {actual} characters, at most {max} are allowed")]
    TooLong {
        /// Characters in the name.
        actual: usize,
        /// The limit.
        max: usize,
    },
    /// The name starts or ends with whitespace.
    #[error("it starts or ends with whitespace")]
    SurroundingWhitespace,
    /// The name holds a control character (newline, escape, ...).
    #[error("it contains a control character")]
    ControlCharacter,
    /// The name holds a bidirectional-text override, which can make one name look like another.
    #[error("it contains a bidirectional-text control character")]
    BidiControl,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{assert_no_repeated_layer, error_chain};

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let error = IdentityError::DeviceName(DeviceNameError::Empty);
        assert_no_repeated_layer(&error);
        assert_eq!(error_chain(&error), "invalid device name: it is empty");
    }
}
