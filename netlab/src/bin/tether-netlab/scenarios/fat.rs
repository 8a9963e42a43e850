//! Long fat links (issue 20): links whose bandwidth-delay product is above quinn's default
//! stream window, with plain TCP (Linux's CUBIC) through the same shaping in the same run; and
//! the table of what each QUIC setting does on them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use tether_netlab::protocol::Command;

use super::kit::{Ctx, MIN, Outcome, alias, device, f, figure_transfer, make_file, transfer_lanes};
use crate::agent::{Agent, pair};
use crate::lab::{Host, Lab, Nat};

/// A shaped link: rate each way and round trip added by the delay line.
#[derive(Clone, Copy)]
struct Link {
    label: &'static str,
    rate: &'static str,
    burst: &'static str,
    mbit: f64,
    /// Delay each way, ms (`0`: no delay line).
    one_way_ms: u64,
    /// Loss on each host's input, percent.
    loss: f64,
}

const FAT_LINKS: [Link; 2] = [
    Link {
        label: "200 Mbit/s, 100 ms RTT",
        rate: "200mbit",
        burst: "256kb",
        mbit: 200.0,
        one_way_ms: 50,
        loss: 0.0,
    },
    Link {
        label: "1 Gbit/s, 50 ms RTT",
        rate: "1gbit",
        burst: "1mb",
        mbit: 1000.0,
        one_way_ms: 25,
        loss: 0.0,
    },
];

const LOSSY: Link = Link {
    label: "100 Mbit/s LAN, 10 % loss each way",
    rate: "100mbit",
    burst: "64kb",
    mbit: 100.0,
    one_way_ms: 0,
    loss: 10.0,
};

/// MiB moved on `link` for a figure of a few seconds at line rate.
fn size_mib(ctx: &Ctx, link: &Link) -> u64 {
    (ctx.mib as f64 * link.mbit / 200.0).round().max(8.0) as u64
}

/// A lab with `link` between the two hosts of home A (shaping, delay, loss).
fn shaped_lab(ctx: &Ctx, name: &str, link: &Link) -> Result<Lab> {
    let mut lab = Lab::up(&ctx.dir.join(name), Nat::Cone)?;
    lab.rate(Host::A, link.rate, link.burst)?;
    if link.one_way_ms > 0 {
        lab.delay_inbound(&ctx.agent, &[Host::A, Host::A2], link.one_way_ms)?;
    }
    if link.loss > 0.0 {
        lab.segment(&[Host::A, Host::A2])?;
        lab.loss(&[Host::A, Host::A2], link.loss)?;
    }
    Ok(lab)
}

/// Two paired devices in `lab` with QUIC settings `quic` (agent arguments).
fn tuned_pair(ctx: &Ctx, lab: &Lab, tag: &str, quic: &[&str]) -> Result<(Agent, Agent)> {
    let (name_a, name_a2) = (format!("{tag}-a"), format!("{tag}-a2"));
    let mut a = Agent::start_with(&ctx.agent, &lab.dir, &device(&name_a, Host::A), quic)?;
    let mut a2 = Agent::start_with(&ctx.agent, &lab.dir, &device(&name_a2, Host::A2), quic)?;
    pair(&mut a, &mut a2, true)?;
    Ok((a, a2))
}

/// Goodput of plain TCP from A to A2 through the lab's shaping, with the delay line's share
/// of a core while it ran.
fn tcp_through(ctx: &Ctx, lab: &Lab, mib: u64) -> Result<(f64, f64)> {
    let (cpu, began) = (lab.delay_cpu_secs(), Instant::now());
    let tcp = lab.tcp_goodput(&ctx.agent, Host::A, Host::A2, mib)?;
    Ok((tcp, core_share(lab, cpu, began)))
}

fn core_share(lab: &Lab, cpu_before: f64, began: Instant) -> f64 {
    (lab.delay_cpu_secs() - cpu_before) / began.elapsed().as_secs_f64()
}

/// Scenario 9: each fat link, TCP then Tether (default settings; one stream, then the extra
/// streams a transfer picks from the round trip by default), beside the line rate.
pub(super) fn fat_links(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new();
    for (n, link) in FAT_LINKS.iter().enumerate() {
        let lab = shaped_lab(ctx, &format!("s9-{n}"), link)?;
        let (mut a, a2) = tuned_pair(ctx, &lab, "tether", &[])?;
        // The first ping may connect; the second is one round trip.
        let ping = || Command::Ping {
            to: a2.node_id.clone(),
        };
        a.call_ok(ping(), MIN)?;
        let ping = a.call_ok(ping(), MIN)?;
        let mib = size_mib(ctx, link);
        let (tcp, tcp_core) = tcp_through(ctx, &lab, mib)?;
        out.note(format!(
            "{}: ping {:.1} ms; TCP (cubic) {tcp:.1} Mbit/s = {:.2} × line rate; the delay \
             lines used {:.0} % of a core",
            link.label,
            f(&ping["rtt_ms"]),
            tcp / link.mbit,
            100.0 * tcp_core,
        ));
        let base = lab.dir.join("payload.bin");
        let expected = make_file(&base, mib, "s9")?;
        let rtt = Duration::from_secs_f64(f(&ping["rtt_ms"]).max(0.0) / 1000.0);
        for lanes in [Some(0), None] {
            let run = Run {
                lab: &lab,
                link,
                tcp,
                lanes,
                auto: tether::lanes_for_round_trip(Some(rtt)),
            };
            run.row(&mut out, (&mut a, &a2), (&base, &expected))?;
        }
    }
    Ok(out)
}

