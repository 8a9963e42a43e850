//! Telling a slow transfer from a stalled one.
//!
//! Every stream of a transfer is wrapped in [`Metered`], which notes the time of each read or
//! write that moved bytes in an [`Activity`] the run shares. The run's loop looks at it on every
//! progress tick: once nothing has moved for [`REPORT_AFTER`] (or a quarter of the bound, if
//! that is shorter) it says what it waits for ([`TransferEvent::Waiting`] and a log line), and
//! once nothing has moved for the run's stall bound it ends with [`TransferError::Stalled`],
//! which is resumable. Rate-limited senders write each frame in small paced pieces
//! (`link::write_paced`), so a slow limit still moves bytes every few seconds.
//!
//! [`TransferEvent::Waiting`]: crate::TransferEvent::Waiting
//! [`TransferError::Stalled`]: crate::TransferError::Stalled

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Default bound on a transfer that moves no bytes at all.
pub(crate) const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long nothing moves before a run says what it waits for.
pub(crate) const REPORT_AFTER: Duration = Duration::from_secs(5);

/// When bytes last moved on any stream of one run.
#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    /// Milliseconds from `origin` to the last move.
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            last_ms: AtomicU64::new(0),
        })
    }

    /// Notes that something moved now.
    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long nothing has moved, as of `now`.
    pub(crate) fn idle(&self, now: Instant) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(self.origin)
            .saturating_sub(last)
    }
}

/// What a run's loop does about idleness, one tick at a time.
#[derive(Debug)]
pub(crate) struct Watchdog {
    activity: Arc<Activity>,
    bound: Duration,
    reported: bool,
}

/// The watchdog's verdict on one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Bytes moved recently (or the run already said it waits).
    Fine,
    /// Idle long enough to say what the run waits for; said once per idle spell.
    Report(Duration),
    /// Idle past the bound: the run ends.
    Stalled(Duration),
}

impl Watchdog {
    /// Watches `activity`, starting now, against `bound`.
    pub(crate) fn new(activity: Arc<Activity>, bound: Duration) -> Self {
        activity.touch();
        Watchdog {
            activity,
            bound,
            reported: false,
        }
    }

    /// Changes the bound from now on.
    pub(crate) fn set_bound(&mut self, bound: Duration) {
        self.bound = bound;
    }

    /// Looks at the activity as of `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let idle = self.activity.idle(now);
        if idle >= self.bound {
            return Verdict::Stalled(idle);
        }
        if idle >= REPORT_AFTER.min(self.bound / 4) {
            if !self.reported {
                self.reported = true;
                return Verdict::Report(idle);
            }
        } else {
            self.reported = false;
        }
        Verdict::Fine
    }
}

/// A stream that notes in an [`Activity`] every read and write that moved bytes.
pub(crate) struct Metered<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Metered { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_per_idle_spell_then_stalls() {
        let activity = Activity::new();
        let start = activity.origin;
        let mut dog = Watchdog::new(activity.clone(), Duration::from_secs(60));
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(dog.check(at(1)), Verdict::Fine);
        assert_eq!(dog.check(at(6)), Verdict::Report(Duration::from_secs(6)));
        assert_eq!(dog.check(at(30)), Verdict::Fine);
        assert_eq!(dog.check(at(61)), Verdict::Stalled(Duration::from_secs(61)));
        // Far in the future, or with the clock before the origin: no panic.
        assert!(matches!(
            dog.check(start + Duration::from_secs(u64::MAX / 4)),
            Verdict::Stalled(_)
        ));
        assert_eq!(activity.idle(start), Duration::ZERO);
        // A short bound reports at a quarter of it.
        let mut dog = Watchdog::new(Activity::new(), Duration::from_secs(4));
        let start = dog.activity.origin;
        assert_eq!(
            dog.check(start + Duration::from_secs(1)),
            Verdict::Report(Duration::from_secs(1))
        );
    }

    #[tokio::test]
    async fn moved_bytes_count_as_activity() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let activity = Activity::new();
        let (a, b) = tokio::io::duplex(64);
        let mut a = Metered::new(a, activity.clone());
        let mut b = Metered::new(b, activity.clone());
        tokio::time::sleep(Duration::from_millis(20)).await;
        let idle = activity.idle(Instant::now());
        assert!(idle >= Duration::from_millis(20), "{idle:?}");
        a.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        b.read_exact(&mut buf).await.unwrap();
        assert!(activity.idle(Instant::now()) < idle);
    }
}
