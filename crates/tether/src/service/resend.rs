//! A push that finishes by itself: when a run fails in a way that reaching the device again
//! cures, the handle waits ([`crate::retry::Outage`]), redials and runs the transfer again,
//! which resumes it (the receiver asks only for what it lacks), until it completes, fails for
//! good, is cancelled, or the wait runs out.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use rand_core::UnwrapErr;
use tether_identity::{ErrorChain, NodeId};
use tether_iroh::{ConnectionInfo, PathKind};
use tether_transfer::{CancellationToken, SendTally, TransferError, TransferEvent, TransferReport};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::core::NetworkingService;
use crate::error::short;
use crate::history::transfer_path;
use crate::link::Link;
use crate::retry::{Outage, dial_curable};
use crate::transfer::EVENTS;
use crate::{NetworkError, TransferHandle, TransferOptions};

impl NetworkingService {
    /// Starts the first run over `link` (its failure to start is returned at once, as without
    /// retries) and hands the rest to a task that retries for `options.retry_for`.
    pub(super) async fn share_retrying(
        &self,
        link: &Link,
        paths: &[PathBuf],
        options: TransferOptions,
    ) -> Result<TransferHandle, NetworkError> {
        let cancel = CancellationToken::new();
        let tally = Arc::new(SendTally::new());
        let resend = Resend {
            service: self.for_task(),
            node_id: link.node_id,
            paths: paths.to_vec(),
            options,
            cancel: cancel.clone(),
            tally,
            events: mpsc::channel(EVENTS).0,
        };
        let first = resend.start(link).await?;
        let (events_tx, events) = mpsc::channel(EVENTS);
        let resend = Resend {
            events: events_tx,
            ..resend
        };
        let path = first.1;
        let task = tokio::spawn(resend.run(first));
        Ok(TransferHandle::new(events, cancel, task, path))
    }
}

/// The retrying task's state: what to send where, and what the runs have sent.
struct Resend {
    service: NetworkingService,
    node_id: NodeId,
    paths: Vec<PathBuf>,
    options: TransferOptions,
    cancel: CancellationToken,
    tally: Arc<SendTally>,
    /// The handle's events: every run's, and [`TransferEvent::Retrying`] between runs.
    events: mpsc::Sender<TransferEvent>,
}

impl Resend {
    /// Runs until the transfer completes, fails in a way no redial cures, is cancelled, or an
    /// outage outlasts the budget (then the last run's error).
    async fn run(self, first: (TransferHandle, PathKind)) -> Result<TransferReport, NetworkError> {
        let (mut run, mut path) = first;
        let mut outage = Outage::new(self.options.retry_for);
        let mut resumes = 0u32;
        loop {
            let sent_before = self.tally.bytes_sent();
            let error = match self.follow(run).await {
                Ok(mut report) => {
                    report.path = transfer_path(path);
                    report.resumes = resumes;
                    report.bytes_resent = self.tally.bytes_resent();
                    return Ok(report);
                }
                Err(error) => error,
            };
            if self.tally.bytes_sent() > sent_before {
                outage.moved();
            }
            if self.cancel.is_cancelled() || !dial_curable(&error) {
                return Err(error);
            }
            (run, path) = self.rerun(&mut outage, error).await?;
            resumes = resumes.saturating_add(1);
        }
    }

    /// Hands one run's events on, then its outcome.
    async fn follow(&self, mut run: TransferHandle) -> Result<TransferReport, NetworkError> {
        while let Some(event) = run.events.recv().await {
            let _ = self.events.try_send(event);
        }
        run.finish().await
    }

    /// Waits and redials until a new run starts; `last` is the failure that ended the last run,
    /// returned when the outage outlasts the budget.
    async fn rerun(
        &self,
        outage: &mut Outage,
        mut last: NetworkError,
    ) -> Result<(TransferHandle, PathKind), NetworkError> {
        let mut reason = ErrorChain(&last).to_string();
        loop {
            let random = rand_core::Rng::next_u32(&mut UnwrapErr(getrandom::SysRng));
            let Some(wait) = outage.failed(Instant::now(), random) else {
                warn!(peer = %short(&self.node_id), attempts = outage.attempt(),
                    "the device stayed out of reach for the whole retry budget");
                return Err(last);
            };
            info!(peer = %short(&self.node_id), attempt = outage.attempt(),
                wait_ms = wait.as_millis() as u64, %reason, "waiting for the device to resume");
            let _ = self.events.try_send(TransferEvent::Retrying {
                peer: self.node_id,
                attempt: outage.attempt(),
                reason,
                retry_in: wait,
            });
            let started = async {
                tokio::time::sleep(wait).await;
                let link = self.service.link(self.node_id).await?;
                self.start(&link).await
            };
            let started = tokio::select! {
                started = started => started,
                () = self.cancel.cancelled() => Err(TransferError::Cancelled.into()),
            };
            match started {
                Ok(started) => return Ok(started),
                Err(error) if dial_curable(&error) && !self.cancel.is_cancelled() => {
                    reason = ErrorChain(&error).to_string();
                    if matches!(error, NetworkError::Transfer(_)) {
                        last = error;
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Starts one run over `link`.
    async fn start(&self, link: &Link) -> Result<(TransferHandle, PathKind), NetworkError> {
        let run = crate::transfer::send(
            link,
            &self.service.inner.meters,
            &self.paths,
            &self.options,
            self.cancel.clone(),
            Some(Arc::clone(&self.tally)),
        )
        .await?;
        Ok((run, ConnectionInfo::of(&link.connection).path))
    }
}
