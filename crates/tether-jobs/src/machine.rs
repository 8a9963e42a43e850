//! The job protocol's logic without IO: who may run what at once ([`Admission`]), when a
//! peer has been silent or a job has run too long ([`Watch`]), and what each message from the
//! worker means to the submitter at each stage ([`Tracker`]). Time comes in as `now`; tests
//! drive it by hand.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tether::NodeId;

use crate::wire::{FailureCode, Message, Progress, RefusalCode};

/// Limits on running jobs, checked before a job is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    /// Jobs of this name at once.
    pub(crate) per_name: usize,
    /// Jobs of this name from one device at once.
    pub(crate) per_device: usize,
}

/// The jobs accepted and not yet ended, counted per name, per (name, device) and in all.
#[derive(Debug, Default)]
pub(crate) struct Admission {
    total: usize,
    per_name: HashMap<String, usize>,
    per_device: HashMap<(String, NodeId), usize>,
}

impl Admission {
    /// Takes a slot for `name` from `device`, or says why not. `max_total` bounds every job
    /// of every name.
    pub(crate) fn admit(
        &mut self,
        name: &str,
        device: NodeId,
        caps: Caps,
        max_total: usize,
    ) -> Result<(), RefusalCode> {
        let of_name = self.per_name.get(name).copied().unwrap_or(0);
        let key = (name.to_owned(), device);
        let of_device = self.per_device.get(&key).copied().unwrap_or(0);
        if self.total >= max_total || of_name >= caps.per_name || of_device >= caps.per_device {
            return Err(RefusalCode::Busy);
        }
        self.total += 1;
        self.per_name.insert(name.to_owned(), of_name + 1);
        self.per_device.insert(key, of_device + 1);
        Ok(())
    }

    /// Gives back a slot [`admit`](Self::admit) took.
    pub(crate) fn release(&mut self, name: &str, device: NodeId) {
        self.total = self.total.saturating_sub(1);
        if let Some(count) = self.per_name.get_mut(name) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_name.remove(name);
            }
        }
        let key = (name.to_owned(), device);
        if let Some(count) = self.per_device.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_device.remove(&key);
            }
        }
    }

    /// Jobs admitted and not released.
    pub(crate) fn running(&self) -> usize {
        self.total
    }
}

/// Why a [`Watch`] fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// Nothing was heard from the peer for the silence limit.
    Silent,
    /// The job's deadline passed.
    Deadline,
}

/// A peer's liveness and a job's deadline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    last_heard: Instant,
    silence_limit: Duration,
    deadline: Instant,
}

impl Watch {
    /// Starts watching at `now`: the peer must be heard every `silence_limit`, the job must
    /// end within `run_for`.
    pub(crate) fn new(now: Instant, silence_limit: Duration, run_for: Duration) -> Self {
        let far = now + Duration::from_secs(365 * 24 * 3600);
        Self {
            last_heard: now,
            silence_limit,
            deadline: now.checked_add(run_for).unwrap_or(far),
        }
    }

    /// The peer said something at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = self.last_heard.max(now);
    }

    /// Whether the watch has fired at `now`; the deadline wins a tie.
    pub(crate) fn check(&self, now: Instant) -> Option<Expiry> {
        if now >= self.deadline {
            Some(Expiry::Deadline)
        } else if now >= self.last_heard + self.silence_limit {
            Some(Expiry::Silent)
        } else {
            None
        }
    }

    /// When [`check`](Self::check) should next be asked.
    pub(crate) fn next_check(&self) -> Instant {
        self.deadline.min(self.last_heard + self.silence_limit)
    }
}

/// Where a submitted job stands, as the submitter sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Submitted, no answer yet.
    Submitted,
    /// Accepted; the inputs go over and the handler runs.
    Running,
    /// The handler succeeded; the outputs are coming.
    Receiving {
        /// Entries announced.
        entries: u64,
        /// Bytes announced.
        bytes: u64,
    },
    /// Ended.
    Ended,
}

/// What a message from the worker means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing to report (a heartbeat).
    Quiet,
    /// The worker accepted: send the inputs.
    Accepted,
    /// Progress to pass on.
    Progress(Progress),
    /// The outputs follow: receive them.
    Outputs {
        /// Entries announced.
        entries: u64,
        /// Bytes announced.
        bytes: u64,
    },
    /// The worker refused the job.
    Refused(RefusalCode, String),
    /// The job failed on the worker.
    Failed(FailureCode, String),
}

