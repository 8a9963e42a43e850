//! The transfer history: one [`TransferRecord`] per transfer and side, kept in the device's
//! store.
//!
//! Every push and pull is recorded on both devices when it ends, whatever the end: verified,
//! cancelled, refused (declined by consent, not shared) or failed with its reason. The record
//! is committed (one `fsync`ed transaction of `secrets.redb`, sealed under the storage key
//! like the paired devices) before the transfer's outcome reaches the app, so a process killed
//! right after keeps it. The store keeps the newest [`MAX_HISTORY`] records and drops the
//! oldest as new ones come. A transfer that never started (the device offline, a path that
//! cannot be read) is not recorded: its caller got the error at once.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tether_identity::{DeviceName, NodeId, error_chain};
use tether_registry::{DeviceRegistry, HistoryEntry};
use tether_transfer::{
    AbortCode, Direction, EntryKind, IncomingOffer, MAX_REASON_LEN, OutgoingTransfer, PathKind,
    PeerError, TransferCipher, TransferError, TransferReport,
};
use tracing::warn;

pub use tether_registry::MAX_HISTORY;

/// One transfer as this device saw it ([`crate::NetworkingService::transfer_history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferRecord {
    /// Its number in this device's history: larger is newer.
    pub id: u64,
    /// The device at the other end.
    pub node_id: NodeId,
    /// That device's name here when the transfer started (`None` if it was not paired).
    pub device_name: Option<DeviceName>,
    /// Whether this device sent or received.
    pub direction: Direction,
    /// Whether the receiver asked for it (a pull), rather than the sender offering it.
    pub pull: bool,
    /// When it started, by this device's clock.
    pub started_at: SystemTime,
    /// How long it took, from the start to its end (consent included).
    pub duration: Duration,
    /// Files in it. For a transfer that ended before its report: the entries its offer
    /// announced (directories too, on the receiving side), 0 when no offer was known.
    pub files: u64,
    /// All file bytes of it (0 when it ended before its offer was known).
    pub bytes_total: u64,
    /// File bytes that crossed the link; `None` when it ended before its report.
    pub bytes_transferred: Option<u64>,
    /// Bytes not sent because the receiver already held them verified (a resumed transfer);
    /// `None` when it ended before its report.
    pub bytes_resumed: Option<u64>,
    /// Whether its chunks were sealed with per-transfer keys (else plain, in QUIC's TLS only).
    pub encrypted: bool,
    /// The cipher the two sides agreed on; `None` when plain, or when it ended before they
    /// agreed.
    pub cipher: Option<TransferCipher>,
    /// How the bytes travelled, as the connection knew it when the transfer started.
    pub path: PathKind,
    /// How it ended.
    pub outcome: TransferOutcome,
}

impl TransferRecord {
    /// Whether it picked up what an earlier, interrupted run of it left.
    pub fn resumed(&self) -> bool {
        self.bytes_resumed.is_some_and(|bytes| bytes > 0)
    }
}

/// How a recorded transfer ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransferOutcome {
    /// The receiver verified every file.
    Verified,
    /// Stopped on purpose; what was verified stays for a resume.
    Cancelled {
        /// Whether the other device cancelled it (else this one did).
        by_peer: bool,
    },
    /// Not accepted: declined by the receiver's consent, not shared, or refused by its checks
    /// (space, quota, encryption required).
    Refused {
        /// Why, as the refusing side said (text the peer may have chosen, at most
        /// [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
    /// Ended by a failure.
    Failed {
        /// The error chain (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
        /// Whether sending (or asking) again resumes it.
        resumable: bool,
    },
}

impl TransferOutcome {
    /// How `result` ended a transfer.
    pub(crate) fn of(result: Result<&TransferReport, &TransferError>) -> Self {
        let error = match result {
            Ok(_) => return TransferOutcome::Verified,
            Err(error) => error,
        };
        match error {
            TransferError::Cancelled => TransferOutcome::Cancelled { by_peer: false },
            TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Cancelled,
                ..
            }) => TransferOutcome::Cancelled { by_peer: true },
            TransferError::Declined(reason) => TransferOutcome::Refused {
                reason: cut(reason.clone()),
            },
            TransferError::Peer(
                PeerError::Declined { .. }
                | PeerError::NotShared(_)
                | PeerError::TooManyOffers { .. }
                | PeerError::EncryptionRequired,
            ) => TransferOutcome::Refused {
                reason: cut(error_chain(error)),
            },
            _ => TransferOutcome::Failed {
                reason: cut(error_chain(error)),
                resumable: error.is_resumable(),
            },
        }
    }
}

