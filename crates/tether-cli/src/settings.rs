//! Options every command shares: the data directory and the network mode.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use anyhow::{Context, Result};
use tether::{
    DhtConfig, NetworkingConfig, NetworkingService, RelayConfig, TransportConfig, TrustedRoot,
};

use crate::passphrase;

/// Which networks the node may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    /// The real-world defaults: every interface, iroh's public relays (or the user's own),
    /// mDNS.
    Internet,
    /// This machine only: 127.0.0.1, no relays unless listed, no mDNS, loopback discovery.
    LocalOnly,
    /// The local network: every interface, mDNS, no relays unless listed, no internet
    /// discovery, no port mapping.
    Lan,
}

/// Options every command shares.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) data_dir: Option<PathBuf>,
    pub(crate) network: Network,
    /// The user's own relay servers (`--relay URL`, repeatable).
    pub(crate) relays: Vec<String>,
    /// Certificates to trust for those relays' TLS (`--relay-ca FILE`, PEM or DER).
    pub(crate) relay_cas: Vec<PathBuf>,
    /// Discovery on the Mainline DHT (`--dht`, `--dht-bootstrap ADDR:PORT,...`).
    pub(crate) dht: Option<DhtConfig>,
    /// The device key's passphrase is in this file (`--passphrase-file FILE`).
    pub(crate) passphrase_file: Option<PathBuf>,
    /// A new device key may be stored unprotected (`--insecure-key-file`).
    pub(crate) insecure_key_file: bool,
}

impl Settings {
    pub(crate) fn data_dir(&self) -> Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share"))
            })
            .context("no data directory: pass --data-dir DIR or set TETHER_DATA_DIR")?;
        Ok(base.join("tether"))
    }

    /// The node's configuration. `offline` commands (identity, the device list) never need
    /// more than loopback, so they get the local-only transport whatever the flags say.
    pub(crate) fn config(&self, offline: bool) -> Result<NetworkingConfig> {
        let dir = self.data_dir()?;
        let mut config = match self.network {
            Network::LocalOnly => NetworkingConfig::local_only(dir),
            Network::Internet => NetworkingConfig::new(dir),
            Network::Lan => {
                let mut config = NetworkingConfig::new(dir);
                config.transport.bind_addr =
                    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, tether_port()));
                config.transport.relay = RelayConfig::Disabled;
                config.transport.mdns = true;
                // LAN only: no pkarr/DNS publishing or lookups on the internet.
                config.transport.global_discovery = None;
                // Nor a port mapping on the router: it is for peers on the internet.
                config.transport.port_mapping = false;
                config
            }
        };
        if !self.relays.is_empty() {
            config.transport.relay = RelayConfig::Custom(self.relays.clone());
        }
        for file in &self.relay_cas {
            config.transport.relay_roots.push(read_certificate(file)?);
        }
        // In local-only mode the transport keeps it only when every bootstrap node is on
        // loopback (the public nodes never are).
        config.transport.dht.clone_from(&self.dht);
        if offline {
            config.transport = TransportConfig::local_only();
        }
        // The passphrase that seals a new key file, and opens a sealed one: given up front,
        // or asked for on the terminal when one is needed.
        config.keys.passphrase = passphrase::given_passphrase(self.passphrase_file.as_deref())?;
        config.keys.prompt = passphrase::terminal_prompt();
        config.keys.insecure_key_file = self.insecure_key_file;
        Ok(config)
    }

    /// A short-lived node for one command. It never delivers queued sends (`tether up`
    /// does); it may queue them.
    pub(crate) async fn start(&self, offline: bool) -> Result<NetworkingService> {
        let mut config = self.config(offline)?;
        config.deliver_queued = false;
        start_node(config).await
    }
}

/// Starts the node; a key that could only be stored unprotected, or a sealed one with no
/// passphrase, is the one sentence [`passphrase::key_failure`] says.
pub(crate) async fn start_node(config: NetworkingConfig) -> Result<NetworkingService> {
    let dir = config.data_dir.clone();
    match NetworkingService::start(config).await {
        Ok(node) => Ok(node),
        Err(error) => match passphrase::key_failure(&error) {
            Some(failure) => Err(failure.into()),
            None => Err(anyhow::Error::from(error)
                .context(format!("cannot start the node for {}", dir.display()))),
        },
    }
}

