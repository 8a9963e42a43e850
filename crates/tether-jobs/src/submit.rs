//! The submitter: sends a job with its arguments and inputs to a paired device and gets its
//! progress and outputs back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tether::{Connection, NetworkingService, NodeId, TransferError, TransferReport};
use tether_transfer::{CancellationToken, OutgoingTransfer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::control::{Writer, spawn_reader};
use crate::error::JobError;
use crate::files::{self, Expected};
use crate::machine::{Expiry, Step, Tracker, Watch};
use crate::wire::{
    HEARTBEAT_INTERVAL, JOBS_ALPN, MAX_ARGS_LEN, MAX_NAME_LEN, Message, ReadError, Submit,
};
use crate::worker::DEFAULT_SILENCE_LIMIT;

/// How a job is submitted.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// The longest the job may run, inputs included (the worker may allow less).
    pub timeout: Duration,
    /// Where the outputs go (must exist); they arrive verified, under their own names.
    pub output_dir: PathBuf,
    /// The most output bytes accepted; more is refused before anything is written.
    pub max_output_bytes: u64,
    /// The most output entries accepted.
    pub max_output_entries: u64,
    /// How long the worker may send nothing (it sends a heartbeat every 500 ms) before it is
    /// taken to be gone.
    pub silence_limit: Duration,
}

impl SubmitOptions {
    /// Outputs into `output_dir`; a 10-minute timeout, 1 GiB and 10,000 entries of outputs.
    pub fn new(output_dir: impl Into<PathBuf>) -> Self {
        Self {
            timeout: Duration::from_secs(600),
            output_dir: output_dir.into(),
            max_output_bytes: 1 << 30,
            max_output_entries: 10_000,
            silence_limit: DEFAULT_SILENCE_LIMIT,
        }
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the silence limit.
    pub fn silence_limit(mut self, limit: Duration) -> Self {
        self.silence_limit = limit;
        self
    }

    /// Sets the output caps.
    pub fn max_outputs(mut self, bytes: u64, entries: u64) -> Self {
        self.max_output_bytes = bytes;
        self.max_output_entries = entries;
        self
    }
}

/// What a running job reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEvent {
    /// The worker accepted the job.
    Accepted,
    /// The inputs arrived at the worker, verified.
    InputsSent {
        /// Their bytes.
        bytes: u64,
    },
    /// The handler's progress.
    Progress {
        /// Units done.
        done: u64,
        /// Units in all (0: unknown).
        total: u64,
        /// The handler's note.
        note: String,
    },
    /// The handler succeeded; the outputs are on their way.
    OutputsComing {
        /// Entries.
        entries: u64,
        /// Bytes.
        bytes: u64,
    },
}

/// A job's outputs, received and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobOutputs {
    /// Where they are: [`SubmitOptions::output_dir`].
    pub dir: PathBuf,
    /// Files received.
    pub files: u64,
    /// File bytes received.
    pub bytes: u64,
}

/// A submitted job: its events, a way to cancel it, and its result.
#[derive(Debug)]
pub struct JobHandle {
    events: mpsc::Receiver<JobEvent>,
    cancel: CancellationToken,
    task: JoinHandle<Result<JobOutputs, JobError>>,
}

impl JobHandle {
    /// The next event, or `None` once the job has ended.
    pub async fn next_event(&mut self) -> Option<JobEvent> {
        self.events.recv().await
    }

    /// Asks the worker to stop the job; [`result`](Self::result) then says
    /// [`JobError::Cancelled`] (unless it had already ended).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits for the job to end.
    pub async fn result(self) -> Result<JobOutputs, JobError> {
        match self.task.await {
            Ok(result) => result,
            Err(_) => Err(JobError::Protocol("the job's task failed")),
        }
    }
}

