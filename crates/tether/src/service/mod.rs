//! `NetworkingService`: the composed system.
//!
//! `mod.rs` holds the service's state and public API; `messages.rs` requests, the request
//! handler and connection states; `pool.rs` the one connection per device (dialling, adopting,
//! watching); `tasks.rs` the background tasks (accept loop, discovery, keep-alive); `device.rs`
//! the per-device handle.

mod admin;
mod device;
mod messages;
mod pairing;
mod pool;
mod pull;
mod tasks;

pub use admin::{DeviceStatus, Diagnostics, RelayState};
pub use device::DeviceHandle;
use device::create_private_dir;
pub use pairing::PairingInvite;
pub(crate) use pairing::id_like_name;
pub use pull::{PULL_ANSWER_TIMEOUT, PullOptions};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use iroh::RelayUrl;
use iroh::endpoint::Connection;
use tether_identity::{DeviceId, DeviceInfo, ErrorChain, NodeId, error_chain};
use tether_iroh::{ConnectionInfo, LoopbackDiscovery, MdnsDiscovery, PeerAddr, Transport};
use tether_pairing::{Initiator, LocalDevice};
use tether_protocol::{DiscoveredDevice, Discovery, NetworkProtocol};
use tether_registry::Profile;
use tether_registry::{
    Device, DeviceRegistry, DisconnectReason, KeyManager, KeyStorageKind,
    PairedDevice as StoredDevice, TrustLevel,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::builder::Builder;
use crate::close::{CLOSE_BLOCKED, CLOSE_NORMAL, CLOSE_REVOKED, PAIRING_ALPN, SYNC_ALPN};
use crate::consent::RegistryConsent;
use crate::event::EventStream;
use crate::gate::RegistryGate;
use crate::link::{Incoming, Link};
use crate::lobby::Lobby;
use crate::pairing::ConfirmSlot;
use crate::request::HandlerSlot;
use crate::sightings::Sightings;
use crate::storage::{RegistryQuota, collect_leftovers};
use crate::{NetworkError, NetworkEvent, NetworkingConfig};

/// The networking service of one device: pairing, connections to paired devices, messages,
/// third-party protocols, discovery, events.
///
/// Cheap to clone; clones share one service. Dropping the last clone does not stop the
/// background tasks: call [`NetworkingService::shutdown`].
#[derive(Debug, Clone)]
pub struct NetworkingService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: NetworkingConfig,
    keys: KeyManager,
    /// This device's id, name and type (the name can change: `rename_self`).
    profile: RwLock<Profile>,
    registry: DeviceRegistry,
    /// One registry write from a link's watch task at a time: redb commits one write at a
    /// time anyway, and many links connecting at once would otherwise hold a blocking thread
    /// each while they wait for it.
    registry_writes: tokio::sync::Semaphore,
    transport: Transport,
    /// Emptied by `shutdown`, which ends the announcements.
    discoveries: Mutex<Vec<Arc<dyn Discovery>>>,
    discovered: Mutex<Sightings>,
    discovered_tx: broadcast::Sender<DiscoveredDevice>,
    /// The pool: the one link per device that messages go over.
    links: Mutex<HashMap<NodeId, Arc<Link>>>,
    /// One dial per device at a time; concurrent senders wait for it and share its link.
    dialing: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    /// Every live connection per device (links and third-party protocols), for `unpair`.
    connections: Mutex<HashMap<NodeId, Vec<Connection>>>,
    /// Devices whose last link was closed for being idle: discovery does not redial them
    /// (the next send does).
    idle_closed: Mutex<HashSet<NodeId>>,
    /// The app's answers to requests.
    handler: HandlerSlot,
    /// The code being shown, if any.
    initiator: Mutex<Option<Initiator>>,
    /// The number of the latest code shown (each new code gets the next; changed only under
    /// the `initiator` lock).
    code_number: AtomicU64,
    /// The invite that asked to confirm each joiner (see [`PairingInvite::pending`]).
    confirm: Arc<ConfirmSlot>,
    /// How each code ended, by number: paired, or why not.
    /// The outcome channel of each code shown and not ended yet, by code number.
    code_outcomes: pairing::Outcomes,
    protocol_alpns: Arc<RwLock<HashSet<Vec<u8>>>>,
    protocols: RwLock<HashMap<Vec<u8>, Arc<dyn NetworkProtocol>>>,
    events: broadcast::Sender<NetworkEvent>,
    incoming: mpsc::Sender<Incoming>,
    /// Receives transfers into `config.receive_dir`; `None` refuses them.
    receiver: Option<tether_transfer::Receiver>,
    /// Answers the pulls paired devices ask for, through `config.share_provider`.
    sharing: crate::share::Sharing,
    /// The service's tasks by id; each removes itself when it ends.
    tasks: Arc<Mutex<HashMap<tokio::task::Id, JoinHandle<()>>>>,
    /// The pairing connections held now, shared with the gate.
    lobby: Arc<Lobby>,
    /// Whether the code shown has its slot announced (a word code's is, a ticket's is not).
    slot_announced: AtomicBool,
}

