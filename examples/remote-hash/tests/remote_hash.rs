//! The worker as a real separate process (this example's binary), the submitter in the test:
//! a job SIGKILLed mid-way fails cleanly as "worker gone" within seconds, and the same job
//! succeeds once the worker is back, its manifest checked file by file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tether::{NetworkingConfig, NetworkingService, NodeId};
use tether_example_remote_hash::{JOB_NAME, MANIFEST_NAME};
use tether_jobs::{JobError, JobEvent, SubmitOptions};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

const WITHIN: Duration = Duration::from_secs(20);

struct Worker {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    fn spawn(root: &Path, pair: bool) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_remote-hash"));
        command
            .arg("--dir")
            .arg(root.join("worker"))
            .arg("--discovery")
            .arg(root.join("discovery"))
            .arg("worker")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        if pair {
            command.arg("--pair");
        }
        let mut child = command.spawn().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { child, lines }
    }

    /// The rest of the next line that starts with `word`.
    async fn line(&mut self, word: &str) -> String {
        let next = async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the worker ended");
                if let Some(rest) = line.strip_prefix(word) {
                    return rest.trim().to_owned();
                }
            }
        };
        tokio::time::timeout(WITHIN, next).await.unwrap()
    }
}

fn inputs(root: &Path) -> PathBuf {
    let dir = root.join("photos");
    std::fs::create_dir_all(dir.join("2026")).unwrap();
    for i in 0..6u32 {
        let bytes: Vec<u8> = (0..(i * 70_000 + 1)).map(|b| (b * 13 + i) as u8).collect();
        let folder = if i % 2 == 0 {
            dir.clone()
        } else {
            dir.join("2026")
        };
        std::fs::write(folder.join(format!("img{i}.raw")), bytes).unwrap();
    }
    dir
}

/// The manifest the job should write, computed here from the original files.
fn expected_manifest(dir: &Path) -> String {
    let mut lines = Vec::new();
    for sub in ["", "2026"] {
        for entry in std::fs::read_dir(dir.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let relative = Path::new("photos").join(path.strip_prefix(dir).unwrap());
                let hash = blake3::hash(&std::fs::read(&path).unwrap()).to_hex();
                lines.push((relative.to_string_lossy().into_owned(), hash.to_string()));
            }
        }
    }
    lines.sort();
    lines
        .into_iter()
        .map(|(path, hash)| format!("{hash}  {path}\n"))
        .collect()
}

async fn submit(
    me: &NetworkingService,
    worker: NodeId,
    input: &Path,
    out: &Path,
    delay_ms: u64,
) -> tether_jobs::JobHandle {
    let options = SubmitOptions::new(out)
        .timeout(Duration::from_secs(60))
        .silence_limit(Duration::from_secs(2));
    let args = delay_ms.to_string();
    let inputs = [input.to_path_buf()];
    // Right after a restart this side may still dial the old port (the loopback discovery
    // sees the new one within a quarter second): connect again with fresh addresses.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = tether_jobs::submit(
            me,
            worker,
            JOB_NAME,
            args.as_bytes(),
            &inputs,
            options.clone(),
        );
        match tokio::time::timeout(Duration::from_secs(12), attempt).await {
            Ok(Ok(handle)) => return handle,
            Ok(Err(JobError::Network(error))) if Instant::now() < deadline => {
                eprintln!("not connected yet: {error}");
            }
            Err(_) if Instant::now() < deadline => eprintln!("not connected yet: still dialling"),
            Ok(Err(error)) => panic!("the submission failed: {error:?}"),
            Err(_) => panic!("the worker was never reached"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_fails_the_job_cleanly_and_a_retry_succeeds() {
    let root = tempfile::tempdir().unwrap();
    let mut worker = Worker::spawn(root.path(), true);
    let worker_id: NodeId = worker.line("node").await.parse().unwrap();
    let ticket = worker.line("ticket").await;
    let config = NetworkingConfig::local_only(root.path().join("me"))
        .with_loopback_discovery(root.path().join("discovery"))
        .with_insecure_key_file();
    let me = NetworkingService::start(config).await.unwrap();
    me.join_pairing(&ticket).await.unwrap();
    worker.line("ready").await;

    let input = inputs(root.path());
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();

    // 6 files, 500 ms before each: killed after the first file's progress, mid-job.
    let mut handle = submit(&me, worker_id, &input, &out, 500).await;
    loop {
        match tokio::time::timeout(WITHIN, handle.next_event())
            .await
            .unwrap()
        {
            Some(JobEvent::Progress { done: 1, .. }) => break,
            Some(_) => {}
            None => panic!("the job ended before its first file"),
        }
    }
    worker.child.kill().await.unwrap();
    let killed = Instant::now();
    let outcome = tokio::time::timeout(WITHIN, handle.result()).await.unwrap();
    let noticed = killed.elapsed();
    assert!(matches!(outcome, Err(JobError::WorkerGone)), "{outcome:?}");
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);

    // Back up (same keys, same pairing, a new port) while this side still holds its link to
    // the dead process: the retry reaches the new one and runs to the end.
    let mut worker = Worker::spawn(root.path(), false);
    assert_eq!(
        worker.line("node").await.parse::<NodeId>().unwrap(),
        worker_id
    );
    worker.line("ready").await;
    let handle = submit(&me, worker_id, &input, &out, 10).await;
    let outputs = tokio::time::timeout(WITHIN, handle.result())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outputs.files, 1);
    let manifest = std::fs::read_to_string(out.join(MANIFEST_NAME)).unwrap();
    assert_eq!(manifest, expected_manifest(&input));
    assert_eq!(manifest.lines().count(), 6);

    me.shutdown().await;
    worker.child.kill().await.unwrap();
}
