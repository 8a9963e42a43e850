//! A real iroh-relay server on 127.0.0.1 with a self-signed certificate, for the relay row.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use iroh_relay::server::{CertConfig, RelayConfig, Server, ServerConfig, TlsConfig};

use crate::raw::wait_for_quit;

/// Serves until stdin closes; prints `ready <url> <cert file>`.
pub(crate) async fn serve(cert_path: &Path) -> Result<()> {
    let (certs, server_config) = iroh_relay::server::testing::self_signed_tls_certs_and_config();
    let mut relay = RelayConfig::new((Ipv4Addr::LOCALHOST, 0));
    relay.tls = Some(TlsConfig::new(
        (Ipv4Addr::LOCALHOST, 0),
        CertConfig::Manual { server_config },
    ));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    let server = Server::spawn(config).await?;
    let url = format!(
        "https://{}",
        server
            .https_addr()
            .context("the relay has no HTTPS address")?
    );
    let cert = certs.first().context("no certificate")?;
    std::fs::write(cert_path, cert.as_ref())?;
    println!("ready {url} {}", cert_path.display());
    wait_for_quit().await;
    server.shutdown().await?;
    Ok(())
}
