//! Wall-clock time as the wire carries it.

use std::time::SystemTime;

/// Milliseconds since the Unix epoch (0 before it, saturating far after), for `Ping`
/// timestamps.
pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
