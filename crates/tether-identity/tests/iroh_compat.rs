//! A Tether `NodeId` is the iroh endpoint id of the same secret key, in bytes and in text.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::str::FromStr;

use proptest::prelude::*;
use tether_identity::{NetworkIdentity, NodeId};

proptest! {
    #[test]
    fn node_id_equals_iroh_endpoint_id(secret in any::<[u8; 32]>()) {
        let ours = NetworkIdentity::from_secret_bytes(&secret).node_id();
        let iroh = iroh_base::SecretKey::from_bytes(&secret).public();

        prop_assert_eq!(ours.as_bytes(), iroh.as_bytes());
        prop_assert_eq!(ours.to_string(), iroh.to_string());
        // Each side parses the other's text form.
        prop_assert_eq!(NodeId::from_str(&iroh.to_string()).unwrap(), ours);
        prop_assert_eq!(iroh_base::PublicKey::from_str(&ours.to_string()).unwrap(), iroh);
    }

    #[test]
    fn secret_bytes_round_trip(secret in any::<[u8; 32]>()) {
        let identity = NetworkIdentity::from_secret_bytes(&secret);
        let restored = NetworkIdentity::from_secret_slice(identity.to_secret_bytes().as_ref()).unwrap();
        prop_assert_eq!(*restored.to_secret_bytes(), secret);
        prop_assert_eq!(restored.node_id(), identity.node_id());
        // iroh accepts our stored bytes as its secret key.
        let iroh = iroh_base::SecretKey::from_bytes(&identity.to_secret_bytes());
        prop_assert_eq!(*iroh.public().as_bytes(), *identity.node_id().as_bytes());
    }
}

#[test]
fn base32_form_parses_to_the_same_id() {
    let identity = NetworkIdentity::from_secret_bytes(&[7u8; 32]);
    let id = identity.node_id();
    let base32 = data_encoding::BASE32_NOPAD.encode(id.as_bytes());
    assert_eq!(NodeId::from_str(&base32).unwrap(), id);
    assert_eq!(NodeId::from_str(&base32.to_lowercase()).unwrap(), id);
    // iroh reads the same base32 text as the same key.
    assert_eq!(
        iroh_base::PublicKey::from_str(&base32).unwrap().as_bytes(),
        id.as_bytes()
    );
}
