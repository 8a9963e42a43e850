//! A paired device's stored record, and how it is sealed under the storage key.
//!
//! The value stored in `secrets.redb` for a node id is
//!
//! ```text
//! 1 byte   record format (1)
//! 12 bytes nonce (random per write)
//! n bytes  ChaCha20-Poly1305 ciphertext of: pairing secret (32 bytes) ‖ JSON of the rest
//! 16 bytes tag
//! ```
//!
//! with associated data `"tether/v1/registry/paired-device" ‖ record format ‖ node id`, so a
//! record cannot be moved to another node id or passed off as another format. The whole record
//! is encrypted, not only the pairing secret: names and addresses say where a person's devices
//! are. The secret comes first and outside the JSON so that no serializer buffer ever holds it.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, Nonce, Tag};
use serde::{Deserialize, Serialize};
use tether_crypto::PairingSecret;
use tether_identity::{DeviceInfo, NodeId};
use zeroize::Zeroizing;

use crate::bandwidth::Bandwidth;

/// How much a paired device is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TrustLevel {
    /// Connections are accepted.
    Trusted,
    /// Still paired, but every connection is refused until trusted again.
    Blocked,
}

/// The most addresses kept per device, newest first.
pub const MAX_ADDRESSES: usize = 8;
/// The longest relay URL accepted, in bytes.
pub const MAX_RELAY_URL_LEN: usize = 2048;

/// What this device knows about a paired peer, without the pairing secret.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PairedDevice {
    /// The peer's node id (its public key), equal to `info.public_key`.
    pub node_id: NodeId,
    /// What the peer said about itself when it paired (the name may since be renamed here).
    pub info: DeviceInfo,
    /// When the pairing completed.
    pub paired_at: SystemTime,
    /// Whether connections are accepted.
    pub trust: TrustLevel,
    /// Whether the person marked this device to send files here without being asked. Off
    /// after pairing (and after pairing again); only the person turns it on.
    pub auto_accept: bool,
    /// Most bytes this device may store here, set by the person; `None`: the app's default.
    pub quota: Option<u64>,
    /// Bytes of files this device's accepted transfers may place here, counted at each
    /// accepted offer (before any byte is written) and kept until the person resets it or
    /// the device is unpaired. Deleting the files does not lower it.
    pub stored_bytes: u64,
    /// Bandwidth quotas per direction and their use in the current period.
    pub bandwidth: Bandwidth,
    /// Addresses the peer was last reached at, newest first, at most [`MAX_ADDRESSES`].
    pub addresses: Vec<SocketAddr>,
    /// The relay the peer was last reachable through.
    pub relay_url: Option<String>,
    /// Where the name shown for the peer came from, and what the peer was told of ours.
    pub names: NameSync,
}

/// How a paired device's name follows its renames, and ours reaches it.
///
/// A device that renames itself tells the devices it is paired with in a signed update
/// stamped with the rename's time (milliseconds since the Unix epoch); a newer stamp replaces
/// the name shown for it, unless the person renamed it here, which wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NameSync {
    /// The stamp of the peer's rename whose name was applied; 0: the name it paired with.
    #[serde(default)]
    pub changed_ms: u64,
    /// Whether the person renamed the peer here (its own renames then no longer change the
    /// name shown).
    #[serde(default)]
    pub named_here: bool,
    /// The stamp of our own rename the peer acknowledged; 0: none.
    #[serde(default)]
    pub told_ms: u64,
}

/// The outcome of a successful pairing, as the registry stores it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewPairing {
    /// The peer's device info, already checked against `node_id` by the pairing protocol.
    pub info: DeviceInfo,
    /// The peer's node id, as authenticated by the transport.
    pub node_id: NodeId,
    /// The 32-byte secret both devices agreed on.
    pub secret: PairingSecret,
    /// When the pairing completed.
    pub paired_at: SystemTime,
    /// Where the peer was reached.
    pub addresses: Vec<SocketAddr>,
    /// The peer's relay, if known.
    pub relay_url: Option<String>,
}

impl NewPairing {
    /// A pairing with no known addresses or relay.
    pub fn new(
        info: DeviceInfo,
        node_id: NodeId,
        secret: PairingSecret,
        paired_at: SystemTime,
    ) -> Self {
        Self {
            info,
            node_id,
            secret,
            paired_at,
            addresses: Vec::new(),
            relay_url: None,
        }
    }

    /// Adds the addresses the peer was reached at.
    pub fn with_addresses(mut self, addresses: impl IntoIterator<Item = SocketAddr>) -> Self {
        self.addresses.extend(addresses);
        self
    }

