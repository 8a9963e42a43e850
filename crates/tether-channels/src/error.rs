//! [`ChannelError`]: why a channel call failed.

use tether::HlcError;

use crate::store::StoreError;
use crate::wire::MAX_MESSAGE_LEN;

/// Why a channel call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// [`Channels::attach`](crate::Channels::attach) has not been called, or the service shut down.
    #[error("the channels are not attached to a running service")]
    NotAttached,
    /// The topic name is empty, too long, or holds control characters.
    #[error("a topic is 1 to 64 bytes of text without control characters")]
    BadTopic,
    /// This device already subscribes to the topic.
    #[error("already subscribed to this topic")]
    AlreadySubscribed,
    /// This device subscribes to as many topics as it may.
    #[error("subscribed to {0} topics, the most allowed")]
    TooManyTopics(usize),
    /// The message is larger than [`MAX_MESSAGE_LEN`].
    #[error("a message of {len} bytes is over the cap of {MAX_MESSAGE_LEN}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// The clock cannot stamp the message.
    #[error("cannot stamp the message")]
    Clock(#[from] HlcError),
    /// The channels' file failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
