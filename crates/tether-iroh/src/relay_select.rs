//! Relay selection: measure the configured relays with real probes and keep the endpoint on
//! the one a [`RelaySelector`] chooses, switching when it goes away.
//!
//! iroh picks a home relay by itself among the relays in its map. With a selector, the map
//! holds only the chosen relay, so the choice is the selector's: [`LowestLatency`] by
//! default, or an application's own policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use iroh::endpoint::Endpoint;
use iroh::{RelayUrl, Watcher};
use iroh_relay::client::ClientBuilder;
use iroh_relay::protos::relay::{ClientToRelayMsg, RelayToClientMsg};
use n0_future::{SinkExt, StreamExt};
use tether_protocol::{RelayCandidate, RelaySelector};
use tracing::{debug, info};

use crate::Transport;

/// The pause before measuring again after the chosen relay was lost: a relay that restarts
/// gets a moment, and a dead one is not measured in a tight loop.
const RELAY_LOST_PAUSE: Duration = Duration::from_millis(250);

/// How long one probe of one relay may take before the relay counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the selector lets iroh's first net report run before it drops relays from the
/// map: the report asks every relay in the map for this device's public address, and the NAT
/// type (mapping varies by destination or not) needs two answers.
const FIRST_REPORT_WAIT: Duration = Duration::from_secs(3);
/// Round trips per probe; the median counts.
const PINGS_PER_PROBE: usize = 3;

/// Chooses the reachable relay with the lowest measured round trip.
#[derive(Debug, Clone, Copy, Default)]
pub struct LowestLatency;

impl RelaySelector for LowestLatency {
    fn choose(&self, candidates: &[RelayCandidate]) -> Option<usize> {
        candidates
            .iter()
            .enumerate()
            .filter_map(|(index, candidate)| candidate.latency.map(|latency| (index, latency)))
            .min_by_key(|(_, latency)| *latency)
            .map(|(index, _)| index)
    }
}

/// Measures the round trip to a relay server: a real relay connection (TCP, TLS verified
/// against the endpoint's trust roots, the relay handshake, under a throwaway key so the
/// endpoint's own relay connection is left alone), then the median of a few relay-protocol
/// pings. `None` when the relay cannot be reached within the probe timeout.
pub async fn probe_relay(endpoint: &Endpoint, url: &RelayUrl) -> Option<Duration> {
    match tokio::time::timeout(PROBE_TIMEOUT, probe(endpoint, url)).await {
        Ok(Ok(rtt)) => Some(rtt),
        Ok(Err(reason)) => {
            debug!(relay = %url, %reason, "relay probe failed");
            None
        }
        Err(_) => {
            debug!(relay = %url, "relay probe timed out");
            None
        }
    }
}

async fn probe(endpoint: &Endpoint, url: &RelayUrl) -> Result<Duration, String> {
    let relay = url.clone();
    let dns = endpoint
        .dns_resolver()
        .map_err(|error| error.to_string())?
        .clone();
    let mut client = ClientBuilder::new(relay, iroh::SecretKey::generate(), dns)
        .tls_client_config(endpoint.tls_config().clone())
        .connect()
        .await
        .map_err(|error| error.to_string())?;
    let mut rtts = Vec::with_capacity(PINGS_PER_PROBE);
    for n in 0..PINGS_PER_PROBE {
        let nonce = u64::try_from(n).unwrap_or_default().to_le_bytes();
        let started = Instant::now();
        client
            .send(ClientToRelayMsg::Ping(nonce))
            .await
            .map_err(|error| error.to_string())?;
        loop {
            match client.next().await {
                Some(Ok(RelayToClientMsg::Pong(data))) if data == nonce => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the relay closed the connection".to_owned()),
            }
        }
        rtts.push(started.elapsed());
    }
    let _ = client.close().await;
    rtts.sort();
    rtts.get(rtts.len() / 2)
        .copied()
        .ok_or_else(|| "no round trip measured".to_owned())
}

impl Transport {
    /// Measures every configured relay (concurrently), in the order configured.
    pub async fn measure_relays(&self) -> Vec<RelayCandidate> {
        let urls = self.relay_urls();
        let probes = urls.iter().map(|url| probe_relay(self.endpoint(), url));
        let latencies = n0_future::join_all(probes).await;
        urls.into_iter()
            .zip(latencies)
            .map(|(url, latency)| RelayCandidate { url, latency })
            .collect()
    }

    /// Keeps the endpoint on the relay `selector` chooses among the configured ones: measures
    /// them now, every `every`, and at once when the chosen relay's connection is lost; the
    /// endpoint's relay map then holds only the chosen relay (none when the selector chooses
    /// none). The map is first left whole until iroh's first net report has asked every relay
    /// (up to 3 s), so that the NAT type is measured against all of them. Runs until the
    /// endpoint closes; the service runs it as a task.
    pub async fn select_relays(&self, selector: Arc<dyn RelaySelector>, every: Duration) {
        if self.relay_urls().is_empty() {
            return;
        }
        let mut report = self.endpoint().net_report();
        if tokio::time::timeout(FIRST_REPORT_WAIT, report.initialized())
            .await
            .is_err()
        {
            debug!("no net report yet; choosing a relay anyway");
        }
        let mut status = self.endpoint().home_relay_status();
        let mut chosen: Option<RelayUrl> = None;
        loop {
            let candidates = self.measure_relays().await;
            let choice = selector
                .choose(&candidates)
                .and_then(|index| candidates.get(index))
                .map(|candidate| candidate.url.clone());
            debug!(?candidates, ?choice, "relays measured");
            if choice != chosen {
                self.use_only_relay(choice.as_ref()).await;
                info!(from = ?chosen, to = ?choice, "relay chosen");
                chosen.clone_from(&choice);
                *self.chosen_relay.lock() = choice;
            }
            // Wait for the next round, or for the chosen relay to be lost.
            let chosen_url = chosen.clone();
            let lost = async {
                let mut connected_once = false;
                loop {
                    let connected = status
                        .get()
                        .iter()
                        .any(|s| Some(s.url()) == chosen_url.as_ref() && s.is_connected());
                    if connected {
                        connected_once = true;
                    } else if connected_once || chosen.is_none() {
                        return;
                    }
                    if status.updated().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = lost => {
                    debug!(relay = ?chosen, "lost the chosen relay; measuring again");
                    // Give a relay that restarts a moment, and do not spin on a dead one.
                    tokio::time::sleep(RELAY_LOST_PAUSE).await;
                }
                () = self.endpoint().closed() => return,
            }
        }
    }

    /// The relay [`Transport::select_relays`] chose last (`None` before its first choice, when
    /// it chose none, or when it does not run).
    pub fn chosen_relay(&self) -> Option<RelayUrl> {
        self.chosen_relay.lock().clone()
    }

    /// Makes `url` the only relay in the endpoint's map (`None`: no relay).
    async fn use_only_relay(&self, wanted: Option<&RelayUrl>) {
        if let Some(wanted) = wanted {
            let config = Arc::new(iroh::RelayConfig::from(wanted.clone()));
            self.endpoint().insert_relay(wanted.clone(), config).await;
        }
        for url in self.relay_urls() {
            if Some(&url) != wanted {
                self.endpoint().remove_relay(&url).await;
            }
        }
    }
}
