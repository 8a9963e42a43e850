//! Session cryptography for Tether.
//!
//! Two devices that have paired share a [`PairingSecret`]. Each time they connect, a
//! [`handshake`] exchanges fresh X25519 keys ([`EphemeralKeyPair`]), authenticates both
//! device identities with Ed25519 signatures, and runs an HKDF-SHA256 key schedule
//! ([`SessionSecrets`]) salted with the pairing secret. The result, [`SessionKeys`], seals and
//! opens frames with ChaCha20-Poly1305: one key per direction, counters as nonces, a replay
//! window, rekeying every `2^32` frames, and per-transfer keys ([`TransferSecret`]) under a
//! [`TransferCipher`] the two devices agree on per transfer (ChaCha20-Poly1305 or AES-256-GCM).
//!
//! The crate does no IO and reads no clock; randomness is passed in. Every secret is wiped
//! from memory on drop and no `Debug` output or error shows key material.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use tether_crypto::handshake::{Initiator, Responder};
//! use tether_crypto::PairingSecret;
//! use tether_identity::NetworkIdentity;
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(1);
//! let (alice, bob) = (NetworkIdentity::generate(&mut rng), NetworkIdentity::generate(&mut rng));
//! let secret = PairingSecret::from_bytes([7; 32]); // agreed when the devices paired
//!
//! // Bob, who accepted the connection, speaks first.
//! let (bob_state, hello) = Responder::hello(&mut rng);
//! let (alice_state, init) = Initiator::start(&mut rng, &alice, bob.node_id(), &secret, &hello)?;
//! let (mut bob_keys, response) = bob_state.receive(&bob, alice.node_id(), &secret, &init)?;
//! let mut alice_keys = alice_state.receive(&response)?;
//!
//! let mut frame = b"hello bob".to_vec();
//! let counter = alice_keys.seal_in_place(b"header", &mut frame)?;
//! bob_keys.open_in_place(counter, b"header", &mut frame)?;
//! assert_eq!(frame, b"hello bob");
//! # Ok::<(), tether_crypto::CryptoError>(())
//! ```

mod aead;
mod cipher;
mod ecdh;
mod error;
pub mod handshake;
mod kdf;
mod labels;
mod lengths;
mod replay;
mod role;
mod schedule;
mod session;
mod traffic;
mod transfer;

#[doc(hidden)]
#[cfg(any(test, feature = "danger"))]
pub use aead::{danger_open_with_nonce, danger_seal_with_nonce};
pub use cipher::TransferCipher;
pub use ecdh::{EphemeralKeyPair, EphemeralPublicKey, SharedSecret, X25519_LEN};
pub use error::CryptoError;
pub use kdf::{HKDF_MAX_OUTPUT, Prk};
pub use lengths::{KEY_LEN, NONCE_LEN, TAG_LEN, TRANSFER_ID_LEN};
pub use replay::REPLAY_WINDOW;
pub use role::Role;
pub use schedule::{PairingSecret, SessionSecrets, Transcript};
pub use session::{
    INTEGRITY_LIMIT, MAX_EPOCH_LOOKAHEAD, MIN_REKEY_INTERVAL_LOG2, REKEY_INTERVAL_LOG2, SessionKeys,
};
pub use transfer::TransferSecret;
