//! When to send a request again after its link died: exponential backoff with full jitter,
//! within the request's budget.
//!
//! A request's answer can be lost with its link (the connection closed, by the peer or by this
//! side for a silent peer). The sender then dials again and sends the same request (the same
//! [`crate::RequestKey`]) on the new link, the peer answers a repeat once. [`Retries`] says when:
//! the n-th retry (from 0) waits a random time between zero and `base * 2^n`, at most `cap`
//! ("full jitter": senders that lost the same peer do not come back in step), and nothing is
//! tried after the deadline, which is the request's whole budget counted from its first send.
//! The random numbers come from the caller, so the tests run with a seeded generator.

use std::time::{Duration, Instant};

use rand_core::Rng;

/// The backoff's shape: the first retry waits up to `base`, each one after it up to twice the
/// one before, never more than `cap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest wait before the first retry.
    pub base: Duration,
    /// The longest wait before any retry.
    pub cap: Duration,
}

impl Default for Backoff {
    /// 100 ms, doubling, at most 2 s.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        }
    }
}

impl Backoff {
    /// The longest wait before retry `retry` (0 is the first): `base * 2^retry`, at most `cap`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doubled = 2u32.checked_pow(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(doubled).min(self.cap)
    }

    /// A wait before retry `retry`: uniform between zero and [`Self::ceiling`].
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(retry);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let pick = match nanos.checked_add(1) {
            Some(span) => rng.next_u64() % span,
            None => rng.next_u64(),
        };
        Duration::from_nanos(pick)
    }
}

/// The retries of one request (see the module's documentation).
#[derive(Debug, Clone)]
pub struct Retries {
    backoff: Backoff,
    deadline: Instant,
    retries: u32,
}

impl Retries {
    /// The retries of a request first sent at `started` with `budget` for all its attempts.
    pub fn new(backoff: Backoff, started: Instant, budget: Duration) -> Self {
        Self {
            backoff,
            deadline: started.checked_add(budget).unwrap_or(started),
            retries: 0,
        }
    }

    /// When the budget ends.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// How much of the budget is left at `now`.
    pub fn left(&self, now: Instant) -> Duration {
        self.deadline.saturating_duration_since(now)
    }

    /// How many retries were scheduled so far.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// The request's link died at `now`: when to send it again (never after the deadline), or
    /// `None` when the budget is over.
    pub fn after_failure(&mut self, now: Instant, rng: &mut impl Rng) -> Option<Instant> {
        if now >= self.deadline {
            return None;
        }
        let delay = self.backoff.delay(self.retries, rng);
        self.retries = self.retries.saturating_add(1);
        let at = now.checked_add(delay).unwrap_or(self.deadline);
        Some(at.min(self.deadline))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use rand_chacha::ChaCha8Rng;
    use rand_core::SeedableRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let backoff = Backoff::default();
        let ceilings: Vec<Duration> = (0..7).map(|n| backoff.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 2000, 2000].map(|ms| MS * ms)
        );
        assert_eq!(backoff.ceiling(u32::MAX), backoff.cap);
    }

    /// A request retried for its whole budget on a virtual clock: every retry within its
    /// ceiling, the retries spread out (full jitter), none after the deadline, and the budget
    /// over exactly at the deadline.
    #[test]
    fn retries_stay_within_their_ceilings_and_the_budget() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let start = Instant::now();
        let budget = Duration::from_secs(10);
        let mut retries = Retries::new(Backoff::default(), start, budget);
        let mut now = start + MS * 30; // the first link died 30 ms in
        let mut delays = Vec::new();
        while let Some(at) = retries.after_failure(now, &mut rng) {
            assert!(at >= now && at <= retries.deadline());
            let delay = at - now;
            if at < retries.deadline() {
                assert!(delay <= Backoff::default().ceiling(retries.retries() - 1));
            }
            delays.push(delay);
            // The new dial fails 5 ms after it starts (the device is still down).
            now = at + MS * 5;
        }
        assert!(now >= start + budget, "gave up before the budget ended");
        assert!(now <= start + budget + MS * 5);
        assert_eq!(retries.left(now), Duration::ZERO);
        // Ten seconds of backoff capped at 2 s takes more than a handful of retries, and the
        // waits are not all alike.
        assert!(delays.len() >= 6, "{delays:?}");
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "{delays:?}");
    }

    #[test]
    fn nothing_is_tried_once_the_budget_is_over() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let start = Instant::now();
        let mut retries = Retries::new(Backoff::default(), start, Duration::from_secs(1));
        assert_eq!(retries.after_failure(start + MS * 1000, &mut rng), None);
        assert_eq!(retries.after_failure(start + MS * 5000, &mut rng), None);
        // Just before the deadline: a retry at the deadline at the latest.
        let at = retries.after_failure(start + MS * 999, &mut rng).unwrap();
        assert!(at <= retries.deadline());
    }

    proptest! {
        #[test]
        fn any_delay_is_within_its_ceiling(
            seed in any::<u64>(),
            retry in prop_oneof![0..40u32, Just(u32::MAX)],
            base_ms in 0..10_000u64,
            cap_ms in 0..100_000u64,
        ) {
            let backoff = Backoff { base: MS * u32::try_from(base_ms).unwrap(), cap: MS * u32::try_from(cap_ms).unwrap() };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let delay = backoff.delay(retry, &mut rng);
            prop_assert!(delay <= backoff.ceiling(retry));
            prop_assert!(backoff.ceiling(retry) <= backoff.cap);
            prop_assert!(backoff.ceiling(retry.saturating_add(1)) >= backoff.ceiling(retry));
        }
    }
}
