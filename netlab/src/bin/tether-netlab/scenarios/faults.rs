//! Scenarios about a bad link: loss, cuts, shaped rates and delay.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use tether_netlab::protocol::Command;

use super::kit::{
    Ctx, MIN, Outcome, alias, f, figure_transfer, hash, lan_pair, make_file, shape_100mbit_50ms,
    transfer,
};
use crate::agent::Agent;
use crate::lab::{Host, Lab, Nat};

pub(super) fn loss(ctx: &Ctx) -> Result<Outcome> {
    let lab = Lab::up(&ctx.dir.join("s5"), Nat::Cone)?;
    let mut out = Outcome::new();
    let (mut a, mut a2) = lan_pair(ctx, &lab)?;
    lab.rate(Host::A, "100mbit", "64kb")?;
    lab.segment(&[Host::A, Host::A2])?;
    let base = lab.dir.join("payload.bin");
    let expected = make_file(&base, ctx.mib, "s5")?;
    let mut clean = f64::NAN;
    for (round, (percent, label)) in [(0.0, "clean"), (1.0, "1%"), (10.0, "10%")]
        .into_iter()
        .enumerate()
    {
        if percent > 0.0 {
            lab.loss(&[Host::A, Host::A2], percent)?;
        }
        messages_round(&mut out, &mut a, &mut a2, round as u64, label)?;
        let file = alias(
            &base,
            &format!("payload-{}.bin", label.trim_end_matches('%')),
        )?;
        let lost = |agent: &mut Agent, to: &str| -> Result<f64> {
            let conn = agent.call_ok(Command::Conn { to: to.to_owned() }, MIN)?;
            Ok(f(&conn["lost_packets"]))
        };
        let lost_before = lost(&mut a, &a2.node_id)?;
        let (answer, same) = transfer(&mut a, &a2, &file, &expected)?;
        let lost_during = lost(&mut a, &a2.node_id)? - lost_before;
        let goodput = f(&answer["goodput_mbit"]);
        if percent == 0.0 {
            clean = goodput;
        }
        let (seen_a2, dropped_a2) = lab.loss_counters(Host::A2);
        let (seen_a, dropped_a) = lab.loss_counters(Host::A);
        let share = |dropped: u64, seen: u64| 100.0 * dropped as f64 / seen.max(1) as f64;
        out.check(
            same,
            format!(
                "{label}: {}; hashes match: {same}; goodput {:.2} × clean; the sender's QUIC counted {lost_during:.0} packets lost{}",
                figure_transfer(&answer),
                goodput / clean,
                if percent > 0.0 {
                    format!(
                        " (dropped {dropped_a2} of {seen_a2} packets to hA2 = {:.2} %, {dropped_a} of {seen_a} to hA = {:.2} %)",
                        share(dropped_a2, seen_a2),
                        share(dropped_a, seen_a)
                    )
                } else {
                    String::new()
                }
            ),
        );
        // Plain TCP (Linux's CUBIC) through the same link and loss, right after.
        let tcp = lab.tcp_goodput(&ctx.agent, Host::A, Host::A2, ctx.mib)?;
        let beside = format!(
            "{label}: TCP through the same link {tcp:.1} Mbit/s; Tether {:.2} × TCP",
            goodput / tcp
        );
        if percent >= 10.0 {
            out.target(goodput >= tcp, format!("{beside} (target 1.00)"));
        } else {
            out.note(beside);
        }
        if percent > 0.0 {
            lab.clear_loss(&[Host::A, Host::A2])?;
        }
    }
    Ok(out)
}

/// Round `round` of the loss scenario's messages: 200 from `a` to `a2`, every one delivered
/// once.
fn messages_round(
    out: &mut Outcome,
    a: &mut Agent,
    a2: &mut Agent,
    round: u64,
    label: &str,
) -> Result<()> {
    let start = round * 1000;
    let count = 200;
    let sent = a.call_ok(
        Command::SendMessages {
            to: a2.node_id.clone(),
            start,
            count,
        },
        10 * MIN,
    )?;
    std::thread::sleep(Duration::from_millis(300));
    let got = a2.call_ok(Command::Messages { start, count }, MIN)?;
    out.check(
        sent["failed"] == 0 && got["missing"] == 0 && got["duplicated"] == 0,
        format!(
            "{label}: {count} messages in {:.0} ms, {} failed, {} missing, {} duplicated{}",
            f(&sent["ms"]),
            sent["failed"],
            got["missing"],
            got["duplicated"],
            sent["errors"]
                .as_array()
                .and_then(|e| e.first())
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ),
    );
    Ok(())
}

/// A blip a transfer rides out. The session counts a peer dead 3 to 4.5 s after it last heard
/// it while a transfer runs (ARCHITECTURE.md, "Keep-alive and reconnection"), and after a cut
/// QUIC probes again only on its doubling timer (here about 1.7 s, then 3.4 s into the cut), so
/// a cut of 2 s may already end a run; the send retries (see the long cut below).
const SHORT_CUT: Duration = Duration::from_secs(1);

pub(super) fn cuts(ctx: &Ctx) -> Result<Outcome> {
    let lab = Lab::up(&ctx.dir.join("s6"), Nat::Cone)?;
    let mut out = Outcome::new();
    let (mut a, a2) = lan_pair(ctx, &lab)?;
    lab.rate(Host::A, "50mbit", "64kb")?;
    let base = lab.dir.join("payload.bin");
    let expected = make_file(&base, ctx.mib, "s6")?;
    short_cut(&lab, &mut a, &a2, &base, &expected, &mut out)?;
    long_cut(ctx, &lab, &mut a, &a2, &base, &expected, &mut out)?;
    Ok(out)
}