/// Reads a certificate to trust for relays: PEM (`-----BEGIN CERTIFICATE-----`) or DER.
fn read_certificate(file: &std::path::Path) -> Result<TrustedRoot> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let bytes = std::fs::read(file).map_err(|error| {
        crate::failure::Failure::usage(format!(
            "cannot read the relay certificate {}: {error}",
            file.display()
        ))
    })?;
    if bytes.starts_with(b"-----BEGIN") {
        let der = CertificateDer::from_pem_slice(&bytes).map_err(|error| {
            crate::failure::Failure::usage(format!(
                "{} is not a PEM certificate ({error}); give the relay's CA certificate",
                file.display()
            ))
        })?;
        Ok(TrustedRoot::from_der(der.to_vec()))
    } else {
        Ok(TrustedRoot::from_der(bytes))
    }
}

/// Checks a `--relay` URL: `http://` or `https://` and a host.
pub(crate) fn parse_relay(url: &str) -> Result<String, String> {
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    match host {
        Some(host) if !host.is_empty() && !host.contains(char::is_whitespace) => Ok(url.to_owned()),
        _ => Err(format!(
            "invalid relay URL {url:?}: give your iroh-relay server as https://HOST[:PORT]"
        )),
    }
}

/// The DHT configuration `--dht` and `--dht-bootstrap` ask for: the public bootstrap nodes,
/// or only those listed. The records name the relay only, unless the nodes are all on
/// loopback (a test's DHT, where there is no relay).
pub(crate) fn dht(on: bool, bootstrap: Vec<SocketAddr>) -> Option<DhtConfig> {
    if !on && bootstrap.is_empty() {
        return None;
    }
    let local = !bootstrap.is_empty() && bootstrap.iter().all(|addr| addr.ip().is_loopback());
    let mut config = DhtConfig::with_bootstrap(bootstrap);
    config.publish_ip_addrs = local;
    Some(config)
}

/// Checks a `--dht-bootstrap` node: an IPv4 `ADDR:PORT` (the DHT client speaks IPv4 only).
pub(crate) fn parse_dht_bootstrap(text: &str) -> Result<SocketAddr, String> {
    match text.trim().parse::<SocketAddr>() {
        Ok(addr @ SocketAddr::V4(_)) => Ok(addr),
        _ => Err(format!(
            "invalid DHT bootstrap node {text:?}: give an IPv4 ADDR:PORT such as 127.0.0.1:6881"
        )),
    }
}

/// The UDP port tried first.
fn tether_port() -> u16 {
    TransportConfig::default().bind_addr.port()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(network: Network) -> Settings {
        Settings {
            data_dir: Some(PathBuf::from("/nonexistent/tether-test")),
            network,
            relays: Vec::new(),
            relay_cas: Vec::new(),
            dht: None,
            passphrase_file: None,
            insecure_key_file: false,
        }
    }

    #[test]
    fn lan_mode_reaches_nothing_beyond_the_local_network() {
        let config = settings(Network::Lan).config(false).unwrap();
        assert!(config.transport.mdns);
        assert!(!config.transport.port_mapping);
        assert_eq!(config.transport.relay, RelayConfig::Disabled);
        assert_eq!(config.transport.global_discovery, None);
        assert!(config.loopback_discovery.is_none());
    }

    #[test]
    fn local_only_mode_stays_on_loopback() {
        let config = settings(Network::LocalOnly).config(false).unwrap();
        assert!(config.transport.local_only);
        assert!(config.transport.bind_addr.ip().is_loopback());
        assert_eq!(config.transport.relay, RelayConfig::Disabled);
        assert!(!config.transport.port_mapping);
        assert_eq!(config.transport.dht, None);
    }

    #[test]
    fn internet_mode_asks_the_router_for_a_port_mapping() {
        // Only the configuration: nothing is bound or sent.
        let config = settings(Network::Internet).config(false).unwrap();
        assert!(config.transport.port_mapping);
        assert!(!config.transport.local_only);
    }

    #[test]
    fn dht_flags() {
        assert_eq!(dht(false, Vec::new()), None);
        assert_eq!(dht(true, Vec::new()), Some(DhtConfig::public()));
        let local: SocketAddr = "127.0.0.1:6881".parse().unwrap();
        let only = dht(false, vec![local]).unwrap();
        assert_eq!(only.bootstrap, vec![local]);
        assert!(only.publish_ip_addrs);
        let remote: SocketAddr = "192.0.2.1:6881".parse().unwrap();
        assert!(!dht(true, vec![remote]).unwrap().publish_ip_addrs);
        assert_eq!(parse_dht_bootstrap(" 127.0.0.1:6881"), Ok(local));
        assert!(parse_dht_bootstrap("[::1]:6881").is_err());
        assert!(parse_dht_bootstrap("router.bittorrent.com:6881").is_err());
        // Offline commands never join the DHT.
        let mut settings = settings(Network::LocalOnly);
        settings.dht = Some(only);
        assert!(settings.config(false).unwrap().transport.dht.is_some());
        assert_eq!(settings.config(true).unwrap().transport.dht, None);
    }
}
