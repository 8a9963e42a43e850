//! `tether doctor [DEVICE]`: what a troubleshooting user needs to see.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde_json::json;
use tether::{ErrorChain, KeyStorageKind, NetworkingService, PathKind, RelayConfig, error_chain};

use crate::context::{NodeContext, resolve};
use crate::output::Sink;
use crate::settings::Network;

/// How long a relay gets to answer a TCP connect.
const RELAY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a short-lived node listens to discovery before reporting it.
const DISCOVERY_SETTLE: Duration = Duration::from_millis(1500);

pub(crate) async fn run(
    node: &NetworkingService,
    device: Option<&str>,
    sink: &Sink,
    context: &NodeContext,
) -> Result<()> {
    if !context.running {
        // A node that just started has not heard its discovery services, nor reached its
        // relay, yet.
        let settle = tokio::time::sleep(DISCOVERY_SETTLE);
        if matches!(node.diagnostics().relay, RelayConfig::Custom(_)) {
            let _ = node.wait_for_home_relay(RELAY_PROBE_TIMEOUT).await;
        }
        settle.await;
    }
    let diag = node.diagnostics();
    identity(node, &diag, context, sink);
    network(&diag, context, sink);
    relays(&diag, context, sink).await;
    discovery(&diag, sink);
    clock(sink);

    let receive = diag.receive_dir.as_ref().map_or_else(
        || "off (only `tether up` receives files)".to_owned(),
        |dir| dir.display().to_string(),
    );
    sink.line(
        "receive",
        format!("receive    {receive}"),
        json!({ "receive_dir": diag.receive_dir }),
    );

    if let Some(device) = device {
        reach(node, device, sink).await?;
    }
    Ok(())
}

/// The node's id, name, data directory and where its key is kept.
fn identity(
    node: &NetworkingService,
    diag: &tether::Diagnostics,
    context: &NodeContext,
    sink: &Sink,
) {
    let info = node.device_info();
    sink.line(
        "node",
        format!(
            "node       {} ({}), {}\ndata dir   {}",
            info.public_key.fmt_short(),
            info.device_name,
            if context.running {
                "the running `tether up` node"
            } else {
                "a short-lived node (no `tether up` running)"
            },
            diag.data_dir.display()
        ),
        json!({
            "node_id": info.public_key.to_string(),
            "name": info.device_name.as_str(),
            "running": context.running,
            "data_dir": diag.data_dir,
        }),
    );

    let (key_text, key_kind, key_advice) = match &diag.key_storage {
        KeyStorageKind::OsKeychain { .. } => ("OS keychain", "keychain", ""),
        KeyStorageKind::PassphraseFile => {
            ("key file sealed with a passphrase", "passphrase_file", "")
        }
        KeyStorageKind::UnprotectedFile => (
            "unprotected key file (mode 0600)",
            "unprotected_file",
            "\n           anyone who can read it can act as this device: tether key protect",
        ),
        _ => ("unknown", "unknown", ""),
    };
    sink.line(
        "keys",
        format!("key        {key_text}{key_advice}"),
        json!({ "key_storage": key_kind, "detail": diag.key_storage.to_string() }),
    );
}

/// The network mode, the bound addresses and the ones peers are told.
fn network(diag: &tether::Diagnostics, context: &NodeContext, sink: &Sink) {
    let bound: Vec<String> = diag.bound_addrs.iter().map(ToString::to_string).collect();
    let advertised: Vec<String> = diag.addr.direct.iter().map(ToString::to_string).collect();
    let mode = match context.network {
        Network::LocalOnly => "local only (loopback; no relays unless --relay, no mDNS)",
        Network::Lan => "LAN (every interface, mDNS; no relays unless --relay)",
        Network::Internet => "internet (every interface, relays, mDNS)",
    };
    sink.line(
        "network",
        format!(
            "network    {mode}\nbound      {}\nreachable  {}",
            bound.join(", "),
            if advertised.is_empty() {
                "-".to_owned()
            } else {
                clip_list(&advertised, 69)
            }
        ),
        json!({
            "mode": match context.network {
                Network::LocalOnly => "local_only",
                Network::Lan => "lan",
                Network::Internet => "internet",
            },
            "local_only": diag.local_only,
            "bound": bound,
            "advertised": advertised,
        }),
    );
}

