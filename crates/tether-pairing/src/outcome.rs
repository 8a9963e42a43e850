//! What a successful handshake gives each side: `Paired` and its `VerificationCode`.

use std::fmt;

use tether_crypto::PairingSecret;
use tether_identity::{DeviceInfo, NodeId};

/// A finished pairing, as seen from one side.
///
/// The peer proved knowledge of the code (key confirmation), holds the key of `peer` (its
/// transcript signature, and the transport's authentication), and claims nothing about itself
/// that contradicts that (its device info's key is `peer`). Store `peer`, `peer_info` and the
/// pairing secret; later sessions derive their keys from the secret (see `tether-crypto`).
#[derive(Debug)]
pub struct Paired {
    peer: NodeId,
    peer_info: DeviceInfo,
    secret: PairingSecret,
    verification_code: VerificationCode,
}

impl Paired {
    pub(crate) fn new(
        peer: NodeId,
        peer_info: DeviceInfo,
        secret: PairingSecret,
        verification_code: VerificationCode,
    ) -> Self {
        Self {
            peer,
            peer_info,
            secret,
            verification_code,
        }
    }

    /// The peer's node id, as authenticated by the transport and checked by the handshake.
    pub fn peer(&self) -> NodeId {
        self.peer
    }

    /// What the peer says about itself; its `public_key` equals [`Self::peer`].
    pub fn peer_info(&self) -> &DeviceInfo {
        &self.peer_info
    }

    /// The 32-byte secret both sides now share, wiped on drop.
    pub fn pairing_secret(&self) -> &PairingSecret {
        &self.secret
    }

    /// The short code both sides can show for users who want to compare.
    pub fn verification_code(&self) -> VerificationCode {
        self.verification_code
    }

    /// All parts, for storing.
    pub fn into_parts(self) -> (NodeId, DeviceInfo, PairingSecret, VerificationCode) {
        (
            self.peer,
            self.peer_info,
            self.secret,
            self.verification_code,
        )
    }
}

/// Six digits derived from the whole transcript, shown as `123 456` on both devices.
///
/// Two devices that paired with each other show the same digits. A device in the middle that
/// guessed the code would run two handshakes with different transcripts, so the two screens
/// would match only by chance (one in a million). Comparing is optional: the code alone is
/// what the security argument rests on.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationCode(u32);

impl VerificationCode {
    pub(crate) fn from_number(number: u32) -> Self {
        Self(number % 1_000_000)
    }

    /// The number, below 1 000 000.
    pub fn number(self) -> u32 {
        self.0
    }
}

impl fmt::Display for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerificationCode({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_six_digits() {
        assert_eq!(VerificationCode::from_number(42).to_string(), "000 042");
        assert_eq!(
            VerificationCode::from_number(123_456).to_string(),
            "123 456"
        );
        assert_eq!(VerificationCode::from_number(1_999_999).number(), 999_999);
    }
}
