//! Helpers shared by the integration tests: files, hashes, keys, TCP on 127.0.0.1, and child
//! processes (this test binary re-run with `TETHER_T_ROLE` set) acting as a receiving or sending
//! device, so tests cross real process boundaries and can SIGKILL a side.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::indexing_slicing,
    missing_docs,
    clippy::panic,
    clippy::needless_pass_by_value
)]

use std::collections::HashMap;
use std::env;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use tether_crypto::{Role, SessionKeys, SessionSecrets, TransferCipher, TransferSecret};
use tether_identity::{NetworkIdentity, NodeId};
use tether_transfer::{
    AcceptAll, CancellationToken, Hello, OutgoingTransfer, Receiver, ReceiverConfig, RunContext,
    SendOptions, TransferError, TransferEvent, TransferReport,
};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

pub mod pair;

pub const ROLE: &str = "TETHER_T_ROLE";

/// A file of `size` pseudo-random bytes from `seed`.
pub fn random_file(path: &Path, size: u64, seed: u64) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut file = fs::File::create(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        file.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
}

/// The BLAKE3 hash of a file.
pub fn hash_file(path: &Path) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(fs::File::open(path).unwrap()).unwrap();
    *hasher.finalize().as_bytes()
}

/// Every file under `root` (relative path → hash), for comparing trees.
pub fn tree_hashes(root: &Path) -> HashMap<String, [u8; 32]> {
    let mut out = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{rel}/"), [0; 32]);
                stack.push(path);
            } else {
                out.insert(rel, hash_file(&path));
            }
        }
    }
    out
}

/// Names in `dir` that are the engine's own leftovers.
pub fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(listing) = fs::read_dir(&d) else {
            continue;
        };
        for entry in listing {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                stack.push(path);
            } else if name.contains(".tether-") {
                found.push(name);
            }
        }
    }
    found
}

/// A device identity from a seed.
pub fn node_id(seed: u64) -> NodeId {
    NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(seed)).node_id()
}

/// Both ends of one session, derived from `seed`: `(sender's, receiver's)`.
pub fn session_keys(seed: u64) -> (SessionKeys, SessionKeys) {
    let [sender, receiver] = SessionSecrets::danger_pair_from_seed(seed).unwrap();
    (
        sender.into_session_keys(Role::Initiator),
        receiver.into_session_keys(Role::Responder),
    )
}

/// The per-transfer secret of one side, as the service would derive it.
pub fn transfer_keys(seed: u64, sender: bool, transfer_id: Uuid) -> TransferSecret {
    let (mut s, mut r) = session_keys(seed);
    let keys = if sender { &mut s } else { &mut r };
    keys.transfer_secret(transfer_id.as_bytes()).unwrap()
}

