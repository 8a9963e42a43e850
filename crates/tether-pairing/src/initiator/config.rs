//! `InitiatorConfig`: how long a code lives and how much the initiator takes on at once.

use std::time::Duration;

use crate::UsageError;

/// Limits for one [`crate::Initiator`].
///
/// None of these limits is what keeps a code safe: a code is spent at the first key
/// confirmation it checks, right or wrong, so an attacker gets one guess per code whatever they
/// are. They bound memory and CPU (each Hello costs three scalar multiplications) and how long
/// a code is exposed.
///
/// ```
/// use std::time::Duration;
/// use tether_pairing::InitiatorConfig;
///
/// let config = InitiatorConfig::default().with_lifetime(Duration::from_secs(120));
/// assert_eq!(config.lifetime, Duration::from_secs(120));
/// assert_eq!(config.max_pending, 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InitiatorConfig {
    /// How long the code accepts attempts, from [`crate::Initiator::new`]. Default 5 minutes,
    /// at most 24 hours.
    pub lifetime: Duration,
    /// How long one handshake may take before it is dropped. Default 30 seconds.
    pub handshake_timeout: Duration,
    /// Most handshakes in progress at once; a further Hello is refused with
    /// [`crate::Refusal::TooManyPending`]. Default 4, at most 64.
    pub max_pending: usize,
    /// Most Hellos accepted in any 60 seconds; a further Hello is refused with
    /// [`crate::Refusal::RateLimited`]. Default 10, at most 600.
    pub max_attempts_per_minute: usize,
}

impl InitiatorConfig {
    /// The longest lifetime allowed.
    pub const MAX_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
    /// The most pending handshakes allowed.
    pub const MAX_PENDING: usize = 64;
    /// The highest per-minute attempt limit allowed.
    pub const MAX_ATTEMPTS_PER_MINUTE: usize = 600;

    /// With another lifetime.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// With another handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// With another limit on handshakes in progress.
    pub fn with_max_pending(mut self, max: usize) -> Self {
        self.max_pending = max;
        self
    }

    /// With another limit on Hellos per minute.
    pub fn with_max_attempts_per_minute(mut self, max: usize) -> Self {
        self.max_attempts_per_minute = max;
        self
    }

    pub(crate) fn check(&self) -> Result<(), UsageError> {
        if self.lifetime.is_zero() || self.lifetime > Self::MAX_LIFETIME {
            return Err(UsageError::InvalidConfig(
                "lifetime must be between 0 and 24 hours",
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err(UsageError::InvalidConfig(
                "handshake timeout must be positive",
            ));
        }
        if !(1..=Self::MAX_PENDING).contains(&self.max_pending) {
            return Err(UsageError::InvalidConfig(
                "max_pending must be between 1 and 64",
            ));
        }
        if !(1..=Self::MAX_ATTEMPTS_PER_MINUTE).contains(&self.max_attempts_per_minute) {
            return Err(UsageError::InvalidConfig(
                "max_attempts_per_minute must be between 1 and 600",
            ));
        }
        Ok(())
    }
}

impl Default for InitiatorConfig {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(5 * 60),
            handshake_timeout: Duration::from_secs(30),
            max_pending: 4,
            max_attempts_per_minute: 10,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        assert_eq!(InitiatorConfig::default().check(), Ok(()));
        let bad = [
            InitiatorConfig::default().with_lifetime(Duration::ZERO),
            InitiatorConfig::default()
                .with_lifetime(InitiatorConfig::MAX_LIFETIME + Duration::from_secs(1)),
            InitiatorConfig::default().with_handshake_timeout(Duration::ZERO),
            InitiatorConfig::default().with_max_pending(0),
            InitiatorConfig::default().with_max_pending(65),
            InitiatorConfig::default().with_max_attempts_per_minute(0),
            InitiatorConfig::default().with_max_attempts_per_minute(601),
        ];
        for config in bad {
            assert!(config.check().is_err(), "{config:?}");
        }
    }
}
