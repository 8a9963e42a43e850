//! `NetworkingConfig`: everything the service needs to start.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tether_identity::{DeviceName, DeviceType};
use tether_iroh::{LoopbackDiscovery, LowestLatency, TransportConfig};
use tether_pairing::InitiatorConfig;
use tether_protocol::{Discovery, RelaySelector};
use tether_registry::{KeyOptions, KeychainPolicy};
use tether_transfer::{DEFAULT_LEFTOVER_IDLE, Reserve};

use crate::consent::{MarkedDevicesOnly, TransferConsent};
use crate::rate::MessageRate;
use crate::share::{ShareNothing, ShareProvider};

/// The default [`NetworkingConfig::idle_timeout`]: long enough that an app talking to a
/// device now and then keeps its connection, short enough that a forgotten one goes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// How a [`crate::NetworkingService`] runs.
///
/// [`NetworkingConfig::new`] gives the real-world defaults (every interface, UDP 11204, iroh's
/// public relays, mDNS on the LAN, the key in the OS keychain). [`NetworkingConfig::local_only`]
/// keeps everything on this machine: loopback only, no relays, no mDNS, discovery through a
/// shared directory ([`LoopbackDiscovery`]), and the key in the key file.
///
/// # Where the device key is kept ([`NetworkingConfig::keys`])
///
/// A device's key is made on its first start and read on every later one. A new key goes to
/// the OS keychain where [`KeyOptions::keychain`] allows it and one works (not in
/// `local_only`). Otherwise it goes to `data_dir/device.key`, sealed with a passphrase
/// (Argon2id, ChaCha20-Poly1305): [`KeyOptions::passphrase`] if the app has it, else whatever
/// [`KeyOptions::prompt`] answers (a terminal, a dialog). With neither, the start fails with
/// [`tether_registry::KeyError::ProtectionRequired`] and nothing is written, unless the app
/// named the insecure choice ([`KeyOptions::insecure_key_file`],
/// [`NetworkingConfig::with_insecure_key_file`]: tests, throwaway demos), which writes the key
/// in the clear, mode 0600. A key file made unprotected earlier still opens (one warning per
/// start), and [`tether_registry::KeyManager::protect`] seals it in place.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NetworkingConfig {
    /// Where keys, the registry and the profile live (created with mode 0700).
    pub data_dir: PathBuf,
    /// This device's name (kept in the profile; the host name by default).
    pub device_name: Option<DeviceName>,
    /// This device's kind.
    pub device_type: Option<DeviceType>,
    /// The endpoint's bind address, relays, mDNS and global discovery: pkarr/DNS
    /// (`transport.global_discovery`) and the Mainline DHT (`transport.dht`, a
    /// [`tether_iroh::DhtConfig`]; off by default).
    pub transport: TransportConfig,
    /// Chooses among the relays listed in `transport.relay` ([`tether_iroh::RelayConfig::Custom`]):
    /// the endpoint uses only the chosen one and switches when it goes away. The default,
    /// [`LowestLatency`], measures each relay with real probes; `None` leaves the choice to
    /// iroh. iroh's default relays are always chosen by iroh.
    pub relay_selector: Option<Arc<dyn RelaySelector>>,
    /// How often the relays are measured again (and at once when the chosen one is lost).
    pub relay_probe_interval: Duration,
    /// Where the device key is kept, and how its passphrase is had (see the type's docs).
    pub keys: KeyOptions,
    /// A directory for [`LoopbackDiscovery`], or `None` to not use it.
    pub loopback_discovery: Option<PathBuf>,
    /// The app's own discoveries, used beside the built-in ones (or alone, with those
    /// off): what they find reaches the service's dialling and iroh's address lookup, and
    /// this device is announced through them.
    pub discoveries: Vec<Arc<dyn Discovery>>,
    /// Code lifetime and the initiator's limits.
    pub pairing: InitiatorConfig,
    /// A connection the peer has been silent on for this long gets a `Ping`.
    pub keepalive_interval: Duration,
    /// How long a request waits for its answer. A peer that leaves a keep-alive `Ping`
    /// unanswered this long is dead: a dead peer is noticed within `1.25 ×
    /// keepalive_interval + request_timeout` of its last word.
    pub request_timeout: Duration,
    /// How long a connection to a paired device may go without application traffic before
    /// it is closed (with the close code [`crate::gate::CLOSE_IDLE`]); `None` keeps it open
    /// until keep-alive, the peer, unpairing or shutdown ends it. Default: 5 minutes.
    ///
    /// Application traffic is what an app does: a message sent or received (and its answer),
    /// a request the app's handler is answering, a transfer running over the connection, an
    /// open connection of a third-party protocol to the device. Keep-alive pings are not:
    /// they would otherwise keep every connection open for ever. The clock starts when the
    /// last use ends, so a long transfer is never cut. An idle close is not a failure: the
    /// device stays paired, is not redialled when discovery sees it again, and the next
    /// message or transfer dials it at once.
    pub idle_timeout: Option<Duration>,
    /// How long one connection attempt may take (a send makes up to three, with backoff;
    /// an attempt starts over at once when discovery reports a new address).
    pub connect_timeout: Duration,
    /// How long `join_pairing` looks for the device showing the code.
    pub discovery_timeout: Duration,
    /// Where transfers from paired devices are written; `None` refuses every transfer.
    pub receive_dir: Option<PathBuf>,
    /// Who decides whether an incoming transfer is received (see [`crate::TransferConsent`]).
    /// Default: [`MarkedDevicesOnly`], which accepts only from devices marked auto-accept
    /// ([`crate::NetworkingService::set_auto_accept`]) and declines the rest.
    pub consent: Arc<dyn TransferConsent>,
    /// What paired devices may pull from this one by entry id (see [`crate::ShareProvider`]),
    /// asked per request with the requesting device. Default: [`ShareNothing`], which refuses
    /// every request.
    pub share_provider: Arc<dyn ShareProvider>,
    /// How long an incoming transfer may move no bytes at all before it ends (resumable; the
    /// sender's bound is [`crate::TransferOptions::stall_timeout`]). Default: 60 s.
    pub transfer_stall_timeout: Duration,
    /// Decline transfers whose chunks are not sealed with per-transfer keys (the sender is told
    /// `AbortCode::EncryptionRequired`). Off by default; `tether up` turns it on.
    pub require_encryption: bool,
    /// Free space incoming transfers leave on the receive directory's file system: an offer
    /// that would eat into it is declined (`AbortCode::NoSpace`), and a transfer that would
    /// (another program filled the disk) stops, resumable. Default: the smaller of 5 % and
    /// 1 GiB.
    pub space_reserve: Reserve,
    /// Free inodes incoming transfers leave (files, resume records, new directories).
    /// Default: 5 %.
    pub inode_reserve: Reserve,
    /// Most bytes a paired device without a quota of its own may store here
    /// ([`crate::NetworkingService::set_storage_quota`]); `None`: only the reserves apply.
    /// Counted at each accepted offer, kept in the registry. Default: `None`.
    pub default_storage_quota: Option<u64>,
    /// Partial files and resume records untouched for longer than this (or of devices no
    /// longer paired) are removed from the receive directory when the service starts and by
    /// [`crate::NetworkingService::collect_leftovers`]. Default: 7 days.
    pub leftover_idle: Duration,
    /// The longest text taken from a paired device, in bytes; a longer one is refused (the
    /// sender gets [`crate::NetworkError::Rejected`] with
    /// [`crate::ErrorCode::LimitExceeded`]) and never becomes an event. Texts over
    /// [`crate::limits::MAX_TEXT_LEN`] (64 KiB, the default) are refused whatever this says.
    pub max_text_len: usize,
    /// Speak the compact binary encoding of control messages with devices that speak it too
    /// (negotiated in each connection's session handshake; see
    /// [`crate::NetworkingService::message_encoding`]). Off: this device speaks JSON only:
    /// when it accepts, its handshake offers nothing, exactly as a build without the binary
    /// encoding; when it dials, it chooses none of what the peer offers. Handy for reading
    /// frames by eye. Default: on.
    pub binary_messages: bool,
    /// Deliver the sends queued in the outbox ([`crate::NetworkingService::queue_send`]) while
    /// this service runs. Default: on. Off for a service that only queues them (the CLI's
    /// short-lived nodes: the next `tether up` delivers).
    pub deliver_queued: bool,
    /// How often the outbox tries the devices it holds sends for, besides when they connect
    /// or are seen; after each failed round for a device its wait doubles, up to 16 times
    /// this. Default: 30 s.
    pub outbox_retry: Duration,
    /// How many messages and requests each paired device may send this one (app messages,
    /// requests to the app's handler, texts, name updates; not pings or transfers), as a
    /// token bucket per device. Over it, a request is answered [`crate::ErrorCode::Busy`] and
    /// a message is dropped (acknowledged as not delivered when the peer asked).
    /// `None`: no limit. Default: [`MessageRate::DEFAULT`].
    pub message_rate: Option<MessageRate>,
}