async fn relays(diag: &tether::Diagnostics, context: &NodeContext, sink: &Sink) {
    match &diag.relay {
        RelayConfig::Disabled => {
            let why = match context.network {
                Network::LocalOnly => "--local-only",
                Network::Lan => "--lan without --relay",
                Network::Internet => "turned off",
            };
            sink.line(
                "relay",
                format!("relays     off ({why}): only direct paths"),
                json!({ "relays": "off" }),
            );
        }
        RelayConfig::Custom(urls) => {
            for url in urls {
                custom_relay(diag, url, sink).await;
            }
        }
        _ => {
            // The public relays: report what the node knows, contact nothing else.
            let home: Vec<String> = diag
                .relays
                .iter()
                .map(|r| {
                    format!(
                        "{} ({})",
                        r.url,
                        if r.connected {
                            "connected"
                        } else {
                            "not connected"
                        }
                    )
                })
                .collect();
            sink.line(
                "relay",
                format!(
                    "relays     iroh's public relays; home: {}",
                    if home.is_empty() {
                        "none yet".to_owned()
                    } else {
                        home.join(", ")
                    }
                ),
                json!({
                    "relays": "default",
                    "home": diag.relays.iter().map(|r| json!({"url": r.url, "connected": r.connected, "error": r.error})).collect::<Vec<_>>(),
                }),
            );
        }
    }
}

/// One relay of the user's own list: reachable from here, and whether the node uses it.
async fn custom_relay(diag: &tether::Diagnostics, url: &str, sink: &Sink) {
    let status = diag.relays.iter().find(|r| same_url(r.url.as_str(), url));
    let probe = probe(url).await;
    let connected = status.map(|s| s.connected);
    let text = format!(
        "relay      {url}\n           {}; {}",
        match probe {
            Ok(latency) => format!("TCP connect {:.1} ms", latency.as_secs_f64() * 1e3),
            Err(ref error) => format!("unreachable: {error}"),
        },
        match (connected, status.and_then(|s| s.error.as_ref())) {
            (Some(true), _) => "the node is connected to it".to_owned(),
            (_, Some(error)) => format!("the node is not connected: {error}"),
            _ => "not (yet) the node's home relay".to_owned(),
        }
    );
    let chosen = diag
        .chosen_relay
        .as_ref()
        .is_some_and(|chosen| same_url(chosen.as_str(), url));
    let text = if chosen {
        format!(
            "{text}
           chosen: the lowest latency of those listed"
        )
    } else {
        text
    };
    sink.line(
        "relay",
        text,
        json!({
            "url": url,
            "reachable": probe.is_ok(),
            "latency_ms": probe.as_ref().ok().map(|l| l.as_secs_f64() * 1e3),
            "error": probe.as_ref().err(),
            "connected": connected,
            "node_error": status.and_then(|s| s.error.clone()),
            "chosen": chosen,
        }),
    );
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// Times a TCP connect to a relay the user configured (host and port from its URL).
async fn probe(url: &str) -> Result<Duration, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    };
    let started = Instant::now();
    match tokio::time::timeout(RELAY_PROBE_TIMEOUT, tokio::net::TcpStream::connect(&target)).await {
        Ok(Ok(_)) => Ok(started.elapsed()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer in {RELAY_PROBE_TIMEOUT:?}")),
    }
}