impl NetworkingService {
    /// Opens (or creates) the device's keys, profile and registry in the data directory,
    /// binds the endpoint and starts the background tasks: `Self::builder` with `config`,
    /// spawned (see [`Builder`] for protocols served from the start and events from before).
    pub async fn start(config: NetworkingConfig) -> Result<Self, NetworkError> {
        Builder::from_config(config).spawn().await
    }

    pub(crate) async fn spawn_from(builder: Builder) -> Result<Self, NetworkError> {
        let Builder {
            config,
            device_id,
            protocols,
            request_handler,
            events,
        } = builder;
        let data_dir = config.data_dir.clone();
        create_private_dir(&data_dir)?;
        let keys = KeyManager::open_or_create(&data_dir, &config.keys)?;
        let profile = Profile::load_or_create(
            &data_dir,
            device_id,
            config.device_name.as_ref(),
            config.device_type,
        )
        .map_err(NetworkError::from_profile)?;
        let registry = DeviceRegistry::open(&data_dir, keys.storage_key())?;
        let protocol_alpns: HashSet<Vec<u8>> = protocols
            .iter()
            .map(|protocol| protocol.alpn().to_vec())
            .collect();
        let protocol_table: HashMap<Vec<u8>, Arc<dyn NetworkProtocol>> = protocols
            .into_iter()
            .map(|protocol| (protocol.alpn().to_vec(), protocol))
            .collect();
        let protocol_alpns = Arc::new(RwLock::new(protocol_alpns));
        let lobby = Arc::new(Lobby::default());
        let gate = Arc::new(RegistryGate {
            registry: registry.clone(),
            protocols: Arc::clone(&protocol_alpns),
            lobby: Arc::clone(&lobby),
        });
        let mut alpns = vec![SYNC_ALPN.to_vec(), PAIRING_ALPN.to_vec()];
        alpns.extend(protocol_table.keys().cloned());
        let transport = Transport::bind(keys.identity(), &config.transport, alpns, gate).await?;

        // Paired devices pass the gate; what they send is received only with the app's consent.
        let receiver = config.receive_dir.as_ref().map(|dir| {
            let consent = RegistryConsent {
                registry: registry.clone(),
                app: Arc::clone(&config.consent),
            };
            tether_transfer::Receiver::new(
                tether_transfer::ReceiverConfig::new(dir)
                    .consent(consent)
                    .stall_timeout(config.transfer_stall_timeout)
                    .require_encryption(config.require_encryption)
                    .space_reserve(config.space_reserve)
                    .inode_reserve(config.inode_reserve)
                    .quota(Arc::new(RegistryQuota {
                        registry: registry.clone(),
                        default: config.default_storage_quota,
                    })),
            )
        });
        // What interrupted transfers left: removed before anything new arrives.
        if let Some(dir) = &config.receive_dir {
            let rules = tether_transfer::Leftovers::default().idle(config.leftover_idle);
            match collect_leftovers(&registry, dir, &rules) {
                Ok(collected) if !collected.files.is_empty() => info!(
                    files = collected.files.len(),
                    bytes = collected.bytes,
                    "removed what interrupted transfers left"
                ),
                Ok(_) => {}
                Err(error) => warn!(
                    error = %ErrorChain(&error),
                    "could not look for what interrupted transfers left"
                ),
            }
        }

        let mut discoveries: Vec<Arc<dyn Discovery>> = Vec::new();
        if let Some(dir) = &config.loopback_discovery {
            let loopback =
                LoopbackDiscovery::new(dir).map_err(tether_iroh::TransportError::from)?;
            discoveries.push(Arc::new(loopback));
        }
        if let Some(mdns) = MdnsDiscovery::of(&transport) {
            discoveries.push(Arc::new(mdns));
        }
        if let Some(global) = tether_iroh::GlobalDiscovery::of(&transport) {
            discoveries.push(Arc::new(global));
        }
        discoveries.extend(config.discoveries.iter().cloned());

        let (incoming, incoming_rx) = mpsc::channel(256);
        let sharing = crate::share::Sharing::new(
            Arc::clone(&config.share_provider),
            registry.clone(),
            events.clone(),
            config.transfer_stall_timeout,
        );
        let service = Self {
            inner: Arc::new(Inner {
                config,
                keys,
                profile: RwLock::new(profile),
                registry,
                registry_writes: tokio::sync::Semaphore::new(1),
                transport,
                discoveries: Mutex::new(discoveries),
                discovered: Mutex::default(),
                discovered_tx: broadcast::channel(64).0,
                links: Mutex::default(),
                dialing: Mutex::default(),
                connections: Mutex::default(),
                idle_closed: Mutex::default(),
                handler: Arc::new(RwLock::new(request_handler)),
                initiator: Mutex::new(None),
                code_number: AtomicU64::new(0),
                confirm: Arc::default(),
                code_outcomes: pairing::Outcomes::default(),
                protocol_alpns,
                protocols: RwLock::new(protocol_table),
                events,
                incoming,
                receiver,
                sharing,
                tasks: Arc::default(),
                lobby,
                slot_announced: AtomicBool::new(false),
            }),
        };
        service.announce(None);
        service.spawn_event_loop(incoming_rx);
        info!(
            node = %service.node_id().fmt_short(),
            name = %service.device_info().device_name,
            addrs = ?service.inner.transport.bound_addrs(),
            "networking service started"
        );
        Ok(service)
    }

