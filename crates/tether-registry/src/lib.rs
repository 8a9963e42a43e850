//! What a Tether device knows, kept safe across restarts, crashes and stolen disks.
//!
//! - [`KeyManager`] loads this device's Ed25519 key and the [`StorageKey`] at start-up, from
//!   the OS keychain where one works, else from the key file `device.key`, encrypted with an
//!   Argon2id-derived key from a passphrase (given up front, or asked for through a
//!   [`PassphrasePrompt`]). A new key is written in the clear (mode 0600) only when the caller
//!   asks for it by name ([`KeyOptions::insecure_key_file`]); otherwise it is refused with
//!   [`KeyError::ProtectionRequired`]. [`KeyManager::protect`] seals an existing unprotected
//!   key file in place, atomically. [`KeyManager::storage_kind`] says which (for `doctor`). A
//!   damaged key file, a wrong passphrase or a missing keychain entry stops start-up with a
//!   [`KeyError`] that names the file and the way out; an identity is never silently made anew.
//! - [`DeviceRegistry`] is the single source of truth for every known device: its
//!   [`DeviceState`] (`Discovered → Pairing → Paired → Connected ↔ Disconnected`, every other
//!   step refused with a typed error), its [`TrustLevel`], and, for paired devices, a record in
//!   `secrets.redb` (device info, node id, pairing secret, time of pairing, trust, last known
//!   addresses and relay) encrypted with ChaCha20-Poly1305 under the storage key. Unpairing
//!   ([`DeviceRegistry::revoke`]) deletes the record and refuses the node from then on.
//!   Lookups by node id and device id, concurrent readers, and a stream of [`RegistryEvent`]s.
//! - The transfer history ([`DeviceRegistry::append_history`], [`DeviceRegistry::history`]):
//!   one sealed entry per transfer (the facade's record, opaque here) with the peer's node id,
//!   newest first, at most [`MAX_HISTORY`] kept (adding one more drops the oldest in the same
//!   transaction).
//! - The outbox ([`DeviceRegistry::queue_outbox`], [`DeviceRegistry::outbox`]): sends queued
//!   for a device until they are delivered or cancelled, one sealed entry each (the facade's
//!   record, opaque here) with the device's node id, oldest first, at most [`MAX_OUTBOX`]
//!   (one more is refused with [`RegistryError::OutboxFull`]).
//! - [`Profile`] is this device's id, name and type in `device.json`
//!   ([`Profile::load_or_create`]): made on first start, a given name or type replaces the
//!   stored one, and a different device id is refused ([`ProfileError::DeviceIdMismatch`]).
//!
//! Files live in one data directory (mode 0700); the key file and the store have mode 0600
//! (`device.json` holds nothing secret and keeps the process's default mode). The key file is
//! written once, atomically (and replaced only by [`KeyManager::protect`], atomically too); each
//! registry change is one `fsync`ed redb transaction; a store or key file that fails a check is
//! never modified or deleted.
//!
//! ```
//! use std::time::SystemTime;
//! use tether_registry::{DeviceRegistry, KeyManager, KeyOptions, KeychainPolicy};
//!
//! let dir = tempfile::tempdir()?;
//! // No keychain here; a test may keep its key unprotected, by name.
//! let options = KeyOptions::default()
//!     .keychain(KeychainPolicy::Never)
//!     .insecure_key_file();
//! let keys = KeyManager::open_or_create(dir.path(), &options)?;
//! let registry = DeviceRegistry::open(dir.path(), keys.storage_key())?;
//! assert!(registry.paired_devices().is_empty());
//!
//! // The same identity after a restart.
//! let node_id = keys.node_id();
//! drop((keys, registry));
//! assert_eq!(KeyManager::open(dir.path(), &options)?.node_id(), node_id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # On disk
//!
//! ```text
//! <data dir>/            mode 0700
//!   device.key           mode 0600, written once (temp file, fsync, no-clobber rename, fsync dir);
//!                        `protect` replaces kind 3 by kind 2 (temp file, fsync, rename, fsync dir)
//!     "tether-device-key\n" | version 1 | kind | node id (32)
//!       kind 1, OS keychain: account id (16); entry service "tether", account "device-key-<hex>"
//!       kind 2, passphrase:  Argon2id memory KiB, passes, lanes (u32 LE each) | salt (16)
//!                            | nonce (12) | ChaCha20-Poly1305(secrets) (64 + 16 tag),
//!                            associated data = every byte before the ciphertext
//!       kind 3, unprotected: secrets (64)
//!     | SHA-256 of everything before (32)
//!     secrets = device key (32) | storage key (32)
//!   device.json          pretty JSON {"device_id": UUID, "device_name", "device_type"}, written
//!                        to device.json.tmp and renamed over it
//!   secrets.redb         mode 0600, redb 4, schema version [`SCHEMA_VERSION`]
//!     tether_meta     "schema_version" -> u64, "outbox_next" -> u64
//!     paired_devices  node id (32) -> format 1 | nonce (12) | ChaCha20-Poly1305 under the
//!                     storage key of (pairing secret (32) | JSON {info, paired_at_ms, trust,
//!                     addresses, relay_url}) | tag (16); associated data =
//!                     "tether/v1/registry/paired-device" | format | node id
//!     revoked_nodes   node id (32) -> revoked at, ms since the Unix epoch
//!     transfer_history  entry number (u64, grows) -> format 1 | nonce (12) |
//!                     ChaCha20-Poly1305 under the storage key of (peer node id (32) | body)
//!                     | tag (16); associated data = "tether/v1/registry/transfer-history" |
//!                     format | number (u64 BE); at most [`MAX_HISTORY`] entries (schema 2)
//!     outbox          entry number (u64, never reused; the next in tether_meta "outbox_next")
//!                     -> format 1 | nonce (12) | ChaCha20-Poly1305 under the storage key of
//!                     (device node id (32) | body) | tag (16); associated data =
//!                     "tether/v1/registry/outbox" | format | number (u64 BE); at most
//!                     [`MAX_OUTBOX`] entries (schema 3)
//! ```
//!
//! Argon2id defaults to RFC 9106's second recommended option ([`Argon2Params`]). A newer
//! schema version is refused with [`StoreError::NewerSchema`]; older ones are upgraded in
//! place, in one transaction, by the migration steps in `store.rs`.

