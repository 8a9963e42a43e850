//! `NetworkingService`: the composed system.
//!
//! `mod.rs` holds the service's state and public API; `messages.rs` requests, the request
//! handler and connection states; `pool.rs` the one connection per device (dialling, adopting,
//! watching); `tasks.rs` the background tasks (accept loop, discovery, keep-alive); `device.rs`
//! the per-device handle.

mod admin;
mod device;
mod messages;
mod pool;
mod tasks;

pub use admin::{DeviceStatus, Diagnostics, RelayState};
pub use device::DeviceHandle;
use device::create_private_dir;
pub(crate) use device::remote_ip;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use iroh::endpoint::Connection;
use rand_core::UnwrapErr;
use tether_identity::{DeviceInfo, DeviceName, NodeId};
use tether_iroh::{ConnectionInfo, LoopbackDiscovery, MdnsDiscovery, PeerAddr, Transport};
use tether_pairing::{CodeStatus, Credential, Initiator, LocalDevice, PairingCode, PairingTicket};
use tether_protocol::{DiscoveredDevice, Discovery, NetworkProtocol};
use tether_registry::{
    Device, DeviceRegistry, DisconnectReason, KeyManager, KeyStorageKind,
    PairedDevice as StoredDevice,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::consent::RegistryConsent;
use crate::error::short;
use crate::gate::{CLOSE_PAIRING_BUSY, CLOSE_REVOKED, RegistryGate};
use crate::link::{CLOSE_NORMAL, Incoming, Link, SYNC_ALPN};
use crate::lobby::Lobby;
use crate::pairing::{self, ConfirmSlot, PAIRING_ALPN, PairedDevice, PendingPairing};
use crate::profile::Profile;
use crate::protocol::DynProtocol;
use crate::request::HandlerSlot;
use crate::sightings::Sightings;
use crate::storage::{RegistryQuota, collect_leftovers};
use crate::{NetworkError, NetworkEvent, NetworkingConfig};

/// How long `join_pairing` asks a busy initiator again.
const JOIN_BUSY_RETRY_FOR: Duration = Duration::from_secs(30);
/// The pause between two such asks.
const JOIN_BUSY_PAUSE: Duration = Duration::from_millis(300);

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
    pairing_results: broadcast::Sender<(u64, Result<PairedDevice, String>)>,
    protocol_alpns: Arc<RwLock<HashSet<Vec<u8>>>>,
    protocols: RwLock<HashMap<Vec<u8>, Arc<dyn DynProtocol>>>,
    events: broadcast::Sender<NetworkEvent>,
    incoming: mpsc::Sender<Incoming>,
    /// Receives transfers into `config.receive_dir`; `None` refuses them.
    receiver: Option<tether_transfer::Receiver>,
    /// The service's tasks by id; each removes itself when it ends.
    tasks: Arc<Mutex<HashMap<tokio::task::Id, JoinHandle<()>>>>,
    /// The pairing connections held now, shared with the gate.
    lobby: Arc<Lobby>,
    /// Whether the code shown has its slot announced (a word code's is, a ticket's is not).
    slot_announced: AtomicBool,
}

/// A pairing code (or ticket) this device is showing, and the way to wait for its outcome.
#[derive(Debug)]
pub struct PairingInvite {
    /// What the user types on the other device: the word code, or the ticket text.
    pub code: String,
    /// When the code stops working.
    pub expires_in: Duration,
    number: u64,
    results: broadcast::Receiver<(u64, Result<PairedDevice, String>)>,
    confirm: Arc<ConfirmSlot>,
    pending: Option<mpsc::Receiver<PendingPairing>>,
}

