//! The scenarios of issue 10. Each builds its own lab (taken down when it returns or
//! panics), starts real devices in it, and says whether it passed, with its figures.

use anyhow::Result;

mod doctor;
mod fat;
mod faults;
mod kit;
mod paths;
mod stream;

use doctor::doctor_verdicts;
use fat::{fat_links, settings_table};
use faults::{cuts, loss, rates};
pub(crate) use kit::{Ctx, Outcome};
use paths::{cone_direct, direct_blocked, lan_mdns, roaming, symmetric_relay};
use stream::stream_on_a_long_link;

/// A scenario: its number, name and body.
pub(crate) type Scenario = (&'static str, &'static str, fn(&Ctx) -> Result<Outcome>);

pub(crate) const ALL: [Scenario; 12] = [
    (
        "1",
        "LAN pairing by code over mDNS; no mDNS across the NAT",
        lan_mdns,
    ),
    ("2", "two cone NATs: hole punched, direct path", cone_direct),
    (
        "3",
        "two symmetric NATs: relayed, transfer verified",
        symmetric_relay,
    ),
    (
        "4",
        "direct path blocked mid-transfer: moves to the relay",
        direct_blocked,
    ),
    ("5", "1% and 10% loss each way (LAN, 100 Mbit/s)", loss),
    ("6", "link cut 1 s, and a long cut, mid-transfer", cuts),
    ("7", "1 Gbit/s and 100 Mbit/s + 50 ms RTT goodput", rates),
    ("8", "a device moves to the other home", roaming),
    (
        "9",
        "long fat links (200 Mbit/s + 100 ms, 1 Gbit/s + 50 ms) beside TCP",
        fat_links,
    ),
    (
        "10",
        "QUIC windows × congestion controller on fat links and 10% loss, TCP alongside",
        settings_table,
    ),
    (
        "11",
        "tether doctor in the cone and symmetric homes: NAT type, multicast, port mapping",
        doctor_verdicts,
    ),
    (
        "12",
        "streaming a video over 100 Mbit/s + 50 ms RTT: first byte, seek, ffprobe",
        stream_on_a_long_link,
    ),
];

/// Scenarios run only when named (they repeat others' links once per setting).
pub(crate) const ON_REQUEST: [&str; 1] = ["10"];

/// What the name `fat` selects: the long-fat-link scenarios.
pub(crate) const FAT: [&str; 2] = ["9", "10"];
