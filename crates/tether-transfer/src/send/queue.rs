//! The sender's work: chunk ranges the receiver asked for, shared by every lane.

use std::collections::VecDeque;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Most outstanding ranges; a receiver asking for more is breaking the protocol.
pub(crate) const MAX_QUEUED_RANGES: usize = 1 << 20;

/// One chunk to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Work {
    /// Index into the transfer's files.
    pub(crate) file: usize,
    /// Chunk index in that file.
    pub(crate) index: u64,
}

#[derive(Debug, Default)]
struct State {
    ranges: VecDeque<(usize, u64, u64)>,
    closed: bool,
}

/// A queue of chunk ranges; lanes take one chunk at a time, in the order asked.
#[derive(Debug, Default)]
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    ready: Notify,
}

impl WorkQueue {
    /// Adds chunks `start..end` of file `file`. Returns `false` if the queue is over its bound.
    pub(crate) fn push(&self, file: usize, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let mut state = self.state.lock();
        if state.ranges.len() >= MAX_QUEUED_RANGES {
            return false;
        }
        state.ranges.push_back((file, start, end));
        drop(state);
        self.ready.notify_waiters();
        true
    }

    /// Ends the queue: lanes waiting for work stop.
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_waiters();
    }

    fn try_pop(&self) -> Result<Option<Work>, ()> {
        let mut state = self.state.lock();
        if state.closed {
            return Err(());
        }
        let Some(front) = state.ranges.front_mut() else {
            return Ok(None);
        };
        let work = Work {
            file: front.0,
            index: front.1,
        };
        front.1 += 1;
        if front.1 >= front.2 {
            state.ranges.pop_front();
        }
        Ok(Some(work))
    }

    /// The next chunk if there is one and `take` accepts it; it stays queued otherwise.
    pub(crate) fn pop_if(&self, take: impl FnOnce(Work) -> bool) -> Option<Work> {
        let mut state = self.state.lock();
        if state.closed {
            return None;
        }
        let front = state.ranges.front_mut()?;
        let work = Work {
            file: front.0,
            index: front.1,
        };
        if !take(work) {
            return None;
        }
        front.1 += 1;
        if front.1 >= front.2 {
            state.ranges.pop_front();
        }
        Some(work)
    }

    /// The next chunk, waiting for one; `None` once the queue is closed.
    pub(crate) async fn pop(&self) -> Option<Work> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_pop() {
                Err(()) => return None,
                Ok(Some(work)) => return Some(work),
                Ok(None) => notified.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pops_in_order_and_stops_when_closed() {
        let queue = std::sync::Arc::new(WorkQueue::default());
        assert!(queue.push(0, 2, 4));
        assert!(queue.push(1, 0, 1));
        assert!(queue.push(1, 5, 5));
        let work = |file, index| Some(Work { file, index });
        assert_eq!(queue.pop().await, work(0, 2));
        assert_eq!(queue.pop().await, work(0, 3));
        assert_eq!(queue.pop().await, work(1, 0));
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.push(2, 7, 8);
        assert_eq!(waiter.await.unwrap(), work(2, 7));
        queue.push(3, 0, 2);
        assert_eq!(queue.pop_if(|w| w.file == 4), None);
        assert_eq!(queue.pop_if(|w| w.file == 3), work(3, 0));
        assert_eq!(queue.pop_if(|_| true), work(3, 1));
        assert_eq!(queue.pop_if(|_| true), None);
        let waiter = tokio::spawn({
            let queue = queue.clone();
            async move { queue.pop().await }
        });
        tokio::task::yield_now().await;
        queue.close();
        assert_eq!(waiter.await.unwrap(), None);
    }
}
