//! Bandwidth quotas: how many bytes of transfers this device may send to, or receive from, a
//! paired device in a period, and what it has used of them. Sans-IO: every step takes `now`.
//!
//! A period is calendar-free: it starts at the first use after the quota was set (or after the
//! last period ended) and lasts [`QuotaPeriod::length`]; it resets at start + length. Use is
//! counted only while a quota is set.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long a quota's period lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum QuotaPeriod {
    /// One day (24 hours).
    Day,
    /// Seven days.
    Week,
    /// Thirty days.
    Month,
}

impl QuotaPeriod {
    /// The period's length.
    pub fn length(self) -> Duration {
        const DAY: u64 = 24 * 60 * 60;
        Duration::from_secs(match self {
            QuotaPeriod::Day => DAY,
            QuotaPeriod::Week => 7 * DAY,
            QuotaPeriod::Month => 30 * DAY,
        })
    }

    fn name(self) -> &'static str {
        match self {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Week => "week",
            QuotaPeriod::Month => "month",
        }
    }
}

/// Which way bytes go, from this device's side: serving a pull is a send, a pull this device
/// asked for is a receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuotaDirection {
    /// Bytes this device writes on transfer streams to the device.
    Send,
    /// Bytes this device reads on transfer streams from the device.
    Receive,
}

impl fmt::Display for QuotaDirection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            QuotaDirection::Send => "send",
            QuotaDirection::Receive => "receive",
        })
    }
}

/// At most `bytes` per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BandwidthQuota {
    /// Bytes per period.
    pub bytes: u64,
    /// The period.
    pub period: QuotaPeriod,
}

impl BandwidthQuota {
    /// `bytes` per `period`.
    pub fn new(bytes: u64, period: QuotaPeriod) -> Self {
        BandwidthQuota { bytes, period }
    }
}

impl fmt::Display for BandwidthQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} a {}", ByteSize(self.bytes), self.period.name())
    }
}

/// Why a quota text such as `20GiB/day` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a quota like 20GiB/day, 500MB/week or 100GiB/month")]
pub struct QuotaParseError(String);

impl FromStr for BandwidthQuota {
    type Err = QuotaParseError;

    /// Reads `AMOUNT[UNIT]/PERIOD`: units B, kB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB,
    /// TiB (powers of 1024), case-insensitive; periods day, week, month.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || QuotaParseError(text.chars().take(64).collect());
        let (amount, period) = text.trim().split_once('/').ok_or_else(fail)?;
        let period = match period.trim().to_ascii_lowercase().as_str() {
            "day" | "d" => QuotaPeriod::Day,
            "week" | "w" => QuotaPeriod::Week,
            "month" | "m" => QuotaPeriod::Month,
            _ => return Err(fail()),
        };
        let amount = amount.trim();
        let split = amount
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(amount.len());
        let (number, unit) = amount.split_at(split);
        let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "mb" | "m" => 1000_u64.pow(2),
            "gb" | "g" => 1000_u64.pow(3),
            "tb" | "t" => 1000_u64.pow(4),
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(fail()),
        };
        let number: f64 = number.parse().map_err(|_| fail())?;
        let bytes = number * scale as f64;
        if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
            return Err(fail());
        }
        Ok(BandwidthQuota::new(bytes.round() as u64, period))
    }
}

/// A byte count for people: `19.2 GiB`, `512 B`.
#[derive(Debug, Clone, Copy)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let name = UNITS.get(unit).copied().unwrap_or("PiB");
        if value.fract() == 0.0 {
            write!(f, "{value:.0} {name}")
        } else {
            write!(f, "{value:.1} {name}")
        }
    }
}

/// A moment for people, to the minute in UTC: `2026-12-08 14:03 UTC`.
#[derive(Debug, Clone, Copy)]
pub struct UtcMinute(pub SystemTime);