fn discovery(diag: &tether::Diagnostics, sink: &Sink) {
    let mut services = Vec::new();
    if let Some(dir) = &diag.loopback_discovery {
        services.push(format!("loopback ({})", dir.display()));
    }
    if diag.mdns {
        services.push("mDNS".to_owned());
    }
    if let Some(global) = &diag.global_discovery {
        services.push(format!("DNS ({})", global.origin_domain));
    }
    if let Some(dht) = &diag.dht {
        services.push(if dht.bootstrap.is_empty() {
            "DHT (public bootstrap nodes)".to_owned()
        } else {
            format!("DHT ({} bootstrap node(s))", dht.bootstrap.len())
        });
    }
    let seen = diag.discovered.len();
    let state = if services.is_empty() {
        "off: devices are reached at their stored addresses only".to_owned()
    } else if seen > 0 {
        format!("working: {seen} device(s) seen")
    } else {
        "running; no other device seen yet (is one up on this network?)".to_owned()
    };
    sink.line(
        "discovery",
        format!(
            "discovery  {}\n           {state}",
            if services.is_empty() {
                "none".to_owned()
            } else {
                services.join(", ")
            }
        ),
        json!({
            "services": services,
            "mdns": diag.mdns,
            "loopback_dir": diag.loopback_discovery,
            "global": diag.global_discovery.as_ref().map(|g| json!({
                "pkarr_relay": g.pkarr_relay,
                "origin_domain": g.origin_domain,
                "publish_ip_addrs": g.publish_ip_addrs,
                "pairing_rendezvous": g.pairing_rendezvous,
            })),
            "dht": diag.dht.as_ref().map(|d| json!({
                "bootstrap": d.bootstrap,
                "publish_ip_addrs": d.publish_ip_addrs,
            })),
            "seen": diag
                .discovered
                .iter()
                .map(|(node, source)| json!({ "node_id": node.to_string(), "source": source }))
                .collect::<Vec<_>>(),
        }),
    );
}

/// The system clock, for comparing with the other device's `tether doctor`: pairing codes
/// and session handshakes expire by it.
fn clock(sink: &Sink) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    // 2025-01-01T00:00:00Z: a clock before it is certainly wrong.
    let sane = now.as_secs() >= 1_735_689_600;
    sink.line(
        "clock",
        format!(
            "clock      {} s since 1970 (UTC){}",
            now.as_secs(),
            if sane {
                "; compare with the other device's doctor"
            } else {
                "; WRONG: set the system clock (codes expire by it)"
            }
        ),
        json!({ "unix_s": now.as_secs(), "sane": sane }),
    );
}

/// Whether `device` answers, and on which path.
async fn reach(node: &NetworkingService, device: &str, sink: &Sink) -> Result<()> {
    let target = resolve(node, device)?;
    let handle = node.device(target)?;
    match handle.ping().await {
        Ok(rtt) => {
            let info = handle.connection_info();
            let path = info.as_ref().map_or(PathKind::Unknown, |i| i.path);
            let how = match path {
                PathKind::Direct => "reachable directly",
                PathKind::Relayed => "reachable only via relay",
                _ => "reachable (path unknown)",
            };
            sink.line(
                "reach",
                format!(
                    "{device:<10} {how}: ping {:.2} ms{}",
                    rtt.as_secs_f64() * 1e3,
                    info.as_ref()
                        .and_then(|i| i.remote.clone())
                        .map_or_else(String::new, |r| format!(" to {}", plain_remote(&r)))
                ),
                json!({
                    "device": device,
                    "node_id": target.to_string(),
                    "reachable": true,
                    "path": path.to_string(),
                    "rtt_ms": rtt.as_secs_f64() * 1e3,
                    "remote": info.and_then(|i| i.remote),
                }),
            );
        }
        Err(error) => {
            sink.line(
                "reach",
                format!(
                    "{device:<10} unreachable: {}\n           run `tether up` on it",
                    ErrorChain(&error)
                ),
                json!({
                    "device": device,
                    "node_id": target.to_string(),
                    "reachable": false,
                    "error": error_chain(&error),
                }),
            );
        }
    }
    Ok(())
}

fn clip_list(items: &[String], max: usize) -> String {
    let mut text = String::new();
    for (i, item) in items.iter().enumerate() {
        let next = if text.is_empty() {
            item.clone()
        } else {
            format!("{text}, {item}")
        };
        if next.chars().count() > max {
            return format!("{text} (+{} more)", items.len() - i);
        }
        text = next;
    }
    text
}

/// `Ip(127.0.0.1:4433)` as `127.0.0.1:4433`.
fn plain_remote(remote: &str) -> String {
    remote
        .strip_prefix("Ip(")
        .or_else(|| remote.strip_prefix("Relay("))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or(remote)
        .to_owned()
}
