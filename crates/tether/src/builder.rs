//! [`Builder`]: everything a service is made of, fixed before its endpoint binds.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use tether_identity::{DeviceId, DeviceName, DeviceType};
use tether_iroh::TransportConfig;
use tether_protocol::{Discovery, NetworkProtocol, RelaySelector};
use tether_registry::KeyOptions;
use tokio::sync::broadcast;

use crate::event::{EVENT_BUFFER, EventStream};
use crate::request::DynRequestHandler;
use crate::{NetworkError, NetworkEvent, NetworkingConfig, NetworkingService, RequestHandler};
use crate::{ShareProvider, TransferConsent};

/// Builds a [`NetworkingService`]: its data directory and device id, transport, protocols,
/// discoveries, relay selector, consent, request handler and file shares, then
/// [`spawn`](Self::spawn)s it. Protocols given here are served from the first packet: their
/// ALPNs are fixed before the endpoint binds.
///
/// ```no_run
/// # async fn demo() -> Result<(), tether::NetworkError> {
/// use tether::{DeviceId, NetworkingService};
///
/// // The app's own id for this device, kept with its library.
/// let device_id: DeviceId = "7f0c2a4e-1b9d-4c3e-8a6f-5d2e9b1c0a47".parse().unwrap();
/// let builder = NetworkingService::builder("/var/lib/app/network")
///     .device_id(device_id)
///     .local_only();
/// // Listening before the service starts: nothing it reports is missed.
/// let mut events = builder.events();
/// let service = builder.spawn().await?;
/// # let _ = (&mut events, service);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `spawn` is called"]
pub struct Builder {
    pub(crate) config: NetworkingConfig,
    pub(crate) device_id: Option<DeviceId>,
    pub(crate) protocols: Vec<Arc<dyn NetworkProtocol>>,
    pub(crate) request_handler: Option<Arc<dyn DynRequestHandler>>,
    pub(crate) events: broadcast::Sender<NetworkEvent>,
}

impl NetworkingService {
    /// A builder with the real-world defaults ([`NetworkingConfig::new`]) and data in
    /// `data_dir`.
    pub fn builder(data_dir: impl Into<PathBuf>) -> Builder {
        Builder::from_config(NetworkingConfig::new(data_dir))
    }

    /// Opens (or creates) the device's keys, profile and registry in the data directory,
    /// binds the endpoint and starts the background tasks: `Self::builder` with `config`,
    /// spawned (see [`Builder`] for protocols served from the start and events from before).
    pub async fn start(config: NetworkingConfig) -> Result<Self, NetworkError> {
        Builder::from_config(config).spawn().await
    }
}

