//! Which of two open links to one device to keep.

use std::time::Duration;

use tether_identity::NodeId;

/// Two links to one device that were established within this long of each other (one
/// dialled by each side) were dialled at once.
pub const SIMULTANEOUS_OPEN: Duration = Duration::from_secs(5);

/// The facts about two open links to the same device that decide which one stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DuplicateLinks {
    /// This device's node id.
    pub me: NodeId,
    /// The other device's node id.
    pub peer: NodeId,
    /// Whether this device dialled the older link.
    pub old_dialled_here: bool,
    /// Whether this device dialled the newer link.
    pub new_dialled_here: bool,
    /// How long ago the older link was established.
    pub old_age: Duration,
}

impl DuplicateLinks {
    /// Whether to keep the older link rather than the newer. Both devices come to the same
    /// answer for the same pair of links.
    ///
    /// * Both dialled by the same side: the newer. That side dialled again, so it has given
    ///   up on the older one (one dial per device at a time, and only without a live link).
    /// * One dialled by each side, within [`SIMULTANEOUS_OPEN`]: the one the lower node id
    ///   dialled. Both saw the other come online and dialled at once.
    /// * One dialled by each side, later: the newer. The peer dialled although we had a link,
    ///   so its side of that link is gone (it restarted, say) and ours has not noticed yet.
    pub fn keep_older(&self) -> bool {
        if self.old_dialled_here == self.new_dialled_here || self.old_age > SIMULTANEOUS_OPEN {
            return false;
        }
        // The older link was dialled by the lower id exactly when it was dialled here and we
        // are lower, or dialled there and the peer is lower.
        self.old_dialled_here == (self.me < self.peer)
    }
}
