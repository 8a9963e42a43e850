//! The encrypted envelope (stub until tether-crypto lands).

/// Bytes of the counter carried by a sealed frame.
pub const COUNTER_LEN: usize = 8;
/// Bytes a seal adds to a payload: the tag and the counter.
pub const SEAL_OVERHEAD: usize = 16 + COUNTER_LEN;
