//! What a troubleshooting user (the CLI's `doctor` and `devices`) needs to see, and renaming.

use std::path::PathBuf;

use iroh::RelayUrl;
use iroh::Watcher as _;
use tether_identity::DeviceName;
use tether_iroh::RelayConfig;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tether_identity::{DeviceInfo, NodeId};
use tether_iroh::{ConnectionInfo, PeerAddr};
use tether_registry::KeyStorageKind;
use tether_transfer::{Collected, Leftovers};

use super::core::NetworkingService;
use crate::NetworkError;
use tether_registry::Profile;

/// This node's set-up and state, for `tether doctor`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Diagnostics {
    /// The local sockets the endpoint is bound to.
    pub bound_addrs: Vec<SocketAddr>,
    /// The addresses other devices are told.
    pub addr: PeerAddr,
    /// Whether every packet stays on loopback.
    pub local_only: bool,
    /// The relays configured (after local-only rules).
    pub relay: RelayConfig,
    /// The home relays' connection state (empty with relays off, or before one is chosen).
    pub relays: Vec<RelayState>,
    /// The relay the relay selector chose among the listed ones, if it has chosen.
    pub chosen_relay: Option<RelayUrl>,
    /// Whether mDNS runs on the LAN.
    pub mdns: bool,
    /// Global discovery (pkarr publishing and DNS lookups), if on (after local-only rules).
    pub global_discovery: Option<tether_iroh::GlobalDiscoveryConfig>,
    /// Discovery on the Mainline DHT, if on (after local-only rules).
    pub dht: Option<tether_iroh::DhtConfig>,
    /// The loopback discovery directory, if that discovery runs.
    pub loopback_discovery: Option<PathBuf>,
    /// Devices discovery has seen, by the service that saw them.
    pub discovered: Vec<(NodeId, &'static str)>,
    /// Where the device key is kept.
    pub key_storage: KeyStorageKind,
    /// Where received transfers go (`None`: receiving is off).
    pub receive_dir: Option<PathBuf>,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Requests from paired devices that were repeats (sent again after their link died
    /// before the answer) and got the first answer, from the answer cache, without the
    /// request handler running again.
    pub repeats_answered: u64,
    /// How the NAT in front of this device maps its port, from iroh's net report (needs
    /// relays to ask; two to tell the kinds apart).
    pub nat: tether_iroh::NatStatus,
    /// Whether the home router maps a port for this device (iroh's port mapper; off in the
    /// local-only configuration and unless [`TransportConfig::port_mapping`]).
    ///
    /// [`TransportConfig::port_mapping`]: crate::TransportConfig::port_mapping
    pub port_mapping: tether_iroh::PortMapping,
}

/// A home relay's state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayState {
    /// Its URL.
    pub url: RelayUrl,
    /// Whether the endpoint holds a connection to it.
    pub connected: bool,
    /// The latest error connecting to it.
    pub error: Option<String>,
}

/// One device as this node sees it now, for `tether devices`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DeviceStatus {
    /// Its node id.
    pub node_id: NodeId,
    /// What it said about itself when it paired (its name may be renamed here).
    pub info: Option<DeviceInfo>,
    /// Discovered, pairing, paired, connected or disconnected (its `Display` is the word).
    pub state: tether_registry::StateKind,
    /// The live connection's path, round trip and remote address.
    pub connection: Option<ConnectionInfo>,
    /// When it was last heard: on a live connection, when the device last sent anything
    /// (keep-alive pongs included); else when its last connection was set up, if known.
    pub last_seen: Option<SystemTime>,
    /// The discovery service that sees it now, if any.
    pub discovered_by: Option<&'static str>,
    /// The most bytes it may store here: its own quota
    /// ([`NetworkingService::set_storage_quota`]), else
    /// [`crate::NetworkingConfig::default_storage_quota`]; `None`: no quota, or not paired.
    pub quota: Option<u64>,
    /// Bytes its accepted transfers were counted for against that quota, since it paired or
    /// since [`NetworkingService::reset_stored_bytes`] (0 when not paired).
    pub stored_bytes: u64,
}

