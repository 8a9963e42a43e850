//! Who a Tether device is.
//!
//! A device is its Ed25519 key pair, [`NetworkIdentity`]. The public half, [`NodeId`], is also
//! the device's iroh endpoint id, so the QUIC/TLS handshake already proves which device is on
//! the other end of a connection. On top of the key a device has a stable [`DeviceId`], a
//! [`DeviceName`] and a [`DeviceType`], which it tells peers as [`DeviceInfo`].
//!
//! Signatures are domain separated: each carries a [`SigningContext`], and a signature made for
//! one context never verifies under another.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use tether_identity::{NetworkIdentity, SigningContext};
//!
//! const HELLO: SigningContext = SigningContext::new("tether/v1/doc-example");
//! const OTHER: SigningContext = SigningContext::new("tether/v1/something-else");
//!
//! let identity = NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(7));
//! let signature = identity.sign(HELLO, b"hi");
//! assert!(identity.node_id().verify(HELLO, b"hi", &signature).is_ok());
//! assert!(identity.node_id().verify(OTHER, b"hi", &signature).is_err());
//! ```
//!
//! This crate does no IO; randomness is passed in.

mod chain;
mod context;
#[cfg(fuzzing)]
pub mod danger_fuzzing;
mod device;
mod encoding;
mod error;
mod identity;
mod node_id;
mod signature;

pub use chain::{ErrorChain, error_chain};
#[doc(hidden)]
pub use chain::{
    assert_no_repeated_layer, assert_no_repeated_segment, repeated_layer, repeated_segment,
};
pub use context::SigningContext;
pub use device::{DeviceId, DeviceInfo, DeviceName, DeviceType};
pub use error::{DeviceNameError, IdentityError};
pub use identity::NetworkIdentity;
pub use node_id::NodeId;
pub use signature::Signature;
