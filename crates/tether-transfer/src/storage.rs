//! What a receiver keeps for itself on the destination's file system: a reserve of free space
//! and of free inodes no offer may eat into, and how much one device may store
//! ([`StorageQuota`]).

use std::fmt;
use std::time::SystemTime;

use tether_identity::NodeId;

/// Default share of the file system kept free, in percent (space and inodes).
pub const DEFAULT_RESERVE_PERCENT: u8 = 5;

/// Most space the default reserve keeps free: 1 GiB.
pub const DEFAULT_RESERVE_MOST: u64 = 1 << 30;

/// How much of a file system a receiver leaves free: bytes for the space reserve, inodes for
/// the inode reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reserve {
    /// This many bytes (or inodes); `Absolute(0)` keeps nothing back.
    Absolute(u64),
    /// This share of the file system's size (or inode count), in percent (at most 100).
    Percent(u8),
    /// The smaller of a share (percent) and an amount.
    PercentAtMost {
        /// The share, in percent.
        percent: u8,
        /// The most it keeps back.
        most: u64,
    },
}

impl Reserve {
    /// The default space reserve: the smaller of 5 % of the file system and 1 GiB.
    pub const DEFAULT_SPACE: Reserve = Reserve::PercentAtMost {
        percent: DEFAULT_RESERVE_PERCENT,
        most: DEFAULT_RESERVE_MOST,
    };

    /// The default inode reserve: 5 % of the file system's inodes.
    pub const DEFAULT_INODES: Reserve = Reserve::Percent(DEFAULT_RESERVE_PERCENT);

    /// What this keeps back of a file system of `total` bytes (or inodes).
    pub fn of(self, total: u64) -> u64 {
        let share = |percent: u8| {
            let percent = u128::from(percent.min(100));
            u64::try_from(u128::from(total) * percent / 100).unwrap_or(u64::MAX)
        };
        match self {
            Reserve::Absolute(amount) => amount,
            Reserve::Percent(percent) => share(percent),
            Reserve::PercentAtMost { percent, most } => share(percent).min(most),
        }
    }
}

impl fmt::Display for Reserve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reserve::Absolute(amount) => write!(f, "{amount}"),
            Reserve::Percent(percent) => write!(f, "{percent}%"),
            Reserve::PercentAtMost { percent, most } => write!(f, "{percent}% (at most {most})"),
        }
    }
}

/// A per-device storage quota, kept by the application (the facade keeps it in its registry).
///
/// The receiver asks [`charge`](Self::charge) once per offer, after consent and before it
/// answers `Accept`, with the bytes the offer may still place (files neither in place nor
/// partly received already). A charge that does not fit is refused and the offer declined
/// ([`AbortCode::NoSpace`](crate::AbortCode), [`LocalError::QuotaExceeded`](crate::LocalError::QuotaExceeded)); one that fits
/// is counted before any byte is written, so a transfer can never go past the quota mid-way.
pub trait StorageQuota: Send + Sync {
    /// Counts `bytes` against `peer`'s quota, or refuses them (nothing counted) when the peer
    /// has a quota and they do not fit in what is left of it.
    fn charge(&self, peer: &NodeId, bytes: u64) -> Result<(), QuotaRefusal>;
}

/// Why [`StorageQuota::charge`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaRefusal {
    /// The bytes do not fit in what is left.
    Exceeded {
        /// The device's quota.
        quota: u64,
        /// What it has stored already.
        used: u64,
    },
    /// The count could not be read or written (a store error); the offer is declined.
    Unavailable,
}

impl QuotaRefusal {
    /// Refused because `used + bytes` would pass `quota`.
    pub fn exceeded(quota: u64, used: u64) -> Self {
        QuotaRefusal::Exceeded { quota, used }
    }
}

/// What a device may still send here over the wire (a bandwidth quota over a period), kept by
/// the application (the facade keeps it in its registry).
///
/// The receiver asks [`admit`](Self::admit) once per offer, before the storage quota and
/// before it answers `Accept`, with the bytes the offer may still place. A refusal declines
/// the offer ([`AbortCode::BandwidthQuota`](crate::AbortCode),
/// [`LocalError::BandwidthQuota`](crate::LocalError::BandwidthQuota)); nothing is counted
/// here: the application counts the bytes as its streams carry them.
pub trait ReceiveBudget: Send + Sync {
    /// Whether `bytes` more from `peer` fit in what is left of its quota.
    fn admit(&self, peer: &NodeId, bytes: u64) -> Result<(), BudgetRefusal>;
}

/// Why [`ReceiveBudget::admit`] refused: the quota, its use, and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetRefusal {
    /// Bytes per period.
    pub quota: u64,
    /// Bytes used in the current period.
    pub used: u64,
    /// When the period ends.
    pub resets_at: SystemTime,
}

impl BudgetRefusal {
    /// `used` of `quota`, resetting at `resets_at`.
    pub fn new(quota: u64, used: u64, resets_at: SystemTime) -> Self {
        BudgetRefusal {
            quota,
            used,
            resets_at,
        }
    }
}

/// No bandwidth quota: every offer is admitted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBudget;

impl ReceiveBudget for NoBudget {
    fn admit(&self, _peer: &NodeId, _bytes: u64) -> Result<(), BudgetRefusal> {
        Ok(())
    }
}

/// No quota: every charge fits.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoQuota;

impl StorageQuota for NoQuota {
    fn charge(&self, _peer: &NodeId, _bytes: u64) -> Result<(), QuotaRefusal> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Reserve;

    #[test]
    fn reserves_of_a_file_system() {
        assert_eq!(Reserve::DEFAULT_SPACE.of(8 << 20), (8 << 20) * 5 / 100);
        assert_eq!(Reserve::DEFAULT_SPACE.of(1 << 40), 1 << 30);
        assert_eq!(Reserve::DEFAULT_INODES.of(5000), 250);
        assert_eq!(Reserve::Percent(200).of(10), 10);
        assert_eq!(Reserve::Percent(100).of(u64::MAX), u64::MAX);
        assert_eq!(Reserve::Absolute(7).of(0), 7);
    }
}
