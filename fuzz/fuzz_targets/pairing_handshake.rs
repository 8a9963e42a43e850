//! Arbitrary message sequences to both roles of the pairing handshake (tether-pairing).
//!
//! An initiator and a joiner holding the same code, and a stranger, are set up from a fixed
//! seed; the input is a list of records `op ‖ u16 length ‖ payload` that deliver raw bytes to
//! either role (as the joiner or as the stranger), pass on a role's last honest output, move
//! the clock, or parse text as a code and a ticket. See `tether_pairing::fuzzing` for the
//! format; seeds in `seeds/pairing_handshake/` are real handshakes
//! (`TETHER_BLESS=1 cargo test -p tether-pairing --test fuzz_seeds` writes them).
//!
//! The curve arithmetic runs on cheap stand-ins (`tether_identity::danger_fuzzing`: SPAKE2,
//! signatures and key generation), so the fuzzer spends its time in the state machines and
//! decoders; `pairing_handshake_real` runs the same driver on the real primitives.
//!
//! Checks: no panic; decoding is canonical; every emitted message decodes and fits the cap;
//! the stranger never pairs; a code pairs at most once; both sides agree when both pair.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_pairing::fuzzing::{Fixture, RNG_SEED, run_with};

/// The fixture and the RNG after it, made once: every input starts from the same state, as
/// if `run` had made them anew.
static FIXTURE: std::sync::OnceLock<(Fixture, ChaCha20Rng)> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    tether_identity::danger_fuzzing::use_stand_ins();
    let (fixture, rng) = FIXTURE.get_or_init(|| {
        let mut rng = ChaCha20Rng::seed_from_u64(RNG_SEED);
        (Fixture::new(&mut rng), rng)
    });
    let _ = run_with(fixture.clone(), data, &mut rng.clone());
});
