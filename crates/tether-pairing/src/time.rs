//! `Timestamp`: the caller's clock, passed in.

use std::fmt;
use std::time::Duration;

/// A point in time on the caller's monotonic clock, as the time elapsed since an epoch the
/// caller picks (typically when the process started).
///
/// The crate never reads a clock. A service keeps one `std::time::Instant` as its epoch and
/// passes `Timestamp::from_duration(epoch.elapsed())`; a test passes whatever it likes, so
/// expiry is tested without sleeping.
///
/// ```
/// use std::time::Duration;
/// use tether_pairing::Timestamp;
///
/// let start = Timestamp::from_millis(1_000);
/// let later = start.saturating_add(Duration::from_secs(300));
/// assert_eq!(later.saturating_duration_since(start), Duration::from_secs(300));
/// assert!(later > start);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(Duration);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Self = Self(Duration::ZERO);

    /// The time `since_epoch` after the epoch.
    pub const fn from_duration(since_epoch: Duration) -> Self {
        Self(since_epoch)
    }

    /// The time `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// How long after the epoch this is.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }

    /// This time plus `duration`, or the far future if that overflows.
    pub fn saturating_add(self, duration: Duration) -> Self {
        Self(self.0.saturating_add(duration))
    }

    /// How long after `earlier` this is, or zero if it is not after it (a clock that went
    /// backwards never makes anything expire late or early by more than the jump).
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({:?})", self.0)
    }
}
