//! Golden vectors for Tether's own constructions, checked against a committed file.
//!
//! `tests/vectors/session_keys.json` holds, for fixed inputs, everything the key schedule
//! derives, the first sealed frames, and whole handshakes. The test recomputes each output
//! from the file's inputs and compares. A change to any label, to the transcript, the nonce
//! layout, the ratchet, the transfer derivation or the message layouts shows up here.
//!
//! After a deliberate change, regenerate the file and review the diff:
//!
//! ```text
//! TETHER_REGEN_VECTORS=1 cargo test -p tether-crypto --test golden
//! ```

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};
use tether_crypto::handshake::{HelloMessage, InitMessage, Initiator, Responder, ResponseMessage};
use tether_crypto::{
    EphemeralKeyPair, MIN_REKEY_INTERVAL_LOG2, PairingSecret, Role, SessionKeys, SessionSecrets,
    Transcript, TransferCipher,
};
use tether_identity::NetworkIdentity;

type Fields = BTreeMap<String, String>;

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/session_keys.json")
}

fn get<const N: usize>(fields: &Fields, name: &str) -> [u8; N] {
    let text = fields
        .get(name)
        .unwrap_or_else(|| panic!("input {name} missing"));
    hex::decode(text).unwrap().try_into().unwrap()
}

fn get_vec(fields: &Fields, name: &str) -> Vec<u8> {
    hex::decode(
        fields
            .get(name)
            .unwrap_or_else(|| panic!("input {name} missing")),
    )
    .unwrap()
}

fn sealed_hex(keys: &mut SessionKeys, aad: &[u8], plaintext: &[u8], counter: u64) -> String {
    let mut buf = plaintext.to_vec();
    assert_eq!(keys.seal_in_place(aad, &mut buf).unwrap(), counter);
    hex::encode(buf)
}

