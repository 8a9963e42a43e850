//! `tether doctor` with the user's own relay (`--relay URL --relay-ca FILE`): a real
//! `iroh-relay` server started by the test on 127.0.0.1 with a self-signed certificate. The
//! doctor times a TCP connect to it and reports whether the node holds a connection to it; a
//! relay that is down is reported as unreachable. Nothing leaves loopback.
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stderr,
    clippy::panic
)]

use crate::common;

use std::net::Ipv4Addr;
use std::path::Path;

use iroh_relay::server::{CertConfig, RelayConfig, Server, ServerConfig, TlsConfig};
use serde_json::Value;

async fn start_relay() -> (Server, String, Vec<u8>) {
    let (certs, server_config) = iroh_relay::server::testing::self_signed_tls_certs_and_config();
    let mut relay = RelayConfig::new((Ipv4Addr::LOCALHOST, 0));
    relay.tls = Some(TlsConfig::new(
        (Ipv4Addr::LOCALHOST, 0),
        CertConfig::Manual { server_config },
    ));
    let mut config = ServerConfig::default();
    config.relay = Some(relay);
    let server = Server::spawn(config).await.unwrap();
    let url = format!("https://{}", server.https_addr().unwrap());
    (server, url, certs[0].to_vec())
}

async fn doctor(runtime: &Path, relay: &str, ca: &Path) -> Vec<Value> {
    let mut command = common::tether(
        runtime,
        &runtime.join("data"),
        &["--relay", relay, "--relay-ca"],
    );
    command.arg(ca).arg("doctor");
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    common::json_lines(&output.stdout)
}

fn relay_line(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["event"] == "relay")
        .unwrap_or_else(|| panic!("no relay line in {lines:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_the_users_own_relay() {
    let runtime = tempfile::tempdir().unwrap();
    let (server, url, cert) = start_relay().await;
    let ca = runtime.path().join("relay-ca.der");
    std::fs::write(&ca, &cert).unwrap();

    let lines = doctor(runtime.path(), &url, &ca).await;
    let relay = relay_line(&lines);
    eprintln!("relay: {relay}");
    assert_eq!(relay["url"], url.as_str());
    assert_eq!(relay["reachable"], true, "{relay}");
    assert!(relay["latency_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(relay["connected"], true, "{relay}");

    // The same relay, stopped: unreachable, and the doctor still reports everything else.
    server.shutdown().await.unwrap();
    let lines = doctor(runtime.path(), &url, &ca).await;
    let relay = relay_line(&lines);
    assert_eq!(relay["reachable"], false, "{relay}");
    assert!(relay["error"].as_str().is_some());
    assert!(lines.iter().any(|l| l["event"] == "keys"));
}
