//! [`ChannelEvent`]: what a subscription hears.

use tether::NodeId;

use crate::topic::ChannelMessage;

/// What a subscription hears.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChannelEvent {
    /// A message, once, after every earlier one from its sender.
    Message(ChannelMessage),
    /// Messages from `sender` that nobody who answered still holds: they will not come.
    Gap {
        /// Whose messages.
        sender: NodeId,
        /// The first missing sequence number.
        first: u64,
        /// The last missing sequence number.
        last: u64,
    },
    /// A device subscribed to the topic (or was subscribed when this device joined).
    Joined {
        /// Who.
        device: NodeId,
    },
    /// A device left the topic: it unsubscribed, its connection dropped, or it was unpaired
    /// or blocked.
    Left {
        /// Who.
        device: NodeId,
    },
    /// This subscription fell behind and missed `missed` events.
    Lagged {
        /// How many.
        missed: u64,
    },
}