/// Runs the key schedule on the inputs of one case and seals the first frames.
fn key_schedule_outputs(input: &Fields) -> Fields {
    let pairing = PairingSecret::from_bytes(get(input, "pairing_secret"));
    let secrets = |role: Role| {
        let initiator =
            EphemeralKeyPair::danger_from_secret_bytes(get(input, "initiator_ephemeral_secret"));
        let responder =
            EphemeralKeyPair::danger_from_secret_bytes(get(input, "responder_ephemeral_secret"));
        let transcript = Transcript {
            initiator_id: get(input, "initiator_id"),
            responder_id: get(input, "responder_id"),
            initiator_ephemeral: initiator.public_key(),
            responder_ephemeral: responder.public_key(),
        };
        let shared = match role {
            Role::Initiator => initiator.diffie_hellman(&transcript.responder_ephemeral),
            Role::Responder => responder.diffie_hellman(&transcript.initiator_ephemeral),
        }
        .unwrap();
        (
            SessionSecrets::derive(&pairing, shared, &transcript),
            transcript,
        )
    };
    let (aad, plaintext) = (get_vec(input, "aad"), get_vec(input, "plaintext"));
    let transfer_id: [u8; 16] = get(input, "transfer_id");

    let mut out = Fields::new();
    let (initiator_secrets, transcript) = secrets(Role::Initiator);
    out.insert(
        "initiator_ephemeral_public".into(),
        hex::encode(transcript.initiator_ephemeral.as_bytes()),
    );
    out.insert(
        "responder_ephemeral_public".into(),
        hex::encode(transcript.responder_ephemeral.as_bytes()),
    );
    let shared =
        EphemeralKeyPair::danger_from_secret_bytes(get(input, "initiator_ephemeral_secret"))
            .diffie_hellman(&transcript.responder_ephemeral)
            .unwrap();
    out.insert(
        "shared_secret".into(),
        hex::encode(shared.danger_to_bytes()),
    );
    for (name, bytes) in initiator_secrets.danger_to_named_bytes() {
        out.insert(name.into(), hex::encode(bytes));
    }
    // The responder derives the very same values.
    let (responder_secrets, _) = secrets(Role::Responder);
    assert_eq!(
        responder_secrets.danger_to_named_bytes(),
        initiator_secrets.danger_to_named_bytes()
    );

    let mut initiator = initiator_secrets.into_session_keys(Role::Initiator);
    let mut responder = responder_secrets.into_session_keys(Role::Responder);
    out.insert(
        "frame_initiator_counter_0".into(),
        sealed_hex(&mut initiator, &aad, &plaintext, 0),
    );
    out.insert(
        "frame_responder_counter_0".into(),
        sealed_hex(&mut responder, &aad, &plaintext, 0),
    );
    // The transfer secret, then per cipher the first frame each way (mirrored keys) and the
    // first frame of lane 1 (a nested transfer, as tether-transfer derives its lanes). Fresh
    // session keys each time: a session derives a transfer id once.
    let fresh = |role: Role| secrets(role).0.into_session_keys(role);
    let secret = fresh(Role::Initiator)
        .transfer_secret(&transfer_id)
        .unwrap();
    let responder_secret = fresh(Role::Responder)
        .transfer_secret(&transfer_id)
        .unwrap();
    assert_eq!(secret.danger_to_bytes(), responder_secret.danger_to_bytes());
    out.insert(
        "transfer_secret".into(),
        hex::encode(secret.danger_to_bytes()),
    );
    for cipher in TransferCipher::ALL {
        let name = cipher.name();
        let mut mine = fresh(Role::Initiator)
            .transfer_keys(&transfer_id, cipher)
            .unwrap();
        let mut theirs = fresh(Role::Responder)
            .transfer_keys(&transfer_id, cipher)
            .unwrap();
        let sealed = sealed_hex(&mut mine, &aad, &plaintext, 0);
        let mut buf = hex::decode(&sealed).unwrap();
        theirs.open_in_place(0, &aad, &mut buf).unwrap();
        assert_eq!(buf, plaintext);
        out.insert(format!("frame_transfer_{name}_initiator_counter_0"), sealed);
        out.insert(
            format!("frame_transfer_{name}_responder_counter_0"),
            sealed_hex(&mut theirs, &aad, &plaintext, 0),
        );
        let mut lane = mine
            .transfer_keys(b"tether-lane-\0\0\0\x01", cipher)
            .unwrap();
        out.insert(
            format!("frame_transfer_{name}_lane_1_initiator_counter_0"),
            sealed_hex(&mut lane, &aad, &plaintext, 0),
        );
    }

    // The first frame after one rekey, with the smallest rekey interval (2^11 frames).
    let log2 = MIN_REKEY_INTERVAL_LOG2;
    let mut rekeying = secrets(Role::Initiator)
        .0
        .danger_into_session_keys_with_rekey_interval(Role::Initiator, log2);
    for _ in 0..1u64 << log2 {
        rekeying.seal_in_place(b"", &mut Vec::new()).unwrap();
    }
    out.insert(
        format!(
            "frame_initiator_counter_{}_rekey_interval_{}",
            1u64 << log2,
            1u64 << log2
        ),
        sealed_hex(&mut rekeying, &aad, &plaintext, 1 << log2),
    );
    out
}

/// Runs a whole handshake from fixed identities and RNG seeds.
fn handshake_outputs(input: &Fields) -> Fields {
    let alice = NetworkIdentity::from_secret_bytes(&get(input, "initiator_identity_secret"));
    let bob = NetworkIdentity::from_secret_bytes(&get(input, "responder_identity_secret"));
    let secret = PairingSecret::from_bytes(get(input, "pairing_secret"));
    let mut alice_rng = ChaCha20Rng::from_seed(get(input, "initiator_rng_seed"));
    let mut bob_rng = ChaCha20Rng::from_seed(get(input, "responder_rng_seed"));
    let (aad, plaintext) = (get_vec(input, "aad"), get_vec(input, "plaintext"));

    // The responder speaks first; each side draws its ephemeral key from its own RNG, so the
    // keys (and the frames below) are those of the same inputs in any message order.
    let (bob_state, hello) = Responder::hello(&mut bob_rng);
    let hello = hello.to_bytes();
    let (alice_state, init) = Initiator::start(
        &mut alice_rng,
        &alice,
        bob.node_id(),
        &secret,
        &HelloMessage::from_bytes(&hello).unwrap(),
    )
    .unwrap();
    let init = init.to_bytes();
    let (mut bob_keys, response) = bob_state
        .receive(
            &bob,
            alice.node_id(),
            &secret,
            &InitMessage::from_bytes(&init).unwrap(),
        )
        .unwrap();
    let response = response.to_bytes();
    let mut alice_keys = alice_state
        .receive(&ResponseMessage::from_bytes(&response).unwrap())
        .unwrap();

    let mut out = Fields::new();
    out.insert(
        "initiator_id".into(),
        hex::encode(alice.node_id().as_bytes()),
    );
    out.insert("responder_id".into(), hex::encode(bob.node_id().as_bytes()));
    out.insert("hello_message".into(), hex::encode(hello));
    out.insert("init_message".into(), hex::encode(init));
    out.insert("response_message".into(), hex::encode(response));
    out.insert(
        "frame_initiator_counter_0".into(),
        sealed_hex(&mut alice_keys, &aad, &plaintext, 0),
    );
    out.insert(
        "frame_responder_counter_0".into(),
        sealed_hex(&mut bob_keys, &aad, &plaintext, 0),
    );
    out
}

