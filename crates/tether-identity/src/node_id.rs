//! `NodeId`: a device's public key, which is also its iroh endpoint id.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Digest, Sha512, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{IdentityError, Signature, SigningContext, encoding};

/// The public half of a device's Ed25519 key.
///
/// It is the same 32 bytes as the iroh endpoint id of an endpoint built from the same secret
/// key, and it prints the same way: 64 lowercase hex characters. Parsing also accepts the
/// base32 form iroh accepts. A `NodeId` always holds a valid curve point.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId([u8; 32]);

impl NodeId {
    /// Length in bytes.
    pub const LENGTH: usize = 32;

    /// Reads a node id from its 32 bytes, checking that they are an Ed25519 public key.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, IdentityError> {
        #[cfg(fuzzing)]
        if crate::danger_fuzzing::stand_ins() {
            return crate::danger_fuzzing::is_public_key(bytes)
                .then_some(Self(*bytes))
                .ok_or(IdentityError::InvalidPublicKey);
        }
        VerifyingKey::from_bytes(bytes).map_err(|_| IdentityError::InvalidPublicKey)?;
        Ok(Self(*bytes))
    }

    /// Reads a node id from a slice that must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdentityError> {
        let bytes: &[u8; 32] = bytes
            .try_into()
            .map_err(|_| IdentityError::InvalidPublicKey)?;
        Self::from_bytes(bytes)
    }

    /// The 32 bytes of the key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short form for logs and humans: the first 10 hex characters.
    pub fn fmt_short(&self) -> String {
        let mut text = self.to_string();
        text.truncate(10);
        text
    }

    /// Checks a signature made by [`crate::NetworkIdentity::sign`] with the same context.
    ///
    /// Verification is strict (RFC 8032 with small-order and malleability checks), so a
    /// signature has exactly one valid encoding.
    pub fn verify(
        &self,
        context: SigningContext,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), IdentityError> {
        #[cfg(fuzzing)]
        if crate::danger_fuzzing::stand_ins() {
            let expected =
                crate::danger_fuzzing::signature(&self.0, context.label().as_bytes(), message);
            return (signature.to_bytes() == expected)
                .then_some(())
                .ok_or(IdentityError::BadSignature);
        }
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| IdentityError::InvalidPublicKey)?;
        let signature = ed25519_dalek::Signature::from_bytes(&signature.to_bytes());
        key.verify_prehashed_strict(
            Sha512::new_with_prefix(message),
            Some(context.label().as_bytes()),
            &signature,
        )
        .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.fmt_short())
    }
}

impl FromStr for NodeId {
    type Err = IdentityError;

    /// Parses 64 hex characters (iroh's display form) or 52 base32 characters.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes = if text.len() == 64 {
            encoding::decode_hex::<32>(text).ok_or(IdentityError::NodeIdText)?
        } else {
            let upper = text.to_ascii_uppercase();
            let mut out = [0u8; 32];
            let base32 = data_encoding::BASE32_NOPAD;
            if base32.decode_len(upper.len()) != Ok(32) {
                return Err(IdentityError::NodeIdText);
            }
            base32
                .decode_mut(upper.as_bytes(), &mut out)
                .map_err(|_| IdentityError::NodeIdText)?;
            out
        };
        Self::from_bytes(&bytes)
    }
}

impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes = encoding::deserialize::<D, 32>(deserializer)?;
        Self::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}
