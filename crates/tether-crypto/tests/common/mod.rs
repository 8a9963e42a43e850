//! Helpers shared by the integration tests: a pair of matching session keys.

#![allow(dead_code, clippy::unwrap_used)]

use tether_crypto::{Role, SessionKeys, SessionSecrets, TransferCipher};

/// The smallest rekey interval the test hook allows: 2^11 = 2048 frames per epoch.
pub(crate) const SMALL_REKEY_LOG2: u32 = 11;
pub(crate) const SMALL_EPOCH: u64 = 1 << SMALL_REKEY_LOG2;

/// Both ends of one session, derived from a seed: `(initiator, responder)`.
///
/// With `rekey_log2`, keys change every `2^rekey_log2` frames instead of `2^32`.
pub(crate) fn session_pair(seed: u64, rekey_log2: Option<u32>) -> (SessionKeys, SessionKeys) {
    let [initiator, responder] = session_secrets(seed);
    match rekey_log2 {
        None => (
            initiator.into_session_keys(Role::Initiator),
            responder.into_session_keys(Role::Responder),
        ),
        Some(log2) => (
            initiator.danger_into_session_keys_with_rekey_interval(Role::Initiator, log2),
            responder.danger_into_session_keys_with_rekey_interval(Role::Responder, log2),
        ),
    }
}

/// Both ends of one transfer under `cipher` (id 7 of the session from `seed`).
pub(crate) fn transfer_pair(seed: u64, cipher: TransferCipher) -> (SessionKeys, SessionKeys) {
    let (mut initiator, mut responder) = session_pair(seed, None);
    (
        initiator.transfer_keys(&[7; 16], cipher).unwrap(),
        responder.transfer_keys(&[7; 16], cipher).unwrap(),
    )
}

/// The key schedule output of both ends of one session, derived from a seed.
pub(crate) fn session_secrets(seed: u64) -> [SessionSecrets; 2] {
    SessionSecrets::danger_pair_from_seed(seed).unwrap()
}

/// A sealed frame as the wire would carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) counter: u64,
    pub(crate) aad: Vec<u8>,
    pub(crate) sealed: Vec<u8>,
}

pub(crate) fn seal(keys: &mut SessionKeys, aad: &[u8], plaintext: &[u8]) -> Frame {
    let mut sealed = plaintext.to_vec();
    let counter = keys.seal_in_place(aad, &mut sealed).unwrap();
    Frame {
        counter,
        aad: aad.to_vec(),
        sealed,
    }
}

pub(crate) fn open(
    keys: &mut SessionKeys,
    frame: &Frame,
) -> Result<Vec<u8>, tether_crypto::CryptoError> {
    let mut buf = frame.sealed.clone();
    keys.open_in_place(frame.counter, &frame.aad, &mut buf)?;
    Ok(buf)
}

/// `n` frames sealed in order, each with its counter as plaintext.
pub(crate) fn seal_many(keys: &mut SessionKeys, n: u64) -> Vec<Frame> {
    (0..n)
        .map(|i| seal(keys, b"aad", &i.to_le_bytes()))
        .collect()
}
