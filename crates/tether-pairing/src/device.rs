//! `LocalDevice`, what each side brings to a handshake, and the transcript signatures and
//! device-info checks both sides perform.

use std::fmt;

use tether_identity::{DeviceInfo, NetworkIdentity, NodeId, Signature, SigningContext};

use crate::schedule::Role;
use crate::{Misbehavior, UsageError};

/// The context of the transcript signatures; a signature made here verifies nowhere else.
pub const TRANSCRIPT_SIGNING_CONTEXT: SigningContext =
    SigningContext::new("tether/v1/pairing/transcript");

const SIGNED_BY_JOINER: &[u8] = b"joiner";
const SIGNED_BY_INITIATOR: &[u8] = b"initiator";

/// This device, as it takes part in pairing: its identity and the device info it will send.
///
/// ```
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity};
/// use tether_pairing::LocalDevice;
///
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let identity = NetworkIdentity::generate(&mut rng);
/// let info = DeviceInfo {
///     device_id: DeviceId::random(&mut rng),
///     device_name: DeviceName::new("Anna's laptop").unwrap(),
///     device_type: DeviceType::Laptop,
///     public_key: identity.node_id(),
/// };
/// let device = LocalDevice::new(identity, info)?;
/// # Ok::<(), tether_pairing::UsageError>(())
/// ```
#[derive(Clone)]
pub struct LocalDevice {
    identity: NetworkIdentity,
    info: DeviceInfo,
    info_json: Vec<u8>,
}

impl LocalDevice {
    /// Longest device info, as JSON, that pairing carries.
    pub const MAX_INFO_LEN: usize = 1024;

    /// Pairs an identity with the info it will announce; the info must name the identity's key.
    pub fn new(identity: NetworkIdentity, info: DeviceInfo) -> Result<Self, UsageError> {
        if info.public_key != identity.node_id() {
            return Err(UsageError::DeviceInfoKeyMismatch);
        }
        Self::new_unchecked(identity, info)
    }

    /// Like [`Self::new`] without the key check, so tests can play a device that lies about
    /// its key. Only with the `danger` feature (tests, fuzzing): the peer would refuse the
    /// handshake anyway.
    #[cfg(any(test, feature = "danger"))]
    #[doc(hidden)]
    pub fn danger_new_unchecked(
        identity: NetworkIdentity,
        info: DeviceInfo,
    ) -> Result<Self, UsageError> {
        Self::new_unchecked(identity, info)
    }

    fn new_unchecked(identity: NetworkIdentity, info: DeviceInfo) -> Result<Self, UsageError> {
        let info_json = serde_json::to_vec(&info)
            .map_err(|_| UsageError::InvalidConfig("device info does not serialize"))?;
        if info_json.len() > Self::MAX_INFO_LEN {
            return Err(UsageError::DeviceInfoTooLarge {
                len: info_json.len(),
                max: Self::MAX_INFO_LEN,
            });
        }
        Ok(Self {
            identity,
            info,
            info_json,
        })
    }

    /// This device's node id (its endpoint id).
    pub fn node_id(&self) -> NodeId {
        self.identity.node_id()
    }

    /// The info this device sends.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    pub(crate) fn info_json(&self) -> &[u8] {
        &self.info_json
    }

    /// Signs a transcript hash as `role`.
    pub(crate) fn sign_transcript(&self, role: Role, hash: &[u8; 32]) -> Signature {
        self.identity
            .sign(TRANSCRIPT_SIGNING_CONTEXT, &signed_message(role, hash))
    }
}

impl fmt::Debug for LocalDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalDevice")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// Checks that `peer` signed `hash` as `role`.
pub(crate) fn verify_transcript(
    peer: &NodeId,
    role: Role,
    hash: &[u8; 32],
    signature: &Signature,
) -> Result<(), Misbehavior> {
    peer.verify(
        TRANSCRIPT_SIGNING_CONTEXT,
        &signed_message(role, hash),
        signature,
    )
    .map_err(|_| Misbehavior::BadSignature)
}

