//! What the parts of a run share: the lab (work directory, logs, the servers it starts and the
//! clients it runs) and the files they send.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::child::{Server, args, client};
use crate::raw::RawIo;

pub(crate) const MIB: u64 = 1 << 20;
pub(crate) const GIB: u64 = 1 << 30;

/// What the parts of a run share: the processes and the run's settings.
pub(crate) struct Cx {
    pub(crate) lab: Lab,
    pub(crate) tether: Server,
    pub(crate) raw: Server,
    pub(crate) work: PathBuf,
    /// The big transfer's size.
    pub(crate) big: u64,
    pub(crate) reps: usize,
    pub(crate) quick: bool,
}

/// The run's work directory, its logs and the clients' JSON results.
pub(crate) struct Lab {
    work: PathBuf,
    tether_port: u16,
    logs: PathBuf,
    pub(crate) discovery: PathBuf,
    log_count: usize,
    pub(crate) raw_json: Vec<(String, Value)>,
}

impl Lab {
    /// A lab in `work`, with a free port for the Tether server.
    pub(crate) fn new(work: PathBuf) -> Result<Self> {
        let lab = Lab {
            logs: work.join("logs"),
            discovery: work.join("discovery"),
            tether_port: std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
            work,
            log_count: 0,
            raw_json: Vec::new(),
        };
        std::fs::create_dir_all(&lab.logs)?;
        Ok(lab)
    }

    pub(crate) fn log(&mut self, name: &str) -> PathBuf {
        self.log_count += 1;
        self.logs.join(format!("{:04}-{name}.log", self.log_count))
    }

    pub(crate) fn client(&mut self, name: &str, argv: Vec<OsString>) -> Result<Value> {
        let log = self.log(name);
        let mut full = args(&["client"]);
        full.extend(argv);
        let value = client(name, &full, &log)?;
        self.raw_json.push((name.to_owned(), value.clone()));
        Ok(value)
    }

    pub(crate) fn server(&mut self, name: &str, argv: Vec<OsString>) -> Result<Server> {
        let log = self.log(name);
        let mut full = args(&["serve"]);
        full.extend(argv);
        Server::start(name, &full, &log)
    }

    pub(crate) fn tether_server(&mut self) -> Result<Server> {
        self.tether_server_at("server", Vec::new())
    }

    pub(crate) fn tether_server_at(&mut self, name: &str, extra: Vec<OsString>) -> Result<Server> {
        let dir = self.work.join(name);
        let receive = self.work.join("received");
        let discovery = self.discovery.clone();
        let port = if extra.is_empty() {
            self.tether_port
        } else {
            std::net::UdpSocket::bind("127.0.0.1:0")?
                .local_addr()?
                .port()
        };
        let mut argv: Vec<OsString> = vec![
            "tether".into(),
            "--dir".into(),
            dir.into(),
            "--discovery".into(),
            discovery.into(),
            "--receive".into(),
            receive.into(),
            "--port".into(),
            port.to_string().into(),
        ];
        argv.extend(extra);
        self.server("tether-server", argv)
    }

    pub(crate) fn raw_server(&mut self) -> Result<Server> {
        let dir = self.work.join("raw-received");
        self.server("raw-server", vec!["raw".into(), "--dir".into(), dir.into()])
    }

    pub(crate) fn blobs_server(&mut self, name: &str) -> Result<Server> {
        let dir = self.work.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        self.server(
            "blobs-server",
            vec!["blobs".into(), "--dir".into(), dir.into()],
        )
    }

    pub(crate) fn tether_client_args(&self, name: &str) -> Vec<OsString> {
        vec![
            "--dir".into(),
            self.work.join(name).into(),
            "--discovery".into(),
            self.discovery.clone().into(),
        ]
    }

    /// Where the Tether server receives.
    pub(crate) fn received(&self) -> PathBuf {
        self.work.join("received")
    }

    pub(crate) fn clear_received(&self) -> Result<()> {
        let dir = self.received();
        if dir.exists() {
            for entry in std::fs::read_dir(&dir)? {
                let path = entry?.path();
                if path.is_dir() {
                    std::fs::remove_dir_all(&path)?;
                } else {
                    std::fs::remove_file(&path)?;
                }
            }
        }
        Ok(())
    }

