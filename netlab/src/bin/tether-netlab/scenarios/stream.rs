//! Streaming a video from another device over a long link: how soon a player starts and
//! seeks (issue 23's streaming figures through the lab).

use std::process::Command as Process;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tether_netlab::protocol::Command;

use super::kit::{Ctx, MIN, Outcome, f, lan_pair, shape_100mbit_50ms};
use crate::lab::{Lab, Nat};

/// How many times the viewer opens the video afresh.
const ROUNDS: usize = 3;

pub(super) fn stream_on_a_long_link(ctx: &Ctx) -> Result<Outcome> {
    if Process::new("ffprobe").arg("-version").output().is_err() {
        bail!("skipped: ffmpeg/ffprobe are not installed");
    }
    let mut lab = Lab::up(&ctx.dir.join("s12"), Nat::Cone)?;
    let mut out = Outcome::new();
    let (mut owner, mut viewer) = lan_pair(ctx, &lab)?;
    let video = lab.dir.join("testsrc.mp4");
    make_video(&video)?;
    shape_100mbit_50ms(ctx, &mut lab, &mut out, &mut viewer, &owner)?;
    let shared = owner.call_ok(
        Command::Share {
            path: video.clone(),
        },
        MIN,
    )?;
    let entry = shared["entry"].as_str().context("no entry id")?.to_owned();
    for round in 0..ROUNDS {
        let figures = viewer.call_ok(
            Command::StreamFigures {
                from: owner.node_id.clone(),
                entry: entry.clone(),
            },
            MIN,
        )?;
        let local = local_probe(&video)?;
        out.note(format!(
                "100 Mbit/s + 50 ms RTT, round {round}: first byte {:.1} ms, seek near the end \
                 and read {:.1} ms, ffprobe through a fresh stream {:.1} ms (the local file: {:.1} ms)",
                f(&figures["first_byte_ms"]),
                f(&figures["seek_ms"]),
                f(&figures["probe_ms"]),
                local.as_secs_f64() * 1e3,
            ),
        );
    }
    Ok(out)
}

/// A 10 s test video, as the streaming test makes it.
fn make_video(path: &std::path::Path) -> Result<()> {
    let status = Process::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-f", "lavfi", "-i"])
        .args([
            "testsrc=duration=10:size=320x240:rate=25",
            "-vf",
            "noise=alls=12:allf=t",
        ])
        .args(["-c:v", "mpeg4", "-q:v", "3", "-g", "25"])
        .arg(path)
        .status()
        .context("running ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed: {status}");
    }
    Ok(())
}

/// How long `ffprobe` takes on the file itself: the baseline of the same run.
fn local_probe(path: &std::path::Path) -> Result<Duration> {
    let started = Instant::now();
    let output = Process::new("ffprobe")
        .args(["-v", "error", "-show_format"])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    if !output.status.success() {
        bail!("ffprobe failed on the local file");
    }
    Ok(started.elapsed())
}
