//! [`PairingInvite`]: a code this device shows, and the way to wait for its outcome.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::desk::{Outcome, Shown};
use crate::pairing::{ConfirmSlot, PairedDevice, PendingPairing};
use crate::{CodeEnded, NetworkError};

/// How many joiners that proved the code may wait for the invite's reader: one, so the
/// next joiner's exchange waits until the person has seen the one before.
const PENDING_AT_ONCE: usize = 1;

/// A pairing code (or ticket) this device is showing, and the way to wait for its outcome.
#[derive(Debug)]
pub struct PairingInvite {
    /// What the user types on the other device: the word code, or the ticket text.
    pub code: String,
    /// When the code stops working.
    pub expires_in: Duration,
    number: u64,
    outcome: watch::Receiver<Option<Outcome>>,
    confirm: Arc<ConfirmSlot>,
    pending: Option<mpsc::Receiver<PendingPairing>>,
}

// The confirmation slot's mutex (parking_lot's, which does not poison) is the one part that
// is not unwind-safe on its own. Its one critical section is a single assignment, so a panic
// elsewhere cannot leave it half-updated: the invite stays unwind-safe, as with a std mutex.
impl std::panic::UnwindSafe for PairingInvite {}
impl std::panic::RefUnwindSafe for PairingInvite {}

impl PairingInvite {
    /// The invite of the code `shown` (whose text is `code`).
    pub(super) fn new(
        code: String,
        expires_in: Duration,
        shown: Shown,
        confirm: Arc<ConfirmSlot>,
    ) -> Self {
        Self {
            code,
            expires_in,
            number: shown.number,
            outcome: shown.outcome,
            confirm,
            pending: None,
        }
    }

    /// Asks to confirm each joiner, and waits for the next one that proves the code: nothing
    /// is stored (on either side) until [`PendingPairing::accept`]; rejecting or dropping it
    /// stores nothing and the joiner is told. From the first call on, this code asks; answer
    /// within the pairing exchange's deadline (60 s). Ends with an error when the code ends
    /// without a joiner proving it (burned, expired, cancelled, replaced).
    pub fn pending(&mut self) -> impl Future<Output = Result<PendingPairing, NetworkError>> + '_ {
        if self.pending.is_none() {
            let (sender, receiver) = mpsc::channel(PENDING_AT_ONCE);
            *self.confirm.lock() = Some((self.number, sender));
            self.pending = Some(receiver);
        }
        async move {
            let Some(pending) = self.pending.as_mut() else {
                return Err(NetworkError::Shutdown);
            };
            tokio::select! {
                next = pending.recv() => next.ok_or(NetworkError::Shutdown),
                // Paired through a pending pairing this invite handed out earlier: the code
                // is used, and no other joiner will come.
                outcome = wait_for_outcome(&mut self.outcome) => {
                    Err(outcome.map_or_else(|e| e, |_| NetworkError::CodeEnded(CodeEnded::Used)))
                }
            }
        }
    }

    /// Waits until a device pairs with this code, or the code ends without a pairing (a
    /// wrong guess burned it, it expired, it was cancelled or replaced by a new code:
    /// [`NetworkError::CodeEnded`] says which). A connection that makes no guess (a stranger,
    /// a joiner that hung up) does not end it.
    ///
    /// Accept-on-proof: whoever proves the code is paired, with no question asked (after
    /// [`Self::pending`] was called, this accepts each pending pairing itself). Apps with a
    /// person at the screen should use [`Self::pending`] and show the name and code first.
    pub async fn paired(&mut self) -> Result<PairedDevice, NetworkError> {
        loop {
            let Some(pending) = self.pending.as_mut() else {
                return wait_for_outcome(&mut self.outcome).await;
            };
            tokio::select! {
                next = pending.recv() => match next {
                    Some(next) => return next.accept().await,
                    None => self.pending = None,
                },
                outcome = wait_for_outcome(&mut self.outcome) => return outcome,
            }
        }
    }
}

/// Waits for the outcome of one code.
async fn wait_for_outcome(
    outcome: &mut watch::Receiver<Option<Outcome>>,
) -> Result<PairedDevice, NetworkError> {
    match outcome.wait_for(Option::is_some).await {
        Ok(ended) => match ended.clone() {
            Some(Ok(device)) => Ok(device),
            Some(Err(ended)) => Err(NetworkError::CodeEnded(ended)),
            None => Err(NetworkError::Shutdown),
        },
        // The service shut down (or dropped the code) before it ended.
        Err(_) => Err(NetworkError::Shutdown),
    }
}
