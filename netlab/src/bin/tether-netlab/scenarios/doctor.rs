//! Scenario 11: the real `tether doctor` in each home, with two relays in the public namespace
//! for iroh's net report to ask (the NAT type needs two answers to compare).

use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use tether_netlab::protocol::Command as Call;

use super::kit::{Ctx, MIN, Outcome, device, relay_lab};
use crate::agent::{Agent, DeviceSpec, pair};
use crate::lab::{Host, Lab, Nat, x};

/// Runs `tether doctor` in `host` with both relays; its standard output.
fn doctor(
    ctx: &Ctx,
    lab: &Lab,
    host: Host,
    relays: &[(String, std::path::PathBuf)],
) -> Result<String> {
    let tether = ctx.agent.with_file_name("tether");
    let data = lab.dir.join(format!("doctor-{}", host.short()));
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &host.ns()])
        .arg(&tether)
        .arg("--data-dir")
        .arg(&data)
        .arg("--insecure-key-file");
    for (url, cert) in relays {
        command.args(["--relay", url]).arg("--relay-ca").arg(cert);
    }
    let output = command
        .arg("doctor")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", tether.display()))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    // Its log (RUST_LOG passes through), kept with the lab's logs when a scenario fails.
    std::fs::write(
        lab.dir.join(format!("doctor-{}.log", host.short())),
        &output.stderr,
    )?;
    println!("   --- tether doctor in {} ---", host.short());
    for line in text.lines() {
        println!("   | {line}");
    }
    if !output.status.success() {
        anyhow::bail!(
            "tether doctor failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or("(missing)")
}

/// One home: the NAT verdict, multicast working, no port mapping (no gateway offers one).
fn home(ctx: &Ctx, nat: Nat, out: &mut Outcome) -> Result<()> {
    let name = match nat {
        Nat::Cone => "s11-cone",
        Nat::Symmetric => "s11-symmetric",
    };
    let (mut lab, url, cert) = relay_lab(ctx, name, nat)?;
    let (url2, cert2) = lab.start_second_relay(&ctx.agent)?;
    let relays = [(url, cert), (url2, cert2)];
    let text = doctor(ctx, &lab, Host::A, &relays)?;
    let (want, word) = match nat {
        Nat::Cone => ("nat        cone (endpoint-independent", "cone"),
        Nat::Symmetric => (
            "nat        symmetric (mapping varies by destination",
            "symmetric",
        ),
    };
    out.check(
        text.contains(want),
        format!("{word} home: doctor says {:?}", line(&text, "nat")),
    );
    out.check(
        text.contains("mDNS can work here") && text.contains("eth0 10.0.1.2: joined 224.0.0.251"),
        format!("{word} home: multicast works on eth0, \"mDNS can work here\""),
    );
    out.check(
        text.contains("port map   none obtained"),
        format!("{word} home: doctor says {:?}", line(&text, "port map")),
    );
    if nat == Nat::Symmetric && upnp(ctx, &mut lab, &relays, out)? {
        mapped_direct(ctx, &lab, &relays[0], out)?;
    }
    if nat == Nat::Symmetric {
        // A host whose interface lost its multicast flag: the doctor names the problem.
        x(
            Host::A2.short(),
            &["ip", "link", "set", "eth0", "multicast", "off"],
        )?;
        let text = doctor(ctx, &lab, Host::A2, &relays)?;
        out.check(
            text.contains("no multicast flag")
                && text.contains("multicast blocked: LAN discovery will not find devices"),
            "multicast off on a host's eth0: doctor says \"multicast blocked\"".to_owned(),
        );
    }
    Ok(())
}

/// miniupnpd on router A: the doctor in home A reports the mapping it obtained. `false` when
/// miniupnpd is not installed (noted, skipped).
fn upnp(
    ctx: &Ctx,
    lab: &mut Lab,
    relays: &[(String, std::path::PathBuf)],
    out: &mut Outcome,
) -> Result<bool> {
    match lab.start_upnp() {
        Ok(()) => {}
        Err(error) if format!("{error:#}").starts_with("skipped: ") => {
            out.note(format!("{error:#}"));
            return Ok(false);
        }
        Err(error) => return Err(error),
    }
    let text = doctor(ctx, lab, Host::A, relays)?;
    let mapped = line(&text, "port map");
    out.check(
        mapped.contains(&format!("{}:", crate::lab::UPNP_EXTERNAL_IP)),
        format!("miniupnpd on router A: doctor says {mapped:?}"),
    );
    Ok(true)
}

/// Two symmetric homes leave only the relay (scenario 3); with a port mapped on router A by
/// miniupnpd, a device in home B reaches home A's device directly, at the mapped address.
fn mapped_direct(
    ctx: &Ctx,
    lab: &Lab,
    relay: &(String, std::path::PathBuf),
    out: &mut Outcome,
) -> Result<()> {
    // Router B reaches the mapped address on the public link (router A answers for it).
    x(
        "rB",
        &[
            "ip",
            "route",
            "add",
            &format!("{}/32", crate::lab::UPNP_EXTERNAL_IP),
            "dev",
            "wan",
        ],
    )?;
    let spec = |name, host| DeviceSpec {
        relay: Some((relay.0.as_str(), relay.1.as_path())),
        ..device(name, host)
    };
    // First without asking for a mapping: the relay only.
    let mut plain = Agent::start(&ctx.agent, &lab.dir, &spec("plain", Host::A))?;
    let mut b = Agent::start(&ctx.agent, &lab.dir, &spec("other", Host::B))?;
    pair(&mut plain, &mut b, true)?;
    let none = b.call(
        Call::WaitDirect {
            to: plain.node_id.clone(),
            timeout_ms: 4_000,
        },
        MIN,
    )?;
    out.check(
        none["ok"] != true,
        format!(
            "symmetric homes, no port mapping: {} path only",
            none["path"].as_str().unwrap_or("?")
        ),
    );
    drop(plain);
    let mut a = Agent::start_with(
        &ctx.agent,
        &lab.dir,
        &spec("mapped", Host::A),
        &["--port-mapping"],
    )?;
    pair(&mut a, &mut b, true)?;
    let direct = b.call(
        Call::WaitDirect {
            to: a.node_id.clone(),
            timeout_ms: 10_000,
        },
        MIN,
    )?;
    let conn = b.call(
        Call::Conn {
            to: a.node_id.clone(),
        },
        MIN,
    )?;
    out.check(
        direct["ok"] == true && conn["path"] == "direct",
        format!(
            "symmetric homes with a port mapped on router A: {} path to {}",
            conn["path"].as_str().unwrap_or("?"),
            conn["remote"].as_str().unwrap_or("?")
        ),
    );
    Ok(())
}

pub(crate) fn doctor_verdicts(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new();
    if !ctx.agent.with_file_name("tether").exists() {
        anyhow::bail!(
            "skipped: the `tether` binary is not built beside the lab (cargo xtask netlab builds it)"
        );
    }
    home(ctx, Nat::Cone, &mut out)?;
    home(ctx, Nat::Symmetric, &mut out)?;
    Ok(out)
}
