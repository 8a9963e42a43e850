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

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Nonce, Tag};
use tether_identity::NodeId;

use crate::StorageKey;
use crate::record::cipher;

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

const FORMAT: u8 = 1;
const AAD_LABEL: &[u8] = b"tether/v1/registry/outbox";
pub(crate) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals an entry under `nonce` (fresh random bytes for every write). `body` is at most
/// [`MAX_OUTBOX_BODY`] bytes (checked by the caller).
pub(crate) fn seal(
    key: &StorageKey,
    nonce: [u8; NONCE_LEN],
    id: u64,
    node_id: &NodeId,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + NONCE_LEN + NodeId::LENGTH + body.len() + TAG_LEN);
    out.push(FORMAT);
    out.extend_from_slice(&nonce);
    let start = out.len();
    out.extend_from_slice(node_id.as_bytes());
    out.extend_from_slice(body);
    let plaintext = out.get_mut(start..).unwrap_or_default();
    let tag =
        match cipher(key).encrypt_inout_detached(&Nonce::from(nonce), &aad(id), plaintext.into()) {
            Ok(tag) => tag,
            // ChaCha20-Poly1305 fails only for messages longer than 256 GiB.
            Err(_) => unreachable!("an outbox entry is far below the AEAD's size limit"),
        };
    out.extend_from_slice(&tag);
    out
}

/// Opens the value stored under `id`; `None` if it does not open (wrong key, altered bytes,
/// an unknown format, or no node id in it).
pub(crate) fn open(key: &StorageKey, id: u64, value: &[u8]) -> Option<OutboxRecord> {
    let (&format, rest) = value.split_first()?;
    if format != FORMAT {
        return None;
    }
    let (nonce, rest) = rest.split_first_chunk::<NONCE_LEN>()?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>()?;
    let mut plaintext = ciphertext.to_vec();
    cipher(key)
        .decrypt_inout_detached(
            &Nonce::from(*nonce),
            &aad(id),
            plaintext.as_mut_slice().into(),
            &Tag::from(*tag),
        )
        .ok()?;
    let (node, body) = plaintext.split_first_chunk::<{ NodeId::LENGTH }>()?;
    Some(OutboxRecord {
        id,
        node_id: NodeId::from_slice(node).ok()?,
        body: body.to_vec(),
    })
}

fn aad(id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + 8);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(FORMAT);
    aad.extend_from_slice(&id.to_be_bytes());
    aad
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
