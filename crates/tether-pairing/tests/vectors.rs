//! Known answers for a whole handshake: fixed identities, a fixed code and a seeded generator
//! give fixed messages, a fixed pairing secret and a fixed verification code, committed in
//! `tests/vectors/handshake.json`. Any change to the wire format, the transcript, the key
//! schedule or the PAKE shows up here.
//!
//! Run with `TETHER_BLESS=1` to rewrite the file from the current code before comparing, and
//! review the diff: a change means devices running the old code can no longer pair with the new.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

mod harness;

use std::path::PathBuf;

use harness::{End, Views, drive, rng};
use serde::{Deserialize, Serialize};
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity};
use tether_pairing::{Credential, Initiator, InitiatorConfig, LocalDevice, PairingCode, Timestamp};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct HandshakeVector {
    rng_seed: u64,
    initiator_secret_key: String,
    joiner_secret_key: String,
    code: String,
    initiator_id: String,
    joiner_id: String,
    messages: Vec<String>,
    pairing_secret: String,
    verification_code: String,
}

fn local_device(secret: [u8; 32], name: &str, seed: u64) -> LocalDevice {
    let identity = NetworkIdentity::from_secret_bytes(&secret);
    let info = DeviceInfo {
        device_id: DeviceId::random(&mut rng(seed)),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Laptop,
        public_key: identity.node_id(),
    };
    LocalDevice::new(identity, info).unwrap()
}

fn compute() -> HandshakeVector {
    let rng_seed = 0x7e7e_7e7e;
    let (initiator_key, joiner_key) = ([0x11; 32], [0x22; 32]);
    let initiator = local_device(initiator_key, "Anna's laptop", 1);
    let joiner = local_device(joiner_key, "Anna's phone", 2);
    let code: PairingCode = "harbor-brave-lion-sunset".parse().unwrap();
    let now = Timestamp::ZERO;
    let mut state =
        Initiator::new(&code, initiator.clone(), now, InitiatorConfig::default()).unwrap();
    let views = Views {
        joiner_as_seen_by_initiator: joiner.node_id(),
        initiator_as_seen_by_joiner: initiator.node_id(),
    };
    let mut rng = rng(rng_seed);
    let run = drive(
        &mut state,
        joiner.clone(),
        Credential::from(&code),
        &views,
        now,
        &mut rng,
        |_, b| b,
    );
    let (Some(End::Paired(a)), Some(End::Paired(b))) = (&run.initiator, &run.joiner) else {
        panic!("the vector handshake must succeed: {run:?}");
    };
    assert_eq!(a.pairing_secret().as_bytes(), b.pairing_secret().as_bytes());
    assert_eq!(a.verification_code(), b.verification_code());
    HandshakeVector {
        rng_seed,
        initiator_secret_key: hex::encode(initiator_key),
        joiner_secret_key: hex::encode(joiner_key),
        code: code.to_string(),
        initiator_id: initiator.node_id().to_string(),
        joiner_id: joiner.node_id().to_string(),
        messages: run.messages.iter().map(hex::encode).collect(),
        pairing_secret: hex::encode(a.pairing_secret().as_bytes()),
        verification_code: a.verification_code().to_string(),
    }
}

#[test]
fn handshake_known_answer() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/handshake.json");
    let computed = compute();
    if std::env::var_os("TETHER_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&computed).unwrap() + "\n",
        )
        .unwrap();
    }
    let committed: HandshakeVector =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        computed, committed,
        "the handshake changed; see the file's docs"
    );
}