/// `text` cut to [`MAX_REASON_LEN`] bytes on a character boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// What an offer holds, for the record of a transfer that ends before its report.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OfferSize {
    pub(crate) files: u64,
    pub(crate) bytes_total: u64,
    pub(crate) encrypted: bool,
}

impl OfferSize {
    /// What `outgoing` will offer.
    pub(crate) fn of(outgoing: &OutgoingTransfer) -> Self {
        let files = outgoing
            .manifest()
            .iter()
            .filter(|entry| entry.kind == EntryKind::File)
            .count();
        OfferSize {
            files: u64::try_from(files).unwrap_or(u64::MAX),
            bytes_total: outgoing.total_bytes(),
            encrypted: outgoing.options().encrypt,
        }
    }

    /// What `offer` holds (its entries, directories included).
    pub(crate) fn offered<S>(offer: &IncomingOffer<S>) -> Self {
        OfferSize {
            files: offer.entries(),
            bytes_total: offer.total_bytes(),
            encrypted: offer.encrypted(),
        }
    }
}

/// A transfer under way, to be recorded when it ends ([`Self::record`]).
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    registry: DeviceRegistry,
    node_id: NodeId,
    device_name: Option<DeviceName>,
    direction: Direction,
    pull: bool,
    started_at: SystemTime,
    started: Instant,
    files: u64,
    bytes_total: u64,
    encrypted: bool,
    path: PathKind,
}

impl Draft {
    /// A transfer with `node_id` starting now.
    pub(crate) fn start(
        registry: &DeviceRegistry,
        node_id: NodeId,
        direction: Direction,
        pull: bool,
    ) -> Self {
        let device_name = registry
            .device(&node_id)
            .and_then(|device| device.paired)
            .map(|paired| paired.info.device_name);
        Draft {
            registry: registry.clone(),
            node_id,
            device_name,
            direction,
            pull,
            started_at: SystemTime::now(),
            started: Instant::now(),
            files: 0,
            bytes_total: 0,
            encrypted: false,
            path: PathKind::Unknown,
        }
    }

    /// The path the connection takes.
    pub(crate) fn path(mut self, path: tether_iroh::PathKind) -> Self {
        self.path = transfer_path(path);
        self
    }

    /// What the offer holds.
    pub(crate) fn size(mut self, size: OfferSize) -> Self {
        self.files = size.files;
        self.bytes_total = size.bytes_total;
        self.encrypted = size.encrypted;
        self
    }

    /// Records how the transfer ended, committed before this returns. A store that fails is
    /// logged, never the transfer's failure.
    pub(crate) async fn record(self, result: Result<&TransferReport, &TransferError>) {
        self.record_outcome(result.ok(), TransferOutcome::of(result))
            .await;
    }

    /// [`Self::record`] for the end a [`crate::TransferHandle`] reports: a transfer's error as
    /// the facade names it, or a dial's (a push that retried).
    pub(crate) async fn record_end(self, result: Result<&TransferReport, &crate::NetworkError>) {
        match result {
            Ok(report) => self.record(Ok(report)).await,
            Err(crate::NetworkError::Transfer(error)) => self.record(Err(error)).await,
            Err(crate::NetworkError::NotShared { entry_id }) => {
                let error = TransferError::Peer(PeerError::NotShared(*entry_id));
                self.record(Err(&error)).await;
            }
            Err(error) => {
                let outcome = TransferOutcome::Failed {
                    reason: cut(error_chain(error)),
                    resumable: true,
                };
                self.record_outcome(None, outcome).await;
            }
        }
    }

