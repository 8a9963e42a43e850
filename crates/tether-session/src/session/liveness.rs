//! The session's clock: keep-alive and busy probes, use of the link, idleness, and request
//! deadlines.

use std::time::{Duration, Instant};

use tether_identity::ErrorChain;
use tether_wire::{NetworkMessage, Ping, RequestId};
use tracing::debug;

use super::{CloseReason, Event, RequestError, Session, Waiting};

impl Session {
    /// Sends a keep-alive `Ping` carrying `timestamp_ms`, unless one is in flight (then
    /// `false`). Its answer is [`Event::ProbeAnswered`]; none within `timeout` is
    /// [`Event::Close`] with [`CloseReason::PeerDead`]. Not application traffic.
    pub fn start_probe(&mut self, now: Instant, timestamp_ms: u64, timeout: Duration) -> bool {
        if self.probe.is_some() {
            return false;
        }
        let ping = NetworkMessage::Ping(Ping { timestamp_ms });
        match self.send_request(now, ping, timeout, true) {
            Ok(id) => {
                self.probe = Some(id);
                true
            }
            Err(error) => {
                debug!(error = %ErrorChain(&error), "cannot send a keep-alive ping");
                false
            }
        }
    }

    /// Whether a keep-alive ping is in flight.
    pub fn probing(&self) -> bool {
        self.probe.is_some()
    }

    /// Marks the link in use (a transfer on it, say) until [`Self::end_use`].
    pub fn begin_use(&mut self) {
        self.in_use += 1;
    }

    /// One use of the link ended; that counts as application traffic.
    pub fn end_use(&mut self, now: Instant) {
        self.in_use = self.in_use.saturating_sub(1);
        self.touch(now);
    }

    pub(super) fn touch(&mut self, now: Instant) {
        self.last_used = now;
        self.idle_reported = false;
    }

    /// How long nothing has used the link; `None` while something does.
    pub fn idle_for(&self, now: Instant) -> Option<Duration> {
        (self.in_use == 0).then(|| now.saturating_duration_since(self.last_used))
    }

    /// The transport heard from the peer at `now` (an authenticated packet on the connection:
    /// an acknowledgement of this side's data, data of its own). While the link is in use, a
    /// keep-alive ping that waits for its answer behind a slow or bloated link's queue is not
    /// a dead peer as long as the transport keeps hearing from it: the busy timeout counts
    /// from this too. The session stream's own input needs no such call.
    pub fn transport_heard(&mut self, now: Instant) {
        self.transport_heard = self.transport_heard.max(now);
    }

    /// How long since the peer last sent anything (keep-alive answers included).
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard)
    }

    /// How long since anything was heard from the peer: its last word on the session stream or
    /// the transport's last packet from it ([`Self::transport_heard`]), whichever is later.
    /// What a dead-peer report should say; [`Self::silent_for`] counts the stream alone.
    pub fn unheard_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_heard.max(self.transport_heard))
    }

    /// How long ago the session was established.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.established)
    }

    /// When [`Self::handle_timeout`] has something to do next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let requests = self
            .waiting
            .values()
            .map(|waiting| self.deadline_of(waiting))
            .min();
        let keepalive = self
            .probe_after()
            .filter(|_| self.probe.is_none() && !self.dead)
            .and_then(|interval| self.last_heard.checked_add(interval));
        let idle = self
            .config
            .idle_timeout
            .filter(|_| self.in_use == 0 && !self.idle_reported)
            .and_then(|timeout| self.last_used.checked_add(timeout));
        [requests, keepalive, idle].into_iter().flatten().min()
    }

    /// Times out requests, sends a keep-alive ping when the peer has been silent, and reports
    /// an idle link.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired: Vec<RequestId> = self
            .waiting
            .iter()
            .filter(|(_, waiting)| self.deadline_of(waiting) <= now)
            .map(|(id, _)| *id)
            .collect();
        expired.sort_unstable_by_key(|id| id.0);
        for id in expired {
            let Some(waiting) = self.waiting.remove(&id) else {
                continue;
            };
            if waiting.probe {
                self.probe = None;
                self.dead = true;
                self.events.push_back(Event::Close(CloseReason::PeerDead));
            } else {
                self.end_use(now);
                self.events.push_back(Event::Answered {
                    id,
                    result: Err(RequestError::TimedOut {
                        after: waiting.timeout,
                    }),
                });
            }
        }
        if let Some(interval) = self.probe_after()
            && !self.dead
            && self.silent_for(now) >= interval
        {
            // Milliseconds since the session began: the peer only echoes them.
            let timestamp = u64::try_from(self.age(now).as_millis()).unwrap_or(u64::MAX);
            self.start_probe(now, timestamp, self.config.probe_timeout);
        }
        if let Some(timeout) = self.config.idle_timeout
            && !self.idle_reported
            && self.idle_for(now).is_some_and(|idle| idle >= timeout)
        {
            self.idle_reported = true;
            self.events.push_back(Event::Close(CloseReason::Idle));
        }
    }

    /// Whether the link is in use and the busy probe is on.
    fn busy(&self) -> bool {
        self.in_use > 0 && self.config.busy_probe_after.is_some()
    }

    /// After how much silence a keep-alive ping goes out now: the busy probe's while the
    /// link is in use, else the keep-alive interval.
    fn probe_after(&self) -> Option<Duration> {
        let busy = self.config.busy_probe_after.filter(|_| self.in_use > 0);
        match (busy, self.config.keepalive_interval) {
            (Some(busy), Some(interval)) => Some(busy.min(interval)),
            (busy, interval) => busy.or(interval),
        }
    }

    /// When a request times out: its own deadline, or for a keep-alive ping while the link is
    /// in use, the busy probe's timeout after it was sent (or after the transport last heard
    /// from the peer, if later) if that is sooner.
    fn deadline_of(&self, waiting: &Waiting) -> Instant {
        if waiting.probe && self.busy() {
            let busy = (waiting.sent.max(self.transport_heard))
                .checked_add(self.config.busy_probe_timeout);
            busy.map_or(waiting.deadline, |busy| busy.min(waiting.deadline))
        } else {
            waiting.deadline
        }
    }
}
