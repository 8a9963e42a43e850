//! The iroh-blobs baseline, as sendme uses it: an `FsStore`, `add_path` to import (hashing
//! into BLAKE3's verified-streaming tree), `remote().fetch(conn, hash)` to download with
//! verification, `blobs().export` to write the file out.
//!
//! A folder goes as sendme sends one: every file imported in place (`TryReference`, as many at
//! once as there are cores), a `Collection` of (relative path, hash) stored as its hash
//! sequence, the whole sequence fetched on one connection, every file exported one after
//! another under the target directory.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use iroh::protocol::Router;
use iroh_blobs::api::TempTag;
use iroh_blobs::api::blobs::AddPathOptions;
use iroh_blobs::api::proto::{ExportMode, ExportPathRequest, ImportMode};
use iroh_blobs::format::collection::Collection;
use iroh_blobs::store::fs::FsStore;
use iroh_blobs::{BlobFormat, BlobsProtocol, Hash, HashAndFormat};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::RawPeer;
use crate::raw;

/// Serves a store; stdin `import <path>` adds a file (sendme's `TryReference` mode) and
/// answers `imported <hash> <seconds>`; `import-dir <path>` adds a folder as a collection and
/// answers the same with the collection's hash.
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
        let started = Instant::now();
        let tag = if let Some(path) = line.strip_prefix("import-dir ") {
            import_dir(&store, Path::new(path)).await?
        } else if let Some(path) = line.strip_prefix("import ") {
            import_file(&store, PathBuf::from(path)).await?
        } else {
            continue;
        };
        let seconds = started.elapsed().as_secs_f64();
        let reply = format!("imported {} {seconds}\n", tag.hash());
        tags.push(tag);
        stdout.write_all(reply.as_bytes()).await?;
        stdout.flush().await?;
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
    collection: bool,
) -> Result<serde_json::Value> {
    let hash: Hash = hash.parse().context("blob hash")?;
    let addr = raw::endpoint_addr(peer)?;
    let store = FsStore::load(dir).await?;
    let endpoint = raw::endpoint(Vec::new()).await?;
    let started = Instant::now();
    let connection = endpoint.connect(addr, iroh_blobs::ALPN).await?;
    let content = if collection {
        HashAndFormat::hash_seq(hash)
    } else {
        HashAndFormat::raw(hash)
    };
    let stats = store.remote().fetch(connection.clone(), content).await?;
    let fetched = started.elapsed().as_secs_f64();
    match export {
        Some(target) if collection => export_collection(&store, hash, target).await?,
        Some(target) => export_file(&store, hash, target.to_owned()).await?,
        None => {}
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

/// Imports one file in place (sendme's `TryReference`).
async fn import_file(store: &FsStore, path: PathBuf) -> Result<TempTag> {
    Ok(store
        .blobs()
        .add_path_with_opts(AddPathOptions {
            path,
            format: BlobFormat::Raw,
            mode: ImportMode::TryReference,
        })
        .temp_tag()
        .await?)
}

/// Imports every regular file under `root`, as many at once as there are cores, and stores
/// the collection of (path relative to `root`, hash); its tag.
async fn import_dir(store: &FsStore, root: &Path) -> Result<TempTag> {
    let files = crate::tree::files(root)?;
    let parallel = std::thread::available_parallelism().map_or(2, usize::from);
    let mut tasks = tokio::task::JoinSet::new();
    let mut entries = Vec::with_capacity(files.len());
    let mut tags = Vec::with_capacity(files.len());
    for (index, relative) in files.into_iter().enumerate() {
        while tasks.len() >= parallel {
            let (index, name, tag) = tasks.join_next().await.context("no import task")???;
            entries.push((index, name, tag));
        }
        let store = store.clone();
        let path = root.join(&relative);
        tasks.spawn(async move {
            let tag = import_file(&store, path).await?;
            anyhow::Ok((index, relative, tag))
        });
    }
    while let Some(done) = tasks.join_next().await {
        entries.push(done??);
    }
    entries.sort_by_key(|(index, ..)| *index);
    let mut collection = Vec::with_capacity(entries.len());
    for (_, relative, tag) in entries {
        let name = relative
            .to_str()
            .with_context(|| format!("{} is not UTF-8", relative.display()))?
            .to_owned();
        collection.push((name, tag.hash()));
        tags.push(tag);
    }
    let tag = collection
        .into_iter()
        .collect::<Collection>()
        .store(store)
        .await?;
    // The files stay referenced by the collection's tag until the server stops.
    drop(tags);
    Ok(tag)
}

/// Exports one blob to `target` (moved out of the store when it can be).
async fn export_file(store: &FsStore, hash: Hash, target: PathBuf) -> Result<()> {
    store
        .blobs()
        .export_with_opts(ExportPathRequest {
            hash,
            mode: ExportMode::TryReference,
            target,
        })
        .finish()
        .await?;
    Ok(())
}

/// Exports every file of the collection `hash` under `target`, one after another as sendme
/// does.
async fn export_collection(store: &FsStore, hash: Hash, target: &Path) -> Result<()> {
    let api: &iroh_blobs::api::Store = store;
    let collection = Collection::load(hash, api).await?;
    for (name, blob) in collection {
        let relative = Path::new(&name);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!("the collection names {name:?}, outside the target");
        }
        let path = target.join(relative);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        export_file(store, blob, path).await?;
    }
    Ok(())
}
