//! Arbitrary message sequences to both roles of the pairing handshake (tether-pairing), on the
//! real primitives: `pairing_handshake` with real SPAKE2, X25519 and Ed25519. It is slow (every
//! input pays for the curve arithmetic) and is here so that something fuzzes the real thing;
//! `pairing_handshake` runs the same driver on cheap stand-ins, many times faster.
//!
//! An initiator and a joiner holding the same code, and a stranger, are set up from a fixed
//! seed; the input is a list of records `op ‖ u16 length ‖ payload` that deliver raw bytes to
//! either role (as the joiner or as the stranger), pass on a role's last honest output, move
//! the clock, or parse text as a code and a ticket. See `tether_pairing::fuzzing` for the
//! format; seeds in `seeds/pairing_handshake_real/` are real handshakes
//! (`TETHER_BLESS=1 cargo test -p tether-pairing --test fuzz_seeds` writes them).
//!
//! Checks: no panic; decoding is canonical; every emitted message decodes and fits the cap;
//! the stranger never pairs; a code pairs at most once; both sides agree when both pair.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_pairing::fuzzing::{RNG_SEED, run};

fuzz_target!(|data: &[u8]| {
    let _ = run(data, &mut ChaCha20Rng::seed_from_u64(RNG_SEED));
});
