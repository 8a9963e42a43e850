//! The first message of a stream of the transfer protocol: an offer, a lane or a pull.

use crate::error::{PeerError, TransferError};
use crate::link::{ByteStream, eof, read_frame_from};
use crate::protocol::{MAX_PULL_REQUEST_LEN, Message};
use crate::receive::incoming::{IncomingLane, IncomingOffer};

/// The first message of a stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum Hello<S> {
    /// A new transfer is offered.
    Offer(IncomingOffer<S>),
    /// An extra stream for a running transfer.
    Lane(IncomingLane<S>),
    /// A device asks this one to send it an entry (see [`crate::IncomingPull`]).
    Pull(crate::IncomingPull<S>),
}

/// Reads the first message of a stream of the transfer protocol.
pub async fn read_hello<S: ByteStream>(mut stream: S) -> Result<Hello<S>, TransferError> {
    let frame = read_frame_from(&mut stream).await?.ok_or_else(eof)?;
    match Message::from_frame(&frame)? {
        Message::Offer(offer) => Ok(Hello::Offer(IncomingOffer { stream, offer })),
        Message::Lane(hello) => Ok(Hello::Lane(IncomingLane { stream, hello })),
        Message::Pull(request) if frame.payload().len() <= MAX_PULL_REQUEST_LEN => {
            Ok(Hello::Pull(crate::IncomingPull::new(stream, request)))
        }
        Message::Pull(_) => Err(PeerError::Protocol("a pull request over its size cap").into()),
        _ => Err(PeerError::Protocol("a stream must start with Offer, Lane or Pull").into()),
    }
}
