//! Work on tokio's blocking pool.

use crate::error::{LocalError, TransferError};

/// Runs `f` on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LocalError::task_failed("a blocking task", e).into())
}
