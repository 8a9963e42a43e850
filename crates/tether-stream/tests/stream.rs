//! `tether-stream/1` end to end: real local-only services (127.0.0.1, no relays, no mDNS)
//! paired by word code, a real file shared by the owner, read by the other device; a stranger
//! and an unpaired device turned away by the gate; a chunk corrupted on the owner's disk after
//! hashing; and a real player (Debian's `ffmpeg`/`ffprobe`) on the HTTP server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tether::chunks::CHUNK_SIZE;
use tether::{
    DeviceInfo, DeviceName, NetworkError, NetworkingConfig, NetworkingService, ShareProvider,
    SharedEntry,
};
use tether_stream::wire::{Refusal, Request};
use tether_stream::{
    HttpServer, OpenRemote, ReaderOptions, RemoteFile, STREAM_ALPN, StreamError, StreamServer,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

const CHUNK: usize = CHUNK_SIZE as usize;

/// Shares the files it was given, with every paired device; counts the lookups.
#[derive(Debug, Default)]
struct Shelf {
    entries: Mutex<HashMap<Uuid, PathBuf>>,
    lookups: AtomicUsize,
}

impl Shelf {
    fn share(&self, path: &Path) -> Uuid {
        let id = tether::entry_id(path);
        self.entries.lock().insert(id, path.to_path_buf());
        id
    }
}

impl ShareProvider for Shelf {
    fn resolve(&self, _from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().get(&entry_id).map(SharedEntry::new)
    }
}

struct Lab {
    root: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn config(&self, name: &str) -> NetworkingConfig {
        NetworkingConfig::local_only(self.root.path().join(name))
            .with_device_name(DeviceName::new(name).unwrap())
            .with_loopback_discovery(self.root.path().join("discovery"))
            .with_insecure_key_file()
    }

    /// A device that streams what `shelf` holds.
    async fn owner(&self, name: &str, shelf: &Arc<Shelf>) -> NetworkingService {
        let provider: Arc<dyn ShareProvider> = Arc::clone(shelf) as _;
        NetworkingService::builder(self.root.path().join(name))
            .configure(|config| *config = self.config(name))
            .configure(|config| config.share_provider = Arc::clone(&provider))
            .protocol(StreamServer::new(provider))
            .spawn()
            .await
            .unwrap()
    }

    async fn device(&self, name: &str) -> NetworkingService {
        NetworkingService::start(self.config(name)).await.unwrap()
    }

    /// A file of `len` bytes no two chunks of which are alike.
    fn file(&self, name: &str, len: usize) -> PathBuf {
        let path = self.root.path().join(name);
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_left(13) as u8)
            .collect();
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

async fn pair(initiator: &NetworkingService, joiner: &NetworkingService) {
    let mut invite = initiator.start_pairing_as_initiator().unwrap();
    joiner.join_pairing(&invite.code).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), invite.paired())
        .await
        .unwrap()
        .unwrap();
}

