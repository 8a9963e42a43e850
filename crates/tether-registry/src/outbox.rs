//! The outbox: sends queued for devices that were not reachable, kept in `secrets.redb` until
//! they are delivered or cancelled, sealed like the paired devices, and bounded in number.
//!
//! The registry stores each entry as opaque bytes (the facade's JSON: the paths, the options,
//! when it was queued, its attempts and last error) with the device's node id, under a number
//! that is never given twice (the next one is kept in `tether_meta` as `"outbox_next"`). The
//! value stored for a number is
//!
//! ```text
//! 1 byte   entry format (1)
//! 12 bytes nonce (random per write)
//! n bytes  ChaCha20-Poly1305 ciphertext of: device node id (32 bytes) ‖ body
//! 16 bytes tag
//! ```
//!
//! with associated data `"tether/v1/registry/outbox" ‖ entry format ‖ number (u64
//! big-endian)`, so an entry cannot be moved to another number. Which files are on their way
//! to which device is as private as the list of devices: the node id is inside the ciphertext.

use tether_identity::NodeId;

use crate::StorageKey;
use crate::sealed_entry;

/// The most entries the outbox holds; queueing one more is refused
/// ([`crate::RegistryError::OutboxFull`]) until one is delivered or cancelled.
pub const MAX_OUTBOX: usize = 1_000;

/// The longest body an entry may have, in bytes.
pub const MAX_OUTBOX_BODY: usize = 64 * 1024;

/// One queued send, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OutboxRecord {
    /// Its number: never given to another entry of this store.
    pub id: u64,
    /// The device it is for.
    pub node_id: NodeId,
    /// What the caller stored (the facade: the queued send's JSON).
    pub body: Vec<u8>,
}

const AAD_LABEL: &[u8] = b"tether/v1/registry/outbox";
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
pub(crate) fn open(key: &StorageKey, id: u64, value: &[u8]) -> Option<OutboxRecord> {
    let (node_id, body) = sealed_entry::open(AAD_LABEL, key, id, value)?;
    Some(OutboxRecord { id, node_id, body })
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
        let node = NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(5)).node_id();
        let sealed = seal(&key(1), [9; NONCE_LEN], 7, &node, b"{\"paths\":[\"/a\"]}");
        let opened = open(&key(1), 7, &sealed).unwrap();
        assert_eq!(opened.node_id, node);
        assert_eq!(opened.body, b"{\"paths\":[\"/a\"]}");
        assert!(!sealed.windows(5).any(|w| w == b"paths"));
        assert!(!sealed.windows(32).any(|w| w == node.as_bytes()));
        assert!(open(&key(2), 7, &sealed).is_none(), "another key");
        assert!(open(&key(1), 8, &sealed).is_none(), "another number");
        for index in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[index] ^= 1;
            assert!(open(&key(1), 7, &bad).is_none(), "byte {index} flipped");
        }
        assert!(open(&key(1), 7, &sealed[..20]).is_none(), "cut short");
        // A history entry's label differs: the same bytes under the history's AAD do not
        // open as an outbox entry.
        let history = crate::history::seal(&key(1), [9; NONCE_LEN], 7, &node, b"x");
        assert!(open(&key(1), 7, &history).is_none(), "a history entry");
    }
}