    /// This device's node id.
    pub fn node_id(&self) -> NodeId {
        self.inner.keys.node_id()
    }

    /// What this device tells its peers about itself.
    pub fn device_info(&self) -> DeviceInfo {
        let profile = self
            .inner
            .profile
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        DeviceInfo {
            device_id: profile.device_id,
            device_name: profile.device_name.clone(),
            device_type: profile.device_type,
            public_key: self.node_id(),
        }
    }

    /// Where this device can be reached now.
    pub fn addr(&self) -> PeerAddr {
        self.inner.transport.addr()
    }

    /// Where the device key is kept.
    pub fn key_storage(&self) -> &KeyStorageKind {
        self.inner.keys.storage_kind()
    }

    /// Events from now on, as a channel receiver (which drops what a slow reader misses; see
    /// [`Self::events`] for a stream that says so).
    pub fn subscribe(&self) -> broadcast::Receiver<NetworkEvent> {
        self.inner.events.subscribe()
    }

    /// Events from now on, as a [`Stream`](n0_future::Stream) that reports what a slow reader
    /// missed ([`NetworkEvent::Lagged`]). For events from before the service started, take
    /// [`Builder::events`].
    pub fn events(&self) -> EventStream {
        EventStream::new(self.inner.events.subscribe())
    }

    /// Every device the registry knows, with its state.
    pub fn devices(&self) -> Vec<Device> {
        self.inner.registry.devices()
    }

    /// The paired devices.
    pub fn paired_devices(&self) -> Vec<StoredDevice> {
        self.inner.registry.paired_devices()
    }

    /// A paired device's handle (blocked ones included, to unblock them): messages, transfers
    /// both ways, its connection, and renaming, blocking and unpairing it.
    pub fn device(&self, node_id: NodeId) -> Result<DeviceHandle, NetworkError> {
        self.check_paired(node_id)?;
        Ok(DeviceHandle {
            service: self.clone(),
            node_id,
        })
    }

    /// A paired device's handle, found by the device id it paired with (the app's id for it,
    /// see [`Builder::device_id`]).
    pub fn device_by_id(&self, device_id: DeviceId) -> Result<DeviceHandle, NetworkError> {
        let node_id = self
            .inner
            .registry
            .device_by_id(&device_id)
            .filter(|device| device.paired.is_some())
            .map(|device| device.node_id)
            .ok_or_else(|| NetworkError::UnknownDevice(device_id.to_string()))?;
        self.device(node_id)
    }

    /// Blocks a paired device: it stays paired, but every connection from or to it is refused
    /// until [`Self::unblock`]; its live connections are closed now.
    pub fn block(&self, node_id: NodeId) -> Result<(), NetworkError> {
        self.set_trust(node_id, TrustLevel::Blocked)?;
        if self.close_all(node_id, CLOSE_BLOCKED, "blocked") {
            // The link left the pool here, so its watch task does not report its end.
            let _ = self.inner.events.send(NetworkEvent::Disconnected {
                node_id,
                reason: "blocked".to_owned(),
            });
            self.report_state(node_id, crate::ConnectionState::Closed);
        }
        Ok(())
    }

