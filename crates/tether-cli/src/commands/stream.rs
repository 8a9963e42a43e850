//! `tether stream DEVICE PATH`: a file shared by a paired device, served to local players over
//! HTTP on 127.0.0.1; and the owner's side, `tether up --share FILE`.
//!
//! The owner names what it shares (`--share`, repeatable: regular files); each is shared with
//! every paired device, under the entry id of its canonical path (`tether::entry_id`), for
//! streams and pulls alike. The reader gives that path; only its hash goes on the wire.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use tether::{DeviceInfo, NetworkingConfig, ShareProvider, SharedEntry};
use tether_stream::wire::Refusal;
use tether_stream::{HttpServer, OpenRemote, StreamError, StreamServer};
use uuid::Uuid;

use crate::context::resolve;
use crate::control;
use crate::failure::{ERROR, Failure};
use crate::output::Output;
use crate::progress::bytes;
use crate::settings::Settings;

#[derive(Debug, Args)]
pub(crate) struct StreamArgs {
    /// The device: its name, device id or the start of its node id.
    device: String,
    /// The file's path on that device, as its `tether up --share` shows it.
    path: PathBuf,
    /// Serve on 127.0.0.1:P (0: any free port)
    #[arg(long, value_name = "P", default_value_t = 0)]
    port: u16,
}

/// The files `tether up --share` shares, with every paired device.
#[derive(Debug, Default)]
struct SharedFiles {
    files: HashMap<Uuid, PathBuf>,
}

impl ShareProvider for SharedFiles {
    fn resolve(&self, _from: &DeviceInfo, entry_id: Uuid) -> Option<SharedEntry> {
        self.files.get(&entry_id).map(SharedEntry::new)
    }
}

/// Shares `files` (each must be a regular file) through `config`, and the stream protocol
/// that serves them; says what is shared.
pub(crate) fn share(
    config: &mut NetworkingConfig,
    files: &[PathBuf],
    out: Output,
) -> Result<StreamServer> {
    let mut shared = SharedFiles::default();
    for file in files {
        let path = std::fs::canonicalize(file)
            .map_err(|error| Failure::usage(format!("cannot share {}: {error}", file.display())))?;
        if !path.is_file() {
            return Err(Failure::usage(format!(
                "cannot share {}: only regular files are shared",
                path.display()
            ))
            .into());
        }
        out.line(
            "sharing",
            &format!(
                "sharing {} (`tether stream` it from a paired device)",
                path.display()
            ),
            json!({ "path": path, "entry_id": tether::entry_id(&path).to_string() }),
        );
        shared.files.insert(tether::entry_id(&path), path);
    }
    let provider: Arc<dyn ShareProvider> = Arc::new(shared);
    config.share_provider = Arc::clone(&provider);
    Ok(StreamServer::new(provider))
}

/// `tether stream`: runs a node here (not beside a `tether up` of the same data directory),
/// opens the file and serves it until Ctrl-C.
pub(crate) async fn run(settings: &Settings, args: StreamArgs, out: Output) -> Result<()> {
    let dir = settings.data_dir()?;
    if control::connect(&dir).await.is_some() {
        return Err(Failure::new(
            ERROR,
            format!(
                "`tether up` is running for {}: stop it to stream, or stream from another data directory",
                dir.display()
            ),
        )
        .into());
    }
    let node = settings.start(false).await?;
    let served = serve(&node, &args, out).await;
    node.shutdown().await;
    served
}

async fn serve(node: &tether::NetworkingService, args: &StreamArgs, out: Output) -> Result<()> {
    let device = node.device(resolve(node, &args.device)?)?;
    let entry = tether::entry_id(&args.path);
    let file = device
        .open_remote(entry)
        .await
        .map_err(|error| opening(error, &args.path))?;
    let size = file.size();
    let name = args.path.file_name().map_or_else(
        || "file".to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let server = HttpServer::start(file, &name, args.port)
        .await
        .with_context(|| format!("cannot serve on 127.0.0.1:{}", args.port))?;
    out.line(
        "stream",
        &format!(
            "streaming {} ({}) at\n{}\nCtrl-C to stop",
            args.path.display(),
            bytes(size),
            server.url()
        ),
        json!({ "url": server.url(), "size": size, "path": args.path }),
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    server.stop();
    Ok(())
}

/// The failure to open `path`, said for the person at the terminal.
fn opening(error: StreamError, path: &Path) -> anyhow::Error {
    match error {
        StreamError::Refused(Refusal::NotShared) => Failure::usage(format!(
            "{} is not shared with this device: on that device, run `tether up --share {}`",
            path.display(),
            path.display()
        ))
        .into(),
        other => anyhow::Error::from(other).context(format!("cannot open {}", path.display())),
    }
}
