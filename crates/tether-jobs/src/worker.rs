//! The worker: the handlers an app registers by job name, served as a [`NetworkProtocol`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tether::{NodeId, PairedPeer, async_trait};
use tether_transfer::CancellationToken;
use tokio::sync::mpsc;

use crate::error::HandlerError;
use crate::machine::Admission;
use crate::policy::JobPolicy;
use crate::wire::{Message, Progress, RefusalCode, Submit, cut};

/// How long a submitter has to open its control stream and send its submission, and the
/// worker to open or accept each file stream.
pub(crate) const OPEN_DEADLINE: Duration = Duration::from_secs(10);
/// The default for [`JobsBuilder::silence_limit`].
pub const DEFAULT_SILENCE_LIMIT: Duration = Duration::from_secs(3);

/// What a handler is given for one job.
#[derive(Debug)]
#[non_exhaustive]
pub struct JobContext {
    /// The job's name.
    pub name: String,
    /// Who submitted it (already authenticated and paired).
    pub peer: PairedPeer,
    /// The arguments, as sent (at most the policy's cap).
    pub args: Vec<u8>,
    /// The inputs, received and verified; the job's own directory.
    pub input_dir: PathBuf,
    /// Where to put the outputs: everything in it is sent back when the handler succeeds.
    pub output_dir: PathBuf,
    /// Reports progress to the submitter.
    pub progress: ProgressSender,
    /// Cancelled when the submitter cancels, goes silent, or the job's time is up; a handler
    /// doing blocking work checks it.
    pub cancel: CancellationToken,
}

/// Sends a handler's progress to the submitter; never blocks (a report the stream cannot
/// take at once is dropped, the next one says more).
#[derive(Debug, Clone)]
pub struct ProgressSender(mpsc::Sender<Message>);

impl ProgressSender {
    /// Reports `done` of `total` units (0: unknown) with a short note.
    pub fn report(&self, done: u64, total: u64, note: impl Into<String>) {
        let progress = Progress {
            done,
            total,
            note: cut(note.into()),
        };
        let _ = self.0.try_send(Message::Progress(progress));
    }
}

/// A job's code. Its outputs are whatever it leaves in [`JobContext::output_dir`].
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Runs one job.
    async fn run(&self, job: JobContext) -> Result<(), HandlerError>;
}

pub(crate) struct Registered {
    pub(crate) handler: Arc<dyn JobHandler>,
    pub(crate) policy: JobPolicy,
}

pub(crate) struct WorkerState {
    pub(crate) work_dir: PathBuf,
    pub(crate) max_jobs: usize,
    pub(crate) silence_limit: Duration,
    pub(crate) jobs: HashMap<String, Registered>,
    pub(crate) admission: Mutex<Admission>,
    pub(crate) shutdown: CancellationToken,
    /// Jobs whose handler started, ever (for tests and diagnostics).
    pub(crate) started: Mutex<u64>,
}

/// Builds a [`Jobs`] worker.
#[must_use]
pub struct JobsBuilder {
    work_dir: PathBuf,
    max_jobs: usize,
    silence_limit: Duration,
    jobs: HashMap<String, Registered>,
}

impl JobsBuilder {
    /// Registers `handler` under `name` with its consent and limits. A name registered twice
    /// keeps the last.
    pub fn handler(
        mut self,
        name: impl Into<String>,
        handler: impl JobHandler,
        policy: JobPolicy,
    ) -> Self {
        let handler = Arc::new(handler);
        self.jobs
            .insert(name.into(), Registered { handler, policy });
        self
    }

    /// The most jobs of all names accepted and not ended at once (default 8).
    pub fn max_jobs(mut self, max: usize) -> Self {
        self.max_jobs = max;
        self
    }

    /// How long a submitter may send nothing (it sends a heartbeat every 500 ms) before its
    /// job is cancelled (default [`DEFAULT_SILENCE_LIMIT`]).
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// The worker, to register with the service's builder (`.protocol(jobs.clone())`).
    pub fn build(self) -> Jobs {
        Jobs {
            state: Arc::new(WorkerState {
                work_dir: self.work_dir,
                max_jobs: self.max_jobs,
                silence_limit: self.silence_limit,
                jobs: self.jobs,
                admission: Mutex::new(Admission::default()),
                shutdown: CancellationToken::new(),
                started: Mutex::new(0),
            }),
        }
    }
}

/// The worker side of the job protocol: a [`NetworkProtocol`](tether::NetworkProtocol) on
/// [`JOBS_ALPN`](crate::JOBS_ALPN).
///
/// Each job gets a directory of its own under the work directory (`<id>/in`, `<id>/out`),
/// removed when the job ends.
#[derive(Clone)]
pub struct Jobs {
    pub(crate) state: Arc<WorkerState>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("work_dir", &self.state.work_dir)
            .field("names", &self.state.jobs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Jobs {
    /// A builder whose jobs work in directories under `work_dir`.
    pub fn builder(work_dir: impl Into<PathBuf>) -> JobsBuilder {
        JobsBuilder {
            work_dir: work_dir.into(),
            max_jobs: 8,
            silence_limit: DEFAULT_SILENCE_LIMIT,
            jobs: HashMap::new(),
        }
    }

    /// Jobs accepted and not yet ended.
    pub fn running(&self) -> usize {
        self.state.admission.lock().running()
    }

    /// Jobs whose handler has been started since the worker was built.
    pub fn handlers_started(&self) -> u64 {
        *self.state.started.lock()
    }
}

/// A job's slot in the admission, given back when dropped.
pub(crate) struct Slot {
    pub(crate) state: Arc<WorkerState>,
    pub(crate) name: String,
    pub(crate) device: NodeId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.state.admission.lock().release(&self.name, self.device);
    }
}

impl WorkerState {
    /// Checks a submission against its job's policy and takes a slot, or says why not.
    pub(crate) fn admit(
        self: &Arc<Self>,
        submit: &Submit,
        peer: &PairedPeer,
    ) -> Result<(Slot, &Registered), (RefusalCode, &'static str)> {
        if self.shutdown.is_cancelled() {
            return Err((RefusalCode::ShuttingDown, "the worker is shutting down"));
        }
        let registered = self
            .jobs
            .get(&submit.name)
            .ok_or((RefusalCode::UnknownJob, "no such job"))?;
        registered.policy.check(submit, peer)?;
        self.admission
            .lock()
            .admit(
                &submit.name,
                peer.node_id,
                registered.policy.caps(),
                self.max_jobs,
            )
            .map_err(|code| (code, "as many jobs as allowed are running"))?;
        let slot = Slot {
            state: self.clone(),
            name: submit.name.clone(),
            device: peer.node_id,
        };
        Ok((slot, registered))
    }

    pub(crate) fn progress_sender(queue: mpsc::Sender<Message>) -> ProgressSender {
        ProgressSender(queue)
    }
}
