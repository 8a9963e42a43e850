//! What the scenarios share: their context, their verdict, and the steps they are made of.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tether_netlab::protocol::Command;

use crate::agent::{Agent, DeviceSpec, pair};
use crate::lab::{Host, Lab, Nat};

/// What every scenario needs.
pub(crate) struct Ctx {
    pub(crate) agent: PathBuf,
    pub(crate) dir: PathBuf,
    /// Size of the test files, MiB.
    pub(crate) mib: u64,
    /// How long the "long" link cut lasts.
    pub(crate) long_cut: Duration,
    /// Whether devices can be told to trust the lab relay's certificate.
    pub(crate) relay_trust: bool,
    /// QUIC settings scenario 10 compares (`WINDOWS:CONGESTION`, the agent's `--windows` and
    /// `--congestion`).
    pub(crate) settings: Vec<String>,
    /// Extra streams (transfer lanes) of scenario 10's transfers.
    pub(crate) lanes: u8,
}

/// A scenario's verdict and figures.
pub(crate) struct Outcome {
    pub(crate) pass: bool,
    /// A speed target was missed. Speed is a measurement, not a test verdict (the machine is
    /// shared and its load varies), so this marks the row without failing the lab.
    pub(crate) target_missed: bool,
    pub(crate) figures: Vec<String>,
}

impl Outcome {
    pub(super) fn new() -> Self {
        Self {
            pass: true,
            target_missed: false,
            figures: Vec::new(),
        }
    }

    /// Records a figure; `ok == false` fails the scenario.
    pub(super) fn check(&mut self, ok: bool, figure: String) {
        println!("   {} {figure}", if ok { "ok  " } else { "FAIL" });
        self.pass &= ok;
        self.figures.push(figure);
    }

    /// Records a speed figure against its target; a miss is reported, not a failure.
    pub(super) fn target(&mut self, met: bool, figure: String) {
        println!("   {} {figure}", if met { "ok  " } else { "MISS" });
        self.target_missed |= !met;
        self.figures.push(if met {
            figure
        } else {
            format!("{figure} [target missed]")
        });
    }

    pub(super) fn note(&mut self, figure: String) {
        println!("        {figure}");
        self.figures.push(figure);
    }
}

pub(crate) const MIN: Duration = Duration::from_secs(60);

pub(crate) fn device<'a>(name: &'a str, host: Host) -> DeviceSpec<'a> {
    DeviceSpec {
        name,
        host,
        bind: None,
        mdns: false,
        relay: None,
    }
}

/// Writes `mib` MiB of incompressible bytes (a BLAKE3 stream of `seed`).
pub(crate) fn make_file(path: &Path, mib: u64, seed: &str) -> Result<String> {
    use std::io::{Read, Write};
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut stream = blake3::Hasher::new_derive_key("tether netlab payload")
        .update(seed.as_bytes())
        .finalize_xof();
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        stream.read_exact(&mut buf)?;
        out.write_all(&buf)?;
    }
    out.flush()?;
    hash(path)
}

pub(crate) fn hash(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::io::BufReader::with_capacity(1 << 20, file))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// A new name for the same bytes (a hard link), so each transfer is a fresh one.
pub(crate) fn alias(base: &Path, name: &str) -> Result<PathBuf> {
    let path = base.with_file_name(name);
    let _ = std::fs::remove_file(&path);
    std::fs::hard_link(base, &path)?;
    Ok(path)
}

pub(crate) fn f(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// Sends `file` from `from` to `to` and checks what arrived.
pub(crate) fn transfer(
    from: &mut Agent,
    to: &Agent,
    file: &Path,
    expected: &str,
) -> Result<(Value, bool)> {
    transfer_lanes(from, to, file, expected, None)
}

/// [`transfer`] over `lanes` extra streams.
pub(crate) fn transfer_lanes(
    from: &mut Agent,
    to: &Agent,
    file: &Path,
    expected: &str,
    lanes: Option<u8>,
) -> Result<(Value, bool)> {
    let command = match lanes {
        None => Command::SendFile {
            to: to.node_id.clone(),
            path: file.to_path_buf(),
        },
        Some(lanes) => Command::SendFileLanes {
            to: to.node_id.clone(),
            path: file.to_path_buf(),
            lanes,
        },
    };
    let answer = from.call(command, 10 * MIN)?;
    let name = file.file_name().context("file name")?;
    let received = to.receive_dir.join(name);
    let same = answer["ok"] == true && hash(&received).is_ok_and(|h| h == expected);
    Ok((answer, same))
}

pub(crate) fn figure_transfer(answer: &Value) -> String {
    if answer["ok"] == true {
        format!(
            "{:.1} MiB in {:.2} s = {:.1} Mbit/s over {} (resumed {:.1} MiB)",
            f(&answer["bytes_total"]) / 1048576.0,
            f(&answer["secs"]),
            f(&answer["goodput_mbit"]),
            answer["path"].as_str().unwrap_or("?"),
            f(&answer["bytes_resumed"]) / 1048576.0,
        )
    } else {
        format!("failed: {}", answer["error"].as_str().unwrap_or("?"))
    }
}

pub(crate) fn lan_pair(ctx: &Ctx, lab: &Lab) -> Result<(Agent, Agent)> {
    let mut a = Agent::start(&ctx.agent, &lab.dir, &device("a", Host::A))?;
    let mut a2 = Agent::start(&ctx.agent, &lab.dir, &device("a2", Host::A2))?;
    pair(&mut a, &mut a2, true)?;
    Ok((a, a2))
}

/// A lab whose public namespace runs an iroh-relay the devices trust: its URL and certificate.
pub(crate) fn relay_lab(ctx: &Ctx, name: &str, nat: Nat) -> Result<(Lab, String, PathBuf)> {
    if !ctx.relay_trust {
        bail!("skipped: devices cannot yet trust the lab relay's certificate");
    }
    let mut lab = Lab::up(&ctx.dir.join(name), nat)?;
    let (url, cert) = lab.start_relay(&ctx.agent)?;
    Ok((lab, url, cert))
}

/// Shapes home A's link to 100 Mbit/s with a 25 ms delay line each way (50 ms of round trip)
/// and notes the encrypted round trip `from` then measures to `to`.
pub(crate) fn shape_100mbit_50ms(
    ctx: &Ctx,
    lab: &mut Lab,
    out: &mut Outcome,
    from: &mut Agent,
    to: &Agent,
) -> Result<()> {
    lab.rate(Host::A, "100mbit", "64kb")?;
    lab.delay(&ctx.agent, Host::A, 25)?;
    let ping = from.call_ok(
        Command::Ping {
            to: to.node_id.clone(),
        },
        MIN,
    )?;
    out.note(format!(
        "100 Mbit/s + delay line: ping {:.1} ms",
        f(&ping["rtt_ms"])
    ));
    Ok(())
}
