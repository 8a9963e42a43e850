//! The iroh-blobs baseline, as sendme uses it: an `FsStore`, `add_path` to import (hashing
//! into BLAKE3's verified-streaming tree), `remote().fetch(conn, hash)` to download with
//! verification, `blobs().export` to write the file out.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use iroh::protocol::Router;
use iroh_blobs::api::blobs::AddPathOptions;
use iroh_blobs::api::proto::{ExportMode, ExportPathRequest, ImportMode};
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::{BlobFormat, BlobsProtocol, Hash};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::RawPeer;
use crate::raw;

/// Serves a store; stdin `import <path>` adds a file (sendme's `TryReference` mode) and
/// answers `imported <hash> <seconds>`.
pub(crate) async fn serve(dir: PathBuf) -> Result<()> {
    let store = FsStore::load(&dir).await?;
    let endpoint = raw::endpoint(vec![iroh_blobs::ALPN.to_vec()]).await?;
    let blobs = BlobsProtocol::new(&store, None);
    let router = Router::builder(endpoint.clone())
        .accept(iroh_blobs::ALPN, blobs)
        .spawn();
    raw::announce(&endpoint)?;
    let mut tags = Vec::new();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut stdout = tokio::io::stdout();
    while let Ok(Some(line)) = lines.next_line().await {
        let line = line.trim();
        if line == "quit" {
            break;
        }
        if let Some(path) = line.strip_prefix("import ") {
            let started = Instant::now();
            let tag = store
                .blobs()
                .add_path_with_opts(AddPathOptions {
                    path: PathBuf::from(path),
                    format: BlobFormat::Raw,
                    mode: ImportMode::TryReference,
                })
                .temp_tag()
                .await?;
            let seconds = started.elapsed().as_secs_f64();
            let reply = format!("imported {} {seconds}\n", tag.hash());
            tags.push(tag);
            stdout.write_all(reply.as_bytes()).await?;
            stdout.flush().await?;
        }
    }
    drop(tags);
    router.shutdown().await?;
    Ok(())
}

/// Fetches `hash` into a fresh store in `dir`, then exports it to `export` if given.
pub(crate) async fn fetch(
    peer: &RawPeer,
    hash: &str,
    dir: &Path,
    export: Option<&Path>,
) -> Result<serde_json::Value> {
    let hash: Hash = hash.parse().context("blob hash")?;
    let addr = raw::endpoint_addr(peer)?;
    let store = FsStore::load(dir).await?;
    let endpoint = raw::endpoint(Vec::new()).await?;
    let started = Instant::now();
    let connection = endpoint.connect(addr, iroh_blobs::ALPN).await?;
    let stats = store.remote().fetch(connection.clone(), hash).await?;
    let fetched = started.elapsed().as_secs_f64();
    if let Some(target) = export {
        store
            .blobs()
            .export_with_opts(ExportPathRequest {
                hash,
                mode: ExportMode::TryReference,
                target: target.to_owned(),
            })
            .finish()
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    connection.close(0u32.into(), b"done");
    endpoint.close().await;
    store.shutdown().await?;
    Ok(json!({
        "seconds": seconds,
        "fetch_seconds": fetched,
        "bytes": stats.payload_bytes_read,
    }))
}
