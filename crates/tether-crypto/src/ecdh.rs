//! X25519 Diffie-Hellman with ephemeral keys (RFC 7748), on x25519-dalek.

use std::fmt;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;

/// Length in bytes of an X25519 public key, secret key and shared secret.
pub const X25519_LEN: usize = 32;

/// A fresh X25519 key pair, used for exactly one key exchange.
///
/// [`EphemeralKeyPair::diffie_hellman`] consumes the pair, so the secret half cannot be used
/// twice; it is wiped from memory when the pair is dropped. `Debug` shows the public key only.
pub struct EphemeralKeyPair {
    // `StaticSecret` (rather than `EphemeralSecret`) only so that test vectors can set the
    // secret bytes; the consuming API above keeps it single-use. It zeroizes on drop.
    secret: StaticSecret,
    public: EphemeralPublicKey,
}

impl EphemeralKeyPair {
    /// Makes a new key pair from the given random number generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self::from_secret(StaticSecret::random_from_rng(rng))
    }

    /// Makes a key pair from fixed secret bytes, for known-answer tests only.
    ///
    /// Reusing an ephemeral secret destroys forward secrecy; never call this outside tests.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_from_secret_bytes(secret: [u8; X25519_LEN]) -> Self {
        Self::from_secret(StaticSecret::from(secret))
    }

    fn from_secret(secret: StaticSecret) -> Self {
        #[cfg(fuzzing)]
        if tether_identity::danger_fuzzing::stand_ins() {
            let public = EphemeralPublicKey(stand_in::public(&secret.to_bytes()));
            return Self { secret, public };
        }
        let public = EphemeralPublicKey(PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    /// The public half, to send to the peer.
    pub fn public_key(&self) -> EphemeralPublicKey {
        self.public
    }

    /// Computes the shared secret with the peer's public key, consuming this key pair.
    ///
    /// Fails with [`CryptoError::NonContributory`] if the result is all zeros, which happens
    /// exactly when the peer sent a low-order point: the "shared" secret would then be known to
    /// anyone. The check runs in constant time.
    pub fn diffie_hellman(self, peer: &EphemeralPublicKey) -> Result<SharedSecret, CryptoError> {
        #[cfg(fuzzing)]
        let secret = if tether_identity::danger_fuzzing::stand_ins() {
            SharedSecret(stand_in::shared(&self.secret.to_bytes(), &peer.0))
        } else {
            SharedSecret(
                self.secret
                    .diffie_hellman(&PublicKey::from(peer.0))
                    .to_bytes(),
            )
        };
        #[cfg(not(fuzzing))]
        let secret = SharedSecret(
            self.secret
                .diffie_hellman(&PublicKey::from(peer.0))
                .to_bytes(),
        );
        if bool::from(secret.0.ct_eq(&[0u8; X25519_LEN])) {
            return Err(CryptoError::NonContributory);
        }
        Ok(secret)
    }
}

impl fmt::Debug for EphemeralKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EphemeralKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

// The only secret field, `StaticSecret`, zeroizes itself on drop.
impl ZeroizeOnDrop for EphemeralKeyPair {}

/// An X25519 public key as sent on the wire: 32 bytes (a Montgomery u-coordinate).
///
/// Any 32 bytes are accepted here; a low-order key is caught by
/// [`EphemeralKeyPair::diffie_hellman`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EphemeralPublicKey([u8; X25519_LEN]);

impl EphemeralPublicKey {
    /// Wraps 32 bytes received from a peer.
    pub const fn from_bytes(bytes: [u8; X25519_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }

    /// The 32 bytes, by value.
    pub const fn to_bytes(self) -> [u8; X25519_LEN] {
        self.0
    }
}

impl fmt::Debug for EphemeralPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EphemeralPublicKey(")?;
        for byte in &self.0 {
            write!(f, "{byte:02x}")?;
        }
        write!(f, ")")
    }
}

/// The result of an X25519 exchange: secret, never all-zero, wiped on drop.
///
/// Its only use is as input to [`crate::SessionSecrets::derive`]; its bytes are not public.
pub struct SharedSecret([u8; X25519_LEN]);

impl SharedSecret {
    pub(crate) fn as_bytes(&self) -> &[u8; X25519_LEN] {
        &self.0
    }

    /// The raw bytes, for known-answer tests only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_to_bytes(&self) -> [u8; X25519_LEN] {
        self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(..)")
    }
}

