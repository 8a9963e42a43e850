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

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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
    /// (zero if the bucket held enough). The tokens are taken either way.
    pub fn take(&mut self, bytes: u64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.rate as f64).min(self.burst);
        self.tokens -= bytes as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate as f64)
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
        self.bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rate()
    }

    /// Waits until `bytes` may be sent.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self
            .bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(bytes, Instant::now());
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
    use super::*;

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
}