impl PairingInvite {
    /// Asks to confirm each joiner, and waits for the next one that proves the code: nothing
    /// is stored (on either side) until [`PendingPairing::accept`]; rejecting or dropping it
    /// stores nothing and the joiner is told. From the first call on, this code asks; answer
    /// within the pairing exchange's deadline (60 s). Ends with an error when the code ends
    /// without a joiner proving it (burned, expired, cancelled, replaced).
    pub fn pending(&mut self) -> impl Future<Output = Result<PendingPairing, NetworkError>> + '_ {
        if self.pending.is_none() {
            let (sender, receiver) = mpsc::channel(1);
            *self.confirm.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((self.number, sender));
            self.pending = Some(receiver);
        }
        async move {
            loop {
                let Some(pending) = self.pending.as_mut() else {
                    return Err(NetworkError::Shutdown);
                };
                tokio::select! {
                    next = pending.recv() => return next.ok_or(NetworkError::Shutdown),
                    result = self.results.recv() => match result {
                        Ok((number, _)) if number != self.number => {}
                        // Accepted through another handle: not ours to report here.
                        Ok((_, Ok(_))) => {}
                        Ok((_, Err(reason))) => {
                            return Err(NetworkError::ProtocolViolation {
                                node: "joiner".into(),
                                reason,
                            });
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(NetworkError::Shutdown);
                        }
                    },
                }
            }
        }
    }

    /// Waits until a device pairs with this code, or the code ends without a pairing (a
    /// wrong guess burned it, it expired, it was cancelled or replaced by a new code). A
    /// connection that makes no guess (a stranger, a joiner that hung up) does not end it.
    ///
    /// Accept-on-proof: whoever proves the code is paired, with no question asked (after
    /// [`Self::pending`] was called, this accepts each pending pairing itself). Apps with a
    /// person at the screen should use [`Self::pending`] and show the name and code first.
    pub async fn paired(&mut self) -> Result<PairedDevice, NetworkError> {
        loop {
            let result = match self.pending.as_mut() {
                Some(pending) => tokio::select! {
                    next = pending.recv() => {
                        if let Some(next) = next {
                            return next.accept().await;
                        }
                        self.pending = None;
                        continue;
                    }
                    result = self.results.recv() => result,
                },
                None => self.results.recv().await,
            };
            match result {
                Ok((number, _)) if number != self.number => {}
                Ok((_, Ok(device))) => return Ok(device),
                Ok((_, Err(reason))) => {
                    return Err(NetworkError::ProtocolViolation {
                        node: "joiner".into(),
                        reason,
                    });
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(NetworkError::Shutdown),
            }
        }
    }
}

impl NetworkingService {
    /// Opens (or creates) the device's keys, profile and registry in the data directory,
    /// binds the endpoint and starts the background tasks.
    pub async fn start(config: NetworkingConfig) -> Result<Self, NetworkError> {
        let data_dir = config.data_dir.clone();
        create_private_dir(&data_dir)?;
        let keys = KeyManager::open_or_create(&data_dir, &config.keys)?;
        let profile =
            Profile::load_or_create(&data_dir, config.device_name.as_ref(), config.device_type)?;
        let registry = DeviceRegistry::open(&data_dir, keys.storage_key())?;
        let protocol_alpns = Arc::new(RwLock::new(HashSet::new()));
        let lobby = Arc::new(Lobby::default());
        let gate = Arc::new(RegistryGate {
            registry: registry.clone(),
            protocols: Arc::clone(&protocol_alpns),
            lobby: Arc::clone(&lobby),
        });
        let alpns = vec![SYNC_ALPN.to_vec(), PAIRING_ALPN.to_vec()];
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
                Err(error) => warn!(%error, "could not look for what interrupted transfers left"),
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

        let (incoming, incoming_rx) = mpsc::channel(256);
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
                handler: HandlerSlot::default(),
                initiator: Mutex::new(None),
                code_number: AtomicU64::new(0),
                confirm: Arc::default(),
                pairing_results: broadcast::channel(16).0,
                protocol_alpns,
                protocols: RwLock::default(),
                events: broadcast::channel(1024).0,
                incoming,
                receiver,
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

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NetworkEvent> {
        self.inner.events.subscribe()
    }

    /// Every device the registry knows, with its state.
    pub fn devices(&self) -> Vec<Device> {
        self.inner.registry.devices()
    }

    /// The paired devices.
    pub fn paired_devices(&self) -> Vec<StoredDevice> {
        self.inner.registry.paired_devices()
    }

    /// A paired device, to send it messages.
    pub fn device(&self, node_id: NodeId) -> Result<DeviceHandle, NetworkError> {
        self.inner
            .registry
            .check_connection(&node_id)
            .map_err(|_| NetworkError::DeviceNotPaired(short(&node_id)))?;
        Ok(DeviceHandle {
            service: self.clone(),
            node_id,
        })
    }

    /// Shows a new word code for another device to join with (replacing any code shown
    /// before). The public first word is announced for discovery; the rest never leaves.
    pub fn start_pairing_as_initiator(&self) -> Result<PairingInvite, NetworkError> {
        let code = PairingCode::generate(&mut UnwrapErr(getrandom::SysRng));
        let text = code.to_string();
        self.start_initiator(Credential::from(code), text, true)
    }

    /// Like [`Self::start_pairing_as_initiator`] with a ticket: the address and a full-entropy
    /// secret in one string, for pairing across networks or by QR code.
    pub fn start_pairing_with_ticket(&self) -> Result<PairingInvite, NetworkError> {
        let addr = self.addr();
        let ticket = PairingTicket::new(
            self.node_id(),
            addr.relay_url.clone(),
            addr.direct.clone(),
            &mut UnwrapErr(getrandom::SysRng),
        )?;
        let text = ticket.to_string();
        // The ticket carries the address: nothing is announced for it.
        self.start_initiator(Credential::from(ticket), text, false)
    }

    fn start_initiator(
        &self,
        credential: Credential,
        text: String,
        announce: bool,
    ) -> Result<PairingInvite, NetworkError> {
        let local = self.local_device()?;
        let now = pairing::now();
        let initiator = Initiator::new(credential, local, now, self.inner.config.pairing)
            .map_err(|e| NetworkError::Usage(e.to_string()))?;
        let slot = initiator.slot().word().to_owned();
        let expires_in = initiator
            .expires_at()
            .since_epoch()
            .saturating_sub(now.since_epoch());
        let results = self.inner.pairing_results.subscribe();
        let (number, replaced) = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let previous = self.inner.code_number.fetch_add(1, Ordering::AcqRel);
            let replaced = shown.replace(initiator).map(|_| previous);
            self.inner.lobby.set_open(true);
            self.inner.slot_announced.store(announce, Ordering::Release);
            (previous + 1, replaced)
        };
        if let Some(previous) = replaced {
            self.end_code(previous, Err("replaced by a new code".to_owned()));
        }
        self.announce(announce.then_some(slot.as_str()));
        Ok(PairingInvite {
            code: text,
            expires_in,
            number,
            results,
            confirm: Arc::clone(&self.inner.confirm),
            pending: None,
        })
    }