    /// Tether sends `paths`; seconds.
    pub(crate) fn tether_send(
        &mut self,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Result<f64> {
        self.tether_send_from("client", Vec::new(), server, paths, plain)
    }

    /// Tether sends `paths`; seconds. What arrived stays in [`Lab::received`].
    pub(crate) fn tether_send_kept(
        &mut self,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Result<f64> {
        let argv = self.tether_send_args("client", Vec::new(), server, paths, plain);
        let name = if plain {
            "tether-send-plain"
        } else {
            "tether-send"
        };
        seconds(&self.client(name, argv)?, "seconds")
    }

    fn tether_send_args(
        &self,
        client: &str,
        extra: Vec<OsString>,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Vec<OsString> {
        let mut argv = args(&["send"]);
        argv.extend(self.tether_client_args(client));
        argv.extend(extra);
        argv.extend(args(&["--peer", &server.id]));
        for path in paths {
            argv.push("--path".into());
            argv.push(path.into());
        }
        if plain {
            argv.push("--plain".into());
        }
        argv
    }

    pub(crate) fn tether_send_from(
        &mut self,
        client: &str,
        extra: Vec<OsString>,
        server: &Server,
        paths: &[&Path],
        plain: bool,
    ) -> Result<f64> {
        let argv = self.tether_send_args(client, extra, server, paths, plain);
        let result = self.client(
            if plain {
                "tether-send-plain"
            } else {
                "tether-send"
            },
            argv,
        );
        self.clear_received()?;
        seconds(&result?, "seconds")
    }

    /// A raw iroh stream moves `file` (or its length from memory), `io` as [`RawIo`] says.
    pub(crate) fn raw_send(&mut self, server: &Server, file: &Path, io: RawIo) -> Result<f64> {
        let io = match io {
            RawIo::Std => "std",
            RawIo::Tokio => "tokio",
            RawIo::Memory => "memory",
        };
        self.raw_send_with(server, args(&["--io", io]), file)
    }

    pub(crate) fn raw_send_with(
        &mut self,
        server: &Server,
        extra: Vec<OsString>,
        file: &Path,
    ) -> Result<f64> {
        let mut argv = args(&["raw-send"]);
        argv.extend(server.peer_args());
        argv.extend(extra);
        argv.extend(["--file".into(), file.into()]);
        seconds(&self.client("raw-send", argv)?, "seconds")
    }

    pub(crate) fn blobs_fetch(&mut self, server: &Server, hash: &str, export: bool) -> Result<f64> {
        let store = self.work.join("blobs-client");
        let target = self.work.join("blobs-export");
        let mut argv = args(&["blobs-fetch", "--hash", hash]);
        argv.extend(server.peer_args());
        argv.extend(["--dir".into(), store.clone().into()]);
        if export {
            argv.extend(["--export".into(), target.clone().into()]);
        }
        let result = self.client("blobs-fetch", argv);
        let _ = std::fs::remove_dir_all(&store);
        let _ = std::fs::remove_file(&target);
        seconds(&result?, "seconds")
    }

    /// Fetches the collection `hash` into a fresh store and exports it into `target`; seconds.
    /// The store goes afterwards, `target` stays for the caller to check.
    pub(crate) fn blobs_fetch_collection(
        &mut self,
        server: &Server,
        hash: &str,
        target: &Path,
    ) -> Result<f64> {
        let store = self.work.join("blobs-tree-client");
        let mut argv = args(&["blobs-fetch", "--collection", "--hash", hash]);
        argv.extend(server.peer_args());
        argv.extend(["--dir".into(), store.clone().into()]);
        argv.extend(["--export".into(), target.into()]);
        let result = self.client("blobs-fetch-collection", argv);
        let _ = std::fs::remove_dir_all(&store);
        seconds(&result?, "seconds")
    }

    /// sendme end to end: a fresh provider imports the file (timed in the provider), then a
    /// fresh client fetches and exports it.
    pub(crate) fn blobs_end_to_end(&mut self, file: &Path) -> Result<f64> {
        let mut server = self.blobs_server("blobs-e2e-store")?;
        let reply = server.process.ask(
            &format!("import {}", file.display()),
            Duration::from_secs(600),
        )?;
        let mut words = reply.split_whitespace();
        let (Some("imported"), Some(hash), Some(import)) =
            (words.next(), words.next(), words.next())
        else {
            bail!("blobs import answered {reply:?}");
        };
        let import: f64 = import.parse()?;
        let hash = hash.to_owned();
        let fetch = self.blobs_fetch(&server, &hash, true)?;
        server.stop()?;
        let _ = std::fs::remove_dir_all(self.work.join("blobs-e2e-store"));
        Ok(import + fetch)
    }
}

pub(crate) fn seconds(value: &Value, key: &str) -> Result<f64> {
    value
        .pointer(&format!("/{}", key.replace('.', "/")))
        .and_then(Value::as_f64)
        .with_context(|| format!("no {key} in {value}"))
}

/// Writes `size` pseudo-random bytes (BLAKE3's output stream) to `path`.
pub(crate) fn make_file(path: &Path, size: u64, seed: u64) -> Result<()> {
    let mut out = std::io::BufWriter::with_capacity(
        4 * MIB as usize,
        std::fs::File::create(path).with_context(|| path.display().to_string())?,
    );
    let mut reader = blake3::Hasher::new()
        .update(&seed.to_le_bytes())
        .finalize_xof();
    let mut buf = vec![0u8; MIB as usize];
    let mut left = size;
    while left > 0 {
        let n = left.min(MIB) as usize;
        let chunk = buf.get_mut(..n).context("chunk")?;
        reader.fill(chunk);
        out.write_all(chunk)?;
        left -= n as u64;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

pub(crate) fn free_bytes(dir: &Path) -> u64 {
    // `df` is the portable way without unsafe statvfs; the figure only gates the 4 GiB run.
    std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .nth(1)
                .and_then(|l| l.trim().parse().ok())
        })
        .unwrap_or(0)
}
