//! When a send that failed runs again: which failures reaching the device again can cure, and
//! the backoff and budget of the waits between tries (sans-IO: the caller passes `now` and a
//! random number; `service/resend.rs` does the waiting and dialling).

use std::time::{Duration, Instant};

use tether_transfer::{AbortCode, PeerError, TransferError};

use crate::NetworkError;

/// The first wait after a failure: short, so a device that is back at once is resumed within
/// about a second.
const FIRST_WAIT: Duration = Duration::from_millis(250);

/// The longest wait between tries: a device that comes back is resumed within about this (and
/// a dial) of its return, however long it was away.
const LONGEST_WAIT: Duration = Duration::from_secs(2);

/// Whether a transfer that failed with `error` can go on once the device is reached again:
/// the link lost (the peer killed, restarting or silent, the path gone), a stall, or the
/// receiver aborting for its own stall or an internal failure, or still busy with the offer
/// of the link that died. Refusals, a full disk, a verification failure, a changed source,
/// local errors and a cancel are not.
pub(crate) fn transfer_curable(error: &TransferError) -> bool {
    match error {
        TransferError::Link(_) | TransferError::Stalled { .. } => true,
        TransferError::Peer(PeerError::Aborted { code, .. } | PeerError::Declined { code, .. }) => {
            matches!(
                code,
                AbortCode::Stalled | AbortCode::Internal | AbortCode::Busy
            )
        }
        TransferError::Peer(PeerError::TooManyOffers { .. }) => true,
        _ => false,
    }
}

/// Whether a failure to reach the device (a dial, or opening the transfer's streams) can pass:
/// the device offline, unreachable or slow to answer. A refusal (unpaired, revoked) cannot.
pub(crate) fn dial_curable(error: &NetworkError) -> bool {
    match error {
        NetworkError::DeviceOffline(_)
        | NetworkError::ConnectionFailed { .. }
        | NetworkError::TimedOut { .. }
        | NetworkError::Transport(_) => true,
        NetworkError::Transfer(error) => transfer_curable(error),
        _ => false,
    }
}

/// One spell without the device: when it began, how many tries it has had, and the budget it
/// may last.
#[derive(Debug, Clone)]
pub(crate) struct Outage {
    budget: Duration,
    began: Option<Instant>,
    attempt: u32,
}

impl Outage {
    /// No outage yet; each may last `budget`.
    pub(crate) fn new(budget: Duration) -> Self {
        Outage {
            budget,
            began: None,
            attempt: 0,
        }
    }

    /// The transfer moved bytes: the next failure starts a new outage, with the whole budget.
    pub(crate) fn moved(&mut self) {
        self.began = None;
        self.attempt = 0;
    }

    /// Tries so far in this outage.
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A failure at `now`: how long to wait before the next try, or `None` once the outage has
    /// lasted its budget. The waits double from [`FIRST_WAIT`] up to [`LONGEST_WAIT`], each
    /// with up to a quarter more as jitter (`random` out of `u32::MAX`), and never past the
    /// budget's end.
    pub(crate) fn failed(&mut self, now: Instant, random: u32) -> Option<Duration> {
        let began = *self.began.get_or_insert(now);
        let left = self
            .budget
            .checked_sub(now.saturating_duration_since(began))
            .filter(|left| !left.is_zero())?;
        self.attempt = self.attempt.saturating_add(1);
        let doubled =
            FIRST_WAIT.saturating_mul(2u32.saturating_pow(self.attempt.saturating_sub(1)));
        let base = doubled.min(LONGEST_WAIT);
        let jitter = (base / 4).mul_f64(f64::from(random) / f64::from(u32::MAX));
        Some(base.saturating_add(jitter).min(left))
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn waits_start_short_double_and_stop_at_the_budget() {
        let start = Instant::now();
        let mut outage = Outage::new(Duration::from_secs(10));
        let waits: Vec<_> = (0..5).map(|_| outage.failed(start, 0).unwrap()).collect();
        let ms = Duration::from_millis;
        assert_eq!(waits, [ms(250), ms(500), ms(1000), ms(2000), ms(2000)]);
        assert_eq!(outage.attempt(), 5);
        assert_eq!(
            outage.failed(start, u32::MAX),
            Some(Duration::from_millis(2500))
        );
        // Near the end, the wait ends with the budget; at the end, no more tries.
        assert_eq!(
            outage.failed(start + ms(9_900), 0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(outage.failed(start + Duration::from_secs(10), 0), None);
        assert_eq!(outage.failed(start + Duration::from_secs(3600), 0), None);
    }

    #[test]
    fn moving_bytes_gives_the_next_outage_the_whole_budget() {
        let start = Instant::now();
        let mut outage = Outage::new(Duration::from_secs(10));
        assert!(outage.failed(start, 0).is_some());
        assert_eq!(outage.failed(start + Duration::from_secs(10), 0), None);
        outage.moved();
        assert_eq!(outage.attempt(), 0);
        let later = start + Duration::from_secs(60);
        assert_eq!(outage.failed(later, 0), Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_zero_budget_never_retries() {
        let mut outage = Outage::new(Duration::ZERO);
        assert_eq!(outage.failed(Instant::now(), 0), None);
        assert_eq!(outage.attempt(), 0);
    }

    #[test]
    fn a_lost_link_is_curable_and_a_refusal_or_a_cancel_is_not() {
        let lost = TransferError::Link(io::Error::new(io::ErrorKind::TimedOut, "silent"));
        assert!(transfer_curable(&lost));
        let aborted = |code| {
            TransferError::Peer(PeerError::Aborted {
                code,
                message: String::new(),
            })
        };
        assert!(transfer_curable(&aborted(AbortCode::Stalled)));
        assert!(transfer_curable(&aborted(AbortCode::Busy)));
        assert!(!transfer_curable(&aborted(AbortCode::Cancelled)));
        assert!(!transfer_curable(&aborted(AbortCode::NoSpace)));
        assert!(!transfer_curable(&aborted(AbortCode::Refused)));
        assert!(!transfer_curable(&TransferError::Cancelled));
        assert!(!transfer_curable(&TransferError::Declined("no".into())));
        let mismatch = TransferError::Peer(PeerError::ChunkMismatch {
            path: "a".into(),
            index: 0,
        });
        assert!(!transfer_curable(&mismatch));

        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let node = tether_identity::NetworkIdentity::generate(&mut rng).node_id();
        assert!(dial_curable(&NetworkError::DeviceOffline(node)));
        assert!(dial_curable(&NetworkError::TimedOut {
            what: "connect",
            after: Duration::from_secs(1),
        }));
        assert!(!dial_curable(&NetworkError::DeviceNotPaired(node)));
        assert!(dial_curable(&NetworkError::Transfer(lost)));
        assert!(!dial_curable(&NetworkError::Shutdown));
    }
}