impl fmt::Display for UtcMinute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self
            .0
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let at = i64::try_from(secs)
            .ok()
            .and_then(|secs| time::OffsetDateTime::from_unix_timestamp(secs).ok());
        let Some(at) = at else {
            return write!(f, "{secs} s after 1970 UTC");
        };
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            at.year(),
            u8::from(at.month()),
            at.day(),
            at.hour(),
            at.minute()
        )
    }
}

/// One direction's quota and use, as kept with the paired device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BandwidthAccount {
    /// The quota; `None`: none (nothing is counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<BandwidthQuota>,
    /// Bytes counted in the current period (charged ahead in slices, see the facade).
    #[serde(default)]
    pub used: u64,
    /// When the current period started, in milliseconds since the Unix epoch; `None`: no use
    /// since the quota was set or the last period ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_start_ms: Option<u64>,
}

/// One direction's use against its quota at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BandwidthUse {
    /// Bytes used in the current period.
    pub used: u64,
    /// The quota, if any.
    pub quota: Option<BandwidthQuota>,
    /// When the current period ends and `used` starts over; `None` while no period runs.
    pub resets_at: Option<SystemTime>,
}

/// Why a charge or an admission was refused: the quota, its use and when it resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BandwidthRefusal {
    /// The quota.
    pub quota: BandwidthQuota,
    /// Bytes used in the current period.
    pub used: u64,
    /// When the period ends (for a period not started yet, a full period from now).
    pub resets_at: SystemTime,
}

/// Bytes a charge granted, and the period they were counted in (for a refund).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BandwidthGrant {
    /// Bytes granted (at most what was asked).
    pub bytes: u64,
    /// The period's start they were counted in; `None`: not counted (no quota).
    pub period_start_ms: Option<u64>,
}

impl BandwidthAccount {
    /// Sets (or clears) the quota. A new amount over the same kind of period keeps the
    /// current period and what was used in it (raising a day's quota does not forgive the
    /// day's use); a quota where there was none, another kind of period or no quota starts
    /// over, and the next use starts a period.
    pub fn set_quota(&mut self, quota: Option<BandwidthQuota>) {
        let same_period = matches!(
            (self.quota, quota),
            (Some(old), Some(new)) if old.period == new.period
        );
        if same_period {
            self.quota = quota;
        } else {
            *self = BandwidthAccount {
                quota,
                used: 0,
                period_start_ms: None,
            };
        }
    }

    /// The account at `now`: a period that has ended is over (no use, no start).
    pub fn at(&self, now: SystemTime) -> BandwidthAccount {
        match (self.quota, self.period_start_ms) {
            (Some(quota), Some(start)) if unix_millis(now) >= end_ms(start, quota.period) => {
                BandwidthAccount {
                    quota: self.quota,
                    used: 0,
                    period_start_ms: None,
                }
            }
            _ => *self,
        }
    }

    /// Use against the quota at `now`.
    pub fn usage(&self, now: SystemTime) -> BandwidthUse {
        let current = self.at(now);
        BandwidthUse {
            used: current.used,
            quota: current.quota,
            resets_at: current.resets_at_ms().map(from_unix_millis),
        }
    }

    /// Whether `bytes` more fit in what is left at `now` (nothing counted).
    pub fn admit(&self, bytes: u64, now: SystemTime) -> Result<(), BandwidthRefusal> {
        let current = self.at(now);
        match current.quota {
            Some(quota) if current.used.saturating_add(bytes) > quota.bytes => {
                Err(current.refusal(quota, now))
            }
            _ => Ok(()),
        }
    }

    /// Counts up to `want` bytes at `now` and returns what was granted: all of it while it
    /// fits, what is left when less is, a refusal when nothing is left. Without a quota
    /// everything is granted and nothing counted.
    pub fn charge(
        &mut self,
        want: u64,
        now: SystemTime,
    ) -> Result<BandwidthGrant, BandwidthRefusal> {
        *self = self.at(now);
        let Some(quota) = self.quota else {
            return Ok(BandwidthGrant {
                bytes: want,
                period_start_ms: None,
            });
        };
        let left = quota.bytes.saturating_sub(self.used);
        if left == 0 && want > 0 {
            return Err(self.refusal(quota, now));
        }
        let start = *self.period_start_ms.get_or_insert(unix_millis(now));
        let bytes = want.min(left);
        self.used = self.used.saturating_add(bytes);
        Ok(BandwidthGrant {
            bytes,
            period_start_ms: Some(start),
        })
    }

