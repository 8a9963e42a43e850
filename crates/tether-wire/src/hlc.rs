//! Hybrid logical clock timestamps.
//!
//! An [`Hlc`] is physical time in milliseconds, a logical counter for events within the same
//! millisecond, and a node tiebreak so two devices never issue equal timestamps. The derived order
//! compares the fields in that order, so it is total. The same value serves as a clock: it holds the
//! last timestamp issued, and [`Hlc::now`] and [`Hlc::update`] move it forward, never back.
//!
//! The wall clock is passed in (sans-IO), so tests drive the clock deterministically.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How far ahead of the local wall clock a remote timestamp may be before
/// [`Hlc::update`] refuses it: five minutes.
///
/// Without a bound a peer with a broken (or hostile) clock could drag every device's clock years
/// into the future, and timestamps issued afterwards would sort after every honest one.
pub const MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

/// A hybrid logical clock timestamp, ordered by `(physical_ms, logical, node)`.
///
/// ```
/// use tether_wire::Hlc;
///
/// let mut clock = Hlc::new(7);
/// let a = clock.now(1_000).unwrap();
/// let b = clock.now(999).unwrap(); // the wall clock stepped back; the HLC does not
/// assert!(b > a);
/// ```
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (or ahead of it, after a carry from `logical`).
    pub physical_ms: u64,
    /// Counter for events within the same `physical_ms`.
    pub logical: u32,
    /// The issuing node's tiebreak, e.g. the first eight bytes of its node id.
    pub node: u64,
}

impl Hlc {
    /// The earliest timestamp; `SyncRequest { after: Hlc::ZERO }` asks for everything.
    pub const ZERO: Hlc = Hlc {
        physical_ms: 0,
        logical: 0,
        node: 0,
    };

    /// A clock for `node` that has issued nothing yet.
    pub const fn new(node: u64) -> Self {
        Hlc {
            physical_ms: 0,
            logical: 0,
            node,
        }
    }

    /// Issues a timestamp for a local event: strictly later than every timestamp this clock has
    /// issued or seen, and at least `wall_clock_ms`.
    ///
    /// Fails only when the clock is at its largest value, which [`MAX_DRIFT_MS`] keeps peers from
    /// causing.
    pub fn now(&mut self, wall_clock_ms: u64) -> Result<Hlc, HlcError> {
        let next = if wall_clock_ms > self.physical_ms {
            Hlc {
                physical_ms: wall_clock_ms,
                logical: 0,
                node: self.node,
            }
        } else {
            advance(self.physical_ms, self.logical, self.node)?
        };
        *self = next;
        Ok(next)
    }

    /// Merges a timestamp received from a peer, then issues one for the receive event: strictly
    /// later than both this clock and `remote`. The node tiebreak stays this clock's.
    ///
    /// A `remote` more than [`MAX_DRIFT_MS`] ahead of `wall_clock_ms` is refused with
    /// [`HlcError::Drift`] and leaves the clock unchanged.
    pub fn update(&mut self, remote: &Hlc, wall_clock_ms: u64) -> Result<Hlc, HlcError> {
        if remote.physical_ms > wall_clock_ms.saturating_add(MAX_DRIFT_MS) {
            return Err(HlcError::Drift {
                remote_ms: remote.physical_ms,
                wall_ms: wall_clock_ms,
                max_drift_ms: MAX_DRIFT_MS,
            });
        }
        let physical = self.physical_ms.max(remote.physical_ms).max(wall_clock_ms);
        let local_here = physical == self.physical_ms;
        let remote_here = physical == remote.physical_ms;
        let next = match (local_here, remote_here) {
            (true, true) => advance(physical, self.logical.max(remote.logical), self.node)?,
            (true, false) => advance(physical, self.logical, self.node)?,
            (false, true) => advance(physical, remote.logical, self.node)?,
            (false, false) => Hlc {
                physical_ms: physical,
                logical: 0,
                node: self.node,
            },
        };
        *self = next;
        Ok(next)
    }
}

/// The timestamp right after `(physical_ms, logical)`: the counter plus one, carrying into the
/// physical time when the counter is full (so order is kept even under a flood of events).
fn advance(physical_ms: u64, logical: u32, node: u64) -> Result<Hlc, HlcError> {
    match logical.checked_add(1) {
        Some(logical) => Ok(Hlc {
            physical_ms,
            logical,
            node,
        }),
        None => Ok(Hlc {
            physical_ms: physical_ms.checked_add(1).ok_or(HlcError::Exhausted)?,
            logical: 0,
            node,
        }),
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}@{:016x}",
            self.physical_ms, self.logical, self.node
        )
    }
}

