//! `tether demo`: two devices in one process, on loopback only, pair by word code and talk.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tether::{
    DeviceHandle, DeviceName, DeviceType, Hlc, LibraryAnnounce, LibraryInfo, NetworkEvent,
    NetworkMessage, NetworkingConfig, NetworkingService, Uuid,
};

use crate::output::Output;
use crate::progress::rate_and_eta;

/// Which build runs the demo: its figures depend on it.
const BUILD: &str = if cfg!(debug_assertions) {
    "debug build"
} else {
    "release build"
};

/// How long the demo waits for the announcement it sent to arrive on the other device.
const MESSAGE_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// How many encrypted pings to time.
    #[arg(long, default_value_t = 50)]
    pings: u32,
    /// Size of the generated file, in MiB.
    #[arg(long, default_value_t = 256)]
    size: u64,
    /// No per-transfer encryption (TLS still applies).
    #[arg(long)]
    no_encrypt: bool,
}

/// Runs the demo. Everything lives in a temporary directory that is removed at the end; the
/// devices bind 127.0.0.1 and find each other through a discovery directory of the demo's
/// own, so no packet leaves the machine.
pub(crate) async fn run(args: DemoArgs, out: &Output) -> Result<()> {
    let root = tempfile::tempdir().context("cannot create a temporary directory")?;
    let config = |name: &str, kind: DeviceType| -> Result<NetworkingConfig> {
        let mut config = NetworkingConfig::local_only(root.path().join(name))
            .with_device_name(DeviceName::new(name)?)
            .with_loopback_discovery(root.path().join("discovery"))
            // Throwaway devices in a temporary directory: their keys need no passphrase.
            .with_insecure_key_file();
        config.device_type = Some(kind);
        Ok(config)
    };
    out.text("Starting two devices on 127.0.0.1 (temporary data directories, no network beyond loopback)...");
    let inbox = root.path().join("inbox");
    std::fs::create_dir_all(&inbox).context("cannot create the receive directory")?;
    let laptop =
        NetworkingService::start(config("laptop", DeviceType::Laptop)?.with_receive_dir(&inbox))
            .await?;
    let phone = NetworkingService::start(config("phone", DeviceType::Phone)?).await?;
    out.line(
        "devices",
        &format!(
            "  laptop  node {}  on {}\n  phone   node {}  on {}",
            laptop.node_id().fmt_short(),
            first_addr(&laptop),
            phone.node_id().fmt_short(),
            first_addr(&phone),
        ),
        json!({ "laptop": laptop.node_id().to_string(), "phone": phone.node_id().to_string() }),
    );

    let result = exchange(&laptop, &phone, &args, root.path(), out).await;
    laptop.shutdown().await;
    phone.shutdown().await;
    result
}