    /// Sets the peer's relay.
    pub fn with_relay_url(mut self, relay_url: impl Into<String>) -> Self {
        self.relay_url = Some(relay_url.into());
        self
    }
}

/// The key that encrypts every record of `secrets.redb`. Held by the
/// [`crate::KeyManager`] beside the device key; wiped on drop, never shown by `Debug`.
#[derive(Clone)]
pub struct StorageKey(Zeroizing<[u8; 32]>);

impl StorageKey {
    /// Wraps 32 key bytes.
    pub fn from_bytes(bytes: Zeroizing<[u8; 32]>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

/// A record as it lives in memory: the public part and the secret.
#[derive(Clone)]
pub(crate) struct StoredDevice {
    pub(crate) device: PairedDevice,
    pub(crate) secret: PairingSecret,
}

const FORMAT: u8 = 1;
const AAD_LABEL: &[u8] = b"tether/v1/registry/paired-device";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// The JSON part of a record.
#[derive(Serialize, Deserialize)]
struct Body {
    info: DeviceInfo,
    paired_at_ms: u64,
    trust: TrustLevel,
    /// Absent in records written before the mark existed: off.
    #[serde(default)]
    auto_accept: bool,
    /// Absent in records written before quotas existed: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quota: Option<u64>,
    /// Absent in records written before quotas existed: 0.
    #[serde(default)]
    stored_bytes: u64,
    /// Absent in records written before bandwidth quotas existed (or with none): none.
    #[serde(default, skip_serializing_if = "Bandwidth::is_unset")]
    bandwidth: Bandwidth,
    addresses: Vec<SocketAddr>,
    relay_url: Option<String>,
    /// Absent in records written before names followed renames: the pairing's name.
    #[serde(default)]
    names: NameSync,
}

/// Why a stored value could not be read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpenFailure {
    /// Wrong key, altered bytes, or an unknown record format.
    Undecryptable,
    /// It decrypted, but its content is not a valid record.
    Malformed,
}

impl StoredDevice {
    /// Seals the record with a fresh random nonce.
    pub(crate) fn seal(&self, key: &StorageKey) -> Result<Vec<u8>, getrandom::Error> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let body = Body {
            info: self.device.info.clone(),
            paired_at_ms: unix_millis(self.device.paired_at),
            trust: self.device.trust,
            auto_accept: self.device.auto_accept,
            quota: self.device.quota,
            stored_bytes: self.device.stored_bytes,
            bandwidth: self.device.bandwidth,
            addresses: self.device.addresses.clone(),
            relay_url: self.device.relay_url.clone(),
            names: self.device.names,
        };
        // Serializing these types cannot fail (no maps with non-string keys, no custom errors).
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut plaintext = Zeroizing::new(Vec::with_capacity(32 + json.len()));
        plaintext.extend_from_slice(self.secret.as_bytes());
        plaintext.extend_from_slice(&json);
        let tag = match cipher(key).encrypt_inout_detached(
            &Nonce::from(nonce),
            &aad(&self.device.node_id),
            plaintext.as_mut_slice().into(),
        ) {
            Ok(tag) => tag,
            // ChaCha20-Poly1305 fails only for messages longer than 256 GiB.
            Err(_) => unreachable!("a record is far below the AEAD's size limit"),
        };
        let mut out = Vec::with_capacity(1 + NONCE_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plaintext);
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a value stored under `node_id`.
    pub(crate) fn open(
        key: &StorageKey,
        node_id: NodeId,
        value: &[u8],
    ) -> Result<Self, OpenFailure> {
        let (&format, rest) = value.split_first().ok_or(OpenFailure::Undecryptable)?;
        if format != FORMAT {
            return Err(OpenFailure::Undecryptable);
        }
        let (nonce, rest) = rest
            .split_first_chunk::<NONCE_LEN>()
            .ok_or(OpenFailure::Undecryptable)?;
        let (ciphertext, tag) = rest
            .split_last_chunk::<TAG_LEN>()
            .ok_or(OpenFailure::Undecryptable)?;
        let mut plaintext = Zeroizing::new(ciphertext.to_vec());
        cipher(key)
            .decrypt_inout_detached(
                &Nonce::from(*nonce),
                &aad(&node_id),
                plaintext.as_mut_slice().into(),
                &Tag::from(*tag),
            )
            .map_err(|_| OpenFailure::Undecryptable)?;
        let (secret, json) = plaintext
            .split_first_chunk::<32>()
            .ok_or(OpenFailure::Malformed)?;
        let body: Body = serde_json::from_slice(json).map_err(|_| OpenFailure::Malformed)?;
        if body.info.public_key != node_id || body.addresses.len() > MAX_ADDRESSES {
            return Err(OpenFailure::Malformed);
        }
        Ok(Self {
            device: PairedDevice {
                node_id,
                info: body.info,
                paired_at: from_unix_millis(body.paired_at_ms),
                trust: body.trust,
                auto_accept: body.auto_accept,
                quota: body.quota,
                stored_bytes: body.stored_bytes,
                bandwidth: body.bandwidth,
                addresses: body.addresses,
                relay_url: body.relay_url,
                names: body.names,
            },
            secret: PairingSecret::from_bytes(*secret),
        })
    }
}

pub(crate) fn cipher(key: &StorageKey) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&(*key.0).into())
}

