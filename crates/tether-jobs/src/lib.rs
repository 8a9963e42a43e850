//! Jobs run on another device: one device registers handlers by job name, a paired device
//! submits a job with arguments and input files and gets its progress and output files back.
//!
//! Built the way a third party would build on Tether: a [`NetworkProtocol`](tether::NetworkProtocol)
//! ([`Jobs`]) on its own ALPN, [`JOBS_ALPN`], registered with the service's builder and reached
//! with [`NetworkingService::connect_protocol`](tether::NetworkingService::connect_protocol).
//! Tether's gate admits only paired, trusted, non-revoked devices before any of this runs.
//!
//! * **Worker.** [`Jobs::builder`] takes a work directory and a [`JobHandler`] per name with
//!   its [`JobPolicy`]: which devices may submit ([`Allow`]), how many run at once (per name and
//!   per device; [`JobsBuilder::max_jobs`] in all), the longest run time, and caps on arguments
//!   and inputs, checked before anything moves. A handler gets a [`JobContext`]: the
//!   arguments, a directory of verified inputs, an output directory, a [`ProgressSender`] and
//!   a cancellation token.
//! * **Submitter.** [`submit`] returns a [`JobHandle`]: [`JobEvent`]s, `cancel()`, and the
//!   result, [`JobOutputs`] received verified into a directory the caller chose or a
//!   [`JobError`] (unknown job, refused, timed out, cancelled, the handler's error, the worker
//!   gone, the gate's refusal).
//! * **Files.** Inputs and outputs move over Tether's transfer engine on streams of the job's
//!   own connection: each 256 KiB chunk checked against its BLAKE3 hash on arrival, files put
//!   in place atomically, an offer larger than announced refused before anything is written.
//!
//! ```no_run
//! # async fn demo(worker: tether::NetworkingService, me: tether::NetworkingService,
//! #     work: std::path::PathBuf, out: std::path::PathBuf) -> Result<(), Box<dyn std::error::Error>> {
//! use tether_jobs::{Allow, HandlerError, JobContext, JobHandler, JobPolicy, Jobs, SubmitOptions};
//!
//! struct Count;
//!
//! #[tether::async_trait]
//! impl JobHandler for Count {
//!     async fn run(&self, job: JobContext) -> Result<(), HandlerError> {
//!         let n = std::fs::read_dir(&job.input_dir)?.count();
//!         std::fs::write(job.output_dir.join("count.txt"), n.to_string())?;
//!         Ok(())
//!     }
//! }
//!
//! let jobs = Jobs::builder(work)
//!     .handler("count", Count, JobPolicy::default().allow(Allow::AnyPaired))
//!     .build();
//! worker.register_protocol(jobs)?;
//!
//! let handle = tether_jobs::submit(&me, worker.node_id(), "count", b"", &[], SubmitOptions::new(out)).await?;
//! let outputs = handle.result().await?;
//! # let _ = outputs; Ok(()) }
//! ```

mod control;
mod error;
mod files;
mod machine;
mod policy;
mod serve;
mod submit;
mod wire;
mod worker;

pub use error::{HandlerError, JobError};
pub use policy::{Allow, JobPolicy};
pub use submit::{JobEvent, JobHandle, JobOutputs, SubmitOptions, submit};
pub use tether_transfer::CancellationToken;
pub use wire::{
    DecodeError, FailureCode, HEARTBEAT_INTERVAL, JOBS_ALPN, MAX_ARGS_LEN, MAX_MESSAGE_LEN,
    MAX_NAME_LEN, MAX_TEXT_LEN, Message, Progress, ReadError, RefusalCode, Submit, decode_message,
    encode_message,
};
pub use worker::{
    DEFAULT_SILENCE_LIMIT, JobContext, JobHandler, Jobs, JobsBuilder, ProgressSender,
};