    /// Lets a blocked device connect again.
    pub fn unblock(&self, node_id: NodeId) -> Result<(), NetworkError> {
        self.set_trust(node_id, TrustLevel::Trusted)
    }

    /// `DeviceNotPaired` unless the registry holds a pairing with `node_id` (blocked or not).
    fn check_paired(&self, node_id: NodeId) -> Result<(), NetworkError> {
        let paired = self
            .inner
            .registry
            .device(&node_id)
            .is_some_and(|device| device.paired.is_some());
        if paired {
            Ok(())
        } else {
            Err(NetworkError::DeviceNotPaired(node_id))
        }
    }

    /// Sets a paired device's trust: not paired is `DeviceNotPaired`, a failed write its error.
    fn set_trust(&self, node_id: NodeId, trust: TrustLevel) -> Result<(), NetworkError> {
        self.check_paired(node_id)?;
        self.inner.registry.set_trust(node_id, trust)?;
        Ok(())
    }

    /// Sends files and directories (relative paths kept) to a paired device over its pooled
    /// connection; the handle streams progress and ends with the receiver's verified report.
    /// Sending the same paths again after an interruption resumes: only what the receiver does
    /// not hold verified is sent.
    pub async fn share_with_device(
        &self,
        node_id: NodeId,
        paths: &[std::path::PathBuf],
        options: crate::TransferOptions,
    ) -> Result<crate::TransferHandle, NetworkError> {
        let link = self.link(node_id).await?;
        let mut handle = crate::transfer::send(&link, paths, &options).await?;
        handle.path = ConnectionInfo::of(&link.connection).path;
        Ok(handle)
    }

    /// Adds a third-party protocol on its own ALPN; only paired devices reach it. Any
    /// [`NetworkProtocol`] will do, a `Box<dyn NetworkProtocol>` or an `Arc` of one too. Its
    /// [`NetworkProtocol::shutdown`] is called when the service shuts down.
    ///
    /// Prefer [`Builder::protocol`]: a protocol given there is served from the start, with its
    /// ALPN fixed before the endpoint binds. One registered here replaces any protocol on the
    /// same ALPN.
    pub fn register_protocol<P: NetworkProtocol>(&self, protocol: P) -> Result<(), NetworkError> {
        let alpn = protocol.alpn().to_vec();
        crate::close::check_alpn(&alpn)?;
        let replaced = self
            .inner
            .protocols
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(alpn.clone(), Arc::new(protocol));
        if let Some(old) = replaced {
            // The protocol it replaces is done: it hears its shutdown, bounded like at the end.
            self.spawn("a replaced protocol's shutdown", async move {
                let _ = tokio::time::timeout(
                    tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT,
                    old.shutdown(),
                )
                .await;
            });
        }
        let mut alpns = self
            .inner
            .protocol_alpns
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        alpns.insert(alpn);
        let mut all = vec![SYNC_ALPN.to_vec(), PAIRING_ALPN.to_vec()];
        all.extend(alpns.iter().cloned());
        self.inner.transport.endpoint().set_alpns(all);
        Ok(())
    }

