//! tether-transfer end to end over loopback TCP: a 256 MiB file from a sender to a receiver in
//! the same process (both ends share the machine's cores, as two processes would), against a
//! plain `tokio::io::copy` of the same file over the same kind of connection in the same run.
//!
//! `cargo bench -p tether-benches --bench transfer`
//!
//! Files live in `TETHER_BENCH_DIR`, else `/dev/shm` (tmpfs, so the figures are the engine's and
//! not the disk's: the receiver's fsync is then free), else the system temp directory. Each
//! engine iteration includes everything a user waits for: hashing the source (`prepare`), the
//! protocol, verification, the fsync and the rename. The copy baselines write with one fsync
//! at the end too.
//!
//! On a machine shared with other work, criterion's one-benchmark-after-another order lets the
//! load drift between the baseline and the engine. `TETHER_BENCH_INTERLEAVED=<rounds>` instead
//! runs every variant once per round, in rotating order, and prints medians and ratios to the
//! file-to-file copy measured in the same rounds:
//!
//! `TETHER_BENCH_INTERLEAVED=9 cargo bench -p tether-benches --bench transfer`

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_crypto::{
    EphemeralKeyPair, PairingSecret, Role, SessionKeys, SessionSecrets, Transcript,
};
use tether_transfer::{
    AcceptAll, Hello, OutgoingTransfer, Receiver, ReceiverConfig, RunContext, SendOptions,
    TransferCipher,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const SIZE: u64 = 256 << 20;

fn bench_dir() -> tempfile::TempDir {
    let base = std::env::var_os("TETHER_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            Path::new("/dev/shm")
                .is_dir()
                .then(|| PathBuf::from("/dev/shm"))
        });
    match base {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn random_file(path: &Path, size: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut buf = vec![0u8; 1 << 20];
    let mut file = std::fs::File::create(path).unwrap();
    let mut left = size;
    while left > 0 {
        rng.fill_bytes(&mut buf);
        let n = left.min(buf.len() as u64) as usize;
        std::io::Write::write_all(&mut file, &buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// Both ends of one session (`sender`, `receiver`), as a handshake would leave them.
fn session_keys() -> (SessionKeys, SessionKeys) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut random = || {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        bytes
    };
    let pairing = PairingSecret::from_bytes(random());
    let (initiator_id, responder_id) = (random(), random());
    let a = EphemeralKeyPair::danger_from_secret_bytes(random());
    let b = EphemeralKeyPair::danger_from_secret_bytes(random());
    let transcript = Transcript {
        initiator_id,
        responder_id,
        initiator_ephemeral: a.public_key(),
        responder_ephemeral: b.public_key(),
    };
    let sa = a.diffie_hellman(&transcript.responder_ephemeral).unwrap();
    let sb = b.diffie_hellman(&transcript.initiator_ephemeral).unwrap();
    (
        SessionSecrets::derive(&pairing, sa, &transcript).into_session_keys(Role::Initiator),
        SessionSecrets::derive(&pairing, sb, &transcript).into_session_keys(Role::Responder),
    )
}

async fn tcp_pairs(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let (client, server) =
            tokio::join!(TcpStream::connect(("127.0.0.1", port)), listener.accept());
        let client = client.unwrap();
        let server = server.unwrap().0;
        client.set_nodelay(true).unwrap();
        server.set_nodelay(true).unwrap();
        a.push(client);
        b.push(server);
    }
    (a, b)
}

/// One engine transfer of `source` into `dest` (emptied first).
async fn engine_once(
    source: &Path,
    dest: &Path,
    encrypt: bool,
    compress: bool,
    lanes: usize,
    cipher: Option<TransferCipher>,
) {
    let _ = std::fs::remove_file(dest.join(source.file_name().unwrap()));
    let (mut out, inc) = tcp_pairs(lanes).await;
    let id = Uuid::from_u128(1);
    let resolver: HashMap<Uuid, PathBuf> = [(id, source.to_path_buf())].into();
    let mut options = SendOptions::default().encrypt(encrypt).compress(compress);
    if let Some(cipher) = cipher {
        options = options.ciphers([cipher]);
    }
    let peer =
        tether_identity::NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(3)).node_id();
    let receiver = Receiver::new(ReceiverConfig::new(dest).consent(AcceptAll));
    let send = async {
        let outgoing = OutgoingTransfer::prepare(&resolver, &[id], options)
            .await
            .unwrap();
        let mut ctx = RunContext::new();
        if encrypt {
            let (mut keys, _) = session_keys();
            ctx = ctx.keys(
                keys.transfer_secret(outgoing.transfer_id().as_bytes())
                    .unwrap(),
            );
        }
        let control = out.remove(0);
        outgoing.send(control, out, ctx).await.unwrap()
    };
    let receive = async {
        let mut lanes = Vec::new();
        let mut report = None;
        for stream in inc {
            lanes.push(tokio::spawn({
                let receiver = receiver.clone();
                async move {
                    match tether_transfer::read_hello(stream).await.unwrap() {
                        Hello::Offer(offer) => {
                            let mut ctx = RunContext::new();
                            if offer.encrypted() {
                                let (_, mut keys) = session_keys();
                                ctx = ctx.keys(
                                    keys.transfer_secret(offer.transfer_id().as_bytes())
                                        .unwrap(),
                                );
                            }
                            Some(receiver.receive(offer, peer, ctx).await.unwrap())
                        }
                        Hello::Lane(lane) => {
                            receiver.attach(lane, peer).unwrap();
                            None
                        }
                        _ => None,
                    }
                }
            }));
        }
        for lane in lanes {
            if let Some(r) = lane.await.unwrap() {
                report = Some(r);
            }
        }
        report.unwrap()
    };
    let (sent, received) = tokio::join!(send, receive);
    assert_eq!(sent.bytes_verified, SIZE);
    assert_eq!(received.bytes_transferred, SIZE);
}

/// `tokio::io::copy` of the file over one TCP connection into a file, with one fsync at the end.
async fn copy_file_once(source: &Path, dest: &Path) {
    let (mut out, mut inc) = tcp_pairs(1).await;
    let (mut client, mut server) = (out.remove(0), inc.remove(0));
    let target = dest.join("copy.bin");
    let send = async {
        let file = tokio::fs::File::open(source).await.unwrap();
        let mut reader = tokio::io::BufReader::with_capacity(1 << 20, file);
        tokio::io::copy_buf(&mut reader, &mut client).await.unwrap();
        client.shutdown().await.unwrap();
    };
    let receive = async {
        let file = tokio::fs::File::create(&target).await.unwrap();
        let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let n = tokio::io::copy(&mut server, &mut writer).await.unwrap();
        writer.flush().await.unwrap();
        writer.into_inner().sync_all().await.unwrap();
        assert_eq!(n, SIZE);
    };
    tokio::join!(send, receive);
}

/// `tokio::io::copy` of the same bytes from memory to a sink: the connection alone.
async fn copy_memory_once(bytes: &'static [u8]) {
    let (mut out, mut inc) = tcp_pairs(1).await;
    let (mut client, mut server) = (out.remove(0), inc.remove(0));
    let send = async {
        let mut reader = bytes;
        tokio::io::copy(&mut reader, &mut client).await.unwrap();
        client.shutdown().await.unwrap();
    };
    let receive = async {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = server.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        assert_eq!(total, SIZE);
    };
    tokio::join!(send, receive);
}

/// The variants measured, engine ones as (name, encrypt, compress, lanes, the one cipher
/// offered; `None` = the default preference, AES-256-GCM first on CPUs with AES instructions).
const ENGINE: [(&str, bool, bool, usize, Option<TransferCipher>); 7] = [
    ("engine/plain", false, false, 1, None),
    ("engine/encrypted", true, false, 1, None),
    (
        "engine/encrypted_chacha20_poly1305",
        true,
        false,
        1,
        Some(TransferCipher::ChaCha20Poly1305),
    ),
    ("engine/plain_2_lanes", false, false, 2, None),
    ("engine/encrypted_2_lanes", true, false, 2, None),
    ("engine/encrypted_4_lanes", true, false, 4, None),
    ("engine/plain_zstd_incompressible", false, true, 1, None),
];

struct Fixture {
    _dir: tempfile::TempDir,
    source: PathBuf,
    dest: PathBuf,
    bytes: &'static [u8],
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> Fixture {
    let dir = bench_dir();
    eprintln!("bench files in {}", dir.path().display());
    let source = dir.path().join("source.bin");
    random_file(&source, SIZE);
    let dest = dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    let bytes: &'static [u8] = std::fs::read(&source).unwrap().leak();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    Fixture {
        _dir: dir,
        source,
        dest,
        bytes,
        runtime,
    }
}

fn transfer(c: &mut Criterion) {
    let Fixture {
        _dir,
        source,
        dest,
        bytes,
        runtime,
    } = fixture();
    let mut group = c.benchmark_group("transfer_256MiB");
    group.throughput(Throughput::Bytes(SIZE));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.warm_up_time(Duration::from_secs(2));
    group.bench_function("tokio_io_copy/memory_to_sink", |b| {
        b.iter(|| runtime.block_on(copy_memory_once(bytes)));
    });
    group.bench_function("tokio_io_copy/file_to_file", |b| {
        b.iter(|| runtime.block_on(copy_file_once(&source, &dest)));
    });
    for (name, encrypt, compress, lanes, cipher) in ENGINE {
        group.bench_function(name, |b| {
            b.iter(|| {
                runtime.block_on(engine_once(
                    &source, &dest, encrypt, compress, lanes, cipher,
                ));
            });
        });
    }
    group.bench_function("prepare_only (hash 256 MiB)", |b| {
        let id = Uuid::from_u128(1);
        let resolver: HashMap<Uuid, PathBuf> = [(id, source.clone())].into();
        b.iter(|| {
            runtime
                .block_on(OutgoingTransfer::prepare(
                    &resolver,
                    &[id],
                    SendOptions::default(),
                ))
                .unwrap()
        });
    });
    group.finish();
}

/// CPU time this process has used (user + system), from `/proc/self/stat`, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Every variant once per round, rotating the order; medians and ratios to the file copy, and
/// the CPU time both ends used (less sensitive to other load than wall time).
fn interleaved(rounds: usize) {
    let f = fixture();
    let mut names = vec!["tokio_io_copy/memory_to_sink", "tokio_io_copy/file_to_file"];
    names.extend(ENGINE.iter().map(|e| e.0));
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut cpu: Vec<f64> = vec![0.0; names.len()];
    for round in 0..rounds {
        for k in 0..names.len() {
            let i = (k + round) % names.len();
            let start = Instant::now();
            let cpu_start = cpu_seconds();
            match i {
                0 => f.runtime.block_on(copy_memory_once(f.bytes)),
                1 => f.runtime.block_on(copy_file_once(&f.source, &f.dest)),
                _ => {
                    let (_, encrypt, compress, lanes, cipher) = ENGINE[i - 2];
                    f.runtime.block_on(engine_once(
                        &f.source, &f.dest, encrypt, compress, lanes, cipher,
                    ));
                }
            }
            times[i].push(start.elapsed().as_secs_f64());
            cpu[i] += cpu_seconds() - cpu_start;
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    let mib = SIZE as f64 / 1048576.0;
    eprintln!(
        "{rounds} interleaved rounds, 256 MiB each: median wall time, rate, ratio to file_to_file; \
         mean CPU time of both ends, ratio to file_to_file"
    );
    let copy_cpu = cpu[1] / rounds as f64;
    for ((name, t), c) in names.iter().zip(&medians).zip(&cpu) {
        let c = c / rounds as f64;
        eprintln!(
            "{name:40} {:8.1} ms {:7.0} MiB/s {:5.2}x | cpu {:6.0} ms {:5.2}x",
            t * 1000.0,
            mib / t,
            medians[1] / t,
            c * 1000.0,
            c / copy_cpu
        );
    }
}

criterion_group!(benches, transfer);

fn main() {
    if let Some(rounds) = std::env::var("TETHER_BENCH_INTERLEAVED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        interleaved(rounds);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