fn pattern(start: u8, len: usize) -> String {
    hex::encode(
        (0..len)
            .map(|i| start.wrapping_add(i as u8))
            .collect::<Vec<_>>(),
    )
}

fn fields(pairs: &[(&str, String)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// The inputs written when regenerating, as (case name, inputs).
struct DefaultInputs {
    key_schedule: Vec<(String, Fields)>,
    handshake: Vec<(String, Fields)>,
}

fn default_inputs() -> DefaultInputs {
    let schedule = vec![
        (
            "counting bytes".to_string(),
            fields(&[
                ("pairing_secret", pattern(0x00, 32)),
                ("initiator_id", pattern(0x20, 32)),
                ("responder_id", pattern(0x40, 32)),
                ("initiator_ephemeral_secret", pattern(0x60, 32)),
                ("responder_ephemeral_secret", pattern(0x80, 32)),
                ("transfer_id", pattern(0xa0, 16)),
                ("aad", pattern(0xc0, 8)),
                ("plaintext", hex::encode("tether golden frame")),
            ]),
        ),
        (
            "RFC 7748 ephemeral keys, empty aad and plaintext".to_string(),
            fields(&[
                ("pairing_secret", "ff".repeat(32)),
                ("initiator_id", "11".repeat(32)),
                ("responder_id", "22".repeat(32)),
                (
                    "initiator_ephemeral_secret",
                    "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a".into(),
                ),
                (
                    "responder_ephemeral_secret",
                    "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb".into(),
                ),
                ("transfer_id", "00".repeat(16)),
                ("aad", String::new()),
                ("plaintext", String::new()),
            ]),
        ),
    ];
    let handshake = vec![(
        "fixed identities and RNG seeds".to_string(),
        fields(&[
            ("initiator_identity_secret", pattern(0x01, 32)),
            ("responder_identity_secret", pattern(0x31, 32)),
            ("pairing_secret", pattern(0x61, 32)),
            ("initiator_rng_seed", pattern(0x91, 32)),
            ("responder_rng_seed", pattern(0xc1, 32)),
            ("aad", hex::encode("frame header")),
            ("plaintext", hex::encode("first message of the session")),
        ]),
    )];
    DefaultInputs {
        key_schedule: schedule,
        handshake,
    }
}

fn case_json(name: &str, input: &Fields, output: &Fields) -> Value {
    json!({ "name": name, "input": input, "output": output })
}

fn regenerate() {
    let DefaultInputs {
        key_schedule: schedule,
        handshake,
    } = default_inputs();
    let file = json!({
        "description": "Golden vectors for tether-crypto's key schedule, frames and handshake. \
            All byte strings are hex. Checked by tests/golden.rs.",
        "regenerate": "TETHER_REGEN_VECTORS=1 cargo test -p tether-crypto --test golden",
        "key_schedule": schedule
            .iter()
            .map(|(name, input)| case_json(name, input, &key_schedule_outputs(input)))
            .collect::<Vec<_>>(),
        "handshake": handshake
            .iter()
            .map(|(name, input)| case_json(name, input, &handshake_outputs(input)))
            .collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&file).unwrap() + "\n";
    std::fs::write(path(), text).unwrap();
}

fn check_cases(file: &Value, section: &str, compute: fn(&Fields) -> Fields) -> usize {
    let cases = file[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} section"));
    assert!(!cases.is_empty(), "{section} has no cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let input: Fields = serde_json::from_value(case["input"].clone()).unwrap();
        let expected: Fields = serde_json::from_value(case["output"].clone()).unwrap();
        let actual = compute(&input);
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "{section} / {name}: output names"
        );
        for (key, value) in &expected {
            assert_eq!(&actual[key], value, "{section} / {name}: {key}");
        }
    }
    cases.len()
}

/// The committed file, after rewriting it first if `TETHER_REGEN_VECTORS=1` (once per run).
fn load() -> Value {
    static REGENERATED: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TETHER_REGEN_VECTORS").is_some_and(|v| v == "1") {
        REGENERATED.call_once(regenerate);
    }
    let text = std::fs::read_to_string(path())
        .expect("tests/vectors/session_keys.json missing; see this file's docs to regenerate");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn golden_vectors_match_the_committed_file() {
    let file = load();
    let schedule_cases = check_cases(&file, "key_schedule", key_schedule_outputs);
    let handshake_cases = check_cases(&file, "handshake", handshake_outputs);
    assert!(schedule_cases >= 2 && handshake_cases >= 1);
}

#[test]
fn the_file_is_independent_of_the_spec_in_the_docs() {
    // Recompute the first case's keys straight from the written spec with the hkdf and sha2
    // crates, so the golden file cannot silently drift from the documentation.
    use hkdf::Hkdf;
    use sha2::{Digest, Sha256};

    let file = load();
    let case = &file["key_schedule"][0];
    let input: Fields = serde_json::from_value(case["input"].clone()).unwrap();
    let output: Fields = serde_json::from_value(case["output"].clone()).unwrap();

    let th: [u8; 32] = Sha256::new()
        .chain_update(b"tether/v1/session/transcript")
        .chain_update(get::<32>(&input, "initiator_id"))
        .chain_update(get::<32>(&input, "responder_id"))
        .chain_update(get::<32>(&output, "initiator_ephemeral_public"))
        .chain_update(get::<32>(&output, "responder_ephemeral_public"))
        .finalize()
        .into();
    assert_eq!(hex::encode(th), output["transcript_hash"]);
    let hkdf = Hkdf::<Sha256>::new(
        Some(&get::<32>(&input, "pairing_secret")),
        &get::<32>(&output, "shared_secret"),
    );
    for (label, name) in [
        (
            "tether/v1/session/key/initiator-to-responder",
            "key_initiator_to_responder",
        ),
        (
            "tether/v1/session/key/responder-to-initiator",
            "key_responder_to_initiator",
        ),
        ("tether/v1/session/exporter", "exporter"),
        ("tether/v1/session/confirm/initiator", "confirm_initiator"),
        ("tether/v1/session/confirm/responder", "confirm_responder"),
    ] {
        let mut okm = [0u8; 32];
        hkdf.expand_multi_info(&[label.as_bytes(), &th], &mut okm)
            .unwrap();
        assert_eq!(hex::encode(okm), output[name], "{name}");
    }

    // The transfer secret and the AES-256-GCM transfer key, then the first transfer frame
    // sealed with the aes-gcm crate directly (nonce = counter 0 = twelve zero bytes).
    let expand = |prk: &[u8; 32], info: &[&[u8]]| {
        let mut okm = [0u8; 32];
        Hkdf::<Sha256>::from_prk(prk)
            .unwrap()
            .expand_multi_info(info, &mut okm)
            .unwrap();
        okm
    };
    let exporter = get::<32>(&output, "exporter");
    let transfer_id = get::<16>(&input, "transfer_id");
    let secret = expand(&exporter, &[b"tether/v1/transfer/secret", &transfer_id]);
    assert_eq!(hex::encode(secret), output["transfer_secret"]);
    let key = expand(
        &secret,
        &[b"tether/v1/transfer/key/initiator-to-responder/aes-256-gcm"],
    );
    use aes_gcm::aead::{AeadInOut, KeyInit};
    let mut buf = get_vec(&input, "plaintext");
    let tag = aes_gcm::Aes256Gcm::new(&key.into())
        .encrypt_inout_detached(
            &[0u8; 12].into(),
            &get_vec(&input, "aad"),
            buf.as_mut_slice().into(),
        )
        .unwrap();
    buf.extend_from_slice(&tag);
    assert_eq!(
        hex::encode(buf),
        output["frame_transfer_aes-256-gcm_initiator_counter_0"]
    );
}
