//! [`OutboxId`]: the number of a queued send.

/// The number of a queued send: never given to another entry of the same store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(u64);

impl OutboxId {
    /// The entry numbered `number` (as [`Self::get`] and `Display` show it).
    pub fn new(number: u64) -> Self {
        OutboxId(number)
    }

    /// Its number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