impl NetworkingService {
    /// This node's set-up and state.
    pub fn diagnostics(&self) -> Diagnostics {
        let transport = self.inner.transport.config();
        let relays = self
            .inner
            .transport
            .endpoint()
            .home_relay_status()
            .get()
            .into_iter()
            .map(|status| RelayState {
                url: status.url().clone(),
                connected: status.is_connected(),
                error: status.last_error().map(ToString::to_string),
            })
            .collect();
        let discovered = self.inner.discovery.sources();
        Diagnostics {
            bound_addrs: self.inner.transport.bound_addrs(),
            addr: self.addr(),
            local_only: transport.local_only,
            relay: transport.relay.clone(),
            relays,
            chosen_relay: self.chosen_relay(),
            mdns: self.inner.transport.mdns().is_some(),
            global_discovery: transport.global_discovery.clone(),
            dht: transport.dht.clone(),
            loopback_discovery: self.inner.config.loopback_discovery.clone(),
            discovered,
            key_storage: self.inner.keys.storage_kind().clone(),
            receive_dir: self.inner.config.receive_dir.clone(),
            data_dir: self.inner.config.data_dir.clone(),
            repeats_answered: self.inner.answers.lock().repeats(),
            nat: self.inner.transport.nat_status(),
            port_mapping: self.inner.transport.port_mapping(),
        }
    }

    /// Asks the default gateway which port-mapping protocols (UPnP, PCP, NAT-PMP) it offers,
    /// waiting up to `within`. `None` when the port mapper is off (nothing is sent then) or
    /// no answer came in time; `Some(Err)` says why the probe could not run.
    pub async fn probe_gateway(
        &self,
        within: Duration,
    ) -> Option<Result<tether_iroh::GatewayProtocols, String>> {
        self.inner.transport.probe_gateway(within).await
    }

    /// Waits up to `within` for the endpoint to connect to a home relay; its URL, or `None`
    /// (no relay configured, or none reachable in time).
    pub async fn wait_for_home_relay(&self, within: Duration) -> Option<RelayUrl> {
        tokio::time::timeout(within, self.inner.transport.home_relay_connected())
            .await
            .ok()
    }

    /// Every device the registry knows or discovery sees, with its state and connection.
    pub fn device_statuses(&self) -> Vec<DeviceStatus> {
        let discovered: HashMap<NodeId, &'static str> =
            self.inner.discovery.sources().into_iter().collect();
        let mut statuses: Vec<DeviceStatus> = self
            .devices()
            .into_iter()
            .map(|device| {
                let connection = self.connection_info(device.node_id);
                let heard = self
                    .inner
                    .pool
                    .live_link(&device.node_id)
                    .map(|link| link.silent_for());
                let last_seen = if let Some(silent) = heard {
                    SystemTime::now().checked_sub(silent)
                } else if let tether_registry::DeviceState::Connected { connection } = &device.state
                {
                    Some(connection.connected_at)
                } else {
                    None
                };
                DeviceStatus {
                    node_id: device.node_id,
                    info: device.paired.as_ref().map(|p| p.info.clone()),
                    state: device.state.kind(),
                    connection,
                    last_seen,
                    discovered_by: discovered.get(&device.node_id).copied(),
                    quota: device
                        .paired
                        .as_ref()
                        .and_then(|p| p.quota.or(self.inner.config.default_storage_quota)),
                    stored_bytes: device.paired.as_ref().map_or(0, |p| p.stored_bytes),
                }
            })
            .collect();
        for (node_id, source) in discovered {
            if node_id != self.node_id() && !statuses.iter().any(|s| s.node_id == node_id) {
                statuses.push(DeviceStatus {
                    node_id,
                    info: None,
                    state: tether_registry::StateKind::Discovered,
                    connection: None,
                    last_seen: None,
                    discovered_by: Some(source),
                    quota: None,
                    stored_bytes: 0,
                });
            }
        }
        statuses
    }

