//! How a submitted job can fail, and a handler's own error.

use tether::{NetworkError, TransferError};

use crate::wire::{FailureCode, RefusalCode, cut};

/// Why a submitted job ended without outputs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The worker has no job of that name.
    #[error("the worker offers no job named {name:?}")]
    UnknownJob {
        /// The name submitted.
        name: String,
    },
    /// The worker refused the job before running anything (not allowed, busy, too large).
    #[error("refused ({code:?}): {message}")]
    Refused {
        /// Why.
        code: RefusalCode,
        /// The worker's message.
        message: String,
    },
    /// The job ran past its deadline (the submitter's timeout or the worker's limit).
    #[error("timed out")]
    TimedOut,
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The job's handler failed on the worker.
    #[error("the job failed: {0}")]
    Handler(String),
    /// The worker failed to move files or hit a local problem of its own.
    #[error("the worker failed ({code:?}): {message}")]
    Worker {
        /// How.
        code: FailureCode,
        /// The worker's message.
        message: String,
    },
    /// The worker went silent or its connection was lost mid-job.
    #[error("the worker is gone")]
    WorkerGone,
    /// Connecting failed, or the worker's gate refused this device.
    #[error("could not reach the worker")]
    Network(#[from] NetworkError),
    /// Sending the inputs or receiving the outputs failed on this side.
    #[error("moving files failed")]
    Transfer(#[from] TransferError),
    /// The worker broke the job protocol.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The caller asked for something that cannot be done (arguments over the cap, no such
    /// output directory).
    #[error("invalid submission: {0}")]
    Usage(String),
}

impl JobError {
    pub(crate) fn refused(code: RefusalCode, message: String, name: &str) -> Self {
        match code {
            RefusalCode::UnknownJob => JobError::UnknownJob {
                name: name.to_owned(),
            },
            code => JobError::Refused { code, message },
        }
    }

    pub(crate) fn failed(code: FailureCode, message: String) -> Self {
        match code {
            FailureCode::Handler => JobError::Handler(message),
            FailureCode::TimedOut => JobError::TimedOut,
            FailureCode::Cancelled => JobError::Cancelled,
            code => JobError::Worker { code, message },
        }
    }
}

/// A handler's failure: its message goes back to the submitter (cut to
/// [`MAX_TEXT_LEN`](crate::MAX_TEXT_LEN) bytes), so it should say what went wrong for the
/// person there and nothing they should not learn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(String);

impl HandlerError {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(cut(message.into()))
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(error: std::io::Error) -> Self {
        Self::new(error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use tether::assert_no_repeated_layer;

    use super::*;

    #[test]
    fn every_error_prints_each_layer_once() {
        let errors = [
            JobError::UnknownJob { name: "x".into() },
            JobError::refused(RefusalCode::Busy, "busy".into(), "x"),
            JobError::failed(FailureCode::Handler, "bad".into()),
            JobError::failed(FailureCode::Internal, "disk".into()),
            JobError::WorkerGone,
            JobError::Protocol("a message after the job ended"),
        ];
        for error in &errors {
            assert_no_repeated_layer(error);
        }
        assert!(matches!(
            JobError::refused(RefusalCode::UnknownJob, String::new(), "hash"),
            JobError::UnknownJob { name } if name == "hash"
        ));
        assert!(matches!(
            JobError::failed(FailureCode::TimedOut, String::new()),
            JobError::TimedOut
        ));
    }
}