fn aad(node_id: &NodeId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_LABEL.len() + 1 + NodeId::LENGTH);
    aad.extend_from_slice(AAD_LABEL);
    aad.push(FORMAT);
    aad.extend_from_slice(node_id.as_bytes());
    aad
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The inverse of [`unix_millis`].
pub(crate) fn from_unix_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::{DeviceId, DeviceName, DeviceType, NetworkIdentity};

    use super::*;

    #[test]
    fn a_record_from_before_the_auto_accept_mark_reads_as_unmarked() {
        let device = sample().device;
        let mut json = serde_json::to_value(Body {
            info: device.info,
            paired_at_ms: 1,
            trust: TrustLevel::Trusted,
            auto_accept: true,
            quota: None,
            stored_bytes: 0,
            bandwidth: Bandwidth::default(),
            addresses: Vec::new(),
            relay_url: None,
            names: NameSync::default(),
        })
        .unwrap();
        json.as_object_mut().unwrap().remove("auto_accept");
        let body: Body = serde_json::from_value(json).unwrap();
        assert!(!body.auto_accept);
    }

    fn sample() -> StoredDevice {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let identity = NetworkIdentity::generate(&mut rng);
        StoredDevice {
            device: PairedDevice {
                node_id: identity.node_id(),
                info: DeviceInfo {
                    device_id: DeviceId::random(&mut rng),
                    device_name: DeviceName::new("Anna's phone").unwrap(),
                    device_type: DeviceType::Phone,
                    public_key: identity.node_id(),
                },
                paired_at: from_unix_millis(1_700_000_000_123),
                trust: TrustLevel::Trusted,
                auto_accept: true,
                quota: None,
                stored_bytes: 0,
                bandwidth: Bandwidth::default(),
                addresses: vec!["192.0.2.1:4433".parse().unwrap()],
                relay_url: Some("https://relay.example/".to_owned()),
                names: NameSync {
                    changed_ms: 1_700_000_000_456,
                    named_here: true,
                    told_ms: 7,
                },
            },
            secret: PairingSecret::from_bytes([0x5a; 32]),
        }
    }

    fn key(byte: u8) -> StorageKey {
        StorageKey::from_bytes(Zeroizing::new([byte; 32]))
    }

    #[test]
    fn round_trip() {
        let record = sample();
        let sealed = record.seal(&key(1)).unwrap();
        let opened = StoredDevice::open(&key(1), record.device.node_id, &sealed).unwrap();
        assert_eq!(opened.device, record.device);
        assert_eq!(opened.secret.as_bytes(), record.secret.as_bytes());
    }

    #[test]
    fn nothing_readable_in_the_sealed_value() {
        let record = sample();
        let sealed = record.seal(&key(1)).unwrap();
        assert!(!sealed.windows(32).any(|w| w == [0x5a; 32]));
        assert!(!sealed.windows(5).any(|w| w == b"Anna'"));
        // Fresh nonce per write.
        assert_ne!(sealed, record.seal(&key(1)).unwrap());
    }

    #[test]
    fn wrong_key_other_node_or_any_flipped_bit_fails() {
        let record = sample();
        let sealed = record.seal(&key(1)).unwrap();
        let node = record.device.node_id;
        assert_eq!(
            StoredDevice::open(&key(2), node, &sealed).err(),
            Some(OpenFailure::Undecryptable)
        );
        let other = NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(4)).node_id();
        assert!(StoredDevice::open(&key(1), other, &sealed).is_err());
        for index in 0..sealed.len() {
            let mut damaged = sealed.clone();
            damaged[index] ^= 1;
            assert!(StoredDevice::open(&key(1), node, &damaged).is_err());
        }
        for len in 0..sealed.len() {
            assert!(StoredDevice::open(&key(1), node, &sealed[..len]).is_err());
        }
    }

    #[test]
    fn millis_round_trip() {
        let time = from_unix_millis(1_234_567);
        assert_eq!(unix_millis(time), 1_234_567);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
    }
}
