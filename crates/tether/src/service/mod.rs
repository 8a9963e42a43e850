//! `NetworkingService`: the composed system.
//!
//! The service is a handful of owned components, each in its own file with private fields:
//! the [`pool::Pool`] (links, dials, connections, idle marks), the [`desk::PairingDesk`] (the
//! code shown and its outcome), the [`discovery::DiscoveryHub`] (discoveries and sightings),
//! the [`protocols::Protocols`] table, and the [`tasks::Tasks`] that run in the background.
//! No component calls another while it holds one of its locks (the pool asks the registry,
//! which calls nothing back).
//! `core.rs` holds the service handle and what it is made of.
//! The `impl NetworkingService` blocks compose them: `lifecycle.rs` starts and stops the
//! service, `dial.rs` and `links.rs` connect to devices and watch their links, `serve.rs`
//! serves incoming connections, `loops.rs` runs the background loops, and the other files
//! hold the public API by topic.

mod admin;
mod clock;
mod core;
mod couriers;
mod data_dir;
mod desk;
mod device;
mod dial;
mod discovery;
mod invite;
mod lifecycle;
mod links;
mod loops;
mod messages;
mod names;
mod outbox;
mod pairing;
mod pool;
mod protocols;
mod pull;
mod quota;
mod resend;
mod serve;
mod states;
mod tasks;
mod text;
mod trust;

pub use self::core::NetworkingService;
pub use admin::{DeviceStatus, Diagnostics, RelayState};
pub use device::DeviceHandle;
pub use invite::PairingInvite;
pub use pull::{PULL_ANSWER_TIMEOUT, PullOptions};
pub use quota::TransferQuotas;
