//! `DeviceRegistry`: every device this one knows, its state, and the paired ones on disk.
//!
//! Reads take a shared lock and copy out what they need, so any number of tasks can look up
//! devices while one writes. Writes are serialised: each checks the current state, saves to
//! `secrets.redb` (and waits for the `fsync`) without blocking readers, then updates memory and
//! publishes a [`RegistryEvent`]. If saving fails, memory is not changed either.
//!
//! The methods block for the length of a disk write; call them from `spawn_blocking` (or a
//! thread) in async code.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Instant, SystemTime};

use parking_lot::{Mutex, MutexGuard, RwLock};
use tether_crypto::PairingSecret;
use tether_identity::{DeviceId, DeviceName, NodeId};
use tokio::sync::broadcast;

use crate::record::{MAX_ADDRESSES, MAX_RELAY_URL_LEN, NameSync, StoredDevice};
use crate::state::{
    ConnectionInfo, ConnectionRefused, Device, DeviceState, DisconnectReason, PairingSessionId,
    RegistryEvent, StateKind,
};
use crate::store::SecretsStore;
use crate::{
    MAX_HISTORY, NewPairing, PairedDevice, RegistryError, SECRETS_FILE, StorageKey, StoreError,
    TrustLevel, private_fs,
};

mod bandwidth;
mod history;
mod names;
mod outbox;
mod quota;
mod refusal;

pub use refusal::StorageRefusal;

/// How many events a slow subscriber may fall behind before it sees
/// [`broadcast::error::RecvError::Lagged`] (and should re-read [`DeviceRegistry::devices`]).
pub const EVENT_CAPACITY: usize = 1024;

/// Most devices the registry keeps that are known from discovery only (never paired): anyone
/// on the LAN can announce as many endpoint ids as they like.
pub const MAX_DISCOVERED: usize = 1024;

/// The single source of truth for known devices. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct DeviceRegistry {
    shared: Arc<Shared>,
}

struct Shared {
    devices: RwLock<Devices>,
    /// Held for the whole of every change, so changes apply in order. `None` once
    /// [`DeviceRegistry::close`] has released the file.
    store: Mutex<Option<SecretsStore>>,
    store_path: PathBuf,
    events: broadcast::Sender<RegistryEvent>,
    /// The most transfer history entries kept.
    history_cap: AtomicUsize,
}

#[derive(Default)]
struct Devices {
    by_node: HashMap<NodeId, Entry>,
    by_device_id: HashMap<DeviceId, NodeId>,
    revoked: HashMap<NodeId, SystemTime>,
}

struct Entry {
    state: DeviceState,
    stored: Option<StoredDevice>,
    /// Where the device was last discovered, to fall back to if a pairing fails.
    seen_at: Option<SocketAddr>,
    /// When discovery last reported the device (`None` if it never did).
    seen: Option<Instant>,
}

impl Entry {
    fn view(&self, node_id: NodeId) -> Device {
        Device {
            node_id,
            state: self.state.clone(),
            paired: self.stored.as_ref().map(|stored| stored.device.clone()),
        }
    }
}

