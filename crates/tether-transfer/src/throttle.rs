//! Bandwidth limits: a token bucket, and an async limiter that may be shared by many transfers.
//!
//! [`TokenBucket`] is the arithmetic, with time passed in, so it is tested without a clock.
//! [`RateLimiter`] wraps one in a mutex and sleeps when it says so; clone it to share one budget
//! between transfers (a global limit), and give each transfer its own for a per-transfer limit.
//! A transfer waits on every limiter it has, so the lowest one wins.
//!
//! The bucket lets a caller take more than it holds (a whole 256 KiB frame at once) and then
//! waits the debt off, so the long-run rate is exact whatever the frame size; the burst allowance
//! (a twentieth of a second's worth, at least two frames) only shapes the very start.
//!
//! A wait is the debt over the rate, exact up to [`Duration::MAX`]: taking `u64::MAX` bytes at
//! 1 byte/s asks for the longest wait there is (tokio's sleep ends it after about 30 years), as
//! the limit means. The engine takes at most a frame at a time, so its longest wait, one frame
//! at the lowest rate of 1 byte/s, is about three days.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// A token bucket over an abstract clock.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: u64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket refilling at `rate` bytes per second (at least 1), holding at most `burst` bytes,
    /// full at `now`.
    pub fn new(rate: u64, burst: u64, now: Instant) -> Self {
        TokenBucket {
            rate: rate.max(1),
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    /// The refill rate in bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Takes `bytes` at `now` and returns how long the caller must wait before sending them
    /// (zero if the bucket held enough; [`Duration::MAX`] if the debt is longer than that).
    /// The tokens are taken either way.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::try_from_secs_f64(-self.tokens / self.rate as f64).unwrap_or(Duration::MAX)
        }
    }
}

/// A bandwidth limit in bytes per second, shareable between transfers (clones share the budget).
#[derive(Debug, Clone)]
pub struct RateLimiter {
    bucket: Arc<Mutex<TokenBucket>>,
}

impl RateLimiter {
    /// A limit of `bytes_per_second`.
    pub fn new(bytes_per_second: u64) -> Self {
        let burst = (bytes_per_second / 20).max(2 * u64::from(crate::CHUNK_SIZE));
        RateLimiter {
            bucket: Arc::new(Mutex::new(TokenBucket::new(
                bytes_per_second,
                burst,
                Instant::now(),
            ))),
        }
    }

    /// The limit in bytes per second.
    pub fn bytes_per_second(&self) -> u64 {
        self.bucket.lock().rate()
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.bucket.lock().take(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Waits on every limiter in `limiters`.
pub(crate) async fn acquire_all(limiters: &[RateLimiter], bytes: u64) {
    for limiter in limiters {
        limiter.acquire(bytes).await;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Values from the edges of `u64` as well as anywhere in it.
    fn edgy() -> impl Strategy<Value = u64> {
        prop_oneof![
            prop::sample::select(vec![0, 1, 2, u64::MAX / 20, u64::MAX - 1, u64::MAX]),
            any::<u64>(),
        ]
    }

    #[test]
    fn long_run_rate_is_the_limit() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 100, start);
        // A sender that sends 50-byte frames and waits as told.
        let mut now = start;
        let mut sent = 0u64;
        while sent < 100_000 {
            now += bucket.take(50, now);
            sent += 50;
        }
        let elapsed = now.duration_since(start).as_secs_f64();
        // 100 kB at 1 kB/s with a 100-byte head start: 99.9 s.
        assert!((elapsed - 99.9).abs() < 0.01, "{elapsed}");
    }

    #[test]
    fn frames_larger_than_the_burst_wait_their_debt() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 100, start);
        assert_eq!(bucket.take(100, start), Duration::ZERO);
        assert_eq!(bucket.take(500, start), Duration::from_millis(500));
        // Waiting less than told does not let the next frame through early.
        let later = start + Duration::from_millis(250);
        assert_eq!(bucket.take(0, later), Duration::from_millis(250));
    }

