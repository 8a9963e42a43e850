//! `tether doctor [DEVICE]`: what a troubleshooting user needs to see.

use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use serde_json::json;
use tether::{
    ErrorChain, GatewayProtocols, InterfaceMulticast, Interfaces, KeyStorageKind, MulticastOutcome,
    NatType, NetworkingService, PathKind, PortMapping, RelayConfig, error_chain,
};

use crate::context::{NodeContext, resolve};
use crate::output::Sink;
use crate::settings::Network;

/// How long a relay gets to answer a TCP connect.
const RELAY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a short-lived node listens to discovery before reporting it.
const DISCOVERY_SETTLE: Duration = Duration::from_millis(1500);
/// How long a short-lived node waits for iroh's net report (the NAT type).
const NET_REPORT_WAIT: Duration = Duration::from_secs(5);
/// How long the gateway gets to say which port-mapping protocols it offers, and then the
/// port mapper to obtain a mapping.
const GATEWAY_WAIT: Duration = Duration::from_secs(3);
/// How long the multicast check waits for its own datagram on each interface.
const MULTICAST_WAIT: Duration = Duration::from_millis(500);

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
        // iroh's net report: with two relays or more, until both have answered.
        let relay = node.diagnostics().relay;
        if !matches!(relay, RelayConfig::Disabled) {
            let one_is_enough = matches!(&relay, RelayConfig::Custom(urls) if urls.len() < 2);
            wait_for(NET_REPORT_WAIT, || match node.diagnostics().nat.nat_type {
                NatType::Unknown => false,
                NatType::OneServer => one_is_enough,
                _ => true,
            })
            .await;
        }
    }
    let gateway = gateway(node).await;
    let diag = node.diagnostics();
    identity(node, &diag, context, sink);
    network(&diag, context, sink);
    relays(&diag, context, sink).await;
    discovery(&diag, sink);
    multicast(context, sink).await;
    nat(&diag, context, sink);
    port_mapping(&diag, context, gateway, sink);
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
        Network::Internet => "internet (every interface, relays, mDNS, port mapping)",
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