impl DeviceRegistry {
    /// Opens the registry of the data directory `data_dir` (creating it and `secrets.redb`
    /// on first use), with every paired device in state [`DeviceState::Paired`].
    pub fn open(data_dir: &Path, key: &StorageKey) -> Result<Self, StoreError> {
        private_fs::ensure_private_dir(data_dir).map_err(|source| StoreError::Io {
            action: "create",
            path: data_dir.to_owned(),
            source,
        })?;
        let (store, contents) = SecretsStore::open(&data_dir.join(SECRETS_FILE), key.clone())?;
        let mut devices = Devices {
            revoked: contents.revoked,
            ..Devices::default()
        };
        for stored in contents.devices {
            let node_id = stored.device.node_id;
            devices
                .by_device_id
                .insert(stored.device.info.device_id, node_id);
            devices.by_node.insert(
                node_id,
                Entry {
                    state: DeviceState::Paired,
                    stored: Some(stored),
                    seen_at: None,
                    seen: None,
                },
            );
        }
        tracing::info!(
            path = %store.path().display(),
            paired = devices.by_node.len(),
            revoked = devices.revoked.len(),
            "opened the device registry"
        );
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            shared: Arc::new(Shared {
                devices: RwLock::new(devices),
                store_path: store.path().to_owned(),
                store: Mutex::new(Some(store)),
                events,
                history_cap: AtomicUsize::new(MAX_HISTORY),
            }),
        })
    }

    /// A stream of every change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RegistryEvent> {
        self.shared.events.subscribe()
    }

    /// The path of `secrets.redb`.
    pub fn store_path(&self) -> &Path {
        &self.shared.store_path
    }

    /// The device with this node id.
    pub fn device(&self, node_id: &NodeId) -> Option<Device> {
        self.shared
            .devices
            .read()
            .by_node
            .get(node_id)
            .map(|entry| entry.view(*node_id))
    }

    /// The paired device with this device id.
    pub fn device_by_id(&self, device_id: &DeviceId) -> Option<Device> {
        let devices = self.shared.devices.read();
        let node_id = devices.by_device_id.get(device_id)?;
        devices
            .by_node
            .get(node_id)
            .map(|entry| entry.view(*node_id))
    }

    /// Every known device, in no particular order.
    pub fn devices(&self) -> Vec<Device> {
        self.shared
            .devices
            .read()
            .by_node
            .iter()
            .map(|(node_id, entry)| entry.view(*node_id))
            .collect()
    }

    /// Every paired device's record, in no particular order.
    pub fn paired_devices(&self) -> Vec<PairedDevice> {
        self.shared
            .devices
            .read()
            .by_node
            .values()
            .filter_map(|entry| entry.stored.as_ref().map(|stored| stored.device.clone()))
            .collect()
    }

    /// Whether this node's pairing was revoked (and it has not paired again since).
    pub fn is_revoked(&self, node_id: &NodeId) -> bool {
        self.shared.devices.read().revoked.contains_key(node_id)
    }

    /// The gate: whether a connection from `node_id` may proceed, and if so the pairing secret
    /// its session handshake needs.
    pub fn check_connection(&self, node_id: &NodeId) -> Result<PairingSecret, ConnectionRefused> {
        let devices = self.shared.devices.read();
        gate(&devices, node_id).map(|stored| stored.secret.clone())
    }

    /// Records that `node_id` was seen at `addr`. Allowed for unknown and discovered devices.
    ///
    /// At most [`MAX_DISCOVERED`] devices are kept that are known from discovery only; a
    /// newcomer beyond that pushes out the one seen longest ago (reported as
    /// [`RegistryEvent::Forgotten`]).
    pub fn discovered(&self, node_id: NodeId, addr: SocketAddr) -> Result<(), RegistryError> {
        let _store = self.shared.store.lock();
        let from = self.kind_of(&node_id);
        match from {
            None | Some(StateKind::Discovered) => {}
            Some(_) => return Err(illegal(node_id, from, StateKind::Discovered)),
        }
        if from.is_none() {
            let pushed_out = {
                let mut devices = self.shared.devices.write();
                let discovered = devices
                    .by_node
                    .values()
                    .filter(|entry| matches!(entry.state, DeviceState::Discovered { .. }));
                if discovered.count() >= MAX_DISCOVERED {
                    let oldest = devices
                        .by_node
                        .iter()
                        .filter(|(_, entry)| matches!(entry.state, DeviceState::Discovered { .. }))
                        .min_by_key(|(_, entry)| entry.seen)
                        .map(|(node, _)| *node);
                    oldest.inspect(|node| {
                        devices.by_node.remove(node);
                    })
                } else {
                    None
                }
            };
            if let Some(node_id) = pushed_out {
                self.emit(RegistryEvent::Forgotten { node_id });
            }
        }
        let to = DeviceState::Discovered { addr };
        let changed = {
            let mut devices = self.shared.devices.write();
            let entry = devices.by_node.entry(node_id).or_insert(Entry {
                state: to.clone(),
                stored: None,
                seen_at: None,
                seen: None,
            });
            entry.seen_at = Some(addr);
            entry.seen = Some(Instant::now());
            let changed = from.is_none() || entry.state != to;
            entry.state = to.clone();
            changed
        };
        if changed {
            self.emit(RegistryEvent::StateChanged { node_id, from, to });
        }
        Ok(())
    }

    /// Forgets a device known from discovery only (its announcement expired, or discovery
    /// reported it lost). Paired and revoked devices are not touched. Returns whether it was
    /// forgotten.
    pub fn forget_discovered(&self, node_id: NodeId) -> bool {
        let _store = self.shared.store.lock();
        let removed = {
            let mut devices = self.shared.devices.write();
            let discovered_only = devices.by_node.get(&node_id).is_some_and(|entry| {
                matches!(entry.state, DeviceState::Discovered { .. }) && entry.stored.is_none()
            });
            discovered_only && devices.by_node.remove(&node_id).is_some()
        };
        if removed {
            self.emit(RegistryEvent::Forgotten { node_id });
        }
        removed
    }

    /// Starts a pairing with `node_id`: allowed for unknown and discovered devices (a revoked
    /// device may pair again; that takes a new code from the user).
    pub fn begin_pairing(
        &self,
        node_id: NodeId,
        session: PairingSessionId,
    ) -> Result<(), RegistryError> {
        let _store = self.shared.store.lock();
        let from = self.kind_of(&node_id);
        match from {
            None | Some(StateKind::Discovered) => {}
            Some(_) => return Err(illegal(node_id, from, StateKind::Pairing)),
        }
        let to = DeviceState::Pairing { session };
        self.shared
            .devices
            .write()
            .by_node
            .entry(node_id)
            .or_insert(Entry {
                state: to.clone(),
                stored: None,
                seen_at: None,
                seen: None,
            })
            .state = to.clone();
        self.emit(RegistryEvent::StateChanged { node_id, from, to });
        Ok(())
    }

    /// Ends a failed or abandoned pairing: the device goes back to `Discovered` if it was seen
    /// before, and is forgotten otherwise.
    pub fn pairing_failed(
        &self,
        node_id: NodeId,
        session: PairingSessionId,
    ) -> Result<(), RegistryError> {
        let _store = self.shared.store.lock();
        self.check_session(node_id, session, StateKind::Discovered)?;
        let seen_at = {
            let mut devices = self.shared.devices.write();
            let seen_at = devices
                .by_node
                .get(&node_id)
                .and_then(|entry| entry.seen_at);
            match seen_at {
                Some(addr) => {
                    if let Some(entry) = devices.by_node.get_mut(&node_id) {
                        entry.state = DeviceState::Discovered { addr };
                    }
                }
                None => {
                    devices.by_node.remove(&node_id);
                }
            }
            seen_at
        };
        self.emit(match seen_at {
            Some(addr) => RegistryEvent::StateChanged {
                node_id,
                from: Some(StateKind::Pairing),
                to: DeviceState::Discovered { addr },
            },
            None => RegistryEvent::Forgotten { node_id },
        });
        Ok(())
    }

    /// Stores a successful pairing (and lifts a revocation of the node): `Pairing` → `Paired`.
    pub fn complete_pairing(
        &self,
        session: PairingSessionId,
        pairing: NewPairing,
    ) -> Result<PairedDevice, RegistryError> {
        let node_id = pairing.node_id;
        if pairing.info.public_key != node_id {
            return Err(RegistryError::NodeMismatch {
                node: node_id,
                claimed: pairing.info.public_key,
            });
        }
        check_relay_url(pairing.relay_url.as_deref())?;
        let store = self.shared.store.lock();
        self.check_session(node_id, session, StateKind::Paired)?;
        let mut addresses = Vec::with_capacity(MAX_ADDRESSES);
        for addr in pairing.addresses {
            if !addresses.contains(&addr) && addresses.len() < MAX_ADDRESSES {
                addresses.push(addr);
            }
        }
        let stored = StoredDevice {
            device: PairedDevice {
                node_id,
                info: pairing.info,
                paired_at: pairing.paired_at,
                trust: TrustLevel::Trusted,
                auto_accept: false,
                quota: None,
                stored_bytes: 0,
                bandwidth: crate::Bandwidth::default(),
                addresses,
                relay_url: pairing.relay_url,
                names: NameSync::default(),
            },
            secret: pairing.secret,
        };
        self.opened(&store)?.put(&stored)?;
        let device = stored.device.clone();
        {
            let mut devices = self.shared.devices.write();
            devices.revoked.remove(&node_id);
            devices.by_device_id.insert(device.info.device_id, node_id);
            if let Some(entry) = devices.by_node.get_mut(&node_id) {
                entry.state = DeviceState::Paired;
                entry.stored = Some(stored);
            }
        }
        tracing::info!(node_id = %node_id.fmt_short(), "paired a device");
        self.emit(RegistryEvent::StateChanged {
            node_id,
            from: Some(StateKind::Pairing),
            to: DeviceState::Paired,
        });
        Ok(device)
    }

    /// A connection with a paired device is up: `Paired`/`Disconnected` → `Connected`. Refused
    /// for devices that are not paired, revoked or blocked. The connection's address and relay
    /// are saved as the device's last known ones.
    pub fn connected(
        &self,
        node_id: NodeId,
        connection: ConnectionInfo,
    ) -> Result<(), RegistryError> {
        check_relay_url(connection.relay_url.as_deref())?;
        let store = self.shared.store.lock();
        let (from, updated) = {
            let devices = self.shared.devices.read();
            let stored = gate(&devices, &node_id).map_err(|reason| RegistryError::Refused {
                node: node_id,
                reason,
            })?;
            let from = devices
                .by_node
                .get(&node_id)
                .map(|entry| entry.state.kind());
            if from == Some(StateKind::Connected) {
                return Err(illegal(node_id, from, StateKind::Connected));
            }
            (from, with_connection(stored, &connection))
        };
        if let Some(updated) = &updated {
            self.opened(&store)?.put(updated)?;
        }
        let to = DeviceState::Connected { connection };
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.state = to.clone();
            if let Some(updated) = updated {
                entry.stored = Some(updated);
            }
        }
        self.emit(RegistryEvent::StateChanged { node_id, from, to });
        Ok(())
    }

    /// A connection ended: `Connected` → `Disconnected`.
    pub fn disconnected(
        &self,
        node_id: NodeId,
        reason: DisconnectReason,
    ) -> Result<(), RegistryError> {
        let _store = self.shared.store.lock();
        let from = self.kind_of(&node_id);
        if from != Some(StateKind::Connected) {
            return Err(illegal(node_id, from, StateKind::Disconnected));
        }
        let to = DeviceState::Disconnected { reason };
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.state = to.clone();
        }
        self.emit(RegistryEvent::StateChanged { node_id, from, to });
        Ok(())
    }

    /// Sets a paired device's trust level. Blocking a connected device moves it to
    /// `Disconnected { reason: Blocked }`; the subscriber that owns the connection closes it.
    pub fn set_trust(&self, node_id: NodeId, trust: TrustLevel) -> Result<(), RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        updated.device.trust = trust;
        self.opened(&store)?.put(&updated)?;
        let disconnected = {
            let mut devices = self.shared.devices.write();
            let mut disconnected = false;
            if let Some(entry) = devices.by_node.get_mut(&node_id) {
                entry.stored = Some(updated);
                if trust == TrustLevel::Blocked && entry.state.kind() == StateKind::Connected {
                    entry.state = DeviceState::Disconnected {
                        reason: DisconnectReason::Blocked,
                    };
                    disconnected = true;
                }
            }
            disconnected
        };
        self.emit(RegistryEvent::TrustChanged { node_id, trust });
        if disconnected {
            self.emit(RegistryEvent::StateChanged {
                node_id,
                from: Some(StateKind::Connected),
                to: DeviceState::Disconnected {
                    reason: DisconnectReason::Blocked,
                },
            });
        }
        Ok(())
    }

    /// Marks a paired device as one whose files are accepted without asking (or takes the
    /// mark back). Stored with the device, so it survives a restart; unpairing removes it.
    pub fn set_auto_accept(&self, node_id: NodeId, on: bool) -> Result<(), RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        updated.device.auto_accept = on;
        self.opened(&store)?.put(&updated)?;
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.stored = Some(updated);
        }
        Ok(())
    }

    /// Renames a paired device (the name this device shows for it). The person's choice: the
    /// device's own renames no longer change it.
    pub fn rename(&self, node_id: NodeId, name: DeviceName) -> Result<(), RegistryError> {
        self.update(node_id, |device| {
            device.info.device_name = name.clone();
            device.names.named_here = true;
        })?;
        self.emit(RegistryEvent::Renamed { node_id, name });
        Ok(())
    }

    /// Changes a paired device's record, on disk and in memory, under the store's lock.
    pub(super) fn update<R>(
        &self,
        node_id: NodeId,
        change: impl FnOnce(&mut PairedDevice) -> R,
    ) -> Result<R, RegistryError> {
        let store = self.shared.store.lock();
        let mut updated = self.stored(&node_id)?;
        let result = change(&mut updated.device);
        self.opened(&store)?.put(&updated)?;
        if let Some(entry) = self.shared.devices.write().by_node.get_mut(&node_id) {
            entry.stored = Some(updated);
        }
        Ok(result)
    }

    /// Unpairs a device: deletes its record and pairing secret, and refuses its node id from
    /// now on (also after a restart) until it pairs again. Returns what was removed.
    pub fn revoke(&self, node_id: NodeId) -> Result<PairedDevice, RegistryError> {
        let store = self.shared.store.lock();
        let removed = self.stored(&node_id)?.device;
        let at = SystemTime::now();
        self.opened(&store)?.revoke(&node_id, at)?;
        {
            let mut devices = self.shared.devices.write();
            devices.by_node.remove(&node_id);
            if devices.by_device_id.get(&removed.info.device_id) == Some(&node_id) {
                devices.by_device_id.remove(&removed.info.device_id);
            }
            devices.revoked.insert(node_id, at);
        }
        tracing::info!(node_id = %node_id.fmt_short(), "revoked a device's pairing");
        self.emit(RegistryEvent::Revoked { node_id });
        Ok(removed)
    }

    fn check_session(
        &self,
        node_id: NodeId,
        given: PairingSessionId,
        to: StateKind,
    ) -> Result<(), RegistryError> {
        let devices = self.shared.devices.read();
        let state = devices.by_node.get(&node_id).map(|entry| &entry.state);
        match state {
            Some(DeviceState::Pairing { session }) if *session == given => Ok(()),
            Some(DeviceState::Pairing { session }) => Err(RegistryError::SessionMismatch {
                node: node_id,
                current: *session,
                given,
            }),
            other => Err(illegal(node_id, other.map(DeviceState::kind), to)),
        }
    }

    fn stored(&self, node_id: &NodeId) -> Result<StoredDevice, RegistryError> {
        self.shared
            .devices
            .read()
            .by_node
            .get(node_id)
            .and_then(|entry| entry.stored.clone())
            .ok_or(RegistryError::NotPaired { node: *node_id })
    }

    fn kind_of(&self, node_id: &NodeId) -> Option<StateKind> {
        self.shared
            .devices
            .read()
            .by_node
            .get(node_id)
            .map(|entry| entry.state.kind())
    }

    fn emit(&self, event: RegistryEvent) {
        // No subscribers is fine.
        let _ = self.shared.events.send(event);
    }

    /// The open store, or [`StoreError::Closed`].
    fn opened<'a>(
        &self,
        store: &'a MutexGuard<'_, Option<SecretsStore>>,
    ) -> Result<&'a SecretsStore, StoreError> {
        store.as_ref().ok_or_else(|| StoreError::Closed {
            path: self.shared.store_path.clone(),
        })
    }

    /// Releases `secrets.redb` and the data directory's lock, so another registry (this
    /// process restarting its service, or another process) can open them, even while clones
    /// of this one are still alive. Afterwards the clones still answer from memory, but every
    /// change fails with [`StoreError::Closed`]. Closing twice is harmless.
    pub fn close(&self) {
        if self.shared.store.lock().take().is_some() {
            tracing::debug!(path = %self.shared.store_path.display(), "closed the device registry");
        }
    }
}

