//! Live channels among paired devices: named topics, publish and subscribe, presence, each
//! message delivered once and in order per sender, stamped with the HLC, and a bounded
//! per-topic history a device that was offline catches up from.
//!
//! Built on Tether's extension points the way a third party would: [`Channels`] is a
//! [`tether::NetworkProtocol`] on its own ALPN ([`CHANNEL_ALPN`]), so only paired, trusted
//! devices reach it (Tether's gate closes anyone else's connection before the handler runs),
//! and it dials with [`tether::NetworkingService::connect_protocol`].
//!
//! Messages go by direct fan-out: the publisher sends each message over its own link to every
//! connected device that subscribes to the topic. A device that was offline says, when it
//! subscribes, the last sequence number it saw from each sender; each peer answers from its
//! history, and duplicates are dropped.
//!
//! ```no_run
//! # async fn demo(dir: &std::path::Path, config: tether::NetworkingConfig)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use tether_channels::{ChannelEvent, Channels};
//!
//! let channels = Channels::open(dir)?;
//! let service = tether::Builder::from_config(config).protocol(channels.clone()).spawn().await?;
//! channels.attach(&service);
//! let mut kitchen = channels.subscribe("kitchen")?;
//! kitchen.publish("out of milk")?;
//! while let Some(event) = kitchen.next().await {
//!     if let ChannelEvent::Message(message) = event {
//!         println!("{}: {}", message.sender.fmt_short(), String::from_utf8_lossy(&message.body));
//!     }
//! }
//! # Ok(()) }
//! ```

mod channels;
mod error;
mod event;
mod limits;
mod link;
mod peer;
mod store;
mod topic;
pub mod wire;

pub use channels::{CHANNEL_ALPN, Channels, Subscription};
// The HLC `wire` stamps messages with (the facade's), named at the root for it.
pub use error::ChannelError;
pub use event::ChannelEvent;
pub use limits::ChannelLimits;
pub use peer::{CLOSE_DONE, CLOSE_REVOKED, CLOSE_SLOW, CLOSE_VIOLATION};
pub use store::{FILE_NAME, StoreError};
use tether::Hlc;
pub use topic::{ChannelMessage, Delivery, HistoryLimits, Outcome, TopicLog};
