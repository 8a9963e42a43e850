//! Streaming in the lab: what a device shares for `tether-stream`, and the figures of a
//! player on another device (first byte, a seek, `ffprobe` through the local HTTP server).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tether::{DeviceInfo, NodeId, ShareProvider, SharedEntry, Uuid};
use tether_stream::{HttpServer, OpenRemote};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// The files this device shares for streaming, by entry id.
#[derive(Debug, Default)]
pub(crate) struct Shelf {
    entries: Mutex<HashMap<Uuid, PathBuf>>,
}

impl Shelf {
    /// Shares `path`; its entry id.
    pub(crate) fn share(&self, path: PathBuf) -> Uuid {
        let id = tether::entry_id(&path);
        self.entries.lock().insert(id, path);
        id
    }
}

impl ShareProvider for Shelf {
    fn resolve(&self, _from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        self.entries.lock().get(&entry_id).map(SharedEntry::new)
    }
}

/// The provider the service and its stream server share.
pub(crate) fn provider(shelf: &Arc<Shelf>) -> Arc<dyn ShareProvider> {
    Arc::clone(shelf) as Arc<dyn ShareProvider>
}

/// Opens `entry` on `from` and times a player's first steps (see the module's documentation):
/// the first byte and the seek on one open file, `ffprobe` (its open included) on another.
pub(crate) async fn figures(
    service: &tether::NetworkingService,
    from: NodeId,
    entry: &str,
) -> Result<Value> {
    let entry = Uuid::parse_str(entry).context("entry id")?;
    let device = service.device(from)?;
    let started = Instant::now();
    let mut file = device.open_remote(entry).await?;
    let mut byte = [0u8; 1];
    file.read_exact(&mut byte).await?;
    let first_byte = started.elapsed();
    let seek = Instant::now();
    file.seek(SeekFrom::End(-1000)).await?;
    file.read_exact(&mut byte).await?;
    let seek = seek.elapsed();
    drop(file);
    // The player gets a file opened afresh: nothing fetched above is in its cache.
    let probe = Instant::now();
    let fresh = device.open_remote(entry).await?;
    let server = HttpServer::start(fresh, "lab.mp4", 0).await?;
    let status = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-show_format", server.url()])
        .stdout(Stdio::null())
        .status()
        .await
        .context("running ffprobe")?;
    let probe = probe.elapsed();
    if !status.success() {
        bail!("ffprobe failed: {status}");
    }
    Ok(json!({
        "first_byte_ms": first_byte.as_secs_f64() * 1e3,
        "seek_ms": seek.as_secs_f64() * 1e3,
        "probe_ms": probe.as_secs_f64() * 1e3,
    }))
}