    #[test]
    fn idle_time_refills_only_to_the_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1000, 100, start);
        bucket.take(100, start);
        let much_later = start + Duration::from_secs(60);
        assert_eq!(bucket.take(100, much_later), Duration::ZERO);
        assert_eq!(bucket.take(100, much_later), Duration::from_millis(100));
    }

    #[test]
    fn a_debt_beyond_what_a_duration_holds_waits_the_longest_duration() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(1, 0, start);
        assert_eq!(bucket.take(u64::MAX, start), Duration::MAX);
        assert_eq!(bucket.take(u64::MAX, start), Duration::MAX);
        let mut fastest = TokenBucket::new(u64::MAX, u64::MAX, start);
        assert_eq!(fastest.take(u64::MAX, start), Duration::ZERO);
        assert!(fastest.take(u64::MAX, start) <= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn acquiring_every_byte_there_is_waits_without_panicking() {
        for rate in [0, 1, u64::MAX] {
            let limiter = RateLimiter::new(rate);
            assert_eq!(limiter.bytes_per_second(), rate.max(1));
            let waited =
                tokio::time::timeout(Duration::from_millis(20), limiter.acquire(u64::MAX)).await;
            assert!(waited.is_err(), "{rate}");
        }
    }

    proptest! {
        #[test]
        fn the_bucket_answers_any_take_with_a_wait(
            rate in edgy(),
            burst in edgy(),
            takes in prop::collection::vec((edgy(), 0..u64::MAX / 4), 1..30),
        ) {
            let start = Instant::now();
            let mut bucket = TokenBucket::new(rate, burst, start);
            let mut now = start;
            for (bytes, step_ns) in takes {
                now = now.checked_add(Duration::from_nanos(step_ns)).unwrap_or(now);
                let wait = bucket.take(bytes, now);
                prop_assert!(bucket.tokens.is_finite());
                prop_assert!(bucket.tokens <= bucket.burst);
                let debt = -bucket.tokens / bucket.rate as f64;
                if debt <= 0.0 {
                    prop_assert_eq!(wait, Duration::ZERO);
                } else {
                    prop_assert!(
                        wait == Duration::MAX || (wait.as_secs_f64() - debt).abs() <= 1e-9 * debt + 1e-9,
                        "{wait:?} for {debt} s"
                    );
                }
            }
        }

        #[test]
        fn a_fresh_bucket_waits_for_what_exceeds_the_burst(
            rate in edgy(),
            burst in edgy(),
            bytes in edgy(),
        ) {
            let start = Instant::now();
            let wait = TokenBucket::new(rate, burst, start).take(bytes, start);
            let debt = bytes as f64 - burst as f64;
            if debt <= 0.0 {
                prop_assert_eq!(wait, Duration::ZERO);
            } else {
                let exact = debt / rate.max(1) as f64;
                prop_assert!(
                    wait == Duration::MAX || (wait.as_secs_f64() - exact).abs() <= 1e-6 * exact.max(1.0),
                    "{wait:?} for {exact} s"
                );
            }
        }

        #[test]
        fn the_long_run_rate_is_the_limit_for_any_rate_and_frame(
            rate in 1u64..10_000_000_000,
            frame in 1u64..4 * 1024 * 1024,
        ) {
            let start = Instant::now();
            let burst = frame;
            let mut bucket = TokenBucket::new(rate, burst, start);
            let mut now = start;
            let frames = 200;
            for _ in 0..frames {
                now += bucket.take(frame, now);
            }
            let elapsed = now.duration_since(start).as_secs_f64();
            let exact = (frames - 1) as f64 * frame as f64 / rate as f64;
            prop_assert!((elapsed - exact).abs() <= 1e-6 * exact + 1e-6, "{elapsed} vs {exact}");
        }
    }
}
