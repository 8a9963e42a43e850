//! One job connection on the worker: submission, consent and caps, inputs, the handler,
//! outputs. Every wait is bounded: the submission and each stream by [`OPEN_DEADLINE`], the
//! submitter's heartbeats by the silence limit, the whole job by its run time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tether::{Connection, NetworkProtocol, PairedPeer, ProtocolError, async_trait};
use tether_transfer::CancellationToken;
use tokio::time::Instant;

use crate::control::{Writer, finish_with, spawn_reader};
use crate::files::{self, Expected};
use crate::wire::{FailureCode, JOBS_ALPN, Message, Submit, read_message};
use crate::worker::{JobContext, Jobs, OPEN_DEADLINE, Registered, WorkerState};

/// How long the worker waits, after its last message, for the submitter to close.
const LINGER: Duration = Duration::from_secs(5);

/// Why a job stopped early, as the control reader saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    SubmitterGone,
}

#[async_trait]
impl NetworkProtocol for Jobs {
    fn alpn(&self) -> &'static [u8] {
        JOBS_ALPN
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        serve(self.state.clone(), connection, peer).await
    }

    async fn shutdown(&self) {
        self.state.shutdown.cancel();
    }
}

async fn serve(
    state: Arc<WorkerState>,
    connection: Connection,
    peer: PairedPeer,
) -> Result<(), ProtocolError> {
    let (send, mut recv) = tokio::time::timeout(OPEN_DEADLINE, connection.accept_bi())
        .await
        .map_err(|_| ProtocolError::Violation("no control stream in time".into()))??;
    let submit = match read_message(&mut recv, OPEN_DEADLINE).await {
        Ok(Message::Submit(submit)) => submit,
        Ok(_) => return Err(ProtocolError::Violation("expected a submission".into())),
        Err(error) => return Err(ProtocolError::other(error)),
    };
    let (slot, registered) = match state.admit(&submit, &peer) {
        Ok(admitted) => admitted,
        Err((code, message)) => {
            tracing::info!(job = %submit.name, ?code, "job refused");
            let refused = Message::Refused {
                code,
                message: message.to_owned(),
            };
            finish_with(Some(send), &refused).await;
            linger(&connection).await;
            return Ok(());
        }
    };
    tracing::info!(job = %submit.name, peer = %peer.node_id, "job accepted");
    let run_for = registered.policy.run_for(&submit);
    let job = Job {
        connection: &connection,
        state: &state,
        registered,
        submit,
        peer,
        deadline: Instant::now() + run_for,
        cancel: state.shutdown.child_token(),
        stop: Arc::new(Mutex::new(None)),
    };
    let writer = Writer::spawn(send, Some(Message::Accepted));
    let reader = spawn_reader(recv, state.silence_limit);
    job.watch_submitter(reader);
    let outcome = job.run(&writer).await;
    job.cancel.cancel();
    match outcome {
        // The submitter closes once the outputs are in; heartbeats go on until then.
        Ok(()) => linger(&connection).await,
        Err((code, message)) => {
            let send = writer.stop().await;
            finish_with(send, &Message::Failed { code, message }).await;
            linger(&connection).await;
        }
    }
    drop(slot);
    Ok(())
}

/// Waits, bounded, for the submitter to close, so the last message is delivered.
async fn linger(connection: &Connection) {
    let _ = tokio::time::timeout(LINGER, connection.closed()).await;
}

struct Job<'a> {
    connection: &'a Connection,
    state: &'a Arc<WorkerState>,
    registered: &'a Registered,
    submit: Submit,
    peer: PairedPeer,
    deadline: Instant,
    cancel: CancellationToken,
    stop: Arc<Mutex<Option<Stop>>>,
}

type Failure = (FailureCode, String);