mod bandwidth;
mod error;
mod history;
mod key_file;
mod key_manager;
mod key_storage;
mod keychain;
mod outbox;
mod passphrase;
mod private_fs;
mod profile;
mod record;
mod registry;
mod sealed_entry;
mod state;
mod store;

pub use bandwidth::{
    Bandwidth, BandwidthAccount, BandwidthGrant, BandwidthQuota, BandwidthRefusal, BandwidthUse,
    ByteSize, QuotaDirection, QuotaParseError, QuotaPeriod, UtcMinute,
};
pub use error::{BoxedSource, KeyError, RegistryError, StoreError};
pub use history::{HistoryEntry, MAX_HISTORY, MAX_HISTORY_BODY};
pub use key_file::Argon2Params;
pub use key_manager::{KEY_FILE, KeyManager, KeyOptions, KeychainPolicy};
pub use key_storage::KeyStorageKind;
pub use outbox::{MAX_OUTBOX, MAX_OUTBOX_BODY, OutboxRecord};
pub use passphrase::{PassphrasePrompt, PassphrasePurpose};
pub use profile::{PROFILE_FILE, Profile, ProfileError};
pub use record::{
    MAX_ADDRESSES, MAX_RELAY_URL_LEN, NameSync, NewPairing, PairedDevice, StorageKey, TrustLevel,
};
pub use registry::{DeviceRegistry, EVENT_CAPACITY, MAX_DISCOVERED, StorageRefusal};
pub use state::{
    ConnectionInfo, ConnectionPath, ConnectionRefused, Device, DeviceState, DisconnectReason,
    PairingSessionId, RegistryEvent, StateKind,
};
pub use store::{SCHEMA_VERSION, SECRETS_FILE};
