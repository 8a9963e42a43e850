//! The service's background tasks: spawned into one tracker, stopped by one token.
//!
//! Every task runs until it ends or the token is cancelled, whichever comes first; the
//! service's shutdown (or the last application handle dropped) cancels it and waits for the
//! tracker to empty. A task that itself shuts the service down (a protocol handler, say) is
//! neither cancelled nor waited for: [`Tasks::release_current`] lets it run on, untracked.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

use n0_future::FutureExt;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;

/// Numbers each service's [`Tasks`], so a task knows which service it belongs to.
static NEXT_TASKS_ID: AtomicU64 = AtomicU64::new(0);

tokio::task_local! {
    /// The task of a service that is running now, in that task.
    static CURRENT: CurrentTask;
}

/// What a task knows of itself: its service, and whether it still counts as running.
struct CurrentTask {
    tasks_id: u64,
    /// Dropped when the task ends, or when it stops counting (see [`Tasks::release_current`]).
    tracked: RefCell<Option<TaskTrackerToken>>,
    /// Runs on after the cancellation: it shuts its own service down.
    exempt: Cell<bool>,
}

/// The service's tasks (see the module's documentation).
#[derive(Debug)]
pub(super) struct Tasks {
    id: u64,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Tasks {
    pub(super) fn new() -> Self {
        Self {
            id: NEXT_TASKS_ID.fetch_add(1, Ordering::Relaxed),
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
        }
    }

    /// A guard that cancels the tasks when dropped (held by the application's handles).
    pub(super) fn stop_on_drop(&self) -> DropGuard {
        self.stop.clone().drop_guard()
    }

    /// Resolves when the tasks are told to stop.
    pub(super) async fn stopping(&self) {
        self.stop.cancelled().await;
    }

    /// Runs `task` (named `what` in the log) until it ends or the tasks are stopped. A panic
    /// in it is logged with its message and ends that task only.
    pub(super) fn spawn(
        &self,
        what: &'static str,
        task: impl Future<Output = ()> + Send + 'static,
    ) {
        let current = CurrentTask {
            tasks_id: self.id,
            tracked: RefCell::new(Some(self.tracker.token())),
            exempt: Cell::new(false),
        };
        let stop = self.stop.clone();
        tokio::spawn(CURRENT.scope(current, logging_panics(what, until_stopped(stop, task))));
    }

    /// When called from one of these tasks: that task is no longer cancelled nor waited for.
    pub(super) fn release_current(&self) {
        let _ = CURRENT.try_with(|current| {
            if current.tasks_id == self.id {
                current.exempt.set(true);
                current.tracked.borrow_mut().take();
            }
        });
    }

    /// Tells every task to stop; spawning more starts nothing that lasts.
    pub(super) fn cancel(&self) {
        self.tracker.close();
        self.stop.cancel();
    }

    /// Waits for every task to end (after [`Self::cancel`]).
    pub(super) async fn wait(&self) {
        self.tracker.wait().await;
    }
}

/// Runs `task` until it ends or `stop` is cancelled (a task exempt by then runs on).
async fn until_stopped(stop: CancellationToken, task: impl Future<Output = ()>) {
    tokio::pin!(task);
    tokio::select! {
        biased;
        () = &mut task => {}
        () = stop.cancelled() => {
            let exempt = CURRENT.try_with(|current| current.exempt.get()).unwrap_or(false);
            if exempt {
                task.await;
            }
        }
    }
}

/// `task`, with a panic in it logged (named `what`, with its message) rather than lost with
/// the task's `JoinHandle`, which nobody reads.
async fn logging_panics(what: &'static str, task: impl Future<Output = ()>) {
    if let Err(payload) = std::panic::AssertUnwindSafe(task).catch_unwind().await {
        crate::error::logged_panic(what, payload.as_ref());
    }
}