    /// Records `outcome` (with `report`, if the transfer got that far), as [`Self::record`].
    pub(crate) async fn record_outcome(
        self,
        report: Option<&TransferReport>,
        outcome: TransferOutcome,
    ) {
        let registry = self.registry.clone();
        let node_id = self.node_id;
        let body = self.body(report, outcome);
        let json = match serde_json::to_vec(&body) {
            Ok(json) => json,
            Err(error) => {
                warn!(%error, "a transfer record could not be encoded");
                return;
            }
        };
        let stored =
            tokio::task::spawn_blocking(move || registry.append_history(node_id, &json)).await;
        match stored {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                warn!(error = %crate::ErrorChain(&error), "a transfer could not be recorded");
            }
            Err(error) => warn!(%error, "the task recording a transfer failed"),
        }
    }

    fn body(self, report: Option<&TransferReport>, outcome: TransferOutcome) -> Body {
        let files = report.map_or(self.files, |report| report.files);
        let bytes_total = report.map_or(self.bytes_total, |report| report.bytes_total);
        let cipher = report.and_then(|report| report.cipher);
        Body {
            device_name: self.device_name,
            direction: self.direction,
            pull: self.pull,
            started_at_ms: unix_millis(self.started_at),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            files,
            bytes_total,
            bytes_transferred: report.map(|report| report.bytes_transferred),
            bytes_resumed: report.map(|report| report.bytes_resumed),
            encrypted: cipher.is_some() || (report.is_none() && self.encrypted),
            cipher: cipher.map(|cipher| cipher.name().to_owned()),
            path: self.path,
            outcome,
        }
    }
}

/// The transfer layer's name for a connection's path.
pub(crate) fn transfer_path(path: tether_iroh::PathKind) -> PathKind {
    match path {
        tether_iroh::PathKind::Direct => PathKind::Direct,
        tether_iroh::PathKind::Relayed => PathKind::Relayed,
        _ => PathKind::Unknown,
    }
}

/// A record as stored (JSON, inside the registry's sealed entry).
#[derive(Serialize, Deserialize)]
struct Body {
    device_name: Option<DeviceName>,
    direction: Direction,
    pull: bool,
    started_at_ms: u64,
    duration_ms: u64,
    files: u64,
    bytes_total: u64,
    bytes_transferred: Option<u64>,
    bytes_resumed: Option<u64>,
    encrypted: bool,
    cipher: Option<String>,
    path: PathKind,
    outcome: TransferOutcome,
}

/// The records of `entries`; one that does not parse (written by a newer version, say) is
/// skipped with a warning.
pub(crate) fn records(entries: Vec<HistoryEntry>) -> Vec<TransferRecord> {
    entries
        .into_iter()
        .filter_map(|entry| match serde_json::from_slice::<Body>(&entry.body) {
            Ok(body) => Some(TransferRecord {
                id: entry.id,
                node_id: entry.node_id,
                device_name: body.device_name,
                direction: body.direction,
                pull: body.pull,
                started_at: UNIX_EPOCH
                    .checked_add(Duration::from_millis(body.started_at_ms))
                    .unwrap_or(UNIX_EPOCH),
                duration: Duration::from_millis(body.duration_ms),
                files: body.files,
                bytes_total: body.bytes_total,
                bytes_transferred: body.bytes_transferred,
                bytes_resumed: body.bytes_resumed,
                encrypted: body.encrypted,
                cipher: body.cipher.and_then(|name| {
                    TransferCipher::ALL
                        .into_iter()
                        .find(|cipher| cipher.name() == name)
                }),
                path: body.path,
                outcome: body.outcome,
            }),
            Err(error) => {
                warn!(id = entry.id, %error, "skipped a transfer record this version cannot read");
                None
            }
        })
        .collect()
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_end_is_its_outcome() {
        let outcome = |error: TransferError| TransferOutcome::of(Err(&error));
        assert_eq!(
            outcome(TransferError::Cancelled),
            TransferOutcome::Cancelled { by_peer: false }
        );
        assert_eq!(
            outcome(TransferError::Peer(PeerError::Aborted {
                code: AbortCode::Cancelled,
                message: "the sender cancelled".to_owned(),
            })),
            TransferOutcome::Cancelled { by_peer: true }
        );
        assert_eq!(
            outcome(TransferError::Declined("not now".to_owned())),
            TransferOutcome::Refused {
                reason: "not now".to_owned()
            }
        );
        let TransferOutcome::Refused { reason } =
            outcome(TransferError::Peer(PeerError::Declined {
                code: AbortCode::Declined,
                message: "no room".to_owned(),
            }))
        else {
            panic!("a peer's decline is a refusal")
        };
        assert!(reason.contains("no room"), "{reason}");
        let TransferOutcome::Failed { reason, resumable } = outcome(TransferError::Link(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        )) else {
            panic!("a lost link is a failure")
        };
        assert!(resumable);
        assert!(reason.starts_with("link lost"), "{reason}");
    }

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_REASON_LEN);
        let reason = cut(long);
        assert!(reason.len() <= MAX_REASON_LEN);
        assert!(reason.len() >= MAX_REASON_LEN - 1);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
