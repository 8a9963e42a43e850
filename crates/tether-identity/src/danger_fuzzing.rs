//! Cheap stand-ins for the curve arithmetic, for fuzzing only (as rustls fuzzes with a fake
//! crypto provider): compiled only under `cfg(fuzzing)`, which cargo-fuzz sets and no normal
//! or release build does, and used only after a fuzz target calls [`use_stand_ins`].
//!
//! With stand-ins on, a fuzzer spends its time in our parsers and state machines instead of in
//! scalar multiplications:
//!
//! * Key pairs and node-id checks are memoised: the same 32 secret bytes always give the same
//!   key, so a fuzz target that rebuilds its identities from a fixed seed on every input pays
//!   for them once. (Exact: a memo of a pure function.)
//! * Signatures are `SHA-512(label ‖ public key ‖ context ‖ SHA-512(message))`: deterministic,
//!   bound to the key, context and message like the real ones, and forgeable by anyone who
//!   knows the public key, which a fuzzer never needs to do.
//!
//! Never enable this outside a fuzz target: with stand-ins on, anyone can sign as anyone.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use ed25519_dalek::{Digest, Sha512, SigningKey, VerifyingKey};

#[cfg(not(debug_assertions))]
compile_error!(
    "tether-identity's fuzzing stand-ins (cfg(fuzzing)) must never be in an optimised build \
     without debug assertions: that is a release build, and the stand-ins forge signatures"
);

static STAND_INS: AtomicBool = AtomicBool::new(false);

/// Entries kept per memo before it is emptied, so a long fuzzing run stays bounded.
const MEMO_LIMIT: usize = 1024;

/// Switches the whole process to the stand-ins: this crate's signatures and key memos, and the
/// stand-ins of the crates above it (X25519 in `tether-crypto`, SPAKE2 in `tether-pairing`).
/// There is no way back: a fuzz target calls it first, on every input.
pub fn use_stand_ins() {
    STAND_INS.store(true, Ordering::Relaxed);
}

/// Whether [`use_stand_ins`] was called in this process.
pub fn stand_ins() -> bool {
    STAND_INS.load(Ordering::Relaxed)
}

thread_local! {
    static SIGNING_KEYS: RefCell<HashMap<[u8; 32], SigningKey>> = RefCell::new(HashMap::new());
    static VALID_KEYS: RefCell<HashMap<[u8; 32], bool>> = RefCell::new(HashMap::new());
}

fn memo<V: Clone>(
    map: &'static std::thread::LocalKey<RefCell<HashMap<[u8; 32], V>>>,
    key: &[u8; 32],
    compute: impl FnOnce() -> V,
) -> V {
    if let Some(value) = map.with(|map| map.borrow().get(key).cloned()) {
        return value;
    }
    let value = compute();
    map.with(|map| {
        let mut map = map.borrow_mut();
        if map.len() >= MEMO_LIMIT {
            map.clear();
        }
        map.insert(*key, value.clone());
    });
    value
}

/// The signing key of these secret bytes, memoised.
pub(crate) fn signing_key(secret: &[u8; 32]) -> SigningKey {
    memo(&SIGNING_KEYS, secret, || SigningKey::from_bytes(secret))
}

/// Whether these bytes are an Ed25519 public key, memoised.
pub(crate) fn is_public_key(bytes: &[u8; 32]) -> bool {
    memo(&VALID_KEYS, bytes, || {
        VerifyingKey::from_bytes(bytes).is_ok()
    })
}

/// The stand-in signature of `message` by the key `public` under `context`.
pub(crate) fn signature(public: &[u8; 32], context: &[u8], message: &[u8]) -> [u8; 64] {
    let mut hash = Sha512::new_with_prefix(b"tether/fuzzing/stand-in-signature");
    hash.update(public);
    hash.update([u8::try_from(context.len()).unwrap_or(u8::MAX)]);
    hash.update(context);
    hash.update(Sha512::digest(message));
    hash.finalize().into()
}