impl Job<'_> {
    /// Cancels the job when the submitter says so or goes silent.
    fn watch_submitter(
        &self,
        mut reader: tokio::sync::mpsc::Receiver<Result<Message, crate::wire::ReadError>>,
    ) {
        let cancel = self.cancel.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let why = loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    message = reader.recv() => match message {
                        Some(Ok(Message::Heartbeat)) => {}
                        Some(Ok(Message::Cancel)) => break Stop::Cancelled,
                        Some(Ok(_)) | Some(Err(_)) | None => break Stop::SubmitterGone,
                    },
                }
            };
            stop.lock().get_or_insert(why);
            cancel.cancel();
        });
    }

    /// Inputs, handler, outputs; or the failure to report.
    async fn run(&self, writer: &Writer) -> Result<(), Failure> {
        let dir = JobDir::create(&self.state.work_dir).await?;
        let work = async {
            self.receive_inputs(&dir.input).await?;
            self.run_handler(&dir, writer).await
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => return Err(self.stopped()),
            () = tokio::time::sleep_until(self.deadline) => return Err(timed_out()),
            outcome = work => outcome?,
        }
        // A handler that returned because it was cancelled has no outputs to send.
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        if Instant::now() >= self.deadline {
            return Err(timed_out());
        }
        self.send_outputs(&dir.output, writer).await
    }

    fn stopped(&self) -> Failure {
        match *self.stop.lock() {
            Some(Stop::Cancelled) => (FailureCode::Cancelled, "cancelled".into()),
            Some(Stop::SubmitterGone) => (FailureCode::Cancelled, "the submitter is gone".into()),
            None => (FailureCode::Internal, "the worker is shutting down".into()),
        }
    }

    async fn receive_inputs(&self, dir: &Path) -> Result<(), Failure> {
        if self.submit.input_entries == 0 {
            return Ok(());
        }
        let (send, recv) = tokio::time::timeout(OPEN_DEADLINE, self.connection.accept_bi())
            .await
            .map_err(|_| transfer_failure("the inputs did not start in time"))?
            .map_err(|_| transfer_failure("the connection was lost"))?;
        let expected = Expected {
            entries: self.submit.input_entries,
            bytes: self.submit.input_bytes,
        };
        files::receive(
            send,
            recv,
            dir,
            self.peer.node_id,
            expected,
            self.cancel.clone(),
        )
        .await
        .map_err(|error| {
            tracing::info!(error = %tether::error_chain(&error), "job inputs failed");
            transfer_failure("receiving the inputs failed")
        })?;
        Ok(())
    }

    async fn run_handler(&self, dir: &JobDir, writer: &Writer) -> Result<(), Failure> {
        let context = JobContext {
            name: self.submit.name.clone(),
            peer: self.peer.clone(),
            args: self.submit.args.clone(),
            input_dir: dir.input.clone(),
            output_dir: dir.output.clone(),
            progress: WorkerState::progress_sender(writer.queue()),
            cancel: self.cancel.clone(),
        };
        *self.state.started.lock() += 1;
        self.registered
            .handler
            .run(context)
            .await
            .map_err(|error| (FailureCode::Handler, error.message().to_owned()))
    }

    async fn send_outputs(&self, dir: &Path, writer: &Writer) -> Result<(), Failure> {
        let paths = files::top_level(dir).map_err(|_| internal("the outputs cannot be read"))?;
        let outgoing = if paths.is_empty() {
            None
        } else {
            Some(
                files::prepare(&paths)
                    .await
                    .map_err(|_| internal("the outputs cannot be read"))?,
            )
        };
        let (entries, bytes) = outgoing.as_ref().map_or((0, 0), files::size_of);
        writer.send(Message::Finished { entries, bytes }).await;
        let Some(outgoing) = outgoing else {
            return Ok(());
        };
        let (send, recv) = tokio::time::timeout(OPEN_DEADLINE, self.connection.open_bi())
            .await
            .map_err(|_| transfer_failure("the outputs did not start in time"))?
            .map_err(|_| transfer_failure("the connection was lost"))?;
        let sending = files::send(outgoing, send, recv, self.cancel.clone());
        tokio::select! {
            sent = sending => sent.map(drop).map_err(|error| {
                tracing::info!(error = %tether::error_chain(&error), "job outputs failed");
                transfer_failure("sending the outputs failed")
            }),
            () = tokio::time::sleep_until(self.deadline) => Err(timed_out()),
        }
    }
}

fn timed_out() -> Failure {
    (FailureCode::TimedOut, "the job ran out of time".to_owned())
}

fn transfer_failure(message: &str) -> Failure {
    (FailureCode::Transfer, message.to_owned())
}

fn internal(message: &str) -> Failure {
    (FailureCode::Internal, message.to_owned())
}

/// A job's own directory, removed when dropped.
struct JobDir {
    root: PathBuf,
    input: PathBuf,
    output: PathBuf,
}

impl JobDir {
    async fn create(work_dir: &Path) -> Result<Self, Failure> {
        let root = work_dir.join(tether::Uuid::new_v4().to_string());
        let input = root.join("in");
        let output = root.join("out");
        for dir in [&input, &output] {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|_| internal("the job's directory cannot be made"))?;
        }
        Ok(Self {
            root,
            input,
            output,
        })
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!(%error, dir = %self.root.display(), "a job's directory stays");
        }
    }
}