async fn exchange(
    laptop: &NetworkingService,
    phone: &NetworkingService,
    args: &DemoArgs,
    root: &std::path::Path,
    out: &Output,
) -> Result<()> {
    // 1. Pairing by word code.
    let pairing_time = pair(laptop, phone, out).await?;

    // 2. Connect (QUIC + session handshake) and a first encrypted round trip.
    let device = phone.device(laptop.node_id())?;
    let started = Instant::now();
    device.ping().await?;
    let connect_time = started.elapsed();

    // 3. Round trips.
    let mut rtts = Vec::with_capacity(args.pings as usize);
    for _ in 0..args.pings.max(1) {
        rtts.push(device.ping().await?);
    }
    rtts.sort();
    let median = rtts.get(rtts.len() / 2).copied().unwrap_or_default();
    let path = device
        .connection_info()
        .map_or_else(|| "unknown".to_owned(), |info| info.path.to_string());
    out.line(
        "connected",
        &format!(
            "\n2. The phone connects to the laptop: {} (QUIC handshake, session key exchange, first \
             encrypted ping), path {path}.\n   {} encrypted pings: median round trip {}.",
            ms(connect_time),
            rtts.len(),
            us(median)
        ),
        json!({ "connect_ms": connect_time.as_secs_f64() * 1e3, "rtt_median_us": median.as_secs_f64() * 1e6, "path": path }),
    );

    // 4. An application message, answered with an acknowledgement.
    message(laptop, &device, out).await?;

    // 5. A file, verified chunk by chunk and as a whole.
    let report = transfer(laptop, phone, args, root, out).await?;
    let throughput = mib_per_s(report.bytes_transferred, report.duration);
    out.line(
        "summary",
        &format!(
            "\nSummary: pairing {}, connect {}, round trip {} (median of {}), transfer {:.0} MiB/s \
             ({}), path {path}; {BUILD}.{}",
            ms(pairing_time),
            ms(connect_time),
            us(median),
            rtts.len(),
            throughput,
            if args.no_encrypt {
                "TLS only"
            } else {
                "TLS + per-transfer keys"
            },
            if cfg!(debug_assertions) {
                "\n(`cargo run --release -p tether-cli -- demo` shows the release build's figures.)"
            } else {
                ""
            },
        ),
        json!({
            "pairing_ms": pairing_time.as_secs_f64() * 1e3,
            "connect_ms": connect_time.as_secs_f64() * 1e3,
            "rtt_median_us": median.as_secs_f64() * 1e6,
            "transfer_mib_per_s": throughput,
            "transfer_bytes": report.bytes_total,
            "encrypted": !args.no_encrypt,
            "path": path,
            "build": BUILD,
        }),
    );
    Ok(())
}

/// The laptop shows a code, the phone types it in; returns how long pairing took.
async fn pair(
    laptop: &NetworkingService,
    phone: &NetworkingService,
    out: &Output,
) -> Result<Duration> {
    let mut invite = laptop.start_pairing_as_initiator()?;
    out.line(
        "code",
        &format!(
            "\n1. The laptop shows the code   {}\n   and the phone types it in.",
            invite.code
        ),
        json!({ "code": invite.code }),
    );
    let started = Instant::now();
    let code = invite.code.clone();
    let (joined, accepted) = tokio::try_join!(phone.join_pairing(&code), invite.paired())?;
    let pairing_time = started.elapsed();
    // The laptop takes the phone's files without asking: both are this demo's own.
    laptop.set_auto_accept(phone.node_id(), true)?;
    out.line(
        "paired",
        &format!(
            "   Paired in {}. Both screens show the verification code {} / {}.",
            ms(pairing_time),
            joined.verification_code,
            accepted.verification_code
        ),
        json!({ "pairing_ms": pairing_time.as_secs_f64() * 1e3, "verification_code": joined.verification_code }),
    );
    Ok(pairing_time)
}