/// Submits job `name` to `device` with `args` and `inputs` (files or directories, each sent
/// under its own name).
///
/// Checks the submission, hashes the inputs and connects before returning; what the worker
/// says comes through the handle.
pub async fn submit(
    service: &NetworkingService,
    device: NodeId,
    name: &str,
    args: &[u8],
    inputs: &[PathBuf],
    options: SubmitOptions,
) -> Result<JobHandle, JobError> {
    if name.len() > MAX_NAME_LEN || args.len() > MAX_ARGS_LEN {
        return Err(JobError::Usage(
            "the job name or arguments are too long".into(),
        ));
    }
    if !options.output_dir.is_dir() {
        return Err(JobError::Usage(
            "the output directory does not exist".into(),
        ));
    }
    let outgoing = if inputs.is_empty() {
        None
    } else {
        Some(files::prepare(inputs).await?)
    };
    let (input_entries, input_bytes) = outgoing.as_ref().map_or((0, 0), files::size_of);
    let submit = Submit {
        name: name.to_owned(),
        args: args.to_vec(),
        input_entries,
        input_bytes,
        timeout_ms: u64::try_from(options.timeout.as_millis()).unwrap_or(u64::MAX),
    };
    let connection = service.connect_protocol(device, JOBS_ALPN).await?;
    let (events_tx, events) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let run = Run {
        connection,
        device,
        submit,
        outgoing,
        options,
        events: events_tx,
        cancel: cancel.clone(),
    };
    let task = tokio::spawn(run.drive());
    Ok(JobHandle {
        events,
        cancel,
        task,
    })
}

/// One submitted job on this side.
struct Run {
    connection: Connection,
    device: NodeId,
    submit: Submit,
    outgoing: Option<OutgoingTransfer>,
    options: SubmitOptions,
    events: mpsc::Sender<JobEvent>,
    cancel: CancellationToken,
}

/// What the driving loop waits on besides the worker's messages.
type Moving = Option<JoinHandle<Result<TransferReport, TransferError>>>;

impl Run {
    async fn drive(mut self) -> Result<JobOutputs, JobError> {
        let result = self.exchange().await;
        let code: u32 = if result.is_ok() { 0 } else { 1 };
        self.connection.close(code.into(), b"job over");
        result
    }

    async fn exchange(&mut self) -> Result<JobOutputs, JobError> {
        let (send, recv) = self.connection.open_bi().await.map_err(|_| self.lost())?;
        let writer = Writer::spawn(send, Some(Message::Submit(self.submit.clone())));
        let mut reader = spawn_reader(recv, self.options.silence_limit);
        // The worker's deadline starts a little later than ours: give it time to say so.
        let run_for = self.options.timeout.saturating_add(4 * HEARTBEAT_INTERVAL);
        let mut watch = Watch::new(
            Instant::now().into_std(),
            self.options.silence_limit,
            run_for,
        );
        let mut tracker = Tracker::new();
        let mut inputs: Moving = None;
        let mut outputs: Moving = None;
        let mut cancelling = false;
        loop {
            let wake = Instant::from_std(watch.next_check());
            tokio::select! {
                message = reader.recv() => {
                    watch.heard(Instant::now().into_std());
                    let message = self.message(message)?;
                    let step = tracker.on_message(message).map_err(JobError::Protocol)?;
                    if self.step(step, &mut inputs, &mut outputs).await? {
                        tracker.end();
                        return Ok(self.outputs(0));
                    }
                }
                sent = wait(&mut inputs) => {
                    let report = sent.map_err(|_| JobError::Protocol("the input task failed"))??;
                    inputs = None;
                    self.event(JobEvent::InputsSent { bytes: report.bytes_total }).await;
                }
                received = wait(&mut outputs) => {
                    let report = received.map_err(|_| JobError::Protocol("the output task failed"))??;
                    tracker.end();
                    let mut outputs = self.outputs(report.files);
                    outputs.bytes = report.bytes_total;
                    return Ok(outputs);
                }
                () = self.cancel.cancelled(), if !cancelling => {
                    cancelling = true;
                    writer.send(Message::Cancel).await;
                    abort(&mut inputs);
                    abort(&mut outputs);
                }
                () = tokio::time::sleep_until(wake) => {
                    match watch.check(Instant::now().into_std()) {
                        Some(Expiry::Deadline) => return Err(self.timed_out(&writer).await),
                        Some(Expiry::Silent) if cancelling => return Err(JobError::Cancelled),
                        Some(Expiry::Silent) => return Err(JobError::WorkerGone),
                        None => {}
                    }
                }
            }
        }
    }