    /// Calls every registered protocol's [`NetworkProtocol::shutdown`] at once, while their
    /// connections are still open, and waits for each at most
    /// [`tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT`]. Each is called once: the table is emptied.
    async fn shut_protocols_down(&self) {
        let protocols: Vec<_> = self
            .inner
            .protocols
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, protocol)| protocol)
            .collect();
        let mut hooks = tokio::task::JoinSet::new();
        for protocol in protocols {
            hooks.spawn(async move {
                let timeout = tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT;
                if tokio::time::timeout(timeout, protocol.shutdown())
                    .await
                    .is_err()
                {
                    let alpn = String::from_utf8_lossy(protocol.alpn()).into_owned();
                    warn!(%alpn, ?timeout, "a protocol's shutdown took too long; going on");
                }
            });
        }
        while let Some(joined) = hooks.join_next().await {
            if let Err(error) = joined
                && error.is_panic()
            {
                warn!("a protocol's shutdown panicked");
            }
        }
    }

    /// Opens a connection to a paired device on a third-party protocol's ALPN.
    ///
    /// The device's gate decides right after the TLS handshake; a refused connection is then
    /// closed, which the first read or write shows ([`crate::gate::refusal`] says whether
    /// that was a refusal). An ALPN the device does not serve fails here with
    /// [`NetworkError::UnknownProtocol`]; the `tether/` ALPNs are not for this.
    pub async fn connect_protocol(
        &self,
        node_id: NodeId,
        alpn: &[u8],
    ) -> Result<Connection, NetworkError> {
        if alpn.starts_with(b"tether/") {
            return Err(NetworkError::Usage(
                "ALPNs starting with tether/ are reserved".to_owned(),
            ));
        }
        self.device(node_id)?;
        let connection = self.dial(node_id, alpn).await?;
        self.track(node_id, &connection)?;
        Ok(connection)
    }

    /// Unpairs a device: forgets its secret, refuses it from now on, and closes its live
    /// connections.
    pub fn unpair(&self, node_id: NodeId) -> Result<(), NetworkError> {
        // Revoke first, then empty the pool: `adopt` and `track` check the registry under the
        // same locks, so a connection set up meanwhile is either refused there or closed here.
        self.inner.registry.revoke(node_id)?;
        let _ = self.close_all(node_id, CLOSE_REVOKED, "unpaired");
        let _ = self.inner.events.send(NetworkEvent::Unpaired { node_id });
        Ok(())
    }

    /// Closes the device's pooled link and every other connection to it; whether a link was
    /// pooled.
    fn close_all(&self, node_id: NodeId, code: u32, reason: &'static str) -> bool {
        let link = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
        let had_link = link.is_some();
        if let Some(link) = link {
            self.close_link(&link, code, reason);
        }
        let connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
        for connection in connections.unwrap_or_default() {
            connection.close(code.into(), reason.as_bytes());
        }
        had_link
    }

    /// Stops every task, withdraws this device's announcements and closes the endpoint.
    ///
    /// When it returns, no task of the service holds its data directory any more: a new
    /// service may open it at once (a restart in the same process).
    pub async fn shutdown(&self) {
        // Every invite still waiting hears that the service is gone.
        self.inner
            .code_outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.shut_protocols_down().await;
        // Dropping the discoveries (their loops are aborted below) ends their announcements.
        self.inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        // Called from one of the service's own tasks (a protocol handler, say), that task
        // must neither cancel nor wait for itself.
        let current = tokio::task::try_id();
        let tasks: Vec<JoinHandle<()>> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .filter_map(|(id, task)| (Some(id) != current).then_some(task))
            .collect();
        for task in &tasks {
            task.abort();
        }
        let links: Vec<_> = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for (node_id, link) in links {
            link.close(CLOSE_NORMAL, "shutdown");
            let _ = self
                .inner
                .registry
                .disconnected(node_id, DisconnectReason::LocalShutdown);
        }
        self.inner.transport.close().await;
        // An aborted task lets go of the service (and the registry's open database) only
        // when the runtime next drops it; wait for that.
        for task in tasks {
            let _ = task.await;
        }
        // Let go of `secrets.redb` and the data directory's lock now, not when the last clone
        // (a `DeviceHandle`, say) is dropped, so the same data directory can be opened again.
        self.inner.registry.close();
        info!("networking service stopped");
    }

    fn local_device(&self) -> Result<LocalDevice, NetworkError> {
        let info = self.device_info();
        // The peer would refuse it (see `DeviceName::looks_like_id`); say so here, clearly.
        if info.device_name.looks_like_id() {
            return Err(id_like_name(&info.device_name));
        }
        LocalDevice::new(self.inner.keys.identity().clone(), info)
            .map_err(|e| NetworkError::Usage(error_chain(&e)))
    }

    /// The public slot of the word code being shown, if any (a ticket's is never announced).
    fn shown_slot(&self) -> Option<String> {
        if !self.inner.slot_announced.load(Ordering::Acquire) {
            return None;
        }
        self.inner
            .initiator
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|initiator| initiator.slot().word().to_owned())
    }

    /// The relay this device is reachable through now, if connected to one.
    pub fn home_relay(&self) -> Option<RelayUrl> {
        self.inner.transport.home_relay()
    }

    /// The relay the [`crate::NetworkingConfig::relay_selector`] chose last among the listed
    /// ones (`None` before its first choice, with iroh's default relays, or with no selector).
    pub fn chosen_relay(&self) -> Option<RelayUrl> {
        self.inner.transport.chosen_relay()
    }

    fn announce(&self, pairing_slot: Option<&str>) {
        let addr = self.addr();
        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for discovery in discoveries {
            discovery.announce(DiscoveredDevice {
                node_id: addr.node_id,
                addrs: addr.direct.clone(),
                relay_url: addr.relay_url.clone(),
                pairing_slot: pairing_slot.map(str::to_owned),
                source: discovery.name(),
            });
        }
    }
}
