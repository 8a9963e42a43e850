//! A least-recently-used cache bounded in bytes, and one fetch per key at a time.
//!
//! Both sides keep few entries (chunks of 256 KiB under a cap of a few MiB; hash lists of the
//! few files being streamed), so the cache is a queue scanned in order: simple and bounded.

use std::collections::{HashMap, VecDeque};

use tokio::sync::watch;

use crate::error::StreamError;

/// Values by key, the least recently used dropped first once their weights pass the cap.
#[derive(Debug)]
pub(crate) struct Lru<K, V> {
    entries: VecDeque<(K, V, usize)>,
    weight: usize,
    cap: usize,
}

impl<K: PartialEq, V: Clone> Lru<K, V> {
    /// An empty cache holding at most `cap` of weight.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            weight: 0,
            cap,
        }
    }

    /// The value of `key`, now the most recently used.
    pub(crate) fn get(&mut self, key: &K) -> Option<V> {
        let at = self.entries.iter().position(|(k, _, _)| k == key)?;
        let entry = self.entries.remove(at)?;
        let value = entry.1.clone();
        self.entries.push_back(entry);
        Some(value)
    }

    /// Keeps `value` under `key` (replacing an older one), then drops the least recently used
    /// until the cap holds. A value heavier than the cap is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, weight: usize) {
        if let Some(at) = self.entries.iter().position(|(k, _, _)| *k == key)
            && let Some((_, _, old)) = self.entries.remove(at)
        {
            self.weight -= old;
        }
        if weight > self.cap {
            return;
        }
        self.entries.push_back((key, value, weight));
        self.weight += weight;
        while self.weight > self.cap {
            match self.entries.pop_front() {
                Some((_, _, dropped)) => self.weight -= dropped,
                None => break,
            }
        }
    }

    /// The weight held now.
    #[cfg(test)]
    pub(crate) fn weight(&self) -> usize {
        self.weight
    }
}

/// Where one fetch's outcome is awaited.
pub(crate) type Outcome<V> = watch::Receiver<Option<Result<V, StreamError>>>;

/// What a caller of [`Flights::lookup`] does next.
pub(crate) enum Lookup<V> {
    /// The value was cached.
    Hit(V),
    /// Another caller is fetching it: wait for its outcome.
    Wait(Outcome<V>),
    /// Nobody is: fetch it, then [`Flights::finish`] and send the outcome.
    Start(watch::Sender<Option<Result<V, StreamError>>>, Outcome<V>),
}

/// A cache of fetched values, and the fetches under way, so each key is fetched once at a time.
#[derive(Debug)]
pub(crate) struct Flights<V> {
    done: Lru<u64, V>,
    under_way: HashMap<u64, Outcome<V>>,
}

impl<V: Clone> Flights<V> {
    /// Keeps fetched values up to `cap` of weight.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            done: Lru::new(cap),
            under_way: HashMap::new(),
        }
    }

    /// The cached value, the fetch to wait for, or a fetch to start.
    pub(crate) fn lookup(&mut self, key: u64) -> Lookup<V> {
        if let Some(value) = self.done.get(&key) {
            return Lookup::Hit(value);
        }
        if let Some(outcome) = self.under_way.get(&key) {
            return Lookup::Wait(outcome.clone());
        }
        let (sender, outcome) = watch::channel(None);
        self.under_way.insert(key, outcome.clone());
        Lookup::Start(sender, outcome)
    }

    /// Whether `key` is cached or being fetched.
    pub(crate) fn known(&mut self, key: u64) -> bool {
        self.under_way.contains_key(&key) || self.done.get(&key).is_some()
    }

    /// Ends the fetch of `key`; a value is kept with `weight`, an error is not.
    pub(crate) fn finish(&mut self, key: u64, outcome: &Result<V, StreamError>, weight: usize) {
        self.under_way.remove(&key);
        if let Ok(value) = outcome {
            self.done.insert(key, value.clone(), weight);
        }
    }
}

/// Waits for the outcome of a fetch another task runs.
pub(crate) async fn wait<V: Clone>(mut outcome: Outcome<V>) -> Result<V, StreamError> {
    let ended = StreamError::Link("the fetch ended without an outcome".to_owned());
    let value = outcome
        .wait_for(Option::is_some)
        .await
        .map_err(|_| ended.clone())?
        .clone();
    value.unwrap_or(Err(ended))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_least_recently_used_goes_first_and_the_cap_holds() {
        let mut lru = Lru::new(10);
        lru.insert(1, "a", 4);
        lru.insert(2, "b", 4);
        assert_eq!(lru.get(&1), Some("a"));
        lru.insert(3, "c", 4);
        assert_eq!(lru.get(&2), None, "2 was the least recently used");
        assert_eq!(lru.get(&1), Some("a"));
        assert_eq!(lru.get(&3), Some("c"));
        assert_eq!(lru.weight(), 8);
        lru.insert(4, "too heavy", 11);
        assert_eq!(lru.get(&4), None);
        lru.insert(1, "a again", 2);
        assert_eq!(lru.weight(), 6);
        assert_eq!(lru.get(&1), Some("a again"));
    }

    #[tokio::test]
    async fn one_fetch_per_key_and_errors_are_not_kept() {
        let mut flights: Flights<u32> = Flights::new(100);
        let Lookup::Start(sender, first) = flights.lookup(7) else {
            panic!("nothing was under way")
        };
        let Lookup::Wait(second) = flights.lookup(7) else {
            panic!("the first fetch is under way")
        };
        let outcome = Err(StreamError::Corrupt { chunk: 7 });
        flights.finish(7, &outcome, 1);
        sender.send(Some(outcome)).unwrap();
        assert!(matches!(
            wait(first).await,
            Err(StreamError::Corrupt { chunk: 7 })
        ));
        assert!(matches!(
            wait(second).await,
            Err(StreamError::Corrupt { chunk: 7 })
        ));
        assert!(
            matches!(flights.lookup(7), Lookup::Start(..)),
            "the error was kept"
        );
        flights.finish(7, &Ok(5), 1);
        assert!(matches!(flights.lookup(7), Lookup::Hit(5)));
    }
}