    /// A message from the reader, or what its failure means.
    fn message(&self, message: Option<Result<Message, ReadError>>) -> Result<Message, JobError> {
        match message {
            Some(Ok(message)) => Ok(message),
            Some(Err(ReadError::Decode(_))) => {
                Err(JobError::Protocol("a message that does not decode"))
            }
            Some(Err(_)) | None => Err(self.lost()),
        }
    }

    /// The gate's refusal if that is why the connection closed, else "worker gone".
    fn lost(&self) -> JobError {
        match tether::gate::refusal(&self.connection) {
            Some(refused) => JobError::Network(refused),
            None => JobError::WorkerGone,
        }
    }

    /// Acts on a step; `Ok(true)`: the job ended with no outputs.
    async fn step(
        &mut self,
        step: Step,
        inputs: &mut Moving,
        outputs: &mut Moving,
    ) -> Result<bool, JobError> {
        match step {
            Step::Quiet => {}
            Step::Accepted => {
                self.event(JobEvent::Accepted).await;
                if let Some(outgoing) = self.outgoing.take() {
                    *inputs = Some(self.spawn_inputs(outgoing).await?);
                }
            }
            Step::Progress(progress) => {
                let event = JobEvent::Progress {
                    done: progress.done,
                    total: progress.total,
                    note: progress.note,
                };
                self.event(event).await;
            }
            Step::Outputs { entries, bytes } => {
                if entries > self.options.max_output_entries
                    || bytes > self.options.max_output_bytes
                {
                    return Err(JobError::Usage(
                        "the outputs are over this side's caps".into(),
                    ));
                }
                self.event(JobEvent::OutputsComing { entries, bytes }).await;
                if entries == 0 {
                    return Ok(true);
                }
                *outputs = Some(self.spawn_outputs(Expected { entries, bytes }));
            }
            Step::Refused(code, message) => {
                return Err(JobError::refused(code, message, &self.submit.name));
            }
            Step::Failed(code, message) => return Err(JobError::failed(code, message)),
        }
        Ok(false)
    }

    async fn spawn_inputs(
        &self,
        outgoing: OutgoingTransfer,
    ) -> Result<JoinHandle<Result<TransferReport, TransferError>>, JobError> {
        let (send, recv) = self.connection.open_bi().await.map_err(|_| self.lost())?;
        let cancel = self.cancel.child_token();
        Ok(tokio::spawn(files::send(outgoing, send, recv, cancel)))
    }

    fn spawn_outputs(
        &self,
        expected: Expected,
    ) -> JoinHandle<Result<TransferReport, TransferError>> {
        let connection = self.connection.clone();
        let dir = self.options.output_dir.clone();
        let device = self.device;
        let cancel = self.cancel.child_token();
        tokio::spawn(async move {
            let (send, recv) = connection
                .accept_bi()
                .await
                .map_err(|_| tether_transfer::PeerError::Protocol("no output stream"))?;
            files::receive(send, recv, Path::new(&dir), device, expected, cancel).await
        })
    }

    fn outputs(&self, files: u64) -> JobOutputs {
        JobOutputs {
            dir: self.options.output_dir.clone(),
            files,
            bytes: 0,
        }
    }

    async fn timed_out(&self, writer: &Writer) -> JobError {
        writer.send(Message::Cancel).await;
        JobError::TimedOut
    }

    async fn event(&self, event: JobEvent) {
        // A caller that does not read events does not stall the job.
        let _ = self.events.try_send(event);
    }
}

/// Waits for a running transfer, or forever when there is none.
async fn wait(
    task: &mut Moving,
) -> Result<Result<TransferReport, TransferError>, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

fn abort(task: &mut Moving) {
    if let Some(task) = task.take() {
        task.abort();
    }
}
