//! Consent and limits per job name: who may submit, how many at once, how long, how large.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether::{NodeId, PairedPeer};

use crate::machine::Caps;
use crate::wire::{MAX_ARGS_LEN, RefusalCode, Submit};

/// Which paired devices may submit a job.
#[derive(Clone)]
#[non_exhaustive]
pub enum Allow {
    /// Every paired device.
    AnyPaired,
    /// Only these devices.
    Devices(HashSet<NodeId>),
    /// Whoever the callback says yes to.
    Decide(Arc<dyn Fn(&PairedPeer) -> bool + Send + Sync>),
}

impl fmt::Debug for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Allow::AnyPaired => f.write_str("AnyPaired"),
            Allow::Devices(devices) => f.debug_tuple("Devices").field(devices).finish(),
            Allow::Decide(_) => f.write_str("Decide(..)"),
        }
    }
}

impl Allow {
    fn allows(&self, peer: &PairedPeer) -> bool {
        match self {
            Allow::AnyPaired => true,
            Allow::Devices(devices) => devices.contains(&peer.node_id),
            Allow::Decide(decide) => decide(peer),
        }
    }
}

/// What one job name allows. The defaults: no device at all (consent is given explicitly),
/// 2 at once, 1 per device, 10 minutes, 4 KiB of arguments, 1 GiB and 10,000 entries of
/// inputs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobPolicy {
    /// Who may submit it.
    pub allow: Allow,
    /// How many run at once, from all devices.
    pub max_running: usize,
    /// How many run at once from one device.
    pub max_per_device: usize,
    /// The longest one may run, inputs included (a submitter may ask for less).
    pub max_run_time: Duration,
    /// The most bytes of arguments (at most [`MAX_ARGS_LEN`]).
    pub max_args_len: usize,
    /// The most input bytes, checked before the inputs move.
    pub max_input_bytes: u64,
    /// The most input entries (files and directories).
    pub max_input_entries: u64,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self {
            allow: Allow::Devices(HashSet::new()),
            max_running: 2,
            max_per_device: 1,
            max_run_time: Duration::from_secs(600),
            max_args_len: 4 * 1024,
            max_input_bytes: 1 << 30,
            max_input_entries: 10_000,
        }
    }
}

impl JobPolicy {
    /// Sets who may submit.
    pub fn allow(mut self, allow: Allow) -> Self {
        self.allow = allow;
        self
    }

    /// Sets how many run at once in all and per device.
    pub fn concurrency(mut self, max_running: usize, max_per_device: usize) -> Self {
        self.max_running = max_running;
        self.max_per_device = max_per_device;
        self
    }

    /// Sets the longest run time.
    pub fn max_run_time(mut self, limit: Duration) -> Self {
        self.max_run_time = limit;
        self
    }

    /// Sets the argument cap (never above [`MAX_ARGS_LEN`]).
    pub fn max_args_len(mut self, max: usize) -> Self {
        self.max_args_len = max.min(MAX_ARGS_LEN);
        self
    }

    /// Sets the input caps.
    pub fn max_inputs(mut self, bytes: u64, entries: u64) -> Self {
        self.max_input_bytes = bytes;
        self.max_input_entries = entries;
        self
    }

    pub(crate) fn caps(&self) -> Caps {
        Caps {
            per_name: self.max_running,
            per_device: self.max_per_device,
        }
    }

    /// Checks consent and sizes; concurrency is the admission's.
    pub(crate) fn check(
        &self,
        submit: &Submit,
        peer: &PairedPeer,
    ) -> Result<(), (RefusalCode, &'static str)> {
        if !self.allow.allows(peer) {
            return Err((
                RefusalCode::NotAllowed,
                "this device may not submit that job",
            ));
        }
        if submit.args.len() > self.max_args_len {
            return Err((RefusalCode::TooLarge, "the arguments are too long"));
        }
        if submit.input_bytes > self.max_input_bytes
            || submit.input_entries > self.max_input_entries
        {
            return Err((RefusalCode::TooLarge, "the inputs are too large"));
        }
        Ok(())
    }

    /// How long a submission may run: the smaller of its ask and this policy's limit.
    pub(crate) fn run_for(&self, submit: &Submit) -> Duration {
        Duration::from_millis(submit.timeout_ms).min(self.max_run_time)
    }
}
