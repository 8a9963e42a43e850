//! The receiving side: a [`Receiver`] that takes incoming streams, asks for consent, and receives
//! into its destination.
//!
//! Every stream of the transfer protocol starts with one message. [`read_hello`] reads it: an
//! `Offer` starts a transfer ([`Receiver::receive`] runs it to the end), a `Lane` joins a
//! running transfer as an extra data stream ([`Receiver::attach`]). A lane is accepted only for
//! a transfer that is running, from the same peer, with an index the offer announced.

mod data;
pub(crate) mod dest;
pub(crate) mod disk;
mod hello;
pub(crate) mod incoming;
mod offer;
mod plan;
mod receiver;
mod requester;
mod room;
mod session;
mod setup;
mod task;

pub use hello::{Hello, read_hello};
pub use incoming::{IncomingLane, IncomingOffer};
pub use receiver::Receiver;