impl Builder {
    /// A builder that starts from `config`.
    pub fn from_config(config: NetworkingConfig) -> Self {
        Self {
            config,
            device_id: None,
            protocols: Vec::new(),
            request_handler: None,
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    /// Everything on this machine: the transport and key storage of
    /// [`NetworkingConfig::local_only`], and its loopback discovery unless a directory was set
    /// already; the rest of what was set is kept (a transport set before is replaced: set it
    /// after).
    pub fn local_only(mut self) -> Self {
        self.config.make_local_only();
        self
    }

    /// This device's id in the app. A new data directory takes it; one that already belongs
    /// to another id is refused with [`NetworkError::DeviceIdMismatch`] (paired devices know
    /// this device by the id it had when they paired). Without it, a new data directory gets
    /// a random id.
    pub fn device_id(mut self, id: DeviceId) -> Self {
        self.device_id = Some(id);
        self
    }

    /// This device's name, shown to the devices it pairs with.
    pub fn device_name(mut self, name: DeviceName) -> Self {
        self.config.device_name = Some(name);
        self
    }

    /// This device's type.
    pub fn device_type(mut self, device_type: DeviceType) -> Self {
        self.config.device_type = Some(device_type);
        self
    }

    /// The endpoint's transport: relays, bind address, address lookup.
    pub fn transport(mut self, transport: TransportConfig) -> Self {
        self.config.transport = transport;
        self
    }

    /// Serves a third-party protocol on its own ALPN to paired devices only. Its
    /// [`NetworkProtocol::shutdown`] is called when the service shuts down. `tether/` ALPNs
    /// are reserved and the same ALPN twice is refused: [`spawn`](Self::spawn) fails with
    /// [`NetworkError::Usage`].
    pub fn protocol(mut self, protocol: impl NetworkProtocol) -> Self {
        self.protocols.push(Arc::new(protocol));
        self
    }

    /// Adds one of the app's own discoveries (see [`NetworkingConfig::discoveries`]).
    pub fn discovery(mut self, discovery: impl Discovery) -> Self {
        self.config.discoveries.push(Arc::new(discovery));
        self
    }

    /// Chooses the home relay among the configured ones.
    pub fn relay_selector(mut self, selector: impl RelaySelector) -> Self {
        self.config.relay_selector = Some(Arc::new(selector));
        self
    }

    /// Decides whether a transfer a paired device pushes is received.
    pub fn consent(mut self, consent: impl TransferConsent) -> Self {
        self.config.consent = Arc::new(consent);
        self
    }

    /// Receives pushed transfers into `dir` (those the consent accepts).
    pub fn receive_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.receive_dir = Some(dir.into());
        self
    }

    /// Says which files paired devices may pull by entry id (see [`ShareProvider`]); by
    /// default nothing is shared.
    pub fn share_provider(mut self, provider: impl ShareProvider) -> Self {
        self.config.share_provider = Arc::new(provider);
        self
    }

    /// Answers `SyncRequest` and `LibraryRequest` from paired devices (see
    /// [`RequestHandler`]); it can be replaced later with
    /// [`NetworkingService::set_request_handler`].
    pub fn request_handler(mut self, handler: impl RequestHandler) -> Self {
        self.request_handler = Some(Arc::new(handler));
        self
    }

    /// How the device key is kept: keychain policy, a passphrase for the key file, Argon2
    /// parameters ([`KeyOptions`]).
    pub fn keys(mut self, keys: KeyOptions) -> Self {
        self.config.keys = keys;
        self
    }

    /// Lets a new device key be written unprotected when no keychain takes it and no
    /// passphrase was given: for tests and throwaway demos only
    /// ([`KeyOptions::insecure_key_file`]).
    pub fn insecure_key_file(mut self) -> Self {
        self.config.keys.insecure_key_file = true;
        self
    }

    /// The directory the loopback discovery announces in and reads from (`None`: no loopback
    /// discovery). [`Self::local_only`] turns it on with a directory shared by every Tether
    /// service of this user on the machine; give a directory of your own to keep a set of
    /// services apart.
    pub fn loopback_discovery(mut self, dir: Option<PathBuf>) -> Self {
        self.config.loopback_discovery = dir;
        self
    }

    /// Changes any other setting of the [`NetworkingConfig`].
    pub fn configure(mut self, change: impl FnOnce(&mut NetworkingConfig)) -> Self {
        change(&mut self.config);
        self
    }

    /// The settings so far.
    pub fn config(&self) -> &NetworkingConfig {
        &self.config
    }

    /// The service's events, from before it starts: a device found or a transfer left over
    /// while it starts is not missed.
    pub fn events(&self) -> EventStream {
        EventStream::new(self.events.subscribe())
    }

    /// Opens (or creates) the device's keys, profile and registry in the data directory,
    /// binds the endpoint with every protocol's ALPN and starts the background tasks.
    pub async fn spawn(self) -> Result<NetworkingService, NetworkError> {
        let mut alpns = HashSet::new();
        for protocol in &self.protocols {
            let alpn = protocol.alpn();
            crate::close::check_alpn(alpn)?;
            if !alpns.insert(alpn.to_vec()) {
                return Err(NetworkError::Usage(format!(
                    "two protocols were given for the ALPN {}",
                    String::from_utf8_lossy(alpn)
                )));
            }
        }
        let Self {
            config,
            device_id,
            protocols,
            request_handler,
            events,
        } = self;
        // Boxed: starting holds a lot across awaits, and callers' futures stay small.
        Box::pin(NetworkingService::spawn_from(
            config,
            device_id,
            protocols,
            request_handler,
            events,
        ))
        .await
    }
}
