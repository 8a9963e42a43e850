//! Device ids, names, types and the info a device shows its peers.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{
    DeviceId, DeviceInfo, DeviceName, DeviceNameError, DeviceType, IdentityError, NetworkIdentity,
};

fn info(seed: u64, name: &str) -> DeviceInfo {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    DeviceInfo {
        device_id: DeviceId::random(&mut rng),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Laptop,
        public_key: NetworkIdentity::generate(&mut rng).node_id(),
    }
}

#[test]
fn device_info_json_shape_is_stable() {
    let info = info(1, "Anna's laptop");
    let json: serde_json::Value = serde_json::to_value(&info).unwrap();
    assert_eq!(json["device_name"], "Anna's laptop");
    assert_eq!(json["device_type"], "laptop");
    assert_eq!(json["device_id"], info.device_id.to_string());
    assert_eq!(json["public_key"], info.public_key.to_string());
    let back: DeviceInfo = serde_json::from_value(json).unwrap();
    assert_eq!(back, info);
}

#[test]
fn device_id_is_a_v4_uuid() {
    let id = DeviceId::random(&mut ChaCha20Rng::seed_from_u64(5));
    assert_eq!(id.as_uuid().get_version_num(), 4);
    assert_eq!(id.to_string().parse::<DeviceId>().unwrap(), id);
    assert_eq!(
        "not-a-uuid".parse::<DeviceId>(),
        Err(IdentityError::DeviceIdText)
    );
}

#[test]
fn unknown_device_type_reads_as_other() {
    let t: DeviceType = serde_json::from_str("\"smartwatch\"").unwrap();
    assert_eq!(t, DeviceType::Other);
    for t in [
        DeviceType::Desktop,
        DeviceType::Laptop,
        DeviceType::Phone,
        DeviceType::Tablet,
        DeviceType::Server,
        DeviceType::Other,
    ] {
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<DeviceType>(&json).unwrap(), t);
    }
}

#[test]
fn device_names_are_checked() {
    assert!(DeviceName::new("Anna's laptop").is_ok());
    assert!(DeviceName::new("ноутбук 🚀").is_ok());
    assert_eq!(DeviceName::new(""), Err(DeviceNameError::Empty));
    assert_eq!(DeviceName::new("   "), Err(DeviceNameError::Empty));
    assert_eq!(
        DeviceName::new(" pad"),
        Err(DeviceNameError::SurroundingWhitespace)
    );
    assert_eq!(
        DeviceName::new("a\nb"),
        Err(DeviceNameError::ControlCharacter)
    );
    assert_eq!(
        DeviceName::new("a\u{1b}[31mb"),
        Err(DeviceNameError::ControlCharacter)
    );
    assert_eq!(
        DeviceName::new("evil\u{202E}txt.exe"),
        Err(DeviceNameError::BidiControl)
    );
    assert_eq!(
        DeviceName::new("x".repeat(65)),
        Err(DeviceNameError::TooLong {
            actual: 65,
            max: 64
        })
    );
    assert!(DeviceName::new("é".repeat(64)).is_ok());
}

#[test]
fn invalid_names_are_refused_when_deserializing() {
    let mut json = serde_json::to_value(info(2, "ok")).unwrap();
    json["device_name"] = "bad\u{0}name".into();
    let err = serde_json::from_value::<DeviceInfo>(json).unwrap_err();
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn claimed_key_must_match_the_authenticated_one() {
    let info = info(3, "phone");
    assert!(info.check_claimed_key(&info.public_key).is_ok());
    let other = NetworkIdentity::from_secret_bytes(&[1u8; 32]).node_id();
    assert!(matches!(
        info.check_claimed_key(&other),
        Err(IdentityError::ClaimedKeyMismatch { .. })
    ));
}

proptest! {
    #[test]
    fn every_accepted_name_survives_json(name in "\\PC{0,80}") {
        if let Ok(name) = DeviceName::new(name.clone()) {
            let json = serde_json::to_string(&name).unwrap();
            prop_assert_eq!(serde_json::from_str::<DeviceName>(&json).unwrap(), name);
        }
    }

    #[test]
    fn accepted_names_hold_no_control_characters(name in any::<String>()) {
        if let Ok(name) = DeviceName::new(name) {
            prop_assert!(!name.as_str().chars().any(char::is_control));
            prop_assert!(name.as_str().chars().count() <= DeviceName::MAX_CHARS);
            prop_assert_eq!(name.as_str().trim(), name.as_str());
        }
    }
}

#[test]
fn names_that_read_as_an_id_prefix_are_recognised() {
    let node_id = info(3, "x").public_key.to_string();
    let device_id = info(3, "x").device_id.to_string();
    for text in [
        "3f9a",
        "3f9a1c2d0e",
        "DEADBEEF",
        "0a1b2c3d-4e5f",
        "0a1b2c3d-4e5f-",
        &node_id,
        &node_id[..10],
        &device_id,
        &device_id[..13],
        &device_id.to_uppercase(),
    ] {
        assert!(DeviceName::is_id_prefix(text), "{text:?}");
        assert!(DeviceName::new(text).unwrap().looks_like_id(), "{text:?}");
    }
    for text in [
        "abc",
        "desk",
        "deadbeef laptop",
        "3f9a-",
        "0a1b2c3d4e5f-",
        "café",
        "Anna's laptop",
        "0x3f9a",
    ] {
        assert!(!DeviceName::is_id_prefix(text), "{text:?}");
    }
    // Longer than any id: not a prefix of one.
    assert!(!DeviceName::is_id_prefix(&"a".repeat(65)));
    // Every prefix of an id that a user may type to pick it is recognised.
    for len in DeviceName::MIN_ID_PREFIX_CHARS..=node_id.len() {
        assert!(DeviceName::is_id_prefix(&node_id[..len]), "{len}");
    }
    for len in DeviceName::MIN_ID_PREFIX_CHARS..=device_id.len() {
        assert!(DeviceName::is_id_prefix(&device_id[..len]), "{len}");
    }
}