/// The stream error inside an IO error from a [`RemoteFile`].
fn stream_error(error: &std::io::Error) -> &StreamError {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<StreamError>())
        .unwrap_or_else(|| panic!("not a stream error: {error:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_and_an_unpaired_device_are_refused_before_the_handler_runs() {
    let lab = Lab::new();
    let shelf = Arc::new(Shelf::default());
    let owner = lab.owner("owner", &shelf).await;
    let entry = shelf.share(&lab.file("film.bin", 1000));

    // A stranger: a plain iroh client whose key nobody paired.
    let stranger = iroh::Endpoint::builder(iroh::endpoint::presets::Minimal)
        .relay_mode(iroh::RelayMode::Disabled)
        .clear_ip_transports()
        .bind_addr("127.0.0.1:0")
        .unwrap()
        .bind()
        .await
        .unwrap();
    let addr = owner.addr();
    let id = iroh::EndpointId::from_bytes(addr.node_id.as_bytes()).unwrap();
    let target = iroh::EndpointAddr::new(id).with_ip_addr(addr.direct[0]);
    let connection = stranger.connect(target, STREAM_ALPN).await.unwrap();
    let asked = async {
        let (mut send, mut recv) = connection.open_bi().await?;
        send.write_all(&Request::Open { entry }.encode()).await?;
        send.finish()?;
        anyhow::Ok(recv.read_to_end(1024).await?)
    };
    assert!(asked.await.is_err(), "the stranger got an answer");
    assert_eq!(shelf.lookups.load(Ordering::SeqCst), 0, "the handler ran");

    // Paired, the device reads (the control: zero lookups above means refused, not broken).
    let phone = lab.device("phone").await;
    pair(&owner, &phone).await;
    let device = phone.device(owner.node_id()).unwrap();
    let mut file = device.open_remote(entry).await.unwrap();
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).await.unwrap();
    assert_eq!(
        bytes,
        std::fs::read(lab.root.path().join("film.bin")).unwrap()
    );
    let lookups = shelf.lookups.load(Ordering::SeqCst);
    assert!(lookups > 0);

    // Unpaired on the owner: its gate closes the connection before the handler runs.
    owner.unpair(phone.node_id()).unwrap();
    let refused = device.open_remote(entry).await.unwrap_err();
    match &refused {
        StreamError::Network(error) => assert!(
            matches!(**error, NetworkError::Refused { code, .. } if code == tether::gate::CLOSE_REVOKED),
            "{error:?}"
        ),
        other => panic!("not refused by the gate: {other:?}"),
    }
    assert_eq!(
        shelf.lookups.load(Ordering::SeqCst),
        lookups,
        "the handler ran"
    );

    stranger.close().await;
    phone.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_seeks_return_the_files_bytes_and_only_shared_files_open() {
    let lab = Lab::new();
    let shelf = Arc::new(Shelf::default());
    let owner = lab.owner("owner", &shelf).await;
    let phone = lab.device("phone").await;
    pair(&owner, &phone).await;
    let len = 3 * CHUNK + 12_345;
    let path = lab.file("film.bin", len);
    let expected = std::fs::read(&path).unwrap();
    let entry = shelf.share(&path);
    let device = phone.device(owner.node_id()).unwrap();

    let mut file = device.open_remote(entry).await.unwrap();
    assert_eq!(file.size(), len as u64);
    assert_eq!(file.hash(), *blake3::hash(&expected).as_bytes());
    let mut all = Vec::new();
    file.read_to_end(&mut all).await.unwrap();
    assert!(all == expected, "the bytes read differ from the file's");

    // Seeks anywhere, reads across chunk borders, and past the end.
    for (from, want) in [
        (SeekFrom::Start(CHUNK as u64 - 10), 20),
        (SeekFrom::End(-100), 100),
        (SeekFrom::Start(5), 3 * CHUNK),
        (SeekFrom::Current(-7), 7),
    ] {
        let at = file.seek(from).await.unwrap() as usize;
        let mut got = vec![0u8; want];
        file.read_exact(&mut got).await.unwrap();
        assert!(got == expected[at..at + want], "at {at}");
    }
    file.seek(SeekFrom::End(10)).await.unwrap();
    assert_eq!(file.read(&mut [0u8; 8]).await.unwrap(), 0);
    assert!(
        file.seek(SeekFrom::Current(-(len as i64) - 100))
            .await
            .is_err()
    );

    // A second reader shares the cache; its position is its own.
    let mut tail = Vec::new();
    file.reader_at(len as u64 - 3)
        .read_to_end(&mut tail)
        .await
        .unwrap();
    assert_eq!(tail, expected[len - 3..]);

    // An id the owner does not share, and a directory, are refused before anything is read.
    let unshared = device.open_remote(Uuid::new_v4()).await.unwrap_err();
    assert!(
        matches!(unshared, StreamError::Refused(Refusal::NotShared)),
        "{unshared:?}"
    );
    let folder = shelf.share(lab.root.path());
    let refused = device.open_remote(folder).await.unwrap_err();
    assert!(
        matches!(refused, StreamError::Refused(Refusal::NotAFile)),
        "{refused:?}"
    );

    phone.shutdown().await;
    owner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_corrupted_after_hashing_is_an_error_never_data() {
    let lab = Lab::new();
    let shelf = Arc::new(Shelf::default());
    let owner = lab.owner("owner", &shelf).await;
    let phone = lab.device("phone").await;
    pair(&owner, &phone).await;
    let path = lab.file("film.bin", 4 * CHUNK);
    let expected = std::fs::read(&path).unwrap();
    let entry = shelf.share(&path);
    let device = phone.device(owner.node_id()).unwrap();
    let mut options = ReaderOptions::default();
    options.read_ahead = 0; // nothing fetched before it is asked for
    let mut file = RemoteFile::open(&device, entry, options).await.unwrap();
    let mut first = vec![0u8; 100];
    file.read_exact(&mut first).await.unwrap();

    // The owner's disk changes chunk 2 behind its back: same size, same modification time.
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    {
        let disk = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&disk, b"rot", 2 * CHUNK as u64 + 77).unwrap();
        disk.set_modified(modified).unwrap();
    }
    file.seek(SeekFrom::Start(2 * CHUNK as u64)).await.unwrap();
    let mut buf = vec![0u8; 1000];
    let error = file.read(&mut buf).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
    assert!(
        matches!(stream_error(&error), StreamError::Corrupt { chunk: 2 }),
        "{error:?}"
    );
    assert!(
        buf.iter().all(|&b| b == 0),
        "bytes of the corrupt chunk were returned"
    );
    // The chunks around it still read.
    file.seek(SeekFrom::Start(3 * CHUNK as u64)).await.unwrap();
    file.read_exact(&mut buf).await.unwrap();
    assert!(buf == expected[3 * CHUNK..3 * CHUNK + 1000]);

    // Changed in the open (a new modification time): the owner says so.
    std::fs::write(&path, vec![1u8; 4 * CHUNK]).unwrap();
    file.seek(SeekFrom::Start(CHUNK as u64)).await.unwrap();
    let error = file.read(&mut buf).await.unwrap_err();
    assert!(
        matches!(stream_error(&error), StreamError::Refused(Refusal::Changed)),
        "{error:?}"
    );

    phone.shutdown().await;
    owner.shutdown().await;
}

/// `ffmpeg` and `ffprobe`, installed from Debian when missing and this runs as root.
fn ensure_ffmpeg() {
    let present = |tool: &str| {
        std::process::Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if present("ffmpeg") && present("ffprobe") {
        return;
    }
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0");
    assert!(
        root,
        "ffmpeg is missing: apt-get install ffmpeg (Debian package `ffmpeg`)"
    );
    let installed = std::process::Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "ffmpeg"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .unwrap();
    assert!(
        installed.success() && present("ffprobe"),
        "could not install ffmpeg"
    );
}

/// Runs `program` with `args`; its standard output.
async fn run(program: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The decoded frames' checksums of `input` (from `seek` seconds), without the header lines.
async fn frames(input: &str, seek: Option<&str>) -> Vec<String> {
    let mut args = vec!["-v", "error", "-nostdin"];
    if let Some(at) = seek {
        args.extend(["-ss", at]);
    }
    args.extend(["-i", input, "-an", "-f", "framemd5", "-"]);
    let out = run("ffmpeg", &args).await;
    out.lines()
        .filter(|line| !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// A 10 s test video (MPEG-4 part 2 with temporal noise, so it does not shrink to nothing: about
/// 7 MB, 27 chunks) with its index at the end, so a player must seek to probe it.
async fn video(dir: &Path) -> PathBuf {
    let path = dir.join("testsrc.mp4");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-nostdin",
            "-f",
            "lavfi",
            "-i",
            "testsrc=duration=10:size=320x240:rate=25",
            "-vf",
            "noise=alls=12:allf=t",
            "-c:v",
            "mpeg4",
            "-q:v",
            "3",
            "-g",
            "25",
            path.to_str().unwrap(),
        ],
    )
    .await;
    path
}

/// One raw HTTP request to `addr`; the status line.
async fn status_line(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_plays_the_stream_frame_for_frame_like_the_local_file() {
    ensure_ffmpeg();
    let lab = Lab::new();
    let video = video(lab.root.path()).await;
    assert!(std::fs::metadata(&video).unwrap().len() > 4 * CHUNK as u64);
    let shelf = Arc::new(Shelf::default());
    let owner = lab.owner("owner", &shelf).await;
    let phone = lab.device("phone").await;
    pair(&owner, &phone).await;
    let entry = shelf.share(&video);
    let file = phone
        .device(owner.node_id())
        .unwrap()
        .open_remote(entry)
        .await
        .unwrap();
    let server = HttpServer::start(file, "testsrc.mp4", 0).await.unwrap();
    let url = server.url().to_owned();

    let probed = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width,height,nb_frames",
            "-of",
            "csv=p=0",
            &url,
        ],
    )
    .await;
    assert_eq!(probed.trim(), "mpeg4,320,240,250");
    let local = video.to_str().unwrap();
    let streamed = frames(&url, None).await;
    assert_eq!(streamed.len(), 250);
    assert!(streamed == frames(local, None).await, "the frames differ");
    let near_end = frames(&url, Some("9")).await;
    assert!(
        !near_end.is_empty() && near_end.len() < 50,
        "{}",
        near_end.len()
    );
    assert!(
        near_end == frames(local, Some("9")).await,
        "the frames after the seek differ"
    );

    // Without the token: nothing.
    let path = url
        .split_once(&server.addr().to_string())
        .unwrap()
        .1
        .to_owned();
    assert!(status_line(server.addr(), &path).await.contains(" 200 "));
    assert!(
        status_line(server.addr(), "/testsrc.mp4")
            .await
            .contains(" 404 ")
    );
    let wrong = format!("/{}/testsrc.mp4", "0".repeat(32));
    assert!(status_line(server.addr(), &wrong).await.contains(" 404 "));

    drop(server);
    phone.shutdown().await;
    owner.shutdown().await;
}

/// The figures for BENCHMARKS.md, on loopback (both devices in this process):
/// `cargo test -p tether-stream --test stream -- --ignored --nocapture figures`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run by hand"]
async fn figures() {
    ensure_ffmpeg();
    let lab = Lab::new();
    let video = video(lab.root.path()).await;
    let shelf = Arc::new(Shelf::default());
    let owner = lab.owner("owner", &shelf).await;
    let phone = lab.device("phone").await;
    pair(&owner, &phone).await;
    let entry = shelf.share(&video);
    let device = phone.device(owner.node_id()).unwrap();
    for round in 0..3 {
        let started = Instant::now();
        let mut file = device.open_remote(entry).await.unwrap();
        let mut byte = [0u8; 1];
        file.read_exact(&mut byte).await.unwrap();
        let first_byte = started.elapsed();
        let seek = Instant::now();
        file.seek(SeekFrom::End(-1000)).await.unwrap();
        file.read_exact(&mut byte).await.unwrap();
        let seek = seek.elapsed();
        drop(file);
        // The player gets a file opened afresh: nothing fetched above is in its cache.
        let probe = Instant::now();
        let fresh = device.open_remote(entry).await.unwrap();
        let server = HttpServer::start(fresh, "testsrc.mp4", 0).await.unwrap();
        run("ffprobe", &["-v", "error", "-show_format", server.url()]).await;
        let probe = probe.elapsed();
        let local = Instant::now();
        run(
            "ffprobe",
            &["-v", "error", "-show_format", video.to_str().unwrap()],
        )
        .await;
        let local = local.elapsed();
        println!(
            "round {round}: first byte {first_byte:?}, seek to the end and read {seek:?}, \
             ffprobe {probe:?} (the local file: {local:?})"
        );
    }
    phone.shutdown().await;
    owner.shutdown().await;
}
