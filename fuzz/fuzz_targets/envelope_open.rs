//! Arbitrary bytes into the envelope opener, with fixed session keys.
//!
//! Input: a byte stream, cut into frames by the decoder; each frame is opened with the responder
//! keys of a fixed session (the same derivation as tether-wire's tests, so the committed seeds are
//! real sealed frames the fuzzer can mutate), and what opens is decoded.
//!
//! Checks: no panic, and an opened frame is the plain kind with the overhead removed. Every
//! input starts from fresh keys (rebuilt from the cached session secrets after any input that
//! opened a frame, the only thing that moves their replay window), so runs are reproducible.

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use tether_crypto::{
    EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, Transcript,
};
use tether_wire::{ControlMessage, DataChunk, FrameDecoder, FrameKind, SEAL_OVERHEAD};

static SECRETS: Mutex<Option<SessionSecrets>> = Mutex::new(None);
static KEYS: Mutex<Option<SessionKeys>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut secrets = SECRETS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let secrets = secrets.get_or_insert_with(session_secrets);
    let mut keys = KEYS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let responder = keys.get_or_insert_with(|| secrets.danger_session_keys(Role::Responder));
    let mut opened_any = false;
    let mut decoder = FrameDecoder::new();
    let mut input = data;
    while let Ok(Some(frame)) = decoder.decode(&mut input) {
        let (kind, len) = (frame.kind(), frame.payload().len());
        let Ok(plain) = frame.open(responder) else {
            continue;
        };
        opened_any = true;
        assert_eq!(plain.kind(), kind.plain());
        assert_eq!(plain.payload().len() + SEAL_OVERHEAD, len);
        match plain.kind() {
            FrameKind::Control => {
                let _ = ControlMessage::decode(plain.payload());
            }
            _ => {
                let _ = DataChunk::decode(plain);
            }
        }
    }
    if opened_any {
        *keys = None;
    }
});

/// tether-wire's fixed test session (tests/common/mod.rs).
fn session_secrets() -> SessionSecrets {
    let initiator = EphemeralKeyPair::danger_from_secret_bytes([0x11; 32]);
    let responder = EphemeralKeyPair::danger_from_secret_bytes([0x22; 32]);
    let transcript = Transcript {
        initiator_id: [0x33; 32],
        responder_id: [0x44; 32],
        initiator_ephemeral: initiator.public_key(),
        responder_ephemeral: responder.public_key(),
    };
    let shared = responder
        .diffie_hellman(&transcript.initiator_ephemeral)
        .expect("fixed keys are contributory");
    SessionSecrets::derive(&PairingSecret::from_bytes([0x55; 32]), shared, &transcript)
}
