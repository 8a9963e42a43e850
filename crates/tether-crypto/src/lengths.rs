//! The byte lengths that several parts of the crate share: keys, tags, nonces, transfer ids.

/// Length in bytes of a SHA-256 output, an HKDF-SHA256 pseudorandom key and every derived key.
pub const KEY_LEN: usize = 32;

/// Length in bytes of an authentication tag (both ciphers).
pub const TAG_LEN: usize = 16;

/// Length in bytes of a nonce (both ciphers).
pub const NONCE_LEN: usize = 12;

/// Length in bytes of a transfer id.
pub const TRANSFER_ID_LEN: usize = 16;
