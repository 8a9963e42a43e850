//! `NetworkIdentity`: a device's Ed25519 key pair.

use std::fmt;

use ed25519_dalek::{Digest, Sha512, SigningKey};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::{IdentityError, NodeId, Signature, SigningContext};

/// A device's long-term Ed25519 key pair.
///
/// The secret key is the same kind of key iroh uses for an endpoint, so an iroh endpoint built
/// from [`Self::to_secret_bytes`] has [`Self::node_id`] as its endpoint id. The secret is wiped
/// from memory when the identity is dropped, and neither `Debug` nor any error ever shows it.
#[derive(Clone)]
pub struct NetworkIdentity {
    // `SigningKey` zeroizes itself on drop (ed25519-dalek's `zeroize` feature).
    signing_key: SigningKey,
}

impl NetworkIdentity {
    /// Makes a new identity from the given random number generator.
    ///
    /// Pass the operating system's generator in production and a seeded one in tests.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        #[cfg(fuzzing)]
        if crate::danger_fuzzing::stand_ins() {
            // The same draw as `SigningKey::generate`, then the memoised key.
            let mut secret = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(secret.as_mut());
            return Self::from_secret_bytes(&secret);
        }
        Self {
            signing_key: SigningKey::generate(rng),
        }
    }

    /// Restores an identity from its 32 secret bytes.
    pub fn from_secret_bytes(secret: &[u8; 32]) -> Self {
        #[cfg(fuzzing)]
        if crate::danger_fuzzing::stand_ins() {
            return Self {
                signing_key: crate::danger_fuzzing::signing_key(secret),
            };
        }
        Self {
            signing_key: SigningKey::from_bytes(secret),
        }
    }

    /// Restores an identity from stored bytes, which must be exactly 32 long.
    pub fn from_secret_slice(secret: &[u8]) -> Result<Self, IdentityError> {
        let secret: &[u8; 32] = secret
            .try_into()
            .map_err(|_| IdentityError::SecretKeyLength {
                actual: secret.len(),
            })?;
        Ok(Self::from_secret_bytes(secret))
    }

    /// The 32 secret bytes, for storage; wiped when the returned value is dropped.
    pub fn to_secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.signing_key.to_bytes())
    }

    /// This device's public id, equal to its iroh endpoint id.
    pub fn node_id(&self) -> NodeId {
        let bytes = self.signing_key.verifying_key().to_bytes();
        // A verifying key derived from a signing key is always a valid point.
        match NodeId::from_bytes(&bytes) {
            Ok(id) => id,
            Err(_) => unreachable!("a derived Ed25519 public key is a valid point"),
        }
    }

    /// Signs `message` for the purpose named by `context`.
    ///
    /// The signature verifies with [`NodeId::verify`] under the same context only.
    pub fn sign(&self, context: SigningContext, message: &[u8]) -> Signature {
        #[cfg(fuzzing)]
        if crate::danger_fuzzing::stand_ins() {
            return Signature::from_bytes(&crate::danger_fuzzing::signature(
                self.node_id().as_bytes(),
                context.label().as_bytes(),
                message,
            ));
        }
        let signed = self.signing_key.sign_prehashed(
            Sha512::new_with_prefix(message),
            Some(context.label().as_bytes()),
        );
        match signed {
            Ok(signature) => Signature::from_bytes(&signature.to_bytes()),
            // The only error is a context over 255 bytes, which `SigningContext::new` rules out.
            Err(_) => unreachable!("SigningContext guarantees a context of at most 255 bytes"),
        }
    }
}

// The only field, `SigningKey`, wipes itself on drop (ed25519-dalek's `zeroize` feature).
impl zeroize::ZeroizeOnDrop for NetworkIdentity {}

impl fmt::Debug for NetworkIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkIdentity")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}
