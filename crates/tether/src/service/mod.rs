//! `NetworkingService`: the composed system.
//!
//! The service is a handful of owned components, each in its own file with private fields:
//! the [`pool::Pool`] (links, dials, connections, idle marks), the [`desk::PairingDesk`] (the
//! code shown and its outcome), the [`discovery::DiscoveryHub`] (discoveries and sightings),
//! the [`protocols::Protocols`] table, and the [`tasks::Tasks`] that run in the background.
//! No component calls another while it holds one of its locks (the pool asks the registry,
//! which calls nothing back).
//! The `impl NetworkingService` blocks compose them: `lifecycle.rs` starts and stops the
//! service, `dial.rs` and `links.rs` connect to devices and watch their links, `serve.rs`
//! serves incoming connections, `loops.rs` runs the background loops, and the other files
//! hold the public API by topic.

mod admin;
mod clock;
mod data_dir;
mod desk;
mod device;
mod dial;
mod discovery;
mod invite;
mod lifecycle;
mod links;
mod loops;
mod messages;
mod pairing;
mod pool;
mod protocols;
mod pull;
mod serve;
mod states;
mod tasks;
mod trust;

pub use admin::{DeviceStatus, Diagnostics, RelayState};
pub use device::DeviceHandle;
pub use invite::PairingInvite;
pub(crate) use pairing::id_like_name;
pub use pull::{PULL_ANSWER_TIMEOUT, PullOptions};

use std::sync::Arc;

use parking_lot::RwLock;

use iroh::RelayUrl;
use iroh::endpoint::Connection;
use tether_identity::{DeviceId, DeviceInfo, NodeId, error_chain};
use tether_iroh::{ConnectionInfo, PeerAddr, Transport};
use tether_pairing::LocalDevice;
use tether_protocol::NetworkProtocol;
use tether_registry::{
    Device, DeviceRegistry, KeyManager, KeyStorageKind, PairedDevice as StoredDevice,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::DropGuard;

use crate::builder::Builder;
use crate::event::EventStream;
use crate::link::Incoming;
use crate::request::HandlerSlot;
use crate::{NetworkError, NetworkEvent, NetworkingConfig};
use tether_registry::Profile;

/// The networking service of one device: pairing, connections to paired devices, messages,
/// third-party protocols, discovery, events.
///
/// Cheap to clone; clones share one service. [`NetworkingService::shutdown`] stops it and
/// waits until it has let go of its data directory; dropping the last clone (and the last
/// [`DeviceHandle`]) stops it too, without waiting.
#[derive(Debug, Clone)]
pub struct NetworkingService {
    inner: Arc<Inner>,
    /// Stops the service's tasks when the application's last handle is dropped. The
    /// service's own tasks hold handles without it ([`Self::for_task`]), so they never keep
    /// the service running.
    _owner: Option<Arc<DropGuard>>,
}

/// What the service is made of.
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
    discovery: discovery::DiscoveryHub,
    pool: pool::Pool,
    desk: desk::PairingDesk,
    protocols: protocols::Protocols,
    /// The app's answers to requests.
    handler: HandlerSlot,
    events: broadcast::Sender<NetworkEvent>,
    /// Messages the links hand to the app's event stream.
    incoming: mpsc::Sender<Incoming>,
    /// Receives transfers into `config.receive_dir`; `None` refuses them.
    receiver: Option<tether_transfer::Receiver>,
    /// Answers the pulls paired devices ask for, through `config.share_provider`.
    sharing: crate::share::Sharing,
    tasks: tasks::Tasks,
    /// Set once the service has stopped (by `shutdown`, or the last handle dropped).
    stopped: tokio::sync::OnceCell<()>,
}

impl NetworkingService {
    /// Opens (or creates) the device's keys, profile and registry in the data directory,
    /// binds the endpoint and starts the background tasks: `Self::builder` with `config`,
    /// spawned (see [`Builder`] for protocols served from the start and events from before).
    pub async fn start(config: NetworkingConfig) -> Result<Self, NetworkError> {
        Builder::from_config(config).spawn().await
    }

    /// A handle for one of the service's own tasks: it does not keep the service running.
    fn for_task(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _owner: None,
        }
    }

    /// This device's node id.
    pub fn node_id(&self) -> NodeId {
        self.inner.keys.node_id()
    }

    /// What this device tells its peers about itself.
    pub fn device_info(&self) -> DeviceInfo {
        let profile = self.inner.profile.read();
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
        crate::close::check_alpn(protocol.alpn())?;
        if let Some(old) = self.inner.protocols.register(Arc::new(protocol)) {
            // The protocol it replaces is done: it hears its shutdown, bounded like at the end.
            self.inner.tasks.spawn(
                "a replaced protocol's shutdown",
                protocols::shut_down_one(old),
            );
        }
        let alpns = self.inner.protocols.endpoint_alpns();
        self.inner.transport.endpoint().set_alpns(alpns);
        Ok(())
    }

    /// Opens a connection to a paired device on a third-party protocol's ALPN.
    ///
    /// The device's gate decides right after the TLS handshake; a refused connection is then
    /// closed, which the first read or write shows ([`crate::close::refusal`] says whether
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

    fn local_device(&self) -> Result<LocalDevice, NetworkError> {
        let info = self.device_info();
        // The peer would refuse it (see `DeviceName::looks_like_id`); say so here, clearly.
        if info.device_name.looks_like_id() {
            return Err(id_like_name(&info.device_name));
        }
        LocalDevice::new(self.inner.keys.identity().clone(), info)
            .map_err(|e| NetworkError::Usage(error_chain(&e)))
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

    /// Announces this device on every discovery, with the pairing slot shown, if any.
    fn announce(&self, pairing_slot: Option<&str>) {
        self.inner.discovery.announce(&self.addr(), pairing_slot);
    }
}