    /// Gives back `bytes` of `grant` that were not used, if its period is still the current one.
    pub fn refund(&mut self, bytes: u64, grant_period_ms: Option<u64>) {
        if grant_period_ms.is_some() && grant_period_ms == self.period_start_ms {
            self.used = self.used.saturating_sub(bytes);
        }
    }

    fn resets_at_ms(&self) -> Option<u64> {
        Some(end_ms(self.period_start_ms?, self.quota?.period))
    }

    fn refusal(&self, quota: BandwidthQuota, now: SystemTime) -> BandwidthRefusal {
        let resets_at = self.resets_at_ms().map_or_else(
            || now.checked_add(quota.period.length()).unwrap_or(now),
            from_unix_millis,
        );
        BandwidthRefusal {
            quota,
            used: self.used,
            resets_at,
        }
    }
}

/// Milliseconds since the Unix epoch; times before it count as the epoch.
fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

/// The inverse of [`unix_millis`].
fn from_unix_millis(millis: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_millis(millis))
        .unwrap_or(UNIX_EPOCH)
}

fn end_ms(start_ms: u64, period: QuotaPeriod) -> u64 {
    let length = u64::try_from(period.length().as_millis()).unwrap_or(u64::MAX);
    start_ms.saturating_add(length)
}

/// Both directions' accounts of one paired device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Bandwidth {
    /// What this device sends to the device.
    #[serde(default)]
    pub send: BandwidthAccount,
    /// What this device receives from the device.
    #[serde(default)]
    pub receive: BandwidthAccount,
}

impl Bandwidth {
    /// The account of `direction`.
    pub fn account(&self, direction: QuotaDirection) -> &BandwidthAccount {
        match direction {
            QuotaDirection::Send => &self.send,
            QuotaDirection::Receive => &self.receive,
        }
    }

    /// The account of `direction`, to change.
    pub fn account_mut(&mut self, direction: QuotaDirection) -> &mut BandwidthAccount {
        match direction {
            QuotaDirection::Send => &mut self.send,
            QuotaDirection::Receive => &mut self.receive,
        }
    }

