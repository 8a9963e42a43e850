//! This device's end of one link to a paired device (the queue its frames wait in, the
//! topics the device subscribed to on it), and the codes a link is closed with.

use std::collections::HashSet;

use tether::{Connection, NodeId};
use tokio::sync::mpsc;

use crate::wire::Frame;

/// Close code: the link ended normally (shutdown).
pub const CLOSE_DONE: u32 = 0x6368_0000;
/// Close code: the device is no longer paired or trusted.
pub const CLOSE_REVOKED: u32 = 0x6368_0001;
/// Close code: the subscriber did not keep up (its queue filled, or a write missed its
/// deadline).
pub const CLOSE_SLOW: u32 = 0x6368_0002;
/// Close code: the device broke the protocol.
pub const CLOSE_VIOLATION: u32 = 0x6368_0003;

/// This device's end of a link.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) id: u64,
    pub(crate) node: NodeId,
    pub(crate) connection: Connection,
    pub(crate) queue: mpsc::Sender<Frame>,
    /// The topics the device subscribed to on this link.
    pub(crate) topics: HashSet<String>,
}

impl Link {
    /// Queues `frame`; `false` when the queue is full (the subscriber is too slow).
    pub(crate) fn send(&self, frame: Frame) -> bool {
        match self.queue.try_send(frame) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => true,
            Err(mpsc::error::TrySendError::Full(_)) => false,
        }
    }
}

/// Drops subscribers that did not keep up.
pub(crate) fn close_slow(connections: &[Connection]) {
    for connection in connections {
        tracing::debug!("a channel subscriber did not keep up; dropped");
        connection.close(CLOSE_SLOW.into(), b"too slow");
    }
}
