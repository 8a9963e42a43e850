//! The protocol table: the third-party protocols served, by ALPN, and the set of their ALPNs
//! the gate admits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::RwLock;
use tether_protocol::NetworkProtocol;
use tracing::warn;

use crate::close::PAIRING_ALPN;
use crate::close::SYNC_ALPN;

/// The ALPNs shared with the gate, which admits a paired device on any of them.
pub(super) type GateAlpns = Arc<RwLock<HashSet<Vec<u8>>>>;

/// The third-party protocols served now. The handlers and the gate's ALPN set are written
/// together by [`Self::register`] and [`Self::drain`]; each lock is taken alone.
#[derive(Debug)]
pub(super) struct Protocols {
    handlers: RwLock<HashMap<Vec<u8>, Arc<dyn NetworkProtocol>>>,
    gate_alpns: GateAlpns,
}

impl Protocols {
    /// The table of the protocols given at start.
    pub(super) fn new(protocols: Vec<Arc<dyn NetworkProtocol>>) -> Self {
        let handlers: HashMap<Vec<u8>, Arc<dyn NetworkProtocol>> = protocols
            .into_iter()
            .map(|protocol| (protocol.alpn().to_vec(), protocol))
            .collect();
        let alpns = handlers.keys().cloned().collect();
        Self {
            handlers: RwLock::new(handlers),
            gate_alpns: Arc::new(RwLock::new(alpns)),
        }
    }

    /// The ALPN set the gate reads.
    pub(super) fn gate_alpns(&self) -> GateAlpns {
        Arc::clone(&self.gate_alpns)
    }

    /// Every ALPN the endpoint serves: Tether's own and each protocol's.
    pub(super) fn endpoint_alpns(&self) -> Vec<Vec<u8>> {
        let mut all = vec![SYNC_ALPN.to_vec(), PAIRING_ALPN.to_vec()];
        all.extend(self.gate_alpns.read().iter().cloned());
        all
    }

    /// The handler of `alpn`, if one is registered.
    pub(super) fn get(&self, alpn: &[u8]) -> Option<Arc<dyn NetworkProtocol>> {
        self.handlers.read().get(alpn).cloned()
    }

    /// Serves `protocol` on its ALPN; returns the protocol it replaces, if any.
    pub(super) fn register(
        &self,
        protocol: Arc<dyn NetworkProtocol>,
    ) -> Option<Arc<dyn NetworkProtocol>> {
        let alpn = protocol.alpn().to_vec();
        let replaced = self.handlers.write().insert(alpn.clone(), protocol);
        self.gate_alpns.write().insert(alpn);
        replaced
    }

    /// Empties the table; the handlers that were in it.
    fn drain(&self) -> Vec<Arc<dyn NetworkProtocol>> {
        self.handlers
            .write()
            .drain()
            .map(|(_, protocol)| protocol)
            .collect()
    }

    /// Calls every registered protocol's [`NetworkProtocol::shutdown`] at once, while their
    /// connections are still open, and waits for each at most
    /// [`tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT`]. Each is called once: the table is
    /// emptied.
    pub(super) async fn shut_down(&self) {
        let mut hooks = tokio::task::JoinSet::new();
        for protocol in self.drain() {
            hooks.spawn(shut_down_one(protocol));
        }
        while let Some(joined) = hooks.join_next().await {
            if let Err(error) = joined
                && error.is_panic()
            {
                warn!("a protocol's shutdown panicked");
            }
        }
    }
}

/// Calls one protocol's shutdown, bounded by [`tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT`].
pub(super) async fn shut_down_one(protocol: Arc<dyn NetworkProtocol>) {
    let timeout = tether_protocol::PROTOCOL_SHUTDOWN_TIMEOUT;
    if tokio::time::timeout(timeout, protocol.shutdown())
        .await
        .is_err()
    {
        let alpn = String::from_utf8_lossy(protocol.alpn()).into_owned();
        warn!(%alpn, ?timeout, "a protocol's shutdown took too long; going on");
    }
}
