//! Signing: RFC 8032 known answers through our API, and domain separation.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{IdentityError, NetworkIdentity, NodeId, Signature, SigningContext};

const PAIRING: SigningContext = SigningContext::new("tether/v1/test/pairing");
const SESSION: SigningContext = SigningContext::new("tether/v1/test/session");

fn hex32(text: &str) -> [u8; 32] {
    hex::decode(text).unwrap().try_into().unwrap()
}

/// RFC 8032 §7.1, TEST 1, 2 and 3: the public key derived from each secret key.
#[test]
fn rfc8032_public_keys() {
    let vectors = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        ),
    ];
    for (secret, public) in vectors {
        let identity = NetworkIdentity::from_secret_bytes(&hex32(secret));
        assert_eq!(identity.node_id().to_string(), public);
    }
}

/// RFC 8032 §7.3, TEST abc: Ed25519ph with an empty context. Our signatures are Ed25519ph with
/// the context as the RFC's context string, so the RFC's answer comes out of our API.
#[test]
fn rfc8032_ed25519ph_through_our_api() {
    let identity = NetworkIdentity::from_secret_bytes(&hex32(
        "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
    ));
    assert_eq!(
        identity.node_id().to_string(),
        "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"
    );
    const EMPTY: SigningContext = SigningContext::new("");
    let signature = identity.sign(EMPTY, b"abc");
    assert_eq!(
        signature.to_string(),
        "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41\
         31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
    );
    identity
        .node_id()
        .verify(EMPTY, b"abc", &signature)
        .unwrap();
}

/// Our signatures are not plain Ed25519 signatures, so none can be passed off as one made by
/// the same key at the iroh/TLS layer (and the reverse).
#[test]
fn signatures_are_not_plain_ed25519() {
    let secret = [3u8; 32];
    let identity = NetworkIdentity::from_secret_bytes(&secret);
    let ours = identity.sign(PAIRING, b"message");

    let iroh_key = iroh_base::SecretKey::from_bytes(&secret);
    let as_plain = iroh_base::Signature::from_bytes(&ours.to_bytes());
    assert!(iroh_key.public().verify(b"message", &as_plain).is_err());

    let plain = iroh_key.sign(b"message");
    let plain_as_ours = Signature::from_bytes(&plain.to_bytes());
    assert_eq!(
        identity
            .node_id()
            .verify(PAIRING, b"message", &plain_as_ours),
        Err(IdentityError::BadSignature)
    );
}

#[test]
fn signature_text_and_json_round_trip() {
    let identity = NetworkIdentity::from_secret_bytes(&[9u8; 32]);
    let signature = identity.sign(PAIRING, b"x");
    assert_eq!(
        signature.to_string().parse::<Signature>().unwrap(),
        signature
    );
    let json = serde_json::to_string(&signature).unwrap();
    assert_eq!(json.len(), 128 + 2);
    assert_eq!(serde_json::from_str::<Signature>(&json).unwrap(), signature);
    assert!(serde_json::from_str::<Signature>("\"00\"").is_err());
    assert!(Signature::from_slice(&[0u8; 63]).is_err());
}