impl std::fmt::Debug for DeviceRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let devices = self.shared.devices.read();
        f.debug_struct("DeviceRegistry")
            .field("store", &self.shared.store_path)
            .field("devices", &devices.by_node.len())
            .field("revoked", &devices.revoked.len())
            .finish()
    }
}

fn gate<'a>(devices: &'a Devices, node_id: &NodeId) -> Result<&'a StoredDevice, ConnectionRefused> {
    if let Some(at) = devices.revoked.get(node_id) {
        return Err(ConnectionRefused::Revoked { at: *at });
    }
    let stored = devices
        .by_node
        .get(node_id)
        .and_then(|entry| entry.stored.as_ref())
        .ok_or(ConnectionRefused::NotPaired)?;
    match stored.device.trust {
        TrustLevel::Trusted => Ok(stored),
        TrustLevel::Blocked => Err(ConnectionRefused::Blocked),
    }
}

/// The record with the connection's address and relay as the newest known ones, or `None` if
/// nothing changes.
fn with_connection(stored: &StoredDevice, connection: &ConnectionInfo) -> Option<StoredDevice> {
    let mut updated = stored.clone();
    if let Some(addr) = connection.remote_addr {
        updated.device.addresses.retain(|known| *known != addr);
        updated.device.addresses.insert(0, addr);
        updated.device.addresses.truncate(MAX_ADDRESSES);
    }
    if connection.relay_url.is_some() {
        updated.device.relay_url.clone_from(&connection.relay_url);
    }
    (updated.device != stored.device).then_some(updated)
}

fn check_relay_url(url: Option<&str>) -> Result<(), RegistryError> {
    match url {
        Some(url) if url.is_empty() || url.len() > MAX_RELAY_URL_LEN => {
            Err(RegistryError::RelayUrl {
                len: url.len(),
                max: MAX_RELAY_URL_LEN,
            })
        }
        _ => Ok(()),
    }
}

fn illegal(node: NodeId, from: Option<StateKind>, to: StateKind) -> RegistryError {
    RegistryError::IllegalTransition { node, from, to }
}
