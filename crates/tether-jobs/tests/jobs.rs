//! Jobs between real local-only services (127.0.0.1, no relays, no mDNS) paired by word code
//! through a discovery directory of the test's own: outputs verified, every refusal and failure
//! typed, and an unpaired device turned away before any handler runs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tether::{DeviceName, NetworkError, NetworkingConfig, NetworkingService};
use tether_jobs::{
    Allow, HandlerError, JobContext, JobError, JobEvent, JobHandler, JobPolicy, Jobs, RefusalCode,
    SubmitOptions,
};

const WITHIN: Duration = Duration::from_secs(20);

struct Lab {
    root: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        Self {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    async fn start(&self, name: &str, jobs: Option<Jobs>) -> NetworkingService {
        let config = NetworkingConfig::local_only(self.path(name))
            .with_device_name(DeviceName::new(name).unwrap())
            .with_loopback_discovery(self.path("discovery"))
            .with_insecure_key_file();
        let mut builder = tether::Builder::from_config(config);
        if let Some(jobs) = jobs {
            builder = builder.protocol(jobs);
        }
        builder.spawn().await.unwrap()
    }

    fn out_dir(&self, name: &str) -> PathBuf {
        let dir = self.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

async fn pair(initiator: &NetworkingService, joiner: &NetworkingService) {
    let mut invite = initiator.start_pairing_as_initiator().unwrap();
    joiner.join_pairing(&invite.code).await.unwrap();
    tokio::time::timeout(WITHIN, invite.paired())
        .await
        .unwrap()
        .unwrap();
}

/// Concatenates every input file (sorted by relative path) into `all.bin`, one progress
/// report per file.
struct Concat;

#[tether::async_trait]
impl JobHandler for Concat {
    async fn run(&self, job: JobContext) -> Result<(), HandlerError> {
        let files = files_under(&job.input_dir);
        let mut all = Vec::new();
        for (i, file) in files.iter().enumerate() {
            all.extend(std::fs::read(job.input_dir.join(file))?);
            job.progress
                .report(i as u64 + 1, files.len() as u64, file.to_string_lossy());
        }
        all.extend_from_slice(&job.args);
        std::fs::write(job.output_dir.join("all.bin"), all)?;
        Ok(())
    }
}

/// Sleeps for a minute; what it started meanwhile (here, a watcher) sees its token
/// cancelled.
struct Slow(Arc<AtomicBool>);

#[tether::async_trait]
impl JobHandler for Slow {
    async fn run(&self, job: JobContext) -> Result<(), HandlerError> {
        let (token, saw) = (job.cancel.clone(), self.0.clone());
        tokio::spawn(async move {
            token.cancelled().await;
            saw.store(true, Ordering::SeqCst);
        });
        job.progress.report(0, 0, "started");
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(())
    }
}

/// Waits for the worker to let go of every job (it does once the submitter has closed).
async fn all_ended(jobs: &Jobs) {
    let ended = async {
        while jobs.running() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WITHIN, ended).await.unwrap();
}

async fn until(flag: &AtomicBool) {
    let set = async {
        while !flag.swap(false, Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(WITHIN, set).await.unwrap();
}

struct Fails;

#[tether::async_trait]
impl JobHandler for Fails {
    async fn run(&self, _: JobContext) -> Result<(), HandlerError> {
        Err(HandlerError::new("the input is not an image"))
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative)).unwrap() {
            let entry = entry.unwrap();
            let path = relative.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn worker_jobs(lab: &Lab, saw_cancel: Arc<AtomicBool>) -> Jobs {
    let open = || JobPolicy::default().allow(Allow::AnyPaired);
    Jobs::builder(lab.path("work"))
        .handler("concat", Concat, open().max_args_len(8))
        .handler("slow", Slow(saw_cancel), open())
        .handler("fails", Fails, open())
        .handler("closed", Concat, JobPolicy::default())
        .build()
}

async fn submit(
    phone: &NetworkingService,
    laptop: &NetworkingService,
    name: &str,
    args: &[u8],
    inputs: &[PathBuf],
    options: SubmitOptions,
) -> Result<tether_jobs::JobOutputs, JobError> {
    let handle = tether_jobs::submit(phone, laptop.node_id(), name, args, inputs, options).await?;
    tokio::time::timeout(WITHIN, handle.result()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_on_the_other_device_and_every_refusal_is_typed() {
    let lab = Lab::new();
    let jobs = worker_jobs(&lab, Arc::default());
    let laptop = lab.start("laptop", Some(jobs.clone())).await;
    let phone = lab.start("phone", None).await;
    pair(&laptop, &phone).await;

    // Inputs: a folder with a nested file and a file over one chunk (256 KiB).
    let input = lab.path("photos");
    std::fs::create_dir_all(input.join("raw")).unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(input.join("a.txt"), b"first").unwrap();
    std::fs::write(input.join("raw/b.bin"), &big).unwrap();

    let out = lab.out_dir("out");
    let options = SubmitOptions::new(&out).timeout(Duration::from_secs(30));
    let mut handle = tether_jobs::submit(
        &phone,
        laptop.node_id(),
        "concat",
        b"!",
        std::slice::from_ref(&input),
        options.clone(),
    )
    .await
    .unwrap();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(WITHIN, handle.next_event())
        .await
        .unwrap()
    {
        events.push(event);
    }
    let outputs = handle.result().await.unwrap();
    assert_eq!(outputs.files, 1);
    let mut expected = b"first".to_vec();
    expected.extend_from_slice(&big);
    expected.push(b'!');
    assert_eq!(std::fs::read(out.join("all.bin")).unwrap(), expected);
    assert_eq!(events.first(), Some(&JobEvent::Accepted));
    assert!(
        events.contains(&JobEvent::InputsSent { bytes: 300_005 }),
        "{events:?}"
    );
    let progress = JobEvent::Progress {
        done: 2,
        total: 2,
        note: "photos/raw/b.bin".into(),
    };
    assert!(events.contains(&progress), "{events:?}");
    assert_eq!(jobs.handlers_started(), 1);

    // Unknown name, not allowed, arguments over the job's cap, the handler's own error.
    let other = lab.out_dir("other");
    let options = SubmitOptions::new(&other).timeout(Duration::from_secs(30));
    let unknown = submit(&phone, &laptop, "thumbnail", b"", &[], options.clone()).await;
    assert!(
        matches!(&unknown, Err(JobError::UnknownJob { name }) if name == "thumbnail"),
        "{unknown:?}"
    );
    let closed = submit(&phone, &laptop, "closed", b"", &[], options.clone()).await;
    assert!(
        matches!(
            closed,
            Err(JobError::Refused {
                code: RefusalCode::NotAllowed,
                ..
            })
        ),
        "{closed:?}"
    );
    let long = submit(&phone, &laptop, "concat", &[0; 9], &[], options.clone()).await;
    assert!(
        matches!(
            long,
            Err(JobError::Refused {
                code: RefusalCode::TooLarge,
                ..
            })
        ),
        "{long:?}"
    );
    let failed = submit(&phone, &laptop, "fails", b"", &[], options.clone()).await;
    assert!(
        matches!(&failed, Err(JobError::Handler(message)) if message == "the input is not an image"),
        "{failed:?}"
    );
    // Only the two jobs that were let in ran a handler; every slot is free again.
    assert_eq!(jobs.handlers_started(), 2);
    all_ended(&jobs).await;
    assert_eq!(std::fs::read_dir(&other).unwrap().count(), 0);
    // The worker keeps nothing of finished jobs.
    assert_eq!(std::fs::read_dir(lab.path("work")).unwrap().count(), 0);

    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_cancelled_or_times_out_and_the_worker_stops_it() {
    let lab = Lab::new();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let jobs = worker_jobs(&lab, saw_cancel.clone());
    let laptop = lab.start("laptop", Some(jobs.clone())).await;
    let phone = lab.start("phone", None).await;
    pair(&laptop, &phone).await;
    let out = lab.out_dir("out");

    let options = SubmitOptions::new(&out).timeout(Duration::from_secs(30));
    let mut handle = tether_jobs::submit(&phone, laptop.node_id(), "slow", b"", &[], options)
        .await
        .unwrap();
    assert_eq!(handle.next_event().await, Some(JobEvent::Accepted));
    let started = JobEvent::Progress {
        done: 0,
        total: 0,
        note: "started".into(),
    };
    assert_eq!(handle.next_event().await, Some(started));
    let asked = Instant::now();
    handle.cancel();
    let cancelled = tokio::time::timeout(WITHIN, handle.result()).await.unwrap();
    assert!(
        matches!(cancelled, Err(JobError::Cancelled)),
        "{cancelled:?}"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
    until(&saw_cancel).await;

    let options = SubmitOptions::new(&out).timeout(Duration::from_secs(1));
    let started = Instant::now();
    let timed_out = submit(&phone, &laptop, "slow", b"", &[], options).await;
    assert!(
        matches!(timed_out, Err(JobError::TimedOut)),
        "{timed_out:?}"
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    // The worker cancelled the handler itself, and frees its slot.
    all_ended(&jobs).await;
    until(&saw_cancel).await;

    laptop.shutdown().await;
    phone.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_that_are_not_paired_are_refused_before_any_handler_runs() {
    let lab = Lab::new();
    let jobs = worker_jobs(&lab, Arc::default());
    let laptop = lab.start("laptop", Some(jobs.clone())).await;
    let phone = lab.start("phone", None).await;
    let stranger = lab.start("stranger", None).await;
    pair(&laptop, &phone).await;
    let out = lab.out_dir("out");
    let options = SubmitOptions::new(&out).timeout(Duration::from_secs(30));

    // Never paired: the stranger's own service does not even dial.
    let refused = submit(&stranger, &laptop, "concat", b"", &[], options.clone()).await;
    assert!(
        matches!(
            refused,
            Err(JobError::Network(NetworkError::DeviceNotPaired(_)))
        ),
        "{refused:?}"
    );

    // Paired, then unpaired on the worker: its gate closes the job connection after the TLS
    // handshake, before the jobs protocol sees it.
    laptop.unpair(phone.node_id()).unwrap();
    let refused = submit(&phone, &laptop, "concat", b"", &[], options).await;
    match refused {
        Err(JobError::Network(NetworkError::Refused { code, .. })) => {
            assert_eq!(code, tether::gate::CLOSE_REVOKED);
        }
        other => panic!("the unpaired phone was not refused: {other:?}"),
    }
    assert_eq!(jobs.handlers_started(), 0);
    assert_eq!(jobs.running(), 0);

    laptop.shutdown().await;
    phone.shutdown().await;
    stranger.shutdown().await;
}
