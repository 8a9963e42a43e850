//! `NetworkingService`: the composed system.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use iroh::endpoint::Connection;
use n0_future::StreamExt;
use rand_core::UnwrapErr;
use tether_identity::{DeviceInfo, NodeId};
use tether_iroh::{
    ConnectionInfo, LoopbackDiscovery, MdnsDiscovery, PathKind, PeerAddr, Transport, TransportError,
};
use tether_pairing::{CodeStatus, Credential, Initiator, LocalDevice, PairingCode, PairingTicket};
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, NetworkProtocol, PairedPeer};
use tether_registry::{
    ConnectionInfo as RegistryConnection, Device, DeviceRegistry, DisconnectReason, KeyManager,
    KeyStorageKind, PairedDevice as StoredDevice,
};
use tether_wire::{NetworkMessage, Ping};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::error::short;
use crate::gate::{CLOSE_REVOKED, RegistryGate};
use crate::link::{CLOSE_DEAD, CLOSE_NORMAL, Incoming, Link, SYNC_ALPN};
use crate::pairing::{self, PAIRING_ALPN, PairedDevice};
use crate::profile::Profile;
use crate::protocol::DynProtocol;
use crate::{NetworkError, NetworkEvent, NetworkingConfig};

/// How many connection attempts a send makes before it reports the device offline.
const CONNECT_ATTEMPTS: u32 = 3;
/// The first retry's delay; each retry doubles it, plus up to 50% jitter.
const RETRY_BASE: Duration = Duration::from_millis(150);
/// Two links to one device set up within this time of each other, one dialled by each side,
/// were dialled at the same time (both saw the other come online).
const SIMULTANEOUS_OPEN: Duration = Duration::from_secs(5);
/// How often one dial starts over because discovery reported a new address.
const MAX_REDIALS: u32 = 8;

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
    profile: Profile,
    registry: DeviceRegistry,
    transport: Transport,
    /// Emptied by `shutdown`, which ends the announcements.
    discoveries: Mutex<Vec<Arc<dyn Discovery>>>,
    discovered: Mutex<HashMap<NodeId, DiscoveredDevice>>,
    discovered_tx: broadcast::Sender<DiscoveredDevice>,
    /// The pool: the one link per device that messages go over.
    links: Mutex<HashMap<NodeId, Arc<Link>>>,
    /// One dial per device at a time; concurrent senders wait for it and share its link.
    dialing: Mutex<HashMap<NodeId, Arc<tokio::sync::Mutex<()>>>>,
    /// Every live connection per device (links and third-party protocols), for `unpair`.
    connections: Mutex<HashMap<NodeId, Vec<Connection>>>,
    /// The code being shown, if any.
    initiator: Mutex<Option<Initiator>>,
    /// The number of the latest code shown (each new code gets the next; changed only under
    /// the `initiator` lock).
    code_number: AtomicU64,
    /// How each code ended, by number: paired, or why not.
    pairing_results: broadcast::Sender<(u64, Result<PairedDevice, String>)>,
    protocol_alpns: Arc<RwLock<HashSet<Vec<u8>>>>,
    protocols: RwLock<HashMap<Vec<u8>, Arc<dyn DynProtocol>>>,
    events: broadcast::Sender<NetworkEvent>,
    incoming: mpsc::Sender<Incoming>,
    /// Receives transfers into `config.receive_dir`; `None` refuses them.
    receiver: Option<tether_transfer::Receiver>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
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
}