impl Drop for SharedSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SharedSecret {}

/// A cheap stand-in for X25519, for fuzzing only (see `tether_identity::danger_fuzzing`):
/// the group is the integers modulo 2^64 under addition, so `public = s·G` and
/// `shared = s·P`, which both sides compute alike. The public key's first 8 bytes carry the
/// element and the rest are zero. Scalars are odd, so the shared value is all zero exactly when
/// the peer sent the element 0 (the stand-in's low-order point): `NonContributory` stays
/// reachable.
#[cfg(fuzzing)]
mod stand_in {
    use sha2::{Digest, Sha256};

    use super::X25519_LEN;

    const GENERATOR: u64 = 0x9e37_79b9_7f4a_7c15;

    fn scalar(secret: &[u8; X25519_LEN]) -> u64 {
        // Odd, so invertible: never the zero scalar, and no element but 0 gives a zero product.
        u64::from_le_bytes(*secret.first_chunk::<8>().unwrap_or(&[0; 8])) | 1
    }

    pub(super) fn public(secret: &[u8; X25519_LEN]) -> [u8; X25519_LEN] {
        let mut public = [0u8; X25519_LEN];
        let element = scalar(secret).wrapping_mul(GENERATOR);
        if let Some(head) = public.first_chunk_mut::<8>() {
            *head = element.to_le_bytes();
        }
        public
    }

    pub(super) fn shared(secret: &[u8; X25519_LEN], peer: &[u8; X25519_LEN]) -> [u8; X25519_LEN] {
        let element = u64::from_le_bytes(*peer.first_chunk::<8>().unwrap_or(&[0; 8]));
        let product = scalar(secret).wrapping_mul(element);
        if product == 0 {
            return [0; X25519_LEN];
        }
        Sha256::new_with_prefix(b"tether/fuzzing/stand-in-x25519")
            .chain_update(product.to_le_bytes())
            .finalize()
            .into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn both_sides_agree() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = EphemeralKeyPair::generate(&mut rng);
        let b = EphemeralKeyPair::generate(&mut rng);
        let (a_pub, b_pub) = (a.public_key(), b.public_key());
        assert_ne!(a_pub, b_pub);
        let ab = a.diffie_hellman(&b_pub).unwrap();
        let ba = b.diffie_hellman(&a_pub).unwrap();
        assert_eq!(ab.as_bytes(), ba.as_bytes());
    }

    #[test]
    fn low_order_points_are_rejected() {
        // Low-order points on Curve25519 (and their non-canonical encodings), from
        // https://cr.yp.to/ecdh.html#validate.
        let mut low_order = vec![[0u8; 32], {
            let mut one = [0u8; 32];
            one[0] = 1;
            one
        }];
        low_order.push(
            hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        low_order.push(
            hex::decode("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157")
                .unwrap()
                .try_into()
                .unwrap(),
        );
        // p - 1, p, p + 1 (p = 2^255 - 19).
        for last in [0xec_u8, 0xed, 0xee] {
            let mut point = [0xff_u8; 32];
            point[0] = last;
            point[31] = 0x7f;
            low_order.push(point);
        }
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        for point in low_order {
            let pair = EphemeralKeyPair::generate(&mut rng);
            let result = pair.diffie_hellman(&EphemeralPublicKey::from_bytes(point));
            assert_eq!(
                result.unwrap_err(),
                CryptoError::NonContributory,
                "{point:02x?}"
            );
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let secret = [0x42u8; 32];
        let pair = EphemeralKeyPair::danger_from_secret_bytes(secret);
        let text = format!("{pair:?}");
        assert!(!text.contains("4242"), "{text}");
        let shared = pair
            .diffie_hellman(&EphemeralPublicKey::from_bytes([9; 32]))
            .unwrap();
        assert_eq!(format!("{shared:?}"), "SharedSecret(..)");
    }
}