/// The hybrid logical clock cannot advance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HlcError {
    /// A remote timestamp is further ahead of the local wall clock than
    /// [`MAX_DRIFT_MS`] allows. The peer's fault (or its clock's);
    /// the local clock is unchanged.
    #[error(
        "remote time {remote_ms} ms is more than {max_drift_ms} ms ahead of the wall clock {wall_ms} ms"
    )]
    Drift {
        /// The remote physical time.
        remote_ms: u64,
        /// The local wall clock.
        wall_ms: u64,
        /// The largest drift allowed.
        max_drift_ms: u64,
    },
    /// The clock is at its largest representable value and cannot issue a later timestamp.
    #[error("the clock is at its largest value")]
    Exhausted,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn any_hlc() -> impl Strategy<Value = Hlc> {
        (
            prop_oneof![0..10_000u64, any::<u64>()],
            prop_oneof![0..4u32, (u32::MAX - 4)..=u32::MAX, any::<u32>()],
            any::<u64>(),
        )
            .prop_map(|(physical_ms, logical, node)| Hlc {
                physical_ms,
                logical,
                node,
            })
    }

    #[test]
    fn order_is_physical_then_logical_then_node() {
        let a = Hlc {
            physical_ms: 1,
            logical: 9,
            node: 9,
        };
        let b = Hlc {
            physical_ms: 2,
            logical: 0,
            node: 0,
        };
        assert!(a < b);
        assert!(Hlc { logical: 10, ..a } > a);
        assert!(Hlc { node: 10, ..a } > a);
    }

    #[test]
    fn logical_overflow_carries_into_physical() {
        let mut clock = Hlc {
            physical_ms: 50,
            logical: u32::MAX,
            node: 1,
        };
        let next = clock.now(10).unwrap();
        assert_eq!((next.physical_ms, next.logical), (51, 0));
    }

    #[test]
    fn exhausted_clock_is_an_error_not_a_wrap() {
        let mut clock = Hlc {
            physical_ms: u64::MAX,
            logical: u32::MAX,
            node: 1,
        };
        assert_eq!(clock.now(u64::MAX), Err(HlcError::Exhausted));
        assert_eq!(clock.logical, u32::MAX, "clock unchanged after an error");
    }

    #[test]
    fn far_future_remote_is_refused_and_clock_unchanged() {
        let mut clock = Hlc::new(1);
        clock.now(1_000).unwrap();
        let before = clock;
        let remote = Hlc {
            physical_ms: 1_000 + MAX_DRIFT_MS + 1,
            logical: 0,
            node: 2,
        };
        assert!(matches!(
            clock.update(&remote, 1_000),
            Err(HlcError::Drift { .. })
        ));
        assert_eq!(clock, before);
        // Exactly at the bound is accepted.
        let remote = Hlc {
            physical_ms: 1_000 + MAX_DRIFT_MS,
            ..remote
        };
        assert!(clock.update(&remote, 1_000).unwrap() > remote);
    }

    #[test]
    fn serde_shape() {
        let t = Hlc {
            physical_ms: 5,
            logical: 2,
            node: 3,
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"physical_ms":5,"logical":2,"node":3}"#);
        assert_eq!(serde_json::from_str::<Hlc>(&json).unwrap(), t);
        assert_eq!(t.to_string(), "5.2@0000000000000003");
    }

    proptest! {
        #[test]
        fn now_is_strictly_monotonic(start in any_hlc(), walls in prop::collection::vec(prop_oneof![0..20_000u64, any::<u64>()], 1..50)) {
            let mut clock = start;
            let mut last = start;
            for wall in walls {
                match clock.now(wall) {
                    Ok(t) => {
                        prop_assert!(t > last);
                        prop_assert!(t.physical_ms >= wall);
                        prop_assert_eq!(t, clock);
                        prop_assert_eq!(t.node, start.node);
                        last = t;
                    }
                    Err(e) => {
                        prop_assert_eq!(e, HlcError::Exhausted);
                        prop_assert_eq!(clock, last);
                    }
                }
            }
        }

        #[test]
        fn update_never_goes_backwards(start in any_hlc(), remote in any_hlc(), wall in prop_oneof![0..20_000u64, any::<u64>()]) {
            let mut clock = start;
            match clock.update(&remote, wall) {
                Ok(t) => {
                    prop_assert!(t > start);
                    prop_assert!((t.physical_ms, t.logical) > (remote.physical_ms, remote.logical));
                    prop_assert!(t.physical_ms >= wall);
                    prop_assert_eq!(t.node, start.node);
                    prop_assert_eq!(t, clock);
                }
                Err(HlcError::Drift { .. }) => {
                    prop_assert!(remote.physical_ms > wall.saturating_add(MAX_DRIFT_MS));
                    prop_assert_eq!(clock, start);
                }
                Err(HlcError::Exhausted) => prop_assert_eq!(clock, start),
            }
        }

        #[test]
        fn two_clocks_exchanging_stay_ordered(events in prop::collection::vec((any::<bool>(), 0..5_000u64, any::<bool>()), 1..100)) {
            // Two nodes with skewed wall clocks send each other timestamps; every receive event is
            // later than the send it causally follows.
            let mut clocks = [Hlc::new(1), Hlc::new(2)];
            for (from_first, wall, send) in events {
                let (i, j) = if from_first { (0, 1) } else { (1, 0) };
                let sent = clocks[i].now(wall).unwrap();
                if send {
                    let received = clocks[j].update(&sent, wall + 1_000).unwrap();
                    prop_assert!(received > sent);
                }
            }
        }
    }
}