/// Polls `done` every 50 ms for up to `within`.
async fn wait_for(within: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Which port-mapping protocols the gateway offers (`None`: the port mapper is off, or no
/// answer); with one offered, gives the port mapper time to obtain its mapping.
async fn gateway(node: &NetworkingService) -> Option<Result<GatewayProtocols, String>> {
    let gateway = node.probe_gateway(GATEWAY_WAIT).await;
    if gateway
        .as_ref()
        .is_some_and(|g| g.as_ref().is_ok_and(|p| p.upnp || p.pcp || p.nat_pmp))
    {
        wait_for(GATEWAY_WAIT, || {
            matches!(node.diagnostics().port_mapping, PortMapping::Mapped(_))
        })
        .await;
    }
    gateway
}

/// Whether multicast works on each interface, and so whether mDNS can find devices.
/// `--local-only` checks loopback only: nothing leaves the machine.
async fn multicast(context: &NodeContext, sink: &Sink) {
    let local_only = context.network == Network::LocalOnly;
    let which = if local_only {
        Interfaces::LoopbackOnly
    } else {
        Interfaces::All
    };
    let checks =
        tokio::task::spawn_blocking(move || tether::check_multicast(which, MULTICAST_WAIT))
            .await
            .unwrap_or_default();
    let can = tether::mdns_can_work(&checks);
    let verdict = if local_only {
        "loopback only (--local-only): LAN multicast not checked, mDNS is off"
    } else if can {
        "mDNS can work here"
    } else {
        "multicast blocked: LAN discovery will not find devices, pair by code or use --relay"
    };
    let mut text = String::from("multicast");
    for (i, check) in checks.iter().enumerate() {
        let lead = if i == 0 { "  " } else { "\n           " };
        text.push_str(&format!(
            "{lead}{} {}: {}",
            check.name,
            check.addr,
            interface_text(check)
        ));
    }
    if checks.is_empty() {
        text.push_str("  no up interface with an IPv4 address");
    }
    text.push_str(&format!("\n           {verdict}"));
    sink.line(
        "multicast",
        text,
        json!({
            "mdns_can_work": can,
            "checked": if local_only { "loopback" } else { "all" },
            "interfaces": checks.iter().map(|c| json!({
                "name": c.name,
                "addr": c.addr.to_string(),
                "loopback": c.loopback,
                "multicast_flag": c.flag,
                "works": c.works(),
                "outcome": outcome_word(&c.outcome),
            })).collect::<Vec<_>>(),
        }),
    );
}

fn interface_text(check: &InterfaceMulticast) -> String {
    let flag = if check.flag {
        ""
    } else {
        "no multicast flag; "
    };
    let outcome = match &check.outcome {
        MulticastOutcome::Works => {
            format!(
                "{flag}joined {}, own packet looped back",
                tether::MDNS_GROUP
            )
        }
        MulticastOutcome::JoinFailed(error) => {
            format!("{flag}cannot join {}: {error}", tether::MDNS_GROUP)
        }
        MulticastOutcome::SendFailed(error) => format!("{flag}joined, cannot send: {error}"),
        MulticastOutcome::NotLooped => format!("{flag}joined, own packet did not come back"),
        _ => format!("{flag}unknown"),
    };
    if check.loopback {
        format!("{outcome} (loopback: not a LAN)")
    } else {
        outcome
    }
}

fn outcome_word(outcome: &MulticastOutcome) -> &'static str {
    match outcome {
        MulticastOutcome::Works => "works",
        MulticastOutcome::JoinFailed(_) => "join_failed",
        MulticastOutcome::SendFailed(_) => "send_failed",
        MulticastOutcome::NotLooped => "not_looped",
        _ => "unknown",
    }
}

/// The NAT type iroh's net report saw, and what it means for direct paths.
fn nat(diag: &tether::Diagnostics, context: &NodeContext, sink: &Sink) {
    let public: Vec<String> = diag
        .nat
        .public_addrs
        .iter()
        .map(ToString::to_string)
        .collect();
    let seen = if public.is_empty() {
        String::new()
    } else {
        format!(", public {}", public.join(", "))
    };
    let (word, text) = match diag.nat.nat_type {
        NatType::EndpointIndependent => (
            "cone",
            format!(
                "cone (endpoint-independent mapping{seen})\n           direct paths: hole punching works"
            ),
        ),
        NatType::VariesByDestination => (
            "symmetric",
            format!(
                "symmetric (mapping varies by destination{seen})\n           direct paths: hole punching fails towards another such NAT; the relay carries it unless a port is mapped"
            ),
        ),
        NatType::OneServer => (
            "one_server",
            format!("not known: one relay answered{seen}; two relays tell cone from symmetric"),
        ),
        NatType::NoUdp => (
            "no_udp",
            "no UDP: no relay answered over UDP; only the relay's TCP path may work".to_owned(),
        ),
        _ => (
            "unknown",
            match diag.relay {
                RelayConfig::Disabled => format!(
                    "unknown: no relay to ask ({})",
                    if context.network == Network::LocalOnly {
                        "--local-only"
                    } else {
                        "relays off"
                    }
                ),
                _ => "unknown: no relay answered yet".to_owned(),
            },
        ),
    };
    sink.line(
        "nat",
        format!("nat        {text}"),
        json!({ "nat": word, "public": public }),
    );
}

/// Whether the router maps a port for this device, and which protocols it offers.
fn port_mapping(
    diag: &tether::Diagnostics,
    context: &NodeContext,
    gateway: Option<Result<GatewayProtocols, String>>,
    sink: &Sink,
) {
    let offered: Vec<&str> = match &gateway {
        Some(Ok(p)) => [(p.upnp, "UPnP"), (p.pcp, "PCP"), (p.nat_pmp, "NAT-PMP")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect(),
        _ => Vec::new(),
    };
    let gateway_text = match &gateway {
        Some(Ok(_)) if offered.is_empty() => {
            "the gateway offers no UPnP, PCP or NAT-PMP".to_owned()
        }
        Some(Ok(_)) => format!("the gateway offers {}", offered.join(", ")),
        Some(Err(error)) => format!("gateway probe: {error}"),
        None => "the gateway did not answer".to_owned(),
    };
    let (state, text) = match diag.port_mapping {
        PortMapping::Off => (
            "off",
            format!(
                "off ({})",
                match context.network {
                    Network::LocalOnly => "--local-only",
                    Network::Lan => "--lan",
                    Network::Internet => "turned off",
                }
            ),
        ),
        PortMapping::Mapped(external) => (
            "mapped",
            format!(
                "{} {external} -> this device ({gateway_text})",
                if offered.len() == 1 {
                    offered.join("")
                } else {
                    "mapped".to_owned()
                }
            ),
        ),
        _ => ("none", format!("none obtained ({gateway_text})")),
    };
    sink.line(
        "port_mapping",
        format!("port map   {text}"),
        json!({
            "port_mapping": state,
            "external": match diag.port_mapping {
                PortMapping::Mapped(external) => Some(external.to_string()),
                _ => None,
            },
            "gateway_offers": offered,
            "gateway_error": gateway.and_then(Result::err),
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