    /// Renames this device: the profile (`device.json`) and what this device tells others.
    /// Paired devices are told in a signed update, the connected ones at once and the others
    /// when they next connect; each shows the new name unless its person renamed this
    /// device there ([`NetworkEvent::DeviceRenamed`](crate::NetworkEvent::DeviceRenamed)).
    /// Returns the new identity.
    ///
    /// A name that reads as a node-id or device-id prefix is refused
    /// ([`DeviceName::looks_like_id`]).
    pub fn rename_self(&self, name: &DeviceName) -> Result<DeviceInfo, NetworkError> {
        if name.looks_like_id() {
            return Err(super::pairing::id_like_name(name));
        }
        let mut profile = self.inner.profile.write();
        *profile = Profile::load_or_create(&self.inner.config.data_dir, None, Some(name), None)
            .map_err(NetworkError::from_profile)?;
        drop(profile);
        self.tell_name_to_connected();
        Ok(self.device_info())
    }

    /// Renames a paired device: the name this device shows for it. A name that reads as a
    /// node-id or device-id prefix is refused ([`DeviceName::looks_like_id`]).
    pub fn rename_device(&self, node_id: NodeId, name: DeviceName) -> Result<(), NetworkError> {
        if name.looks_like_id() {
            return Err(super::pairing::id_like_name(&name));
        }
        self.inner
            .registry
            .rename(node_id, name)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))
    }

    /// Marks a paired device as one whose files are received without asking (`on`), or takes
    /// the mark back. The mark is kept with the paired device (it survives a restart; unpairing
    /// removes it) and reaches the [`crate::TransferConsent`] as
    /// [`crate::TransferOffer::auto_accept`]; the default consent accepts only marked devices.
    pub fn set_auto_accept(&self, node_id: NodeId, on: bool) -> Result<(), NetworkError> {
        self.inner
            .registry
            .set_auto_accept(node_id, on)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))
    }

    /// Sets the most bytes a paired device may store here (`None`: the configured default,
    /// [`crate::NetworkingConfig::default_storage_quota`]). Stored with the device.
    pub fn set_storage_quota(
        &self,
        node_id: NodeId,
        quota: Option<u64>,
    ) -> Result<(), NetworkError> {
        self.inner
            .registry
            .set_quota(node_id, quota)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.config.data_dir
    }

    /// Where transfers from paired devices are written, if anywhere.
    pub fn receive_dir(&self) -> Option<&std::path::Path> {
        self.inner.config.receive_dir.as_deref()
    }

    /// Starts a paired device's stored-bytes count over at zero.
    pub fn reset_stored_bytes(&self, node_id: NodeId) -> Result<(), NetworkError> {
        self.inner
            .registry
            .reset_stored_bytes(node_id)
            .map_err(|_| NetworkError::DeviceNotPaired(node_id))
    }

    /// Removes (or with `dry_run` only lists) the partial files and resume records in the
    /// receive directory that were idle longer than
    /// [`crate::NetworkingConfig::leftover_idle`] or belong to devices no longer paired.
    /// `dir` names another receive directory than the configured one; nothing is collected
    /// without either.
    pub fn collect_leftovers(
        &self,
        dir: Option<&std::path::Path>,
        dry_run: bool,
    ) -> Result<Collected, NetworkError> {
        let Some(dir) = dir.or(self.inner.config.receive_dir.as_deref()) else {
            return Ok(Collected::default());
        };
        let rules = Leftovers::default()
            .idle(self.inner.config.leftover_idle)
            .dry_run(dry_run);
        crate::storage::collect_leftovers(&self.inner.registry, dir, &rules)
            .map_err(|e| NetworkError::Transfer(e.into()))
    }

    /// The transfer history, newest first: at most `limit` records, only those with `device`
    /// if given (also a device unpaired since). Each push and pull is recorded on both devices
    /// when it ends, verified or not; the newest [`crate::MAX_HISTORY`] are kept. Reads the
    /// store on the calling thread (a few milliseconds for a full history).
    pub fn transfer_history(
        &self,
        device: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<crate::TransferRecord>, NetworkError> {
        let entries = self.inner.registry.history(device, limit)?;
        Ok(crate::history::records(entries))
    }
}
