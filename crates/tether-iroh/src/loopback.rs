//! `LoopbackDiscovery`: devices on this machine, found through a shared directory.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tether_identity::NodeId;
use tether_protocol::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{LoopbackDirError, LoopbackDirProblem};

/// How often an announcement is refreshed and the directory scanned.
const HEARTBEAT: Duration = Duration::from_millis(250);
/// An announcement not refreshed for this long is gone.
const STALE_AFTER: Duration = Duration::from_secs(3);
/// Announcement files larger than this are ignored.
const MAX_RECORD_LEN: u64 = 16 * 1024;

/// Discovery without any network: each device writes a small record (id, loopback addresses,
/// pairing slot, heartbeat) into a directory only this user can open, and reads the others'.
///
/// It finds devices running on this machine only, sends no packet, and is what local-only
/// runs, the demo and tests use. Records are claims like any discovery's; the connection's
/// handshake proves who answers.
#[derive(Debug, Clone)]
pub struct LoopbackDiscovery {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    announced: Mutex<Option<(NodeId, JoinHandle<()>)>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Record {
    node_id: NodeId,
    addrs: Vec<SocketAddr>,
    relay_url: Option<iroh::RelayUrl>,
    pairing_slot: Option<String>,
    heartbeat_ms: u64,
}

impl LoopbackDiscovery {
    /// Uses `dir` as the meeting place: created with mode 0700 when missing, refused when it
    /// is a symbolic link, belongs to another user, or others can reach into it.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, LoopbackDirError> {
        let dir = dir.into();
        if let Err(problem) = private_dir(&dir) {
            return Err(LoopbackDirError { path: dir, problem });
        }
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                announced: Mutex::new(None),
            }),
        })
    }

    /// The per-user default directory: `$XDG_RUNTIME_DIR/tether-loopback`, else one in the
    /// system's temporary directory named after the user (`$USER`, else the user id).
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(runtime) => PathBuf::from(runtime).join("tether-loopback"),
            None => {
                let user = std::env::var("USER")
                    .ok()
                    .filter(|user| !user.is_empty() && !user.contains('/'))
                    .unwrap_or_else(|| effective_uid().to_string());
                std::env::temp_dir().join(format!("tether-loopback-{user}"))
            }
        }
    }

    /// The directory in use.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

impl Discovery for LoopbackDiscovery {
    fn name(&self) -> &'static str {
        "loopback"
    }

    fn announce(&self, device: DiscoveredDevice) {
        let path = record_path(&self.inner.dir, &device.node_id);
        let mut record = Record {
            node_id: device.node_id,
            addrs: device
                .addrs
                .into_iter()
                .filter(|a| a.ip().is_loopback())
                .collect(),
            relay_url: device.relay_url,
            pairing_slot: device.pairing_slot,
            heartbeat_ms: now_ms(),
        };
        if let Err(error) = write_record(&path, &record) {
            warn!(path = %path.display(), %error, "loopback discovery: cannot write announcement");
        }
        let refresh = tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT).await;
                record.heartbeat_ms = now_ms();
                if let Err(error) = write_record(&path, &record) {
                    debug!(%error, "loopback discovery: refresh failed");
                }
            }
        });
        let mut announced = self.inner.announced.lock();
        if let Some((_, previous)) = announced.replace((device.node_id, refresh)) {
            previous.abort();
        }
    }

    fn subscribe(&self) -> DiscoveryStream {
        let (sender, receiver) = mpsc::channel(64);
        // Only a weak handle: the scan must not keep the announcement (and its heartbeat)
        // alive after the last `LoopbackDiscovery` is dropped.
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut known: HashMap<NodeId, Record> = HashMap::new();
            loop {
                if sender.is_closed() {
                    return;
                }
                let (dir, me) = {
                    let Some(inner) = weak.upgrade() else { return };
                    let me = inner.announced.lock().as_ref().map(|(id, _)| *id);
                    (inner.dir.clone(), me)
                };
                let current = scan(&dir, me).await;
                for (id, record) in &current {
                    let changed = known.get(id).is_none_or(|old| !same_claims(old, record));
                    if changed
                        && sender
                            .send(DiscoveryEvent::Found(found(record)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                for id in known.keys().filter(|id| !current.contains_key(id)) {
                    if sender.send(DiscoveryEvent::Lost(*id)).await.is_err() {
                        return;
                    }
                }
                known = current;
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
        Box::pin(n0_future::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|event| (event, receiver)) },
        ))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let announced = self.announced.get_mut();
        if let Some((id, refresh)) = announced.take() {
            refresh.abort();
            let _ = std::fs::remove_file(record_path(&self.dir, &id));
        }
    }
}

fn same_claims(a: &Record, b: &Record) -> bool {
    a.addrs == b.addrs && a.relay_url == b.relay_url && a.pairing_slot == b.pairing_slot
}

fn found(record: &Record) -> DiscoveredDevice {
    DiscoveredDevice {
        node_id: record.node_id,
        addrs: record.addrs.clone(),
        relay_url: record.relay_url.clone(),
        pairing_slot: record.pairing_slot.clone(),
        source: "loopback",
    }
}

async fn scan(dir: &Path, me: Option<NodeId>) -> HashMap<NodeId, Record> {
    let mut records = HashMap::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return records;
    };
    let now = now_ms();
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Ok(meta) = entry.metadata().await else {
            continue;
        };
        if meta.len() > MAX_RECORD_LEN {
            continue;
        }
        let Ok(bytes) = tokio::fs::read(&path).await else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            continue;
        };
        let fresh = now.saturating_sub(record.heartbeat_ms) < STALE_AFTER.as_millis() as u64;
        let named_right =
            path.file_stem().and_then(|s| s.to_str()) == Some(record.node_id.to_string().as_str());
        if fresh && named_right && Some(record.node_id) != me {
            records.insert(record.node_id, record);
        }
    }
    records
}

fn record_path(dir: &Path, node_id: &NodeId) -> PathBuf {
    dir.join(format!("{node_id}.json"))
}

fn write_record(path: &Path, record: &Record) -> io::Result<()> {
    let bytes = serde_json::to_vec(record).map_err(io::Error::other)?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Makes `dir` ours and private, or says why it cannot be: a missing directory is created
/// with mode 0700 (its parents as usual); an existing one must be a real directory (not a
/// symbolic link), owned by this user, and closed to group and others. One that is not is
/// refused, never repaired: whoever could reach into it may have planted records already.
fn private_dir(dir: &Path) -> Result<(), LoopbackDirProblem> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(LoopbackDirProblem::Io)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(LoopbackDirProblem::Io(error)),
    }
    // `symlink_metadata` does not follow a final symbolic link.
    let meta = std::fs::symlink_metadata(dir).map_err(LoopbackDirProblem::Io)?;
    if meta.file_type().is_symlink() {
        return Err(LoopbackDirProblem::Symlink);
    }
    if !meta.is_dir() {
        return Err(LoopbackDirProblem::NotADirectory);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let user = effective_uid();
        if meta.uid() != user {
            return Err(LoopbackDirProblem::NotOwned {
                owner: meta.uid(),
                user,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(LoopbackDirProblem::OpenToOthers { mode });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(not(unix))]
fn effective_uid() -> u32 {
    0
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
