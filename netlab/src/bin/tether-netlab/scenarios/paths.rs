//! Scenarios about finding a path: mDNS on a LAN, NAT traversal, the relay, roaming.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::Value;
use tether_netlab::protocol::Command;

use super::kit::{
    Ctx, MIN, Outcome, device, f, figure_transfer, hash, make_file, relay_lab, transfer,
};
use crate::agent::{Agent, DeviceSpec, pair};
use crate::lab::{Host, Lab, Nat};

pub(super) fn lan_mdns(ctx: &Ctx) -> Result<Outcome> {
    let lab = Lab::up(&ctx.dir.join("s1"), Nat::Cone)?;
    let mut out = Outcome::new();
    let spec = |name, host| DeviceSpec {
        mdns: true,
        ..device(name, host)
    };
    let mut a = Agent::start(&ctx.agent, &lab.dir, &spec("a", Host::A))?;
    let mut a2 = Agent::start(&ctx.agent, &lab.dir, &spec("a2", Host::A2))?;
    let mut b = Agent::start(&ctx.agent, &lab.dir, &spec("b", Host::B))?;
    let joined = pair(&mut a, &mut a2, false)?;
    out.check(
        true,
        format!(
            "paired by word code found over mDNS in {:.0} ms",
            f(&joined["ms"])
        ),
    );
    let ping = a2.call_ok(
        Command::Ping {
            to: a.node_id.clone(),
        },
        MIN,
    )?;
    out.check(
        ping["path"] == "direct",
        format!(
            "encrypted ping {:.2} ms over {}",
            f(&ping["rtt_ms"]),
            ping["path"].as_str().unwrap_or("?")
        ),
    );
    // Give mDNS time to cross the NAT if it could (several announcement rounds).
    std::thread::sleep(Duration::from_secs(6));
    let seen = |agent: &mut Agent| -> Result<Vec<String>> {
        let answer = agent.call_ok(Command::Discovered, MIN)?;
        Ok(answer["discovered"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    };
    let b_saw = seen(&mut b)?;
    let a_saw = seen(&mut a)?;
    let a2_saw = seen(&mut a2)?;
    let leaked = b_saw
        .iter()
        .filter(|id| **id == a.node_id || **id == a2.node_id)
        .count();
    out.check(
        a2_saw.contains(&a.node_id) && a_saw.contains(&a2.node_id),
        "hA and hA2 saw each other".into(),
    );
    out.check(
        leaked == 0,
        format!("hB (other home) saw {leaked} of home A's 2 devices"),
    );
    out.check(
        !a_saw.contains(&b.node_id),
        format!("hA saw hB: {}", a_saw.contains(&b.node_id)),
    );
    Ok(out)
}

/// Two devices, one in each home behind `nat`, with the lab relay: paired by ticket, then
/// both restarted (fresh endpoints on new ports, with nothing but what pairing stored, as when
/// paired devices meet again another day).
fn paired_across(
    ctx: &Ctx,
    name: &str,
    nat: Nat,
    out: &mut Outcome,
) -> Result<(Lab, Agent, Agent)> {
    let (lab, url, cert) = relay_lab(ctx, name, nat)?;
    let spec = |name, host| DeviceSpec {
        relay: Some((url.as_str(), cert.as_path())),
        ..device(name, host)
    };
    let (first, second) = (spec("a", Host::A), spec("b", Host::B));
    let mut a = Agent::start(&ctx.agent, &lab.dir, &first)?;
    let mut b = Agent::start(&ctx.agent, &lab.dir, &second)?;
    let joined = pair(&mut a, &mut b, true)?;
    out.note(format!(
        "paired by ticket across the NATs in {:.0} ms",
        f(&joined["ms"])
    ));
    drop((a, b));
    let a = Agent::start(&ctx.agent, &lab.dir, &first)?;
    let b = Agent::start(&ctx.agent, &lab.dir, &second)?;
    out.note("both devices restarted (new ports)".into());
    Ok((lab, a, b))
}

pub(super) fn cone_direct(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new();
    let (_lab, a, mut b) = paired_across(ctx, "s2", Nat::Cone, &mut out)?;
    // A fresh connection (pairing's has ended): time from dialling to a direct path.
    let direct = b.call(
        Command::WaitDirect {
            to: a.node_id.clone(),
            timeout_ms: 10_000,
        },
        MIN,
    )?;
    let ms = f(&direct["ms"]);
    out.check(
        direct["ok"] == true && ms <= 5000.0,
        format!(
            "direct path after {ms:.0} ms (limit 5000), path {} via {}, rtt {:.2} ms",
            direct["path"].as_str().unwrap_or("?"),
            direct["remote"].as_str().unwrap_or("?"),
            f(&direct["rtt_ms"])
        ),
    );
    if direct["ok"] != true {
        out.note(format!("error: {}", direct["error"]));
    }
    Ok(out)
}

pub(super) fn symmetric_relay(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new();
    let (lab, a, mut b) = paired_across(ctx, "s3", Nat::Symmetric, &mut out)?;
    let ping = b.call(
        Command::Ping {
            to: a.node_id.clone(),
        },
        MIN,
    )?;
    let ms = f(&ping["ms"]);
    out.check(
        ping["ok"] == true && ms <= 10_000.0,
        format!("connected in {ms:.0} ms (limit 10000)"),
    );
    // Let hole punching try (and fail) before judging the path.
    std::thread::sleep(Duration::from_secs(3));
    let conn = b.call_ok(
        Command::Conn {
            to: a.node_id.clone(),
        },
        MIN,
    )?;
    out.check(
        conn["path"] == "relayed",
        format!(
            "path {} via {}",
            conn["path"].as_str().unwrap_or("?"),
            conn["remote"].as_str().unwrap_or("?")
        ),
    );
    let file = lab.dir.join("payload.bin");
    let expected = make_file(&file, ctx.mib, "s3")?;
    let (answer, same) = transfer(&mut b, &a, &file, &expected)?;
    out.check(
        same && answer["path"] == "relayed",
        format!(
            "transfer {}; hashes match: {same}",
            figure_transfer(&answer)
        ),
    );
    Ok(out)
}

/// One QUIC stream window (`QuicTuning::default`), in bytes: what a sender may have written
/// that the receiver has not read.
const WINDOW: f64 = (2u64 << 20) as f64;

pub(super) fn direct_blocked(ctx: &Ctx) -> Result<Outcome> {
    let (lab, url, cert) = relay_lab(ctx, "s4", Nat::Cone)?;
    let mut out = Outcome::new();
    let spec = |name, host| DeviceSpec {
        relay: Some((url.as_str(), cert.as_path())),
        ..device(name, host)
    };
    let mut a = Agent::start(&ctx.agent, &lab.dir, &spec("a", Host::A))?;
    let mut b = Agent::start(&ctx.agent, &lab.dir, &spec("b", Host::B))?;
    pair(&mut a, &mut b, true)?;
    let direct = b.call(
        Command::WaitDirect {
            to: a.node_id.clone(),
            timeout_ms: 10_000,
        },
        MIN,
    )?;
    out.check(
        direct["ok"] == true,
        format!(
            "direct path first: {}",
            direct["path"].as_str().unwrap_or("?")
        ),
    );
    let file = lab.dir.join("payload.bin");
    let expected = make_file(&file, 4 * ctx.mib, "s4")?;
    let id = b.send(Command::SendFile {
        to: a.node_id.clone(),
        path: file.clone(),
    })?;
    let half = b.wait_event(5 * MIN, |v| {
        v["event"] == "progress" && v["id"] == id && f(&v["done"]) * 2.0 >= f(&v["total"])
    })?;
    lab.block_direct()?;
    let blocked = Instant::now();
    out.note("direct path blocked at 50 %".into());
    // Moving again: the sender's count passed what it could have written before the block
    // without the receiver reading (one stream window) by two progress steps more.
    let step = f(&half["total"]) / 100.0;
    let beyond = f(&half["done"]) + WINDOW + 2.0 * step;
    let moving = b.wait_event(10 * MIN, |v| {
        v["id"] == id
            && (v.get("event").is_none() || (v["event"] == "progress" && f(&v["done"]) >= beyond))
    });
    let moved_after = blocked.elapsed().as_secs_f64();
    let answer = match &moving {
        Ok(done) if done.get("event").is_none() => done.clone(),
        _ => b.answer(id, 10 * MIN)?,
    };
    let retries = b.take_events(|v| v["id"] == id && v["event"] == "retrying");
    for retry in &retries {
        out.note(format!(
            "retrying (try {}) in {:.0} ms: {}",
            retry["attempt"],
            f(&retry["retry_in_ms"]),
            retry["reason"].as_str().unwrap_or("?")
        ));
    }
    let same = hash(&a.receive_dir.join("payload.bin")).is_ok_and(|h| h == expected);
    let conn = b.call_ok(
        Command::Conn {
            to: a.node_id.clone(),
        },
        MIN,
    )?;
    blocked_checks(&mut out, &answer, same, moving.is_ok(), moved_after, &conn);
    Ok(out)
}

/// Scenario 4's verdicts: the same send finished and moved again (checks), how soon (issue
/// 21's target), what was sent twice, and the path after the block.
fn blocked_checks(
    out: &mut Outcome,
    answer: &Value,
    same: bool,
    moving: bool,
    moved_after: f64,
    conn: &Value,
) {
    out.check(
        answer["ok"] == true && same,
        format!(
            "the same send finished ({} resumes): {}; hashes match: {same}",
            answer["resumes"],
            figure_transfer(answer)
        ),
    );
    // That it moves again in the same send, and within 5 s, is asserted (issue 21): the
    // dead-path probe (see ARCHITECTURE.md) ends the run about 3 s after the block.
    out.check(
        moving,
        "the same send moved again after the block".to_owned(),
    );
    out.check(
        moving && moved_after <= 5.0,
        format!("moving again {moved_after:.1} s after the block (at most 5 s)"),
    );
    let resent = f(&answer["bytes_resent"]);
    out.check(
        resent <= WINDOW,
        format!(
            "sent twice: {:.2} MiB (at most one stream window, {:.0} MiB)",
            resent / 1_048_576.0,
            WINDOW / 1_048_576.0
        ),
    );
    out.check(
        conn["path"] == "relayed",
        format!(
            "path after the block: {}",
            conn["path"].as_str().unwrap_or("?")
        ),
    );
}

pub(super) fn roaming(ctx: &Ctx) -> Result<Outcome> {
    let (lab, url, cert) = relay_lab(ctx, "s8", Nat::Cone)?;
    let mut out = Outcome::new();
    let spec = |name, host, bind| DeviceSpec {
        relay: Some((url.as_str(), cert.as_path())),
        bind,
        ..device(name, host)
    };
    let mut a = Agent::start(&ctx.agent, &lab.dir, &spec("a", Host::A, None))?;
    // The roaming device binds every address of its namespace: its address changes.
    let mut m = Agent::start(
        &ctx.agent,
        &lab.dir,
        &spec("m", Host::A2, Some("0.0.0.0:0")),
    )?;
    pair(&mut a, &mut m, true)?;
    let before = m.call_ok(
        Command::WaitDirect {
            to: a.node_id.clone(),
            timeout_ms: 10_000,
        },
        MIN,
    )?;
    out.note(format!(
        "before: {} path on the LAN ({:.2} ms)",
        before["path"].as_str().unwrap_or("?"),
        f(&before["rtt_ms"])
    ));
    lab.move_host(Host::A2, "rB", "10.0.2.3")?;
    let moved = Instant::now();
    out.note("hA2 moved from home A (10.0.1.3) to home B (10.0.2.3)".into());
    let mut last = Value::Null;
    while moved.elapsed() < Duration::from_secs(60) {
        let attempt = Instant::now();
        last = m.call(
            Command::Ping {
                to: a.node_id.clone(),
            },
            MIN,
        )?;
        if last["ok"] == true {
            break;
        }
        out.note(format!(
            "ping at {:.1} s failed after {:.1} s: {}",
            attempt.duration_since(moved).as_secs_f64(),
            attempt.elapsed().as_secs_f64(),
            last["error"].as_str().unwrap_or("?")
        ));
    }
    let back_after = moved.elapsed().as_secs_f64();
    out.check(
        last["ok"] == true,
        "the moved device reaches its peer again".to_owned(),
    );
    out.check(
        last["ok"] == true && back_after <= 3.0,
        format!(
            "moved device reaches its peer again after {back_after:.1} s (at most 3 s), over {}",
            last["path"].as_str().unwrap_or("?")
        ),
    );
    let back = a.call(
        Command::Ping {
            to: m.node_id.clone(),
        },
        MIN,
    )?;
    out.check(
        back["ok"] == true,
        format!(
            "and the peer reaches it: {} ({})",
            back["ok"],
            back["path"]
                .as_str()
                .unwrap_or(back["error"].as_str().unwrap_or("?"))
        ),
    );
    out.note("no re-pairing: the same paired keys".into());
    Ok(out)
}