/// A listener on 127.0.0.1 and its port.
pub async fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// `n` connections to 127.0.0.1:`port`.
pub async fn connect(port: u16, n: usize) -> std::io::Result<Vec<TcpStream>> {
    let mut streams = Vec::new();
    for _ in 0..n {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// How a test runs one side.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub key_seed: Option<u64>,
    pub lanes: usize,
    pub compress: bool,
    pub rate: Option<u64>,
    pub checkpoint_ms: Option<u64>,
    pub progress_ms: Option<u64>,
    pub cancel_at: Option<u64>,
    pub transfer_id: Option<Uuid>,
    pub no_space_check: bool,
    pub overwrite: bool,
    /// The one cipher the sender offers (default: its usual preference list).
    pub cipher: Option<TransferCipher>,
    /// The stall bound, both sides (default: the engine's).
    pub stall_ms: Option<u64>,
}

impl Setup {
    fn to_env(&self, cmd: &mut Command) {
        if let Some(seed) = self.key_seed {
            cmd.env("TETHER_T_KEYSEED", seed.to_string());
        }
        cmd.env("TETHER_T_LANES", self.lanes.max(1).to_string());
        if self.compress {
            cmd.env("TETHER_T_COMPRESS", "1");
        }
        if let Some(rate) = self.rate {
            cmd.env("TETHER_T_RATE", rate.to_string());
        }
        if let Some(ms) = self.checkpoint_ms {
            cmd.env("TETHER_T_CHECKPOINT_MS", ms.to_string());
        }
        if let Some(ms) = self.progress_ms {
            cmd.env("TETHER_T_PROGRESS_MS", ms.to_string());
        }
        if let Some(at) = self.cancel_at {
            cmd.env("TETHER_T_CANCEL_AT", at.to_string());
        }
        if let Some(id) = self.transfer_id {
            cmd.env("TETHER_T_TRANSFER_ID", id.to_string());
        }
        if self.no_space_check {
            cmd.env("TETHER_T_NO_SPACE_CHECK", "1");
        }
        if self.overwrite {
            cmd.env("TETHER_T_OVERWRITE", "1");
        }
        if let Some(cipher) = self.cipher {
            cmd.env("TETHER_T_CIPHER", cipher.wire_id().to_string());
        }
        if let Some(ms) = self.stall_ms {
            cmd.env("TETHER_T_STALL_MS", ms.to_string());
        }
    }

    fn from_env() -> Setup {
        let num = |name: &str| env::var(name).ok().map(|v| v.parse::<u64>().unwrap());
        Setup {
            key_seed: num("TETHER_T_KEYSEED"),
            lanes: num("TETHER_T_LANES").unwrap_or(1) as usize,
            compress: env::var("TETHER_T_COMPRESS").is_ok(),
            rate: num("TETHER_T_RATE"),
            checkpoint_ms: num("TETHER_T_CHECKPOINT_MS"),
            progress_ms: num("TETHER_T_PROGRESS_MS"),
            cancel_at: num("TETHER_T_CANCEL_AT"),
            transfer_id: env::var("TETHER_T_TRANSFER_ID")
                .ok()
                .map(|v| v.parse().unwrap()),
            no_space_check: env::var("TETHER_T_NO_SPACE_CHECK").is_ok(),
            overwrite: env::var("TETHER_T_OVERWRITE").is_ok(),
            cipher: num("TETHER_T_CIPHER")
                .map(|id| TransferCipher::from_wire_id(u8::try_from(id).unwrap()).unwrap()),
            stall_ms: num("TETHER_T_STALL_MS"),
        }
    }

    /// The receiver configuration for `dest`.
    pub fn receiver_config(&self, dest: &Path) -> ReceiverConfig {
        let mut config = ReceiverConfig::new(dest)
            .consent(AcceptAll)
            .check_free_space(!self.no_space_check)
            .overwrite(self.overwrite);
        if let Some(ms) = self.checkpoint_ms {
            config = config.checkpoint_interval(Duration::from_millis(ms));
        }
        if let Some(ms) = self.progress_ms {
            config = config.progress_interval(Duration::from_millis(ms));
        }
        if let Some(ms) = self.stall_ms {
            config = config.stall_timeout(Duration::from_millis(ms));
        }
        config
    }

    pub fn send_options(&self) -> SendOptions {
        let mut options = SendOptions::default();
        if let Some(cipher) = self.cipher {
            options = options.ciphers([cipher]);
        }
        if let Some(ms) = self.stall_ms {
            options = options.stall_timeout(Duration::from_millis(ms));
        }
        options
            .encrypt(self.key_seed.is_some())
            .compress(self.compress)
            .rate_limit(self.rate)
    }
}

/// The sender's id for the shared root entry.
pub const ROOT_ENTRY: Uuid = Uuid::from_u128(0x7e7e_7e7e);

/// Sends `source` (file or directory) to 127.0.0.1:`port` over `setup.lanes` connections.
pub async fn send_to(
    port: u16,
    source: &Path,
    setup: &Setup,
) -> Result<TransferReport, TransferError> {
    let resolver: HashMap<Uuid, PathBuf> = [(ROOT_ENTRY, source.to_path_buf())].into();
    let mut outgoing =
        OutgoingTransfer::prepare(&resolver, &[ROOT_ENTRY], setup.send_options()).await?;
    if let Some(id) = setup.transfer_id {
        outgoing = outgoing.with_transfer_id(id);
    }
    let mut streams = connect(port, setup.lanes.max(1))
        .await
        .map_err(TransferError::Link)?;
    let control = streams.remove(0);
    let mut ctx = RunContext::new();
    if let Some(seed) = setup.key_seed {
        ctx = ctx.keys(transfer_keys(seed, true, outgoing.transfer_id()));
    }
    outgoing.send(control, streams, ctx).await
}

/// Serves incoming streams on `listener` into a receiver until one transfer ends; returns its
/// result. Progress events go to `on_progress`.
pub async fn serve_one(
    listener: TcpListener,
    receiver: Receiver,
    setup: Setup,
    on_progress: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<TransferReport, TransferError> {
    let peer = node_id(1);
    let (result_tx, mut result_rx) = tokio::sync::mpsc::channel(1);
    loop {
        tokio::select! {
            result = result_rx.recv() => return result.unwrap(),
            accepted = listener.accept() => {
                let (stream, _) = accepted.unwrap();
                stream.set_nodelay(true).unwrap();
                // Each stream on its own task, as the service does: a lane's hello may come
                // only after its transfer was accepted on another stream.
                let (receiver, setup, progress, result_tx) =
                    (receiver.clone(), setup.clone(), on_progress.clone(), result_tx.clone());
                tokio::spawn(async move {
                    match tether_transfer::read_hello(stream).await {
                        Ok(Hello::Offer(offer)) => {
                            let (events_tx, mut events_rx) = tokio::sync::mpsc::channel(1024);
                            let cancel = CancellationToken::new();
                            let mut ctx =
                                RunContext::new().events(events_tx).cancel(cancel.clone());
                            if let Some(seed) = setup.key_seed {
                                ctx = ctx.keys(transfer_keys(seed, false, offer.transfer_id()));
                            }
                            let cancel_at = setup.cancel_at;
                            tokio::spawn(async move {
                                while let Some(event) = events_rx.recv().await {
                                    if let TransferEvent::Progress(p) = event {
                                        progress(p.bytes_done);
                                        if cancel_at.is_some_and(|at| p.bytes_done >= at) {
                                            cancel.cancel();
                                        }
                                    }
                                }
                            });
                            let result = receiver.receive(offer, peer, ctx).await;
                            let _ = result_tx.send(result).await;
                        }
                        // A lane that comes after its transfer ended is simply dropped.
                        Ok(Hello::Lane(lane)) => drop(receiver.attach(lane, peer)),
                        Ok(_) => panic!("unknown hello"),
                        Err(error) => {
                            let _ = result_tx.send(Err(error)).await;
                        }
                    }
                });
            }
        }
    }
}

/// One whole transfer of `source` into `dest` over 127.0.0.1 under `setup`: the sender's and
/// the receiver's results.
pub async fn transfer(
    source: &Path,
    dest: &Path,
    setup: &Setup,
) -> (
    Result<TransferReport, TransferError>,
    Result<TransferReport, TransferError>,
) {
    let (listener, port) = listen().await;
    let receiver = Receiver::new(setup.receiver_config(dest));
    let server = tokio::spawn(serve_one(
        listener,
        receiver,
        setup.clone(),
        Arc::new(|_| {}),
    ));
    let sent = send_to(port, source, setup).await;
    (sent, server.await.unwrap())
}

/// The child's body: runs the role named by `TETHER_T_ROLE`, prints, and exits. Does nothing in
/// a normal test run.
pub fn child_entry() {
    let Ok(role) = env::var(ROLE) else { return };
    if let Ok(limit) = env::var(NOFILE_VAR) {
        lower_open_files(limit.parse().unwrap());
    }
    let setup = Setup::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async {
        match role.as_str() {
            "receive" => {
                let dest = PathBuf::from(env::var("TETHER_T_DEST").unwrap());
                let (listener, port) = listen().await;
                say(&format!("port {port}"));
                let receiver = Receiver::new(setup.receiver_config(&dest));
                serve_one(
                    listener,
                    receiver,
                    setup,
                    Arc::new(|done| say(&format!("progress {done}"))),
                )
                .await
            }
            "send" => {
                let src = PathBuf::from(env::var("TETHER_T_SRC").unwrap());
                let port: u16 = env::var("TETHER_T_PORT").unwrap().parse().unwrap();
                send_to(port, &src, &setup).await
            }
            other => panic!("unknown role {other}"),
        }
    });
    match result {
        Ok(report) => say(&format!(
            "report {}",
            serde_json::to_string(&report).unwrap()
        )),
        Err(error) => say(&format!("error {} {error} {error:?}", error.is_resumable())),
    }
    say(&format!("rss {}", peak_rss_kib().unwrap_or(0)));
    std::process::exit(0);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The harness has printed "test child ... " without a newline: start a fresh line.
    writeln!(out, "\n{line}").unwrap();
    out.flush().unwrap();
}

/// The soft `RLIMIT_NOFILE` a child lowers itself to before it starts, when set.
pub const NOFILE_VAR: &str = "TETHER_T_NOFILE";

fn lower_open_files(limit: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let hard = getrlimit(Resource::Nofile).maximum;
    let soft = Rlimit {
        current: Some(limit),
        maximum: hard,
    };
    setrlimit(Resource::Nofile, soft).unwrap();
}

/// A child process and the lines it prints.
pub struct ChildProc {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    reader: Option<thread::JoinHandle<()>>,
}

impl ChildProc {
    /// Starts this test binary as a `role` child with `vars`.
    pub fn start(test_name: &str, role: &str, vars: &[(&str, String)], setup: &Setup) -> ChildProc {
        let mut cmd = Command::new(env::current_exe().unwrap());
        cmd.args(["--exact", test_name, "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        setup.to_env(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProc {
            child,
            lines: rx,
            reader: Some(reader),
        }
    }

    /// The next line starting with `prefix`, within `timeout`.
    pub fn wait_for(&self, prefix: &str, timeout: Duration) -> Option<String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(std::time::Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => {
                    return Some(line[prefix.len()..].trim().to_owned());
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The final line: the report, or the error text.
    pub fn outcome(&self, timeout: Duration) -> Result<TransferReport, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline
                .checked_duration_since(std::time::Instant::now())
                .ok_or("timed out")?;
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with("report ") => {
                    return Ok(serde_json::from_str(&line["report ".len()..]).unwrap());
                }
                Ok(line) if line.starts_with("error ") => return Err(line),
                Ok(_) => {}
                Err(_) => return Err("child ended without an outcome".into()),
            }
        }
    }

    /// SIGKILL: no destructors, no flush.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }

    pub fn wait(mut self) {
        self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
    }
}

/// A receiver in a child process (the test named `child` of the calling test binary) writing
/// into `dest`, and the port it listens on.
pub fn start_receiver(dest: &Path, setup: &Setup) -> (ChildProc, u16) {
    let child = ChildProc::start(
        "child",
        "receive",
        &[("TETHER_T_DEST", dest.display().to_string())],
        setup,
    );
    let port = child
        .wait_for("port", Duration::from_secs(30))
        .expect("child receiver did not start")
        .parse()
        .unwrap();
    (child, port)
}

/// Peak resident memory of this process in KiB (Linux `VmHWM`).
pub fn peak_rss_kib() -> Option<u64> {
    let mut status = String::new();
    fs::File::open("/proc/self/status")
        .ok()?
        .read_to_string(&mut status)
        .ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