/// The submitter's side of one job: checks the order of the worker's messages.
#[derive(Debug)]
pub(crate) struct Tracker {
    stage: Stage,
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Self {
            stage: Stage::Submitted,
        }
    }

    #[cfg(test)]
    pub(crate) fn stage(&self) -> Stage {
        self.stage
    }

    /// Takes the worker's next message, or says which rule it broke.
    pub(crate) fn on_message(&mut self, message: Message) -> Result<Step, &'static str> {
        let step = match (self.stage, message) {
            (Stage::Ended, _) => return Err("a message after the job ended"),
            (_, Message::Heartbeat) => Step::Quiet,
            (Stage::Submitted, Message::Accepted) => {
                self.stage = Stage::Running;
                Step::Accepted
            }
            (Stage::Submitted, Message::Refused { code, message }) => {
                self.stage = Stage::Ended;
                Step::Refused(code, message)
            }
            (Stage::Running, Message::Progress(progress)) => Step::Progress(progress),
            (Stage::Running, Message::Finished { entries, bytes }) => {
                self.stage = Stage::Receiving { entries, bytes };
                Step::Outputs { entries, bytes }
            }
            (Stage::Running | Stage::Receiving { .. }, Message::Failed { code, message }) => {
                self.stage = Stage::Ended;
                Step::Failed(code, message)
            }
            (Stage::Submitted, _) => return Err("expected Accepted or Refused"),
            (Stage::Running, _) => return Err("expected Progress, Finished or Failed"),
            (Stage::Receiving { .. }, _) => return Err("a message while the outputs arrive"),
        };
        Ok(step)
    }

    /// The outputs arrived (or the job ended some other way on this side).
    pub(crate) fn end(&mut self) {
        self.stage = Stage::Ended;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Three distinct node ids (not every 32-byte string is a curve point; about half are).
    fn nodes() -> (NodeId, NodeId, NodeId) {
        let mut ids = (0u8..=255).filter_map(|b| NodeId::from_bytes(&[b; 32]).ok());
        (
            ids.next().unwrap(),
            ids.next().unwrap(),
            ids.next().unwrap(),
        )
    }

    const CAPS: Caps = Caps {
        per_name: 2,
        per_device: 1,
    };

    #[test]
    fn admission_counts_per_device_per_name_and_in_all() {
        let (a, b, c) = nodes();
        let mut admission = Admission::default();
        admission.admit("hash", a, CAPS, 3).unwrap();
        // Per device: one "hash" each.
        assert_eq!(admission.admit("hash", a, CAPS, 3), Err(RefusalCode::Busy));
        admission.admit("hash", b, CAPS, 3).unwrap();
        // Per name: two "hash" in all.
        assert_eq!(admission.admit("hash", c, CAPS, 3), Err(RefusalCode::Busy));
        // Another name has its own count, but the total (3) binds.
        admission.admit("thumb", a, CAPS, 3).unwrap();
        assert_eq!(admission.admit("thumb", c, CAPS, 3), Err(RefusalCode::Busy));
        assert_eq!(admission.running(), 3);
        admission.release("hash", a);
        admission.admit("hash", c, CAPS, 3).unwrap();
        admission.release("hash", b);
        admission.release("hash", c);
        admission.release("thumb", a);
        assert_eq!(admission.running(), 0);
        // Releasing what was never taken does not go below zero.
        admission.release("hash", a);
        assert_eq!(admission.running(), 0);
        admission.admit("hash", a, CAPS, 3).unwrap();
    }

    #[test]
    fn a_watch_fires_on_silence_and_on_its_deadline() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut watch = Watch::new(start, Duration::from_millis(1000), Duration::from_secs(5));
        assert_eq!(watch.check(at(999)), None);
        assert_eq!(watch.check(at(1000)), Some(Expiry::Silent));
        watch.heard(at(900));
        assert_eq!(watch.check(at(1000)), None);
        assert_eq!(watch.next_check(), at(1900));
        // Heard often enough, the deadline still ends it.
        for ms in (1000..5000).step_by(500) {
            watch.heard(at(ms));
            assert_eq!(watch.check(at(ms)), None);
        }
        assert_eq!(watch.check(at(5000)), Some(Expiry::Deadline));
        // An earlier `heard` does not move the clock back.
        watch.heard(at(10));
        assert_eq!(watch.next_check(), at(5000));
    }

    #[test]
    fn a_watch_with_a_huge_run_time_does_not_overflow() {
        let start = Instant::now();
        let watch = Watch::new(start, Duration::from_secs(1), Duration::MAX);
        assert_eq!(
            watch.check(start + Duration::from_secs(100_000)),
            Some(Expiry::Silent)
        );
    }

    #[test]
    fn the_tracker_follows_a_job_to_its_outputs() {
        let mut tracker = Tracker::new();
        assert_eq!(tracker.on_message(Message::Heartbeat), Ok(Step::Quiet));
        assert_eq!(tracker.on_message(Message::Accepted), Ok(Step::Accepted));
        let progress = Progress {
            done: 1,
            total: 2,
            note: String::new(),
        };
        assert_eq!(
            tracker.on_message(Message::Progress(progress.clone())),
            Ok(Step::Progress(progress))
        );
        assert_eq!(
            tracker.on_message(Message::Finished {
                entries: 1,
                bytes: 9
            }),
            Ok(Step::Outputs {
                entries: 1,
                bytes: 9
            })
        );
        assert!(tracker.on_message(Message::Accepted).is_err());
        tracker.end();
        assert_eq!(tracker.stage(), Stage::Ended);
        assert!(tracker.on_message(Message::Heartbeat).is_err());
    }

    #[test]
    fn the_tracker_refuses_messages_out_of_order() {
        let mut tracker = Tracker::new();
        assert!(tracker.on_message(Message::Cancel).is_err());
        let mut tracker = Tracker::new();
        assert!(
            tracker
                .on_message(Message::Finished {
                    entries: 0,
                    bytes: 0
                })
                .is_err()
        );
        let mut tracker = Tracker::new();
        tracker.on_message(Message::Accepted).unwrap();
        assert!(tracker.on_message(Message::Accepted).is_err());
        let mut tracker = Tracker::new();
        tracker.on_message(Message::Accepted).unwrap();
        assert_eq!(
            tracker.on_message(Message::Failed {
                code: FailureCode::TimedOut,
                message: "late".into()
            }),
            Ok(Step::Failed(FailureCode::TimedOut, "late".into()))
        );
        assert_eq!(tracker.stage(), Stage::Ended);
        let mut tracker = Tracker::new();
        assert_eq!(
            tracker.on_message(Message::Refused {
                code: RefusalCode::UnknownJob,
                message: String::new()
            }),
            Ok(Step::Refused(RefusalCode::UnknownJob, String::new()))
        );
        assert!(tracker.on_message(Message::Accepted).is_err());
    }
}
