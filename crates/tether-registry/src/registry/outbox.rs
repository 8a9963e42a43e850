//! The outbox kept in `secrets.redb` (see [`crate::outbox`]).

use tether_identity::NodeId;

use super::DeviceRegistry;
use crate::{MAX_OUTBOX, MAX_OUTBOX_BODY, OutboxRecord, RegistryError};

impl DeviceRegistry {
    /// Queues a send for `node_id` (its body is the caller's) and returns the entry's number,
    /// committed before this returns. Refused with [`RegistryError::OutboxFull`] when
    /// [`MAX_OUTBOX`] entries wait already, and for a revoked node
    /// ([`RegistryError::Refused`]).
    pub fn queue_outbox(&self, node_id: NodeId, body: &[u8]) -> Result<u64, RegistryError> {
        check_body(body)?;
        if let Err(reason) = self.check_connection(&node_id) {
            return Err(RegistryError::Refused {
                node: node_id,
                reason,
            });
        }
        let store = self.shared.store.lock();
        self.opened(&store)?
            .queue_outbox(&node_id, body, MAX_OUTBOX)?
            .ok_or(RegistryError::OutboxFull { max: MAX_OUTBOX })
    }

    /// Replaces the body of entry `id` (its attempts, its last error); `false` if it is no
    /// longer queued (delivered or cancelled meanwhile).
    pub fn update_outbox(
        &self,
        id: u64,
        node_id: NodeId,
        body: &[u8],
    ) -> Result<bool, RegistryError> {
        check_body(body)?;
        let store = self.shared.store.lock();
        Ok(self.opened(&store)?.update_outbox(id, &node_id, body)?)
    }

    /// Takes entry `id` out of the outbox (delivered, or cancelled); whether it was there.
    pub fn remove_outbox(&self, id: u64) -> Result<bool, RegistryError> {
        let store = self.shared.store.lock();
        Ok(self.opened(&store)?.remove_outbox(id)?)
    }

    /// Every queued send, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxRecord>, RegistryError> {
        let store = self.shared.store.lock();
        Ok(self.opened(&store)?.outbox()?)
    }
}

fn check_body(body: &[u8]) -> Result<(), RegistryError> {
    if body.len() > MAX_OUTBOX_BODY {
        return Err(RegistryError::OutboxEntryTooLong {
            len: body.len(),
            max: MAX_OUTBOX_BODY,
        });
    }
    Ok(())
}