    /// Stops showing the current code.
    pub fn cancel_pairing(&self) {
        let cancelled = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.inner.lobby.set_open(false);
            shown
                .take()
                .map(|_| self.inner.code_number.load(Ordering::Acquire))
        };
        if let Some(number) = cancelled {
            self.end_code(number, Err("cancelled".to_owned()));
        }
        self.announce(None);
    }

    /// Stops showing the current code if its status is one `ended` accepts, and reports
    /// `outcome` to its invite.
    fn withdraw_code(
        &self,
        ended: impl FnOnce(CodeStatus) -> bool,
        outcome: impl FnOnce() -> Result<PairedDevice, String>,
    ) {
        let spent = {
            let mut shown = self
                .inner
                .initiator
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let over = shown.as_mut().is_some_and(|initiator| {
                initiator.handle_timeout(pairing::now());
                ended(initiator.status())
            });
            let taken = shown.take_if(|_| over);
            self.inner.lobby.set_open(shown.is_some());
            taken.map(|_| self.inner.code_number.load(Ordering::Acquire))
        };
        if let Some(number) = spent {
            self.end_code(number, outcome());
        }
    }

    fn end_code(&self, number: u64, outcome: Result<PairedDevice, String>) {
        self.announce(None);
        let _ = self.inner.pairing_results.send((number, outcome));
    }

    /// Joins the device showing `code` (a word code, found through discovery, or a ticket).
    pub async fn join_pairing(&self, code: &str) -> Result<PairedDevice, NetworkError> {
        let code = code.trim();
        let (credential, target) = if code.to_ascii_lowercase().starts_with("tether1") {
            let ticket: PairingTicket = code.parse()?;
            let target = PeerAddr {
                node_id: ticket.initiator(),
                direct: ticket.direct_addresses().to_vec(),
                relay_url: ticket.relay_url().map(str::to_owned),
            };
            (Credential::from(ticket), target)
        } else {
            let code: PairingCode = code.parse()?;
            let slot = code.slot().word().to_owned();
            let target = self.find_slot(&slot).await?;
            (Credential::from(code), target)
        };
        // A busy initiator (every pairing seat taken, by a flood of strangers, say) is asked
        // again for a while: its silent connections give their seats up within a second.
        let busy_until = tokio::time::Instant::now() + JOIN_BUSY_RETRY_FOR;
        let result = loop {
            let connection = self.inner.transport.connect(&target, PAIRING_ALPN).await?;
            let result = pairing::join(
                connection.clone(),
                credential.clone(),
                self.local_device()?,
                target.node_id,
                &self.inner.registry,
            )
            .await;
            let busy = matches!(
                crate::gate::refusal(&connection),
                Some(NetworkError::Refused {
                    code: CLOSE_PAIRING_BUSY,
                    ..
                })
            );
            if result.is_err() && busy && tokio::time::Instant::now() < busy_until {
                debug!("the initiator is busy; asking again");
                tokio::time::sleep(JOIN_BUSY_PAUSE).await;
                continue;
            }
            break result;
        };
        self.report_pairing(&result);
        result
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

    /// Adds a third-party protocol on its own ALPN; only paired devices reach it.
    pub fn register_protocol<P: NetworkProtocol>(&self, protocol: P) -> Result<(), NetworkError> {
        let alpn = protocol.alpn().to_vec();
        if alpn.starts_with(b"tether/") {
            return Err(NetworkError::Usage(
                "ALPNs starting with tether/ are reserved".to_owned(),
            ));
        }
        self.inner
            .protocols
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(alpn.clone(), Arc::new(protocol));
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
        let link = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
        if let Some(link) = link {
            self.close_link(&link, CLOSE_REVOKED, "unpaired");
        }
        let connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node_id);
        for connection in connections.unwrap_or_default() {
            connection.close(CLOSE_REVOKED.into(), b"unpaired");
        }
        let _ = self.inner.events.send(NetworkEvent::Unpaired { node_id });
        Ok(())
    }

    /// Stops every task, withdraws this device's announcements and closes the endpoint.
    ///
    /// When it returns, no task of the service holds its data directory any more: a new
    /// service may open it at once (a restart in the same process).
    pub async fn shutdown(&self) {
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
            .map_err(|e| NetworkError::Usage(e.to_string()))
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
    pub fn home_relay(&self) -> Option<String> {
        self.inner.transport.home_relay()
    }

    /// The relay the [`crate::NetworkingConfig::relay_selector`] chose last among the listed
    /// ones (`None` before its first choice, with iroh's default relays, or with no selector).
    pub fn chosen_relay(&self) -> Option<String> {
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

    /// Reports a pairing's end as an event; failures (anyone can cause them) are logged and
    /// reported at most [`crate::lobby::FAILURE_REPORTS_PER_MINUTE`] times a minute.
    fn report_pairing(&self, result: &Result<PairedDevice, NetworkError>) {
        let event = match result {
            Ok(paired) => NetworkEvent::Paired {
                device: paired.device.clone(),
                verification_code: paired.verification_code.clone(),
            },
            Err(error) => {
                let Some(suppressed) = self
                    .inner
                    .lobby
                    .may_report_failure(std::time::Instant::now())
                else {
                    return;
                };
                warn!(%error, suppressed, "pairing failed");
                NetworkEvent::PairingFailed {
                    reason: error.to_string(),
                }
            }
        };
        let _ = self.inner.events.send(event);
    }

    async fn find_slot(&self, slot: &str) -> Result<PeerAddr, NetworkError> {
        let mut updates = self.inner.discovered_tx.subscribe();
        // Any timeout, `Duration::MAX` included: tokio's sleep caps it at decades.
        let deadline = tokio::time::sleep(self.inner.config.discovery_timeout);
        tokio::pin!(deadline);
        // A global rendezvous is asked now and every second while the search lasts; what it
        // finds arrives as updates, like what LAN discoveries hear.
        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let asked_slot = slot.to_owned();
        let _asking = n0_future::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                for discovery in &discoveries {
                    discovery.find_slot(&asked_slot);
                }
            }
        }));
        loop {
            let claims: Vec<DiscoveredDevice> = self
                .inner
                .discovered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|d| d.pairing_slot.as_deref() == Some(slot))
                .cloned()
                .collect();
            match claims.as_slice() {
                [one] => {
                    return Ok(PeerAddr {
                        node_id: one.node_id,
                        direct: one.addrs.clone(),
                        relay_url: one.relay_url.clone(),
                    });
                }
                [] => {}
                many => {
                    return Err(NetworkError::AmbiguousPairingPeer {
                        slot: slot.to_owned(),
                        count: many.len(),
                    });
                }
            }
            tokio::select! {
                biased;
                _ = updates.recv() => {}
                () = &mut deadline => {
                    return Err(NetworkError::NoPairingPeer {
                        slot: slot.to_owned(),
                    });
                }
            }
        }
    }
}

/// The error for a name that reads as an id prefix ([`DeviceName::looks_like_id`]).
pub(crate) fn id_like_name(name: &DeviceName) -> NetworkError {
    NetworkError::Usage(format!(
        "the name {name:?} looks like a device id, so this device could pass for another one; \
         pick a name that is not only hex digits and hyphens"
    ))
}
