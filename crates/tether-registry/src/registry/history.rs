//! The transfer history kept in `secrets.redb` (see [`crate::history`]).

use std::sync::atomic::Ordering;

use tether_identity::NodeId;

use super::DeviceRegistry;
use crate::{HistoryEntry, MAX_HISTORY_BODY, RegistryError};

impl DeviceRegistry {
    /// Adds an entry about a transfer with `node_id` (any device: a record outlives an
    /// unpairing) and returns its number. The oldest entries beyond the cap
    /// ([`crate::MAX_HISTORY`] unless [`Self::set_history_cap`] changed it) are dropped in the
    /// same transaction, committed before this returns.
    pub fn append_history(&self, node_id: NodeId, body: &[u8]) -> Result<u64, RegistryError> {
        if body.len() > MAX_HISTORY_BODY {
            return Err(RegistryError::HistoryEntryTooLong {
                len: body.len(),
                max: MAX_HISTORY_BODY,
            });
        }
        let cap = self.shared.history_cap.load(Ordering::Relaxed);
        let store = self.shared.store.lock();
        Ok(self.opened(&store)?.append_history(&node_id, body, cap)?)
    }

    /// The newest entries first, at most `limit`; only those about `node_id` if given.
    pub fn history(
        &self,
        node_id: Option<NodeId>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RegistryError> {
        let store = self.shared.store.lock();
        Ok(self.opened(&store)?.history(node_id.as_ref(), limit)?)
    }

    /// Keeps at most `cap` history entries (at least one) from the next entry on.
    pub fn set_history_cap(&self, cap: usize) {
        self.shared.history_cap.store(cap.max(1), Ordering::Relaxed);
    }
}