impl NetworkingConfig {
    /// The real-world defaults, with data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            device_name: None,
            device_type: None,
            transport: TransportConfig::default(),
            relay_selector: Some(Arc::new(LowestLatency)),
            relay_probe_interval: Duration::from_secs(300),
            keys: KeyOptions::default(),
            loopback_discovery: None,
            discoveries: Vec::new(),
            pairing: InitiatorConfig::default(),
            keepalive_interval: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            connect_timeout: Duration::from_secs(10),
            discovery_timeout: Duration::from_secs(10),
            receive_dir: None,
            consent: Arc::new(MarkedDevicesOnly),
            share_provider: Arc::new(ShareNothing),
            transfer_stall_timeout: Duration::from_secs(60),
            require_encryption: false,
            space_reserve: Reserve::DEFAULT_SPACE,
            inode_reserve: Reserve::DEFAULT_INODES,
            default_storage_quota: None,
            leftover_idle: DEFAULT_LEFTOVER_IDLE,
            max_text_len: tether_wire::limits::MAX_TEXT_LEN,
            binary_messages: true,
            deliver_queued: true,
            outbox_retry: Duration::from_secs(30),
            message_rate: Some(MessageRate::DEFAULT),
        }
    }

    /// Everything on this machine (see the type's docs). The key file is used rather than the
    /// OS keychain, so tests and demos leave nothing in the user's keychain; a new key needs a
    /// passphrase (or [`Self::with_insecure_key_file`]).
    pub fn local_only(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::new(data_dir);
        config.make_local_only();
        config
    }

    /// Switches the transport, key storage and discovery to [`Self::local_only`]'s.
    pub(crate) fn make_local_only(&mut self) {
        self.transport = TransportConfig::local_only();
        self.keys.keychain = KeychainPolicy::Never;
        // A directory set before (a test's own, say) is kept.
        if self.loopback_discovery.is_none() {
            self.loopback_discovery = Some(LoopbackDiscovery::default_dir());
        }
    }

    /// Sets the device name.
    pub fn with_device_name(mut self, name: DeviceName) -> Self {
        self.device_name = Some(name);
        self
    }

    /// Receives transfers from paired devices into `dir`, those the
    /// [`consent`](Self::consent) accepts.
    pub fn with_receive_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.receive_dir = Some(dir.into());
        self
    }

    /// Sets who decides whether an incoming transfer is received.
    pub fn with_consent(mut self, consent: impl TransferConsent) -> Self {
        self.consent = Arc::new(consent);
        self
    }

    /// Sets what paired devices may pull from this one.
    pub fn with_share_provider(mut self, provider: impl ShareProvider) -> Self {
        self.share_provider = Arc::new(provider);
        self
    }

    /// Sets the idle timeout (`None`: never close a connection for being idle).
    pub fn with_idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Allows a new device key to be written unprotected when no keychain takes it and no
    /// passphrase was given ([`KeyOptions::insecure_key_file`]): for tests and throwaway
    /// demos, never for a device someone keeps.
    pub fn with_insecure_key_file(mut self) -> Self {
        self.keys.insecure_key_file = true;
        self
    }

    /// Adds one of the app's own discoveries (see [`Self::discoveries`]).
    pub fn with_discovery(mut self, discovery: impl Discovery) -> Self {
        self.discoveries.push(Arc::new(discovery));
        self
    }

    /// Sets the loopback discovery directory.
    pub fn with_loopback_discovery(mut self, dir: impl Into<PathBuf>) -> Self {
        self.loopback_discovery = Some(dir.into());
        self
    }
}
