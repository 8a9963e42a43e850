//! The lab's relay: iroh's own relay server (crate `iroh-relay`), with a self-signed
//! certificate made at start and written out for the devices to trust.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use iroh_relay::server::{CertConfig, QuicConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::emit;

/// Where the relay listens.
#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    /// The address to serve on (HTTP 80, HTTPS 443, QUIC address discovery 7842).
    #[arg(long)]
    bind: IpAddr,
    /// Where to write the certificate (PEM) the devices are told to trust.
    #[arg(long)]
    cert_out: PathBuf,
}

pub(crate) async fn run(args: RelayArgs) -> Result<()> {
    if !crate::in_lab_namespace()? && !args.bind.is_loopback() {
        bail!("the relay runs outside the lab's namespaces: only a loopback address is allowed");
    }
    let cert = rcgen::generate_simple_self_signed(vec![args.bind.to_string()])
        .context("making the relay's certificate")?;
    std::fs::write(&args.cert_out, cert.cert.pem())
        .with_context(|| format!("writing {}", args.cert_out.display()))?;
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der());
    let server_config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key.into())
    .context("the relay's TLS configuration")?;

    let mut relay = RelayConfig::new((args.bind, 80));
    relay.tls = Some(TlsConfig::new(
        (args.bind, 443),
        CertConfig::Manual { server_config },
    ));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    config.quic = Some(QuicConfig::new((args.bind, 7842)));
    let server = Server::spawn(config).await.context("starting the relay")?;
    let https = server
        .https_addr()
        .context("the relay has no HTTPS address")?;
    emit(&json!({
        "event": "ready",
        "url": format!("https://{https}"),
        "quic": server.quic_addr().map(|addr| addr.to_string()),
        "cert": args.cert_out,
    }));
    // Serve until the lab closes our stdin (or kills us).
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while lines.next_line().await?.is_some() {}
    server.shutdown().await.context("stopping the relay")?;
    Ok(())
}