impl PairingInvite {
    /// Waits until a device pairs with this code, or the code ends without a pairing (a
    /// wrong guess burned it, it expired, it was cancelled or replaced by a new code). A
    /// connection that makes no guess (a stranger, a joiner that hung up) does not end it.
    pub async fn paired(&mut self) -> Result<PairedDevice, NetworkError> {
        loop {
            match self.results.recv().await {
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
        let gate = Arc::new(RegistryGate {
            registry: registry.clone(),
            protocols: Arc::clone(&protocol_alpns),
        });
        let alpns = vec![SYNC_ALPN.to_vec(), PAIRING_ALPN.to_vec()];
        let transport = Transport::bind(keys.identity(), &config.transport, alpns, gate).await?;

        // Paired devices pass the gate; the receive directory is the consent to receive.
        let receiver = config.receive_dir.as_ref().map(|dir| {
            tether_transfer::Receiver::new(
                tether_transfer::ReceiverConfig::new(dir).consent(tether_transfer::AcceptAll),
            )
        });

        let mut discoveries: Vec<Arc<dyn Discovery>> = Vec::new();
        if let Some(dir) = &config.loopback_discovery {
            let loopback = LoopbackDiscovery::new(dir).map_err(|source| NetworkError::Io {
                path: dir.clone(),
                source,
            })?;
            discoveries.push(Arc::new(loopback));
        }
        if let Some(mdns) = MdnsDiscovery::of(&transport) {
            discoveries.push(Arc::new(mdns));
        }

        let (incoming, incoming_rx) = mpsc::channel(256);
        let service = Self {
            inner: Arc::new(Inner {
                config,
                keys,
                profile,
                registry,
                transport,
                discoveries: Mutex::new(discoveries),
                discovered: Mutex::default(),
                discovered_tx: broadcast::channel(64).0,
                links: Mutex::default(),
                dialing: Mutex::default(),
                connections: Mutex::default(),
                initiator: Mutex::new(None),
                code_number: AtomicU64::new(0),
                pairing_results: broadcast::channel(16).0,
                protocol_alpns,
                protocols: RwLock::default(),
                events: broadcast::channel(1024).0,
                incoming,
                receiver,
                tasks: Mutex::default(),
            }),
        };
        service.announce(None);
        service.spawn_event_loop(incoming_rx);
        info!(
            node = %service.node_id().fmt_short(),
            name = %service.inner.profile.device_name,
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
        DeviceInfo {
            device_id: self.inner.profile.device_id,
            device_name: self.inner.profile.device_name.clone(),
            device_type: self.inner.profile.device_type,
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
        self.start_initiator(Credential::from(code), text)
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
        self.start_initiator(Credential::from(ticket), text)
    }

    fn start_initiator(
        &self,
        credential: Credential,
        text: String,
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
            (previous + 1, shown.replace(initiator).map(|_| previous))
        };
        if let Some(previous) = replaced {
            self.end_code(previous, Err("replaced by a new code".to_owned()));
        }
        self.announce(Some(&slot));
        Ok(PairingInvite {
            code: text,
            expires_in,
            number,
            results,
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
            shown
                .take_if(|_| over)
                .map(|_| self.inner.code_number.load(Ordering::Acquire))
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
        let connection = self.inner.transport.connect(&target, PAIRING_ALPN).await?;
        let result = pairing::join(
            connection,
            credential,
            self.local_device()?,
            target.node_id,
            &self.inner.registry,
        )
        .await;
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

    /// Sends `message` to a paired device and waits for its answer.
    pub async fn send_message(
        &self,
        node_id: NodeId,
        message: NetworkMessage,
    ) -> Result<NetworkMessage, NetworkError> {
        let link = self.link(node_id).await?;
        link.request(message, self.inner.config.request_timeout)
            .await
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
            link.close(CLOSE_REVOKED, "unpaired");
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

    /// The live connection's path and round trip, if connected.
    pub fn connection_info(&self, node_id: NodeId) -> Option<ConnectionInfo> {
        let links = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        links
            .get(&node_id)
            .filter(|l| l.is_open())
            .map(|l| ConnectionInfo::of(&l.connection))
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
            .drain(..)
            .filter(|task| Some(task.id()) != current)
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
        info!("networking service stopped");
    }

    fn local_device(&self) -> Result<LocalDevice, NetworkError> {
        LocalDevice::new(self.inner.keys.identity().clone(), self.device_info())
            .map_err(|e| NetworkError::Usage(e.to_string()))
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

    fn report_pairing(&self, result: &Result<PairedDevice, NetworkError>) {
        let event = match result {
            Ok(paired) => NetworkEvent::Paired {
                device: paired.device.clone(),
                verification_code: paired.verification_code.clone(),
            },
            Err(error) => NetworkEvent::PairingFailed {
                reason: error.to_string(),
            },
        };
        let _ = self.inner.events.send(event);
    }

    async fn find_slot(&self, slot: &str) -> Result<PeerAddr, NetworkError> {
        let mut updates = self.inner.discovered_tx.subscribe();
        let deadline = tokio::time::Instant::now() + self.inner.config.discovery_timeout;
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
            match tokio::time::timeout_at(deadline, updates.recv()).await {
                Ok(_) => {}
                Err(_) => {
                    return Err(NetworkError::NoPairingPeer {
                        slot: slot.to_owned(),
                    });
                }
            }
        }
    }

    /// The live link to a paired device, dialling (with retries) when there is none.
    async fn link(&self, node_id: NodeId) -> Result<Arc<Link>, NetworkError> {
        if let Some(link) = self.live_link(&node_id) {
            return Ok(link);
        }
        let turn = Arc::clone(
            self.inner
                .dialing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(node_id)
                .or_default(),
        );
        let _turn = turn.lock().await;
        // Someone else's dial (or the peer's) may have finished while we waited.
        if let Some(link) = self.live_link(&node_id) {
            return Ok(link);
        }
        let secret = self
            .inner
            .registry
            .check_connection(&node_id)
            .map_err(|_| NetworkError::DeviceNotPaired(short(&node_id)))?;
        let connection = self.dial(node_id, SYNC_ALPN).await?;
        let link = Link::dial(
            connection,
            self.inner.keys.identity(),
            node_id,
            &secret,
            self.inner.incoming.clone(),
        )
        .await?;
        self.adopt(&link)
    }

    fn live_link(&self, node_id: &NodeId) -> Option<Arc<Link>> {
        let links = self
            .inner
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        links.get(node_id).filter(|link| link.is_open()).cloned()
    }

    /// Dials a paired device on `alpn`, trying its known addresses with exponential backoff.
    ///
    /// Each attempt waits at most `connect_timeout`. When discovery reports an address for the
    /// device that the attempt is not trying (it moved, or restarted on a new port), the
    /// attempt is dropped and a new one tries the new address at once.
    async fn dial(&self, node_id: NodeId, alpn: &[u8]) -> Result<Connection, NetworkError> {
        let mut updates = self.inner.discovered_tx.subscribe();
        let connect_timeout = self.inner.config.connect_timeout;
        let mut last_error = None;
        let mut attempt = 0;
        let mut redials = 0;
        while attempt < CONNECT_ATTEMPTS {
            if attempt > 0 {
                let base = RETRY_BASE * 2u32.pow(attempt - 1);
                let jitter = base.mul_f64(
                    f64::from(rand_core::Rng::next_u32(&mut UnwrapErr(getrandom::SysRng)))
                        / f64::from(u32::MAX)
                        / 2.0,
                );
                tokio::time::sleep(base + jitter).await;
            }
            let addr = self.known_addr(node_id);
            if addr.direct.is_empty() && addr.relay_url.is_none() {
                last_error = Some(NetworkError::DeviceOffline(short(&node_id)));
                attempt += 1;
                continue;
            }
            let connect =
                tokio::time::timeout(connect_timeout, self.inner.transport.connect(&addr, alpn));
            tokio::select! {
                result = connect => match result {
                    Ok(Ok(connection)) => return Ok(connection),
                    Ok(Err(TransportError::AlpnNotServed { alpn, .. })) => {
                        return Err(NetworkError::UnknownProtocol { alpn });
                    }
                    Ok(Err(error)) => {
                        debug!(peer = %short(&node_id), attempt, %error, "connect failed");
                        last_error = Some(error.into());
                    }
                    Err(_) => {
                        debug!(peer = %short(&node_id), attempt, "connect timed out");
                        last_error = Some(NetworkError::TimedOut {
                            what: "connect",
                            after: connect_timeout,
                        });
                    }
                },
                () = moved(&mut updates, &addr), if redials < MAX_REDIALS => {
                    debug!(peer = %short(&node_id), "a new address; dialling it");
                    redials += 1;
                    continue;
                }
            }
            attempt += 1;
        }
        Err(last_error.unwrap_or_else(|| NetworkError::DeviceOffline(short(&node_id))))
    }

    fn known_addr(&self, node_id: NodeId) -> PeerAddr {
        let mut addr = PeerAddr::new(node_id);
        if let Some(found) = self
            .inner
            .discovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&node_id)
        {
            addr.direct.extend(found.addrs.iter().copied());
            addr.relay_url.clone_from(&found.relay_url);
        }
        if let Some(device) = self.inner.registry.device(&node_id).and_then(|d| d.paired) {
            for stored in device.addresses {
                if !addr.direct.contains(&stored) {
                    addr.direct.push(stored);
                }
            }
            if addr.relay_url.is_none() {
                addr.relay_url = device.relay_url;
            }
        }
        addr
    }

    /// Puts a new link in the pool, records the connection, and watches for its end. Returns
    /// the link messages to the device should use now.
    ///
    /// A second open link to the same device (both sides dialled at once, or the peer dialled
    /// again after a restart) does not make two pooled connections: [`keep_older`] picks one,
    /// the same one on both devices, and the other is closed once requests already on it
    /// have had their time.
    fn adopt(&self, link: &Arc<Link>) -> Result<Arc<Link>, NetworkError> {
        let node_id = link.node_id;
        let (pooled, retired) = {
            let mut links = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked under the pool's lock (see `unpair`).
            if self.inner.registry.check_connection(&node_id).is_err() {
                drop(links);
                link.close(CLOSE_REVOKED, "not paired");
                return Err(NetworkError::DeviceNotPaired(short(&node_id)));
            }
            match links.get(&node_id).filter(|old| old.is_open()).cloned() {
                Some(old) if keep_older(&old, link, self.node_id()) => {
                    (old, Some(Arc::clone(link)))
                }
                old => {
                    links.insert(node_id, Arc::clone(link));
                    (Arc::clone(link), old)
                }
            }
        };
        self.track(node_id, &link.connection)?;
        self.watch(Arc::clone(link));
        self.serve_streams(Arc::clone(link));
        match retired {
            Some(retired) => {
                debug!(peer = %short(&node_id), "two connections to one device; retiring one");
                let grace = self.inner.config.request_timeout;
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    retired.close(CLOSE_NORMAL, "a newer connection replaced this one");
                });
            }
            None => self.report_connected(link),
        }
        Ok(pooled)
    }

    /// Records and announces that a device is connected (it was not a moment ago).
    fn report_connected(&self, link: &Link) {
        let node_id = link.node_id;
        let info = ConnectionInfo::of(&link.connection);
        let registry_info = match remote_ip(&link.connection).first() {
            Some(addr) => RegistryConnection::direct(*addr, SystemTime::now()),
            None => RegistryConnection::relayed(
                info.remote.clone().unwrap_or_default(),
                SystemTime::now(),
            ),
        };
        if let Err(error) = self.inner.registry.connected(node_id, registry_info) {
            debug!(%error, "registry: connected");
        }
        let _ = self.inner.events.send(NetworkEvent::Connected {
            node_id,
            path: info.path,
        });
        info!(peer = %short(&node_id), path = %info.path, rtt = ?info.rtt, "connected");
    }

    /// Serves the streams the peer opens on a link after its handshake: transfers and lanes.
    fn serve_streams(&self, link: Arc<Link>) {
        let service = self.clone();
        self.spawn(async move {
            while let Ok((send, recv)) = link.connection.accept_bi().await {
                let task_service = service.clone();
                let link = Arc::clone(&link);
                service.spawn(async move {
                    let service = task_service;
                    let receiver = service.inner.receiver.as_ref();
                    match crate::transfer::serve_stream(&link, receiver, send, recv).await {
                        Ok(Some(report)) => {
                            info!(peer = %short(&link.node_id), bytes = report.bytes_total, "received a transfer");
                            let _ = service.inner.events.send(NetworkEvent::TransferReceived {
                                from: link.node_id,
                                report,
                            });
                        }
                        Ok(None) => {}
                        Err(error) => {
                            warn!(peer = %short(&link.node_id), %error, "incoming transfer failed");
                        }
                    }
                });
            }
        });
    }

    /// Waits for the link's end; when it was the pooled one, the device is disconnected.
    fn watch(&self, link: Arc<Link>) {
        let service = self.clone();
        let node_id = link.node_id;
        self.spawn(async move {
            let error = link.connection.closed().await;
            let removed = {
                let mut links = service
                    .inner
                    .links
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                match links.get(&node_id) {
                    Some(current) if Arc::ptr_eq(current, &link) => {
                        links.remove(&node_id).is_some()
                    }
                    _ => false,
                }
            };
            if removed {
                let reason = link.end_reason(&error);
                let _ = service
                    .inner
                    .registry
                    .disconnected(node_id, DisconnectReason::Error(reason.clone()));
                info!(peer = %short(&node_id), %reason, "disconnected");
                let _ = service
                    .inner
                    .events
                    .send(NetworkEvent::Disconnected { node_id, reason });
            }
        });
    }

    /// Records a live connection with a paired device, for `unpair` to close; refuses (and
    /// closes) it when the device is no longer paired.
    fn track(&self, node_id: NodeId, connection: &Connection) -> Result<(), NetworkError> {
        let mut connections = self
            .inner
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the lock `unpair` takes after revoking.
        if self.inner.registry.check_connection(&node_id).is_err() {
            connection.close(CLOSE_REVOKED.into(), b"not paired");
            return Err(NetworkError::DeviceNotPaired(short(&node_id)));
        }
        let list = connections.entry(node_id).or_default();
        list.retain(|c| c.close_reason().is_none());
        list.push(connection.clone());
        Ok(())
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task);
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(handle);
    }

    fn spawn_event_loop(&self, mut incoming_rx: mpsc::Receiver<Incoming>) {
        let service = self.clone();
        self.spawn(async move { service.accept_loop().await });

        let events = self.inner.events.clone();
        self.spawn(async move {
            while let Some(Incoming { from, message }) = incoming_rx.recv().await {
                let _ = events.send(NetworkEvent::MessageReceived { from, message });
            }
        });

        let discoveries = self
            .inner
            .discoveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for discovery in discoveries {
            let service = self.clone();
            self.spawn(async move { service.discovery_loop(discovery).await });
        }

        let service = self.clone();
        self.spawn(async move { service.keepalive_loop().await });

        let service = self.clone();
        self.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                // Only expiry: a code that paired or was burned is withdrawn by the
                // connection that did it, which knows the outcome.
                service.withdraw_code(
                    |status| status == CodeStatus::Expired,
                    || Err("the code expired".to_owned()),
                );
            }
        });
    }

