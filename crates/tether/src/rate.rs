//! The per-device message rate limit ([`crate::NetworkingConfig::message_rate`]): a token
//! bucket per paired device (`governor`'s keyed limiter), shared by every link to it, so a
//! device cannot reset its budget by reconnecting.

use std::fmt;

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tether_identity::NodeId;

use crate::MessageRate;

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