/// Waits until transfer `id` is half done.
fn halfway(agent: &mut Agent, id: u64) -> Result<serde_json::Value> {
    agent.wait_event(5 * MIN, |v| {
        v["event"] == "progress" && v["id"] == id && f(&v["done"]) * 2.0 >= f(&v["total"])
    })
}

/// A short cut, below the dead-peer bound (about 4.5 s of silence while a transfer runs):
/// the same run carries on.
fn short_cut(
    lab: &Lab,
    a: &mut Agent,
    a2: &Agent,
    base: &Path,
    expected: &str,
    out: &mut Outcome,
) -> Result<()> {
    let file = alias(base, "payload-short.bin")?;
    let id = a.send(Command::SendFile {
        to: a2.node_id.clone(),
        path: file.clone(),
    })?;
    halfway(a, id)?;
    lab.cut(Host::A)?;
    std::thread::sleep(SHORT_CUT);
    lab.restore(Host::A)?;
    let answer = a.answer(id, 10 * MIN)?;
    let same = hash(&a2.receive_dir.join("payload-short.bin")).is_ok_and(|h| h == expected);
    out.check(
        answer["ok"] == true && same,
        format!(
            "cut {} s at 50 %: the same transfer finished by itself: {}; hashes match: {same}",
            SHORT_CUT.as_secs(),
            figure_transfer(&answer)
        ),
    );
    Ok(())
}

/// A long cut: the send retries through it (as `tether send` does, `retry_for` 10 min) and
/// the same send finishes once the link is back, resuming what was verified.
fn long_cut(
    ctx: &Ctx,
    lab: &Lab,
    a: &mut Agent,
    a2: &Agent,
    base: &Path,
    expected: &str,
    out: &mut Outcome,
) -> Result<()> {
    let file = alias(base, "payload-long.bin")?;
    let id = a.send(Command::SendFile {
        to: a2.node_id.clone(),
        path: file,
    })?;
    halfway(a, id)?;
    lab.cut(Host::A)?;
    let cut_at = Instant::now();
    let ended = a.answer(id, ctx.long_cut).ok();
    let ended_after = cut_at.elapsed();
    if let Some(left) = ctx.long_cut.checked_sub(cut_at.elapsed()) {
        std::thread::sleep(left);
    }
    lab.restore(Host::A)?;
    out.note(format!(
        "long cut: {} s{}",
        ctx.long_cut.as_secs(),
        if ctx.long_cut < Duration::from_secs(120) {
            " (shortened from the issue's 120 s by --long-cut-secs)"
        } else {
            ""
        }
    ));
    if let Some(answer) = ended {
        out.check(
            false,
            format!(
                "the send ended {:.1} s into the cut instead of waiting: {}",
                ended_after.as_secs_f64(),
                answer["error"].as_str().unwrap_or("finished?!")
            ),
        );
        return Ok(());
    }
    let retries = a.take_events(|v| v["id"] == id && v["event"] == "retrying");
    let answer = a.answer(id, 10 * MIN)?;
    let same = hash(&a2.receive_dir.join("payload-long.bin")).is_ok_and(|h| h == expected);
    out.check(
        answer["ok"] == true && same,
        format!(
            "the same send waited through the cut ({} retries) and finished after it ({} \
             resumes): {}; hashes match: {same}",
            retries.len(),
            answer["resumes"],
            figure_transfer(&answer)
        ),
    );
    Ok(())
}

pub(super) fn rates(ctx: &Ctx) -> Result<Outcome> {
    let mut lab = Lab::up(&ctx.dir.join("s7"), Nat::Cone)?;
    let mut out = Outcome::new();
    let (mut a, a2) = lan_pair(ctx, &lab)?;
    let base = lab.dir.join("payload.bin");
    let expected = make_file(&base, 4 * ctx.mib, "s7")?;

    lab.rate(Host::A, "1gbit", "1mb")?;
    let tcp = lab.tcp_goodput(&ctx.agent, Host::A, Host::A2, 4 * ctx.mib)?;
    out.note(format!(
        "1 Gbit/s: plain TCP through the same shaping {tcp:.1} Mbit/s ({:.2} × line rate)",
        tcp / 1000.0
    ));
    let file = alias(&base, "payload-1g.bin")?;
    let (answer, same) = transfer(&mut a, &a2, &file, &expected)?;
    let ratio = f(&answer["goodput_mbit"]) / 1000.0;
    out.check(same, format!("1 Gbit/s: hashes match: {same}"));
    out.target(
        ratio >= 0.9,
        format!(
            "1 Gbit/s: {}; {ratio:.2} × line rate (target 0.90)",
            figure_transfer(&answer)
        ),
    );

    shape_100mbit_50ms(ctx, &mut lab, &mut out, &mut a, &a2)?;
    let small = lab.dir.join("payload-100m.bin");
    let expected = make_file(&small, ctx.mib, "s7-100")?;
    let (answer, same) = transfer(&mut a, &a2, &small, &expected)?;
    let ratio = f(&answer["goodput_mbit"]) / 100.0;
    out.check(
        same,
        format!("100 Mbit/s, +50 ms RTT: hashes match: {same}"),
    );
    out.target(
        ratio >= 0.85,
        format!(
            "100 Mbit/s, +50 ms RTT: {}; {ratio:.2} × line rate (target 0.85)",
            figure_transfer(&answer)
        ),
    );
    Ok(out)
}