    async fn accept_loop(&self) {
        let endpoint = self.inner.transport.endpoint().clone();
        while let Some(incoming) = endpoint.accept().await {
            let service = self.clone();
            self.spawn(async move {
                // The gate has already run, right after the TLS handshake.
                let connection = match incoming.await {
                    Ok(connection) => connection,
                    Err(error) => {
                        debug!(%error, "incoming connection failed");
                        return;
                    }
                };
                if let Err(error) = service.serve(connection).await {
                    debug!(%error, "connection ended with an error");
                }
            });
        }
    }

    async fn serve(&self, connection: Connection) -> Result<(), NetworkError> {
        let peer = tether_iroh::peer_node_id(&connection)?;
        let alpn = connection.alpn().to_vec();
        if alpn == PAIRING_ALPN {
            let result = pairing::serve_joiner(
                &connection,
                peer,
                &self.inner.initiator,
                &self.inner.registry,
            )
            .await;
            // The invite hears of it only when this ended the code (paired, burned, spent);
            // a connection that made no guess leaves it open, as does one mid-handshake.
            self.withdraw_code(
                |status| !matches!(status, CodeStatus::Open | CodeStatus::Claimed),
                || match &result {
                    Ok(device) => Ok(device.clone()),
                    Err(error) => Err(error.to_string()),
                },
            );
            self.report_pairing(&result);
            return result.map(drop);
        }
        // Every other ALPN passed the gate: the peer is paired.
        let secret = self
            .inner
            .registry
            .check_connection(&peer)
            .map_err(|_| NetworkError::DeviceNotPaired(short(&peer)))?;
        if alpn == SYNC_ALPN {
            let link = Link::accept(
                connection,
                self.inner.keys.identity(),
                peer,
                &secret,
                self.inner.incoming.clone(),
            )
            .await?;
            return self.adopt(&link).map(drop);
        }
        let protocol = self
            .inner
            .protocols
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&alpn)
            .cloned();
        let Some(protocol) = protocol else {
            connection.close(crate::gate::CLOSE_UNKNOWN_ALPN.into(), b"unknown protocol");
            return Err(NetworkError::UnknownProtocol {
                alpn: String::from_utf8_lossy(&alpn).into_owned(),
            });
        };
        let device = self
            .inner
            .registry
            .device(&peer)
            .and_then(|d| d.paired)
            .ok_or_else(|| NetworkError::DeviceNotPaired(short(&peer)))?;
        self.track(peer, &connection)?;
        protocol
            .accept(
                connection,
                PairedPeer {
                    node_id: peer,
                    device: device.info,
                },
            )
            .await
            .map_err(|error| NetworkError::ProtocolViolation {
                node: short(&peer),
                reason: error.to_string(),
            })
    }

    async fn discovery_loop(&self, discovery: Arc<dyn Discovery>) {
        let mut events = discovery.subscribe();
        while let Some(event) = events.next().await {
            match event {
                DiscoveryEvent::Found(device) => {
                    let node_id = device.node_id;
                    let is_new = self
                        .inner
                        .discovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(node_id, device.clone())
                        .is_none();
                    if let Some(addr) = device.addrs.first() {
                        let _ = self.inner.registry.discovered(node_id, *addr);
                    }
                    if is_new {
                        let _ = self.inner.events.send(NetworkEvent::DeviceDiscovered {
                            node_id,
                            source: device.source,
                        });
                    }
                    let _ = self.inner.discovered_tx.send(device);
                    // A paired device came back (or moved): reconnect.
                    if self.inner.registry.check_connection(&node_id).is_ok()
                        && self.live_link(&node_id).is_none()
                    {
                        let service = self.clone();
                        self.spawn(async move {
                            if let Err(error) = service.link(node_id).await {
                                debug!(peer = %short(&node_id), %error, "reconnect failed");
                            }
                        });
                    }
                }
                DiscoveryEvent::Lost(node_id) => {
                    self.inner
                        .discovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&node_id);
                }
                _ => {}
            }
        }
    }

    /// Pings every pooled link the peer has been silent on for `keepalive_interval`, and
    /// closes it when the ping gets no answer within `request_timeout`. The check runs four
    /// times per interval, so a dead peer is noticed within `1.25 × keepalive_interval +
    /// request_timeout` of its last word.
    async fn keepalive_loop(&self) {
        let interval = self.inner.config.keepalive_interval;
        let mut tick = tokio::time::interval((interval / 4).max(Duration::from_millis(25)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let idle: Vec<Arc<Link>> = self
                .inner
                .links
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .filter(|link| link.is_open() && link.idle_for() >= interval)
                .cloned()
                .collect();
            for link in idle {
                if !link.start_probe() {
                    continue;
                }
                let wait = self.inner.config.request_timeout;
                tokio::spawn(async move {
                    let ping = NetworkMessage::Ping(Ping {
                        timestamp_ms: now_ms(),
                    });
                    let answer = link.request(ping, wait).await;
                    link.end_probe();
                    if let Err(NetworkError::TimedOut { .. }) = answer {
                        warn!(peer = %short(&link.node_id), "no answer to keep-alive; closing");
                        link.close(CLOSE_DEAD, "no answer to a keep-alive ping");
                    }
                });
            }
        }
    }
}

