//! Why reading a remote file failed.

use std::sync::Arc;
use std::time::Duration;

use tether::NetworkError;

use crate::wire::{Refusal, WireError};

/// Why opening or reading a remote file failed. Cheap to clone: one failed fetch is told to
/// every read waiting for it.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// Tether could not connect to the device (not paired, offline, refused by its gate...).
    #[error("could not reach the device")]
    Network(#[source] Arc<NetworkError>),
    /// The connection or a stream of it failed.
    #[error("the stream to the device failed: {0}")]
    Link(String),
    /// The device did not answer in time.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The device refused the request.
    #[error("the device refused")]
    Refused(#[source] Refusal),
    /// The device's answer does not follow the protocol.
    #[error("malformed answer")]
    Malformed(#[source] WireError),
    /// The device answered something other than what was asked.
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
    /// A chunk's bytes do not match its hash: never returned as data.
    #[error("chunk {chunk} failed verification")]
    Corrupt {
        /// The chunk's index.
        chunk: u64,
    },
}

impl From<NetworkError> for StreamError {
    fn from(error: NetworkError) -> Self {
        Self::Network(Arc::new(error))
    }
}

impl From<StreamError> for std::io::Error {
    fn from(error: StreamError) -> Self {
        let kind = match &error {
            StreamError::TimedOut(_) => std::io::ErrorKind::TimedOut,
            StreamError::Corrupt { .. } | StreamError::Malformed(_) => {
                std::io::ErrorKind::InvalidData
            }
            StreamError::Refused(Refusal::NotShared) => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_prints_its_own_layer_once() {
        let errors = [
            StreamError::Refused(Refusal::NotShared),
            StreamError::Malformed(WireError::Truncated),
            StreamError::Corrupt { chunk: 3 },
            StreamError::TimedOut(Duration::from_secs(1)),
            StreamError::from(NetworkError::Usage("x".to_owned())),
        ];
        for error in &errors {
            tether::assert_no_repeated_layer(error);
        }
        assert_eq!(
            tether::error_chain(&StreamError::Refused(Refusal::NotShared)),
            "the device refused: not shared with this device"
        );
    }
}
