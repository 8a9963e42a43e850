//! `Signature`: 64 bytes made by a device key for one [`crate::SigningContext`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{IdentityError, encoding};

/// An Ed25519ph signature, made by [`crate::NetworkIdentity::sign`].
///
/// Holding one proves nothing until [`crate::NodeId::verify`] accepts it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Length in bytes.
    pub const LENGTH: usize = 64;

    /// Wraps 64 bytes; whether they are a valid signature is decided by verification.
    pub fn from_bytes(bytes: &[u8; 64]) -> Self {
        Self(*bytes)
    }

    /// Wraps a slice that must be 64 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| IdentityError::SignatureEncoding)
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl FromStr for Signature {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        encoding::decode_hex::<64>(text)
            .map(Self)
            .ok_or(IdentityError::SignatureEncoding)
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        encoding::deserialize::<D, 64>(deserializer).map(Self)
    }
}