    /// Whether nothing is set or counted (the record then leaves it out).
    pub fn is_unset(&self) -> bool {
        *self == Bandwidth::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn moments_read_as_utc_dates() {
        assert_eq!(UtcMinute(at(0)).to_string(), "1970-01-01 00:00 UTC");
        assert_eq!(
            UtcMinute(at(951_782_400)).to_string(),
            "2000-02-29 00:00 UTC"
        );
        assert_eq!(
            UtcMinute(at(1_796_738_580)).to_string(),
            "2026-12-08 14:03 UTC"
        );
    }

    #[test]
    fn quotas_read_as_people_write_them() {
        let read = |text: &str| text.parse::<BandwidthQuota>().unwrap();
        assert_eq!(
            read("20GiB/day"),
            BandwidthQuota::new(20 * GIB, QuotaPeriod::Day)
        );
        assert_eq!(
            read("100GiB/month"),
            BandwidthQuota::new(100 * GIB, QuotaPeriod::Month)
        );
        assert_eq!(
            read("500MB/week"),
            BandwidthQuota::new(500_000_000, QuotaPeriod::Week)
        );
        assert_eq!(
            read("1.5 KiB / day"),
            BandwidthQuota::new(1536, QuotaPeriod::Day)
        );
        for bad in [
            "",
            "20GiB",
            "20/year",
            "GiB/day",
            "0/day",
            "-1/day",
            "1e30GB/day",
            "5XB/day",
        ] {
            assert!(bad.parse::<BandwidthQuota>().is_err(), "{bad}");
        }
        assert_eq!(read("20GiB/day").to_string(), "20 GiB a day");
        assert_eq!(ByteSize(19 * GIB + GIB / 5).to_string(), "19.2 GiB");
        assert_eq!(ByteSize(512).to_string(), "512 B");
    }

    /// Virtual time: the period starts at the first use, ends one length later, and the use
    /// starts over then; a period not started yet does not end.
    #[test]
    fn a_period_starts_at_first_use_and_resets_one_length_later() {
        let day = QuotaPeriod::Day.length().as_secs();
        let mut account = BandwidthAccount::default();
        account.set_quota(Some(BandwidthQuota::new(100, QuotaPeriod::Day)));
        assert_eq!(account.usage(at(5 * day)).resets_at, None);
        let grant = account.charge(60, at(1000)).unwrap();
        assert_eq!(grant.bytes, 60);
        let usage = account.usage(at(1000 + day - 1));
        assert_eq!(usage.used, 60);
        assert_eq!(usage.resets_at, Some(at(1000 + day)));
        // What is left is granted, then nothing.
        assert_eq!(account.charge(60, at(2000)).unwrap().bytes, 40);
        let refused = account.charge(1, at(3000)).unwrap_err();
        assert_eq!(refused.used, 100);
        assert_eq!(refused.resets_at, at(1000 + day));
        assert!(account.admit(1, at(1000 + day - 1)).is_err());
        // At the reset everything is there again, and a new period starts at the next use.
        assert_eq!(account.usage(at(1000 + day)).used, 0);
        assert!(account.admit(100, at(1000 + day)).is_ok());
        assert_eq!(account.charge(30, at(5 * day)).unwrap().bytes, 30);
        assert_eq!(account.usage(at(5 * day)).resets_at, Some(at(6 * day)));
        // A refund counts in its own period only.
        account.refund(10, Some(1000 * 1000));
        assert_eq!(account.used, 30);
        account.refund(10, account.period_start_ms);
        assert_eq!(account.used, 20);
    }

    #[test]
    fn without_a_quota_nothing_is_counted_and_a_changed_quota_keeps_its_period() {
        let mut account = BandwidthAccount::default();
        assert_eq!(account.charge(u64::MAX, at(1)).unwrap().bytes, u64::MAX);
        assert_eq!(account, BandwidthAccount::default());
        account.set_quota(Some(BandwidthQuota::new(10, QuotaPeriod::Week)));
        account.charge(10, at(1)).unwrap();
        let refused = account.admit(1, at(2)).unwrap_err();
        assert_eq!(refused.resets_at, at(1 + 7 * 24 * 3600));
        // Raised within the same kind of period: what was used stays used, the period runs on.
        account.set_quota(Some(BandwidthQuota::new(20, QuotaPeriod::Week)));
        assert_eq!(account.usage(at(2)).used, 10);
        assert_eq!(account.usage(at(2)).resets_at, Some(at(1 + 7 * 24 * 3600)));
        assert_eq!(account.charge(15, at(3)).unwrap().bytes, 10);
        // Another kind of period, or no quota and a new one, starts over.
        account.set_quota(Some(BandwidthQuota::new(20, QuotaPeriod::Day)));
        assert_eq!(account.usage(at(4)).used, 0);
        account.charge(5, at(4)).unwrap();
        account.set_quota(None);
        account.set_quota(Some(BandwidthQuota::new(20, QuotaPeriod::Day)));
        assert_eq!(account.usage(at(5)).used, 0);
        // A refusal before any use says a full period from now.
        let mut fresh = BandwidthAccount::default();
        fresh.set_quota(Some(BandwidthQuota::new(5, QuotaPeriod::Month)));
        let refused = fresh.admit(6, at(10)).unwrap_err();
        assert_eq!(refused.resets_at, at(10 + 30 * 24 * 3600));
    }
}
