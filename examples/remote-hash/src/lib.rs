//! The `blake3-tree` job: hashes every file of the folder it is sent and returns a manifest,
//! one line per file, `<BLAKE3 hex>  <path relative to the inputs>`, sorted by path.
//!
//! Its arguments are a decimal number of milliseconds to wait before each file (empty: none),
//! which makes a job slow enough to watch, cancel or kill.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether_jobs::{HandlerError, JobContext, JobHandler};

/// The job's name.
pub const JOB_NAME: &str = "blake3-tree";
/// The output file's name.
pub const MANIFEST_NAME: &str = "manifest.txt";

/// The `blake3-tree` handler.
#[derive(Debug, Clone, Copy, Default)]
pub struct Blake3Tree;

/// Reads the per-file delay from the job's arguments.
pub fn delay_of(args: &[u8]) -> Result<Duration, HandlerError> {
    if args.is_empty() {
        return Ok(Duration::ZERO);
    }
    std::str::from_utf8(args)
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .ok_or_else(|| HandlerError::new("the argument must be a delay in milliseconds"))
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[tether::async_trait]
impl JobHandler for Blake3Tree {
    async fn run(&self, job: JobContext) -> Result<(), HandlerError> {
        let delay = delay_of(&job.args)?;
        let files = files_under(&job.input_dir)?;
        let total = u64::try_from(files.len()).unwrap_or(u64::MAX);
        let mut manifest = String::new();
        for (done, file) in (1u64..).zip(&files) {
            tokio::select! {
                () = job.cancel.cancelled() => return Err(HandlerError::new("cancelled")),
                () = tokio::time::sleep(delay) => {}
            }
            let path = job.input_dir.join(file);
            let hash = tokio::task::spawn_blocking(move || hash_file(&path))
                .await
                .map_err(|_| HandlerError::new("hashing failed"))??;
            let name = file.to_string_lossy();
            manifest.push_str(&format!("{hash}  {name}\n"));
            job.progress.report(done, total, name);
        }
        tokio::fs::write(job.output_dir.join(MANIFEST_NAME), manifest).await?;
        Ok(())
    }
}

fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}
