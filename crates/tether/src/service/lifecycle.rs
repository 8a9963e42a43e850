//! Starting the service from a [`Builder`], and stopping it: by `shutdown`, or when the
//! application drops its last handle.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tether_identity::{DeviceId, ErrorChain};
use tether_iroh::{LoopbackDiscovery, MdnsDiscovery, Transport};
use tether_protocol::{Discovery, NetworkProtocol};
use tether_registry::{DeviceRegistry, DisconnectReason, KeyManager};
use tokio::sync::{broadcast, mpsc};
use tracing::{info, warn};

use super::core::{Inner, NetworkingService};
use super::data_dir::create_private_dir;
use super::desk::PairingDesk;
use super::discovery::DiscoveryHub;
use super::pool::Pool;
use super::protocols::Protocols;
use super::tasks::Tasks;
use crate::close::CLOSE_NORMAL;
use crate::consent::RegistryConsent;
use crate::gate::RegistryGate;
use crate::request::DynRequestHandler;
use crate::storage::{RegistryQuota, collect_leftovers};
use crate::{NetworkError, NetworkEvent, NetworkingConfig};
use tether_registry::Profile;

/// How many messages from paired devices may wait for the event loop before the links that
/// read them wait too.
const INCOMING_BUFFER: usize = 256;

impl NetworkingService {
    /// Starts a service from what a [`Builder`](crate::Builder) gathered: its settings, the
    /// app's device id, the protocols served from the start, the request handler and the
    /// events channel its subscribers already listen on.
    pub(crate) async fn spawn_from(
        config: NetworkingConfig,
        device_id: Option<DeviceId>,
        protocols: Vec<Arc<dyn NetworkProtocol>>,
        request_handler: Option<Arc<dyn DynRequestHandler>>,
        events: broadcast::Sender<NetworkEvent>,
    ) -> Result<Self, NetworkError> {
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
        let protocols = Protocols::new(protocols);
        let desk = PairingDesk::default();
        let gate = Arc::new(RegistryGate {
            registry: registry.clone(),
            protocols: protocols.gate_alpns(),
            lobby: Arc::clone(desk.lobby()),
        });
        let alpns = protocols.endpoint_alpns();
        let transport = Transport::bind(keys.identity(), &config.transport, alpns, gate).await?;
        let meters = crate::bandwidth::Meters::new(registry.clone());
        let receiver = receiver(&config, &registry, &meters);
        remove_leftovers(&config, &registry);
        let discovery = DiscoveryHub::new(discoveries(&config, &transport)?);

        let (incoming, incoming_rx) = mpsc::channel(INCOMING_BUFFER);
        let sharing = crate::share::Sharing::new(
            Arc::clone(&config.share_provider),
            registry.clone(),
            Arc::clone(&meters),
            events.clone(),
            config.transfer_stall_timeout,
        );
        let answers = crate::link::answer_cache(config.request_timeout);
        let limiter = Arc::new(crate::rate::MessageLimiter::new(config.message_rate));
        let tasks = Tasks::new();
        let owner = Some(Arc::new(tasks.stop_on_drop()));
        let service = Self {
            inner: Arc::new(Inner {
                config,
                keys,
                profile: RwLock::new(profile),
                registry,
                meters,
                registry_writes: tokio::sync::Semaphore::new(1),
                transport,
                discovery,
                announcing: Mutex::new(()),
                pool: Pool::default(),
                desk,
                protocols,
                handler: Arc::new(RwLock::new(request_handler)),
                answers,
                limiter,
                events,
                incoming,
                receiver,
                sharing,
                tasks,
                couriers: super::couriers::Couriers::default(),
                stopped: tokio::sync::OnceCell::new(),
            }),
            _owner: owner,
        };
        service.announce();
        service.start_tasks(incoming_rx);
        info!(
            node = %service.node_id().fmt_short(),
            name = %service.device_info().device_name,
            addrs = ?service.inner.transport.bound_addrs(),
            "networking service started"
        );
        Ok(service)
    }

