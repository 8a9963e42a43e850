//! [`ChannelLimits`]: what a paired device may make this one hold on its channels.

use std::time::Duration;

use crate::topic::HistoryLimits;

/// How much a paired device may make this one hold, and how long it may keep us waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChannelLimits {
    /// The most topics one device may subscribe to on one link (and this device to at once).
    pub topics_per_device: usize,
    /// The most frames queued for one subscriber; a subscriber that lets more pile up is
    /// dropped (its link closed), never buffered without bound.
    pub queue: usize,
    /// How long one frame may take to write to a subscriber before it is dropped.
    pub write_deadline: Duration,
    /// How long the rest of a frame may take once its first byte came.
    pub frame_deadline: Duration,
    /// The history kept per topic, and the messages kept waiting for a gap.
    pub history: HistoryLimits,
}

impl Default for ChannelLimits {
    fn default() -> Self {
        Self {
            topics_per_device: 64,
            queue: 256,
            write_deadline: Duration::from_secs(5),
            frame_deadline: Duration::from_secs(10),
            history: HistoryLimits::default(),
        }
    }
}