/// Reads the peer's device info and checks that it claims the key the transport authenticated
/// and that its name cannot pass for a device id (`DeviceName::looks_like_id`).
pub(crate) fn read_peer_info(json: &[u8], peer: &NodeId) -> Result<DeviceInfo, Misbehavior> {
    if json.len() > LocalDevice::MAX_INFO_LEN {
        return Err(Misbehavior::InvalidDeviceInfo);
    }
    let info: DeviceInfo =
        serde_json::from_slice(json).map_err(|_| Misbehavior::InvalidDeviceInfo)?;
    info.check_claimed_key(peer)
        .map_err(|_| Misbehavior::ClaimedKeyMismatch)?;
    if info.device_name.looks_like_id() {
        return Err(Misbehavior::IdLikeName {
            name: info.device_name.to_string(),
        });
    }
    Ok(info)
}

/// What is signed: who signs, then the hash, so neither side's signature can stand in for the
/// other's.
fn signed_message(role: Role, hash: &[u8; 32]) -> Vec<u8> {
    let who = match role {
        Role::Joiner => SIGNED_BY_JOINER,
        Role::Initiator => SIGNED_BY_INITIATOR,
    };
    [who, hash.as_slice()].concat()
}

/// The initiator's sealed payload: `u16 length ‖ device info JSON ‖ 64-byte signature`.
pub(crate) fn join_info_and_signature(info_json: &[u8], signature: &Signature) -> Vec<u8> {
    let len = u16::try_from(info_json.len()).unwrap_or(u16::MAX);
    [&len.to_be_bytes()[..], info_json, &signature.to_bytes()].concat()
}

pub(crate) fn split_info_and_signature(
    plaintext: &[u8],
) -> Result<(&[u8], Signature), Misbehavior> {
    let (len, rest) = plaintext
        .split_first_chunk::<2>()
        .ok_or(Misbehavior::InvalidDeviceInfo)?;
    let (info, signature) = rest
        .split_at_checked(usize::from(u16::from_be_bytes(*len)))
        .ok_or(Misbehavior::InvalidDeviceInfo)?;
    let signature = Signature::from_slice(signature).map_err(|_| Misbehavior::BadSignature)?;
    Ok((info, signature))
}

/// An honest device for unit tests.
#[cfg(test)]
pub(crate) fn test_device<R: rand_core::CryptoRng>(rng: &mut R, name: &str) -> LocalDevice {
    let identity = NetworkIdentity::generate(rng);
    let info = DeviceInfo {
        device_id: tether_identity::DeviceId::random(rng),
        device_name: tether_identity::DeviceName::new(name).unwrap(),
        device_type: tether_identity::DeviceType::Other,
        public_key: identity.node_id(),
    };
    LocalDevice::new(identity, info).unwrap()
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::{DeviceId, DeviceName, DeviceType};

    use super::*;

    fn device(seed: u64) -> LocalDevice {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identity = NetworkIdentity::generate(&mut rng);
        let info = DeviceInfo {
            device_id: DeviceId::random(&mut rng),
            device_name: DeviceName::new("test").unwrap(),
            device_type: DeviceType::Phone,
            public_key: identity.node_id(),
        };
        LocalDevice::new(identity, info).unwrap()
    }

    #[test]
    fn signatures_bind_signer_role_and_hash() {
        let (alice, bob) = (device(1), device(2));
        let hash = [7u8; 32];
        let signature = alice.sign_transcript(Role::Joiner, &hash);
        assert_eq!(
            verify_transcript(&alice.node_id(), Role::Joiner, &hash, &signature),
            Ok(())
        );
        let bad = Err(Misbehavior::BadSignature);
        assert_eq!(
            verify_transcript(&bob.node_id(), Role::Joiner, &hash, &signature),
            bad
        );
        assert_eq!(
            verify_transcript(&alice.node_id(), Role::Initiator, &hash, &signature),
            bad
        );
        assert_eq!(
            verify_transcript(&alice.node_id(), Role::Joiner, &[8u8; 32], &signature),
            bad
        );
    }

    #[test]
    fn peer_info_must_claim_the_authenticated_key() {
        let (alice, bob) = (device(1), device(2));
        assert_eq!(
            read_peer_info(alice.info_json(), &alice.node_id()).as_ref(),
            Ok(alice.info())
        );
        assert_eq!(
            read_peer_info(alice.info_json(), &bob.node_id()),
            Err(Misbehavior::ClaimedKeyMismatch)
        );
        assert_eq!(
            read_peer_info(b"{}", &bob.node_id()),
            Err(Misbehavior::InvalidDeviceInfo)
        );
        assert_eq!(
            LocalDevice::new(
                NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(5)),
                alice.info().clone()
            )
            .map(|_| ()),
            Err(UsageError::DeviceInfoKeyMismatch)
        );
    }
}
