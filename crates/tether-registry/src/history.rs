//! The transfer history: what this device sent and received, kept in `secrets.redb` beside the
//! paired devices, sealed like them, and bounded in number.
//!
//! The registry stores each entry as opaque bytes (the facade's JSON of a transfer record)
//! with the peer's node id, under a sequence number that grows with every entry. The value
//! stored for a number is
//!
//! ```text
//! 1 byte   entry format (1)
//! 12 bytes nonce (random per entry)
//! n bytes  ChaCha20-Poly1305 ciphertext of: peer node id (32 bytes) ‖ body
//! 16 bytes tag
//! ```
//!
//! with associated data `"tether/v1/registry/transfer-history" ‖ entry format ‖ number (u64
//! big-endian)`, so an entry cannot be moved to another number. Who a device exchanged files
//! with, and when, is as private as its list of devices: the peer's node id is inside the
//! ciphertext too.

use tether_identity::NodeId;

use crate::StorageKey;
use crate::sealed_entry;

/// How many entries the history keeps by default; adding one more drops the oldest.
pub const MAX_HISTORY: usize = 10_000;

/// The longest body an entry may have, in bytes.
pub const MAX_HISTORY_BODY: usize = 16 * 1024;

/// One entry of the transfer history, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// Its number: larger is newer.
    pub id: u64,
    /// The device at the other end of the transfer.
    pub node_id: NodeId,
    /// What the caller stored (the facade: a transfer record's JSON).
    pub body: Vec<u8>,
}

const AAD_LABEL: &[u8] = b"tether/v1/registry/transfer-history";
pub(crate) use crate::sealed_entry::NONCE_LEN;

/// Seals an entry under `nonce` (fresh random bytes for every write); the caller bounds
/// `body`. The layout is [`crate::sealed_entry`]'s.
pub(crate) fn seal(
    key: &StorageKey,
    nonce: [u8; NONCE_LEN],
    id: u64,
    node_id: &NodeId,
    body: &[u8],
) -> Vec<u8> {
    sealed_entry::seal(AAD_LABEL, key, nonce, id, node_id, body)
}

/// Opens the value stored under `id`; `None` if it does not open.
pub(crate) fn open(key: &StorageKey, id: u64, value: &[u8]) -> Option<HistoryEntry> {
    let (node_id, body) = sealed_entry::open(AAD_LABEL, key, id, value)?;
    Some(HistoryEntry { id, node_id, body })
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;
    use zeroize::Zeroizing;

    use super::*;

    fn key(byte: u8) -> StorageKey {
        StorageKey::from_bytes(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn an_entry_opens_under_its_number_and_key_only() {
        let node = NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(3)).node_id();
        let sealed = seal(&key(1), [7; NONCE_LEN], 42, &node, b"{\"files\":3}");
        let opened = open(&key(1), 42, &sealed).unwrap();
        assert_eq!(opened.node_id, node);
        assert_eq!(opened.body, b"{\"files\":3}");
        // Nothing readable: neither the body nor the node id.
        assert!(!sealed.windows(5).any(|w| w == b"files"));
        assert!(!sealed.windows(32).any(|w| w == node.as_bytes()));
        assert!(open(&key(2), 42, &sealed).is_none(), "another key");
        assert!(open(&key(1), 43, &sealed).is_none(), "another number");
        for index in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[index] ^= 1;
            assert!(open(&key(1), 42, &bad).is_none(), "byte {index} flipped");
        }
        assert!(open(&key(1), 42, &sealed[..20]).is_none(), "cut short");
    }
}
