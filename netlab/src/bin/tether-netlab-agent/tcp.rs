//! A TCP reference for the shaped links: how fast plain TCP crosses the same shaping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::emit;

/// One side of the reference transfer.
#[derive(Debug, clap::Args)]
pub(crate) struct TcpArgs {
    /// Listen here and read one connection to its end (the sink) ...
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// ... or connect here and send `--mib` MiB (the sender).
    #[arg(long)]
    to: Option<SocketAddr>,
    /// MiB to send.
    #[arg(long, default_value_t = 64)]
    mib: u64,
    /// Stop sending after this many seconds even if fewer MiB went (TCP at 10 % loss moves
    /// about 1 Mbit/s here); the sink's rate is what arrived over the time it took.
    #[arg(long, default_value_t = 20)]
    max_secs: u64,
    /// The sender's congestion controller (Linux's default is CUBIC; a host may choose
    /// another, such as BBR, system-wide).
    #[arg(long, default_value = "cubic")]
    congestion: String,
}

pub(crate) fn run(args: &TcpArgs) -> Result<()> {
    if !crate::in_lab_namespace()? {
        bail!("the TCP reference runs only inside the lab's namespaces");
    }
    if let Some(addr) = args.listen {
        let listener = TcpListener::bind(addr).context("binding the sink")?;
        emit(&json!({"event": "ready"}));
        let (mut stream, _) = listener.accept().context("accepting")?;
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        let started = Instant::now();
        loop {
            let n = stream.read(&mut buf).context("reading")?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        emit(&json!({"bytes": total, "secs": secs, "mbit": total as f64 * 8.0 / secs / 1e6}));
        return Ok(());
    }
    let to = args.to.context("give --listen or --to")?;
    let mut stream = TcpStream::connect(to).context("connecting to the sink")?;
    rustix::net::sockopt::set_tcp_congestion(&stream, &args.congestion)
        .with_context(|| format!("choosing TCP congestion control {}", args.congestion))?;
    let buf = vec![0x5au8; 64 << 10];
    let deadline = Instant::now() + std::time::Duration::from_secs(args.max_secs);
    for _ in 0..args.mib * 16 {
        if Instant::now() > deadline {
            break;
        }
        stream.write_all(&buf).context("sending")?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(())
}
