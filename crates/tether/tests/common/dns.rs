//! A real `iroh-dns-server` for global discovery, started by the test on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;

use tether::GlobalDiscoveryConfig;

pub(crate) const ORIGIN: &str = "dns.tether.test";

/// An `iroh-dns-server` on 127.0.0.1 (HTTP pkarr relay and DNS on random ports, no HTTPS, no
/// metrics, no mainline DHT), and the configuration that uses it.
pub(crate) async fn start_dns_server(
    dir: &Path,
) -> (iroh_dns_server::Server, GlobalDiscoveryConfig) {
    std::fs::create_dir_all(dir).unwrap();
    let config_file = dir.join("config.toml");
    std::fs::write(
        &config_file,
        format!(
            r#"
pkarr_put_rate_limit = "disabled"
data_dir = "{}"

[http]
port = 0
bind_addr = "127.0.0.1"

[dns]
port = 0
bind_addr = "127.0.0.1"
default_soa = "ns1.{ORIGIN} hostmaster.{ORIGIN} 0 10800 3600 604800 3600"
default_ttl = 30
origins = ["{ORIGIN}.", "."]
rr_a = "127.0.0.1"
rr_ns = "ns1.{ORIGIN}."

[metrics]
disabled = true

[mainline]
enabled = false
"#,
            dir.display()
        ),
    )
    .unwrap();
    let config = iroh_dns_server::config::Config::load(&config_file)
        .await
        .unwrap();
    let server = iroh_dns_server::Server::bind(config).await.unwrap();
    let pkarr = format!("http://{}/pkarr", server.http_addr().unwrap());
    let mut global = GlobalDiscoveryConfig::custom(pkarr, ORIGIN, server.dns_addr());
    global.publish_ip_addrs = true;
    (server, global)
}