fn identity_from(seed: u64) -> NetworkIdentity {
    NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

proptest! {
    #[test]
    fn sign_verify_round_trip(seed: u64, message: Vec<u8>) {
        let identity = identity_from(seed);
        let signature = identity.sign(PAIRING, &message);
        prop_assert!(identity.node_id().verify(PAIRING, &message, &signature).is_ok());
    }

    #[test]
    fn a_signature_for_one_context_fails_under_another(seed: u64, message: Vec<u8>) {
        let identity = identity_from(seed);
        let signature = identity.sign(PAIRING, &message);
        prop_assert_eq!(
            identity.node_id().verify(SESSION, &message, &signature),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn any_flipped_bit_fails(seed: u64, message in prop::collection::vec(any::<u8>(), 1..200), bit: usize, in_sig: bool) {
        let identity = identity_from(seed);
        let signature = identity.sign(PAIRING, &message);
        let mut message = message;
        let mut bytes = signature.to_bytes();
        if in_sig {
            let bit = bit % (64 * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        } else {
            let bit = bit % (message.len() * 8);
            message[bit / 8] ^= 1 << (bit % 8);
        }
        let result = identity.node_id().verify(PAIRING, &message, &Signature::from_bytes(&bytes));
        prop_assert_eq!(result, Err(IdentityError::BadSignature));
    }

    #[test]
    fn another_key_fails(a: u64, b: u64, message: Vec<u8>) {
        prop_assume!(a != b);
        let signature = identity_from(a).sign(PAIRING, &message);
        prop_assert!(identity_from(b).node_id().verify(PAIRING, &message, &signature).is_err());
    }

    #[test]
    fn node_id_text_and_json_round_trip(seed: u64) {
        let id = identity_from(seed).node_id();
        prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
        prop_assert_eq!(id.to_string().to_uppercase().parse::<NodeId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
    }

    #[test]
    fn node_id_parser_never_panics(text in "\\PC{0,80}") {
        let _ = text.parse::<NodeId>();
    }
}

#[test]
fn generation_is_deterministic_under_a_seed_and_distinct_across_seeds() {
    assert_eq!(identity_from(1).node_id(), identity_from(1).node_id());
    assert_ne!(identity_from(1).node_id(), identity_from(2).node_id());
}

#[test]
fn bytes_that_are_not_a_key_are_refused() {
    // y = 2 is not on the curve.
    let mut not_a_point = [0u8; 32];
    not_a_point[0] = 2;
    assert_eq!(
        NodeId::from_bytes(&not_a_point),
        Err(IdentityError::InvalidPublicKey)
    );
    assert_eq!(
        NodeId::from_slice(&[1u8; 31]),
        Err(IdentityError::InvalidPublicKey)
    );
    assert!("zz".repeat(32).parse::<NodeId>().is_err());
    assert!(serde_json::from_str::<NodeId>(&format!("\"{}\"", hex::encode(not_a_point))).is_err());
    assert_eq!(
        NetworkIdentity::from_secret_slice(&[0u8; 31]).err(),
        Some(IdentityError::SecretKeyLength { actual: 31 })
    );
}

#[test]
fn debug_never_shows_the_secret() {
    let secret = [0xabu8; 32];
    let identity = NetworkIdentity::from_secret_bytes(&secret);
    let debug = format!("{identity:?}");
    assert!(!debug.contains(&hex::encode(secret)), "{debug}");
    assert!(!debug.contains("171, 171"), "{debug}");
    assert!(debug.contains(&identity.node_id().fmt_short()));
}

#[test]
fn identity_wipes_its_secret_on_drop() {
    fn wipes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wipes_on_drop::<NetworkIdentity>();
    wipes_on_drop::<zeroize::Zeroizing<[u8; 32]>>();
}

/// The fuzzing stand-ins (`danger_fuzzing`: signatures anyone can forge) exist only under
/// `cfg(fuzzing)`, which cargo-fuzz sets; a normal build, this test's included, never has it.
/// (An optimised build without debug assertions that has it fails to compile.)
#[test]
fn fuzzing_stand_ins_are_not_in_normal_builds() {
    const { assert!(!cfg!(fuzzing)) };
    // And by behaviour: our signatures are real Ed25519ph, as ed25519-dalek itself checks them.
    use ed25519_dalek::{Digest, Sha512};
    let identity = NetworkIdentity::from_secret_bytes(&[9; 32]);
    let signature = identity.sign(PAIRING, b"message");
    ed25519_dalek::VerifyingKey::from_bytes(identity.node_id().as_bytes())
        .unwrap()
        .verify_prehashed_strict(
            Sha512::new_with_prefix(b"message"),
            Some(PAIRING.label().as_bytes()),
            &ed25519_dalek::Signature::from_bytes(&signature.to_bytes()),
        )
        .unwrap();
}
