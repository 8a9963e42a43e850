//! One numbered entry of a sealed, append-style table (the transfer history, the outbox): the
//! device's node id and an opaque body, sealed under the store key with the table's label and
//! the entry's number in the associated data.
//!
//! ```text
//! 1 byte   entry format (1)
//! 12 bytes nonce (random per write)
//! n bytes  ChaCha20-Poly1305 ciphertext of: node id (32 bytes) ‖ body
//! 16 bytes tag
//! ```
//!
//! Associated data: `label ‖ entry format ‖ number (u64 big-endian)`, so an entry can be moved
//! neither to another number nor to another table.

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{Nonce, Tag};
use tether_identity::NodeId;

use crate::StorageKey;
use crate::record::cipher;

const FORMAT: u8 = 1;
pub(crate) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Seals `node_id ‖ body` as entry `id` of the table `label` under `nonce` (fresh random bytes
/// for every write). The caller bounds `body`.
pub(crate) fn seal(
    label: &[u8],
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
    let tag = match cipher(key).encrypt_inout_detached(
        &Nonce::from(nonce),
        &aad(label, id),
        plaintext.into(),
    ) {
        Ok(tag) => tag,
        // ChaCha20-Poly1305 fails only for messages longer than 256 GiB.
        Err(_) => unreachable!("a table entry is far below the AEAD's size limit"),
    };
    out.extend_from_slice(&tag);
    out
}

/// Opens the value stored under `id` in the table `label`: its node id and body; `None` if it
/// does not open (wrong key or table, altered bytes, an unknown format, or no node id in it).
pub(crate) fn open(
    label: &[u8],
    key: &StorageKey,
    id: u64,
    value: &[u8],
) -> Option<(NodeId, Vec<u8>)> {
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
            &aad(label, id),
            plaintext.as_mut_slice().into(),
            &Tag::from(*tag),
        )
        .ok()?;
    let (node, body) = plaintext.split_first_chunk::<{ NodeId::LENGTH }>()?;
    Some((NodeId::from_slice(node).ok()?, body.to_vec()))
}

fn aad(label: &[u8], id: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(label.len() + 1 + 8);
    aad.extend_from_slice(label);
    aad.push(FORMAT);
    aad.extend_from_slice(&id.to_be_bytes());
    aad
}