/// One Tether transfer of scenario 9.
struct Run<'a> {
    lab: &'a Lab,
    link: &'a Link,
    tcp: f64,
    /// Extra streams; `None`: the transfer's default, picked from the round trip.
    lanes: Option<u8>,
    /// What the default picks for the measured round trip.
    auto: u8,
}

impl Run<'_> {
    fn row(
        &self,
        out: &mut Outcome,
        (a, a2): (&mut Agent, &Agent),
        (base, expected): (&Path, &str),
    ) -> Result<()> {
        let link = self.link;
        let streams = 1 + self.lanes.unwrap_or(self.auto);
        let how = if self.lanes.is_some() {
            format!("{streams} stream(s)")
        } else {
            format!("{streams} stream(s) picked from the round trip")
        };
        let name = match self.lanes {
            Some(lanes) => format!("fat-{lanes}.bin"),
            None => "fat-auto.bin".to_owned(),
        };
        let file = alias(base, &name)?;
        let (cpu, began) = (self.lab.delay_cpu_secs(), Instant::now());
        let (answer, same) = transfer_lanes(a, a2, &file, expected, self.lanes)?;
        let core = core_share(self.lab, cpu, began);
        let goodput = f(&answer["goodput_mbit"]);
        out.check(same, format!("{}, {how}: hashes match: {same}", link.label));
        let ratio = goodput / link.mbit;
        out.target(
            ratio >= 0.9 && goodput >= self.tcp,
            format!(
                "{}: Tether, {how}: {}; {ratio:.2} × line rate (target 0.90), \
                 {:.2} × TCP (target 1.00); the delay lines used {:.0} % of a core",
                link.label,
                figure_transfer(&answer),
                goodput / self.tcp,
                100.0 * core,
            ),
        );
        Ok(())
    }
}

/// Scenario 10 (on request): every QUIC setting on each fat link and on 10 % loss, TCP first.
pub(super) fn settings_table(ctx: &Ctx) -> Result<Outcome> {
    let mut out = Outcome::new();
    let links = [FAT_LINKS[0], FAT_LINKS[1], LOSSY];
    for (n, link) in links.iter().enumerate() {
        let lab = shaped_lab(ctx, &format!("s10-{n}"), link)?;
        let mib = size_mib(ctx, link);
        let base = lab.dir.join("payload.bin");
        let expected = make_file(&base, mib, "s10")?;
        let (tcp, _) = tcp_through(ctx, &lab, mib)?;
        out.note(format!(
            "{}, {mib} MiB: TCP (cubic) {tcp:.1} Mbit/s = {:.2} × line rate",
            link.label,
            tcp / link.mbit
        ));
        for setting in &ctx.settings {
            let (windows, congestion) = setting.split_once(':').unwrap_or((setting, "cubic"));
            let tag = format!("{}-{congestion}", windows.replace('/', "-"));
            let quic = ["--windows", windows, "--congestion", congestion];
            let (mut a, a2) = tuned_pair(ctx, &lab, &tag, &quic)?;
            let row = Row {
                link,
                tag: &tag,
                tcp,
                lanes: ctx.lanes,
            };
            row.measure(&mut out, (&mut a, &a2), (&base, &expected))?;
        }
    }
    Ok(out)
}

/// One setting's transfer in scenario 10.
struct Row<'a> {
    link: &'a Link,
    tag: &'a str,
    tcp: f64,
    lanes: u8,
}

impl Row<'_> {
    fn measure(
        &self,
        out: &mut Outcome,
        (a, a2): (&mut Agent, &Agent),
        (base, expected): (&Path, &str),
    ) -> Result<()> {
        let (link, tag, tcp) = (self.link, self.tag, self.tcp);
        let file = alias(base, &format!("{tag}.bin"))?;
        let (answer, same) = transfer_lanes(a, a2, &file, expected, Some(self.lanes))?;
        let goodput = f(&answer["goodput_mbit"]);
        out.check(
            same,
            format!(
                "{} | {tag}, {} stream(s) | {goodput:.1} Mbit/s | {:.2} × line rate | {:.2} × TCP \
                 | hashes match: {same}{}",
                link.label,
                1 + self.lanes,
                goodput / link.mbit,
                goodput / tcp,
                answer["error"]
                    .as_str()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        );
        Ok(())
    }
}
