//! A request's name across links.

use tether_wire::RequestId;

/// A request's name across links: 63 bits its sender picks at random, so that a request sent
/// again on a new link, after the one it went out on died before the answer came, is the same
/// request to the peer, which answers it once (see [`crate::AnswerCache`]).
///
/// On a link the key travels as the id `key << 1 | side`: the lowest bit says which side of the
/// link sent the request (1: the side that dialled), as for every id on a link (see
/// [`crate::Session`]). [`RequestKey::of`] drops that bit again, so a key survives a new link on
/// which its sender is on the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestKey(u64);

impl RequestKey {
    /// The key made of 63 of `random`'s bits (the lowest is dropped).
    pub fn from_random(random: u64) -> Self {
        Self(random >> 1)
    }

    /// The key a request id carries (its side bit dropped).
    pub fn of(RequestId(id): RequestId) -> Self {
        Self(id >> 1)
    }

    /// The key's 63 bits, for logs.
    pub fn bits(self) -> u64 {
        self.0
    }
}
