//! `RelaySelector`: which relay server to use.

use std::time::Duration;

/// A relay server the device could use, with what has been measured about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayCandidate {
    /// The relay's URL.
    pub url: iroh::RelayUrl,
    /// The latest measured round trip to it; `None` when it could not be reached.
    pub latency: Option<Duration>,
}

/// Chooses the relay among candidates; Tether asks again when measurements change.
pub trait RelaySelector: Send + Sync + std::fmt::Debug + 'static {
    /// The index of the chosen candidate, or `None` to use no relay.
    fn choose(&self, candidates: &[RelayCandidate]) -> Option<usize>;
}