    /// Stops every task, withdraws this device's announcements and closes the endpoint.
    ///
    /// When it returns, no task of the service holds its data directory any more: a new
    /// service may open it at once (a restart in the same process). Called from one of the
    /// service's own tasks (a protocol handler, say), that task is neither cancelled nor
    /// waited for.
    pub async fn shutdown(&self) {
        self.inner.tasks.release_current();
        self.stop().await;
    }

    /// Runs [`Self::stop`] once the tasks are told to stop: by `shutdown`, or by the drop of
    /// the application's last handle. Not one of the tasks (it waits for them).
    pub(super) fn stop_when_told(&self) {
        let service = self.for_task();
        tokio::spawn(async move {
            service.inner.tasks.stopping().await;
            service.stop().await;
        });
    }

    /// Stops the service, once; a second call waits for the first.
    async fn stop(&self) {
        let inner = &self.inner;
        inner.stopped.get_or_init(|| self.stop_once()).await;
    }

    async fn stop_once(&self) {
        let inner = &self.inner;
        // Every invite still waiting hears that the service is gone.
        inner.desk.close();
        inner.protocols.shut_down().await;
        // Dropping the discoveries (their loops end with the tasks) ends their announcements.
        inner.discovery.stop();
        inner.tasks.cancel();
        for (node_id, link) in inner.pool.drain_links() {
            link.close(CLOSE_NORMAL, "shutdown");
            let _ = inner
                .registry
                .disconnected(node_id, DisconnectReason::LocalShutdown);
        }
        inner.transport.close().await;
        // A cancelled task lets go of the service (and the registry's open database) when
        // it ends; wait for that.
        inner.tasks.wait().await;
        // Let go of `secrets.redb` and the data directory's lock now, not when the last clone
        // (a `DeviceHandle`, say) is dropped, so the same data directory can be opened again.
        inner.registry.close();
        info!("networking service stopped");
    }
}

/// The receiver of pushed transfers, if the config has a receive directory. Paired devices
/// pass the gate; what they send is received only with the app's consent.
fn receiver(
    config: &NetworkingConfig,
    registry: &DeviceRegistry,
    meters: &Arc<crate::bandwidth::Meters>,
) -> Option<tether_transfer::Receiver> {
    let dir = config.receive_dir.as_ref()?;
    let consent = RegistryConsent {
        registry: registry.clone(),
        app: Arc::clone(&config.consent),
    };
    Some(tether_transfer::Receiver::new(
        tether_transfer::ReceiverConfig::new(dir)
            .consent(consent)
            .stall_timeout(config.transfer_stall_timeout)
            .require_encryption(config.require_encryption)
            .space_reserve(config.space_reserve)
            .inode_reserve(config.inode_reserve)
            .quota(Arc::new(RegistryQuota {
                registry: registry.clone(),
                default: config.default_storage_quota,
            }))
            .receive_budget(Arc::clone(meters) as _),
    ))
}

/// Removes what interrupted transfers left, before anything new arrives.
fn remove_leftovers(config: &NetworkingConfig, registry: &DeviceRegistry) {
    let Some(dir) = &config.receive_dir else {
        return;
    };
    let rules = tether_transfer::Leftovers::default().idle(config.leftover_idle);
    match collect_leftovers(registry, dir, &rules) {
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

/// The discoveries the config turns on: loopback, mDNS, global (DNS), the DHT, and the app's
/// own.
fn discoveries(
    config: &NetworkingConfig,
    transport: &Transport,
) -> Result<Vec<Arc<dyn Discovery>>, NetworkError> {
    let mut discoveries: Vec<Arc<dyn Discovery>> = Vec::new();
    if let Some(dir) = &config.loopback_discovery {
        let loopback = LoopbackDiscovery::new(dir).map_err(tether_iroh::TransportError::from)?;
        discoveries.push(Arc::new(loopback));
    }
    if let Some(mdns) = MdnsDiscovery::of(transport) {
        discoveries.push(Arc::new(mdns));
    }
    if let Some(global) = tether_iroh::GlobalDiscovery::of(transport) {
        discoveries.push(Arc::new(global));
    }
    if let Some(dht) = tether_iroh::DhtDiscovery::of(transport) {
        discoveries.push(Arc::new(dht));
    }
    discoveries.extend(config.discoveries.iter().cloned());
    Ok(discoveries)
}
