//! The per-device message rate limit ([`crate::NetworkingConfig::message_rate`]): a token
//! bucket per paired device (`governor`'s keyed limiter), shared by every link to it, so a
//! device cannot reset its budget by reconnecting.

use std::fmt;
use std::num::NonZeroU32;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tether_identity::NodeId;

/// A rate and a burst: a device may send `burst` messages at once, and `per_second` on average
/// after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRate {
    /// Messages a second, on average.
    pub per_second: NonZeroU32,
    /// Messages at once, after a quiet spell.
    pub burst: NonZeroU32,
}

impl MessageRate {
    /// 1,000 a second with bursts of 2,000: far above what sync traffic needs, low enough
    /// that a paired device cannot keep this one's handler and app busy without end.
    pub const DEFAULT: MessageRate = MessageRate {
        per_second: non_zero(1000),
        burst: non_zero(2000),
    };
}

/// `n`, or 1 for 0 (for constants).
const fn non_zero(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(n) => n,
        None => NonZeroU32::MIN,
    }
}

/// Admits each device's messages at its configured rate; admits all when there is none.
pub(crate) struct MessageLimiter {
    limiter: Option<RateLimiter<NodeId, DefaultKeyedStateStore<NodeId>, DefaultClock>>,
}

impl MessageLimiter {
    pub(crate) fn new(rate: Option<MessageRate>) -> Self {
        MessageLimiter {
            limiter: rate.map(|rate| {
                RateLimiter::keyed(Quota::per_second(rate.per_second).allow_burst(rate.burst))
            }),
        }
    }

    /// Whether one more message from `node` fits its rate now (and counts it if so).
    pub(crate) fn admit(&self, node: &NodeId) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|limiter| limiter.check_key(node).is_ok())
    }

    /// Drops the buckets of devices that have been quiet long enough to have a full one
    /// again (they are the same as new): bounds the table by the devices sending now.
    pub(crate) fn forget_quiet(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}

impl fmt::Debug for MessageLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageLimiter")
            .field("limited", &self.limiter.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use rand_core::UnwrapErr;
    use tether_identity::NetworkIdentity;

    use super::MessageLimiter;
    use crate::MessageRate;

    fn node() -> tether_identity::NodeId {
        NetworkIdentity::generate(&mut UnwrapErr(getrandom::SysRng)).node_id()
    }

    #[test]
    fn each_device_has_its_own_burst_and_none_means_no_limit() {
        let rate = MessageRate {
            per_second: NonZeroU32::MIN,
            burst: NonZeroU32::new(3).unwrap(),
        };
        let limiter = MessageLimiter::new(Some(rate));
        let (a, b) = (node(), node());
        let admitted = (0..10).filter(|_| limiter.admit(&a)).count();
        // At 1 a second, the test's few microseconds refill nothing.
        assert_eq!(admitted, 3);
        assert!(limiter.admit(&b), "another device's bucket is its own");
        let unlimited = MessageLimiter::new(None);
        assert!((0..10_000).all(|_| unlimited.admit(&a)));
    }
}