/// The phone announces a library; the laptop receives it and answers.
async fn message(laptop: &NetworkingService, device: &DeviceHandle, out: &Output) -> Result<()> {
    let mut events = laptop.subscribe();
    let announce = NetworkMessage::LibraryAnnounce(LibraryAnnounce {
        libraries: vec![LibraryInfo {
            id: Uuid::from_u128(0x7e7e_7e7e),
            name: "Photos".to_owned(),
            entry_count: 1234,
            updated: Hlc {
                physical_ms: 1_780_000_000_000,
                logical: 0,
                node: 1,
            },
        }],
    });
    let answer = device.send_message(announce).await?;
    let received = tokio::time::timeout(MESSAGE_WAIT, async {
        loop {
            match events.recv().await {
                Ok(NetworkEvent::MessageReceived { message, .. }) => return Some(message),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    })
    .await
    .ok()
    .flatten()
    .context("the laptop did not receive the message")?;
    let received_text = match &received {
        NetworkMessage::LibraryAnnounce(a) => a
            .libraries
            .iter()
            .map(|l| format!("library \"{}\" with {} entries", l.name, l.entry_count))
            .collect::<Vec<_>>()
            .join(", "),
        other => format!("{other:?}"),
    };
    out.line(
        "message",
        &format!("\n3. The phone announces a library; the laptop receives {received_text} and answers {answer:?}."),
        json!({ "received": format!("{received:?}"), "answer": format!("{answer:?}") }),
    );
    Ok(())
}

async fn transfer(
    laptop: &NetworkingService,
    phone: &NetworkingService,
    args: &DemoArgs,
    root: &std::path::Path,
    out: &Output,
) -> Result<tether::TransferReport> {
    let size = args
        .size
        .max(1)
        .checked_mul(1024 * 1024)
        .context("the demo file size is too large")?;
    let source = root.join("demo.bin");
    let digest = write_demo_file(&source, size)?;
    out.text(&format!(
        "\n4. The phone sends a {} MiB file to the laptop:",
        args.size.max(1)
    ));
    let options = tether::TransferOptions::default().encrypt(!args.no_encrypt);
    let mut handle = phone
        .share_with_device(laptop.node_id(), &[source], options)
        .await?;
    let bar = if out.is_json() {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(size)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("   [{bar:30}] {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    while let Some(event) = handle.events.recv().await {
        if let tether::TransferEvent::Progress(progress) = event {
            bar.set_position(progress.bytes_done);
            bar.set_message(rate_and_eta(
                Some(progress.rate),
                progress.eta.map(|eta| eta.as_secs_f64()),
            ));
        }
    }
    bar.finish_and_clear();
    let report = handle.finish().await?;
    let received = hash_file(&root.join("inbox").join("demo.bin"))?;
    let same = received == digest;
    out.line(
        "transfer",
        &format!(
            "   {} MiB in {} = {:.0} MiB/s, every 256 KiB chunk and the whole file verified with \
             BLAKE3;\n   the received file {} the original.",
            report.bytes_total / (1024 * 1024),
            ms(report.duration),
            mib_per_s(report.bytes_transferred, report.duration),
            if same {
                "is identical to"
            } else {
                "DIFFERS FROM"
            },
        ),
        json!({
            "bytes": report.bytes_total,
            "duration_ms": report.duration.as_secs_f64() * 1e3,
            "mib_per_s": mib_per_s(report.bytes_transferred, report.duration),
            "identical": same,
        }),
    );
    anyhow::ensure!(same, "the received file differs from the original");
    Ok(report)
}

/// Writes `size` bytes of incompressible pseudo-random data (a BLAKE3 keystream); returns
/// their hash.
fn write_demo_file(path: &std::path::Path, size: u64) -> Result<blake3::Hash> {
    use std::io::{Read, Write};
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(path).context("cannot write the demo file")?);
    let mut stream = blake3::Hasher::new_derive_key("tether demo file").finalize_xof();
    let mut hasher = blake3::Hasher::new();
    let mut block = vec![0u8; 1024 * 1024];
    let mut left = size;
    while left > 0 {
        let take = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
        let bytes = block.get_mut(..take).unwrap_or_default();
        stream.read_exact(bytes)?;
        file.write_all(bytes)?;
        hasher.update(bytes);
        left -= take as u64;
    }
    // On disk before the transfer starts: otherwise the kernel writes this file back while
    // the receiver writes and syncs its copy, and the transfer's figure pays for both.
    file.into_inner()
        .map_err(std::io::IntoInnerError::into_error)?
        .sync_all()
        .context("cannot write the demo file")?;
    Ok(hasher.finalize())
}

fn hash_file(path: &std::path::Path) -> Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(std::fs::File::open(path).with_context(|| format!("{}", path.display()))?)
        .with_context(|| format!("{}", path.display()))?;
    Ok(hasher.finalize())
}

fn mib_per_s(bytes: u64, duration: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / duration.as_secs_f64().max(1e-9)
}

fn first_addr(node: &NetworkingService) -> String {
    node.addr()
        .direct
        .first()
        .map_or_else(|| "?".to_owned(), ToString::to_string)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}