/// Returns when discovery reports an address for `addr.node_id` that `addr` lacks.
async fn moved(updates: &mut broadcast::Receiver<DiscoveredDevice>, addr: &PeerAddr) {
    loop {
        match updates.recv().await {
            Ok(found) if found.node_id == addr.node_id => {
                if found.addrs.iter().any(|a| !addr.direct.contains(a)) {
                    return;
                }
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

/// Whether to keep `old` rather than `new`, two open links to the same device. Both devices
/// must come to the same answer for the same pair of connections.
///
/// * Both dialled by the same side: the newer. That side dialled again, so it has given up
///   on the older one (one dial per device at a time, and only without a live link).
/// * One dialled by each side, within [`SIMULTANEOUS_OPEN`]: the one the lower node id
///   dialled. Both saw the other come online and dialled at once.
/// * One dialled by each side, later: the newer. The peer dialled although we had a link, so
///   its side of that link is gone (it restarted, say) and ours has not noticed yet.
fn keep_older(old: &Link, new: &Link, me: NodeId) -> bool {
    if old.dialled_here() == new.dialled_here() || old.age() > SIMULTANEOUS_OPEN {
        return false;
    }
    // `old` was dialled by the lower id exactly when it was dialled here and we are lower,
    // or dialled there and the peer is lower.
    old.dialled_here() == (me < old.node_id)
}

/// A paired device, for sending it messages.
#[derive(Debug, Clone)]
pub struct DeviceHandle {
    service: NetworkingService,
    node_id: NodeId,
}

impl DeviceHandle {
    /// The device's node id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// Sends a message and waits for the answer (`Ack`, `Pong`, an `Error` reply, ...).
    pub async fn send_message(
        &self,
        message: NetworkMessage,
    ) -> Result<NetworkMessage, NetworkError> {
        self.service.send_message(self.node_id, message).await
    }

    /// Measures a round trip of an encrypted `Ping`.
    pub async fn ping(&self) -> Result<Duration, NetworkError> {
        let started = std::time::Instant::now();
        match self
            .send_message(NetworkMessage::Ping(Ping {
                timestamp_ms: now_ms(),
            }))
            .await?
        {
            NetworkMessage::Pong(_) => Ok(started.elapsed()),
            other => Err(NetworkError::ProtocolViolation {
                node: short(&self.node_id),
                reason: format!("answered a ping with {other:?}"),
            }),
        }
    }

    /// The connection's path and round trip, if connected.
    pub fn connection_info(&self) -> Option<ConnectionInfo> {
        self.service.connection_info(self.node_id)
    }

    /// Whether the device's connection uses a direct path.
    pub fn is_direct(&self) -> bool {
        self.connection_info()
            .is_some_and(|info| info.path == PathKind::Direct)
    }
}

/// The peer's direct address on this connection, if the selected path is direct.
pub(crate) fn remote_ip(connection: &Connection) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for path in connection.paths().iter() {
        if let iroh::TransportAddr::Ip(addr) = path.remote_addr() {
            if path.is_selected() {
                addrs.insert(0, *addr);
            } else {
                addrs.push(*addr);
            }
        }
    }
    addrs
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), NetworkError> {
    std::fs::create_dir_all(dir).map_err(|source| NetworkError::Io {
        path: dir.to_owned(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| NetworkError::Io {
                path: dir.to_owned(),
                source,
            },
        )?;
    }
    Ok(())
}
