//! [`NetworkingService`] and what it is made of ([`Inner`]): the handle every `impl
//! NetworkingService` block of the service's files works on, and its core accessors.

use std::sync::Arc;

use iroh::RelayUrl;
use iroh::endpoint::Connection;
use parking_lot::{Mutex, RwLock};
use tether_identity::{DeviceInfo, NodeId};
use tether_iroh::{ConnectionInfo, PeerAddr, Transport};
use tether_protocol::NetworkProtocol;
use tether_registry::{
    Device, DeviceRegistry, KeyManager, KeyStorageKind, PairedDevice as StoredDevice,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::DropGuard;

use super::desk::PairingDesk;
use super::discovery::DiscoveryHub;
use super::pool::Pool;
use super::protocols::{Protocols, shut_down_one};
use super::tasks::Tasks;
use crate::event::EventStream;
use crate::history::Draft;
use crate::link::Incoming;
use crate::request::HandlerSlot;
use crate::{NetworkError, NetworkEvent, NetworkingConfig, TransferDirection};
use tether_registry::Profile;

/// The networking service of one device: pairing, connections to paired devices, messages,
/// third-party protocols, discovery, events.
///
/// Cheap to clone; clones share one service. [`NetworkingService::shutdown`] stops it and
/// waits until it has let go of its data directory; dropping the last clone (and the last
/// [`DeviceHandle`](crate::DeviceHandle)) stops it too, without waiting.
#[derive(Debug, Clone)]
pub struct NetworkingService {
    pub(super) inner: Arc<Inner>,
    /// Stops the service's tasks when the application's last handle is dropped. The
    /// service's own tasks hold handles without it ([`Self::for_task`]), so they never keep
    /// the service running.
    pub(super) _owner: Option<Arc<DropGuard>>,
}

/// What the service is made of.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) config: NetworkingConfig,
    pub(super) keys: KeyManager,
    /// This device's id, name and type (the name can change: `rename_self`).
    pub(super) profile: RwLock<Profile>,
    pub(super) registry: DeviceRegistry,
    /// Each paired device's bandwidth quotas, charged by the transfer streams.
    pub(super) meters: Arc<crate::bandwidth::Meters>,
    /// One registry write from a link's watch task at a time: redb commits one write at a
    /// time anyway, and many links connecting at once would otherwise hold a blocking thread
    /// each while they wait for it.
    pub(super) registry_writes: tokio::sync::Semaphore,
    pub(super) transport: Transport,
    pub(super) discovery: DiscoveryHub,
    /// Held while an announcement reads the desk's slot and writes it (see `announce`).
    pub(super) announcing: Mutex<()>,
    pub(super) pool: Pool,
    pub(super) desk: PairingDesk,
    pub(super) protocols: Protocols,
    /// The app's answers to requests.
    pub(super) handler: HandlerSlot,
    /// Recent answers to requests named across links, for their repeats.
    pub(super) answers: crate::link::AnswerSlot,
    /// Each paired device's message rate.
    pub(super) limiter: Arc<crate::rate::MessageLimiter>,
    pub(super) events: broadcast::Sender<NetworkEvent>,
    /// Messages the links hand to the app's event stream.
    pub(super) incoming: mpsc::Sender<Incoming>,
    /// Receives transfers into `config.receive_dir`; `None` refuses them.
    pub(super) receiver: Option<tether_transfer::Receiver>,
    /// Answers the pulls paired devices ask for, through `config.share_provider`.
    pub(super) sharing: crate::share::Sharing,
    pub(super) tasks: Tasks,
    /// The couriers delivering queued sends.
    pub(super) couriers: super::couriers::Couriers,
    /// Set once the service has stopped (by `shutdown`, or the last handle dropped).
    pub(super) stopped: tokio::sync::OnceCell<()>,
}

impl NetworkingService {
    /// A handle for one of the service's own tasks: it does not keep the service running.
    pub(super) fn for_task(&self) -> Self {
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
    /// [`Builder::events`](crate::Builder::events).
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

    /// Sends files and directories (relative paths kept) to a paired device over its pooled
    /// connection; the handle streams progress and ends with the receiver's verified report.
    /// Sending the same paths again after an interruption resumes: only what the receiver does
    /// not hold verified is sent. With [`TransferOptions::retry_for`](crate::TransferOptions#structfield.retry_for)
    /// the handle does that itself when the link is lost, for as long as that allows. Its end
    /// is recorded in the transfer history ([`Self::transfer_history`]).
    pub async fn share_with_device(
        &self,
        node_id: NodeId,
        paths: &[std::path::PathBuf],
        options: crate::TransferOptions,
    ) -> Result<crate::TransferHandle, NetworkError> {
        let draft = Draft::start(
            &self.inner.registry,
            node_id,
            TransferDirection::Send,
            false,
        );
        let link = self.link(node_id).await?;
        if !options.retry_for.is_zero() {
            let handle = self.share_retrying(&link, paths, options).await?;
            return Ok(handle.recorded(draft));
        }
        let cancel = tether_transfer::CancellationToken::new();
        let meters = &self.inner.meters;
        let mut handle =
            crate::transfer::send(&link, meters, paths, &options, cancel, None).await?;
        handle.path = ConnectionInfo::of(&link.connection).path;
        Ok(handle.recorded(draft))
    }

    /// Adds a third-party protocol on its own ALPN; only paired devices reach it. Any
    /// [`NetworkProtocol`] will do, a `Box<dyn NetworkProtocol>` or an `Arc` of one too. Its
    /// [`NetworkProtocol::shutdown`] is called when the service shuts down.
    ///
    /// Prefer [`Builder::protocol`](crate::Builder::protocol): a protocol given there is served from the start, with its
    /// ALPN fixed before the endpoint binds. One registered here replaces any protocol on the
    /// same ALPN.
    pub fn register_protocol<P: NetworkProtocol>(&self, protocol: P) -> Result<(), NetworkError> {
        crate::close::check_alpn(protocol.alpn())?;
        if let Some(old) = self.inner.protocols.register(Arc::new(protocol)) {
            // The protocol it replaces is done: it hears its shutdown, bounded like at the end.
            self.inner
                .tasks
                .spawn("a replaced protocol's shutdown", shut_down_one(old));
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
    /// [`NetworkError::UnknownProtocol`]; the `tether/` ALPNs are not for this. The device's
    /// link is opened first when there is none (a device that restarted on a new port is
    /// dialled back by its peer before the peer takes its other connections).
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
        // The link first: when this device restarted, the peer dials it back before it takes
        // any other connection from it (see `serve.rs`'s `dial_back`).
        self.link(node_id).await?;
        let connection = self.dial(node_id, alpn).await?;
        self.track(node_id, &connection)?;
        Ok(connection)
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

    /// Announces this device on every discovery, with the pairing slot shown now, if any.
    ///
    /// The slot is read under `announcing`, so the last announcement is always of the desk's
    /// current state: a pairing that ended and withdraws its code cannot overwrite the next
    /// code's announcement with "no code" (a joiner would not find it).
    pub(super) fn announce(&self) {
        let _one_at_a_time = self.inner.announcing.lock();
        let slot = self.inner.desk.shown_slot();
        self.inner.discovery.announce(&self.addr(), slot.as_deref());
    }
}
