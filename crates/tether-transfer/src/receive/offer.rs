//! Before `Accept`: the offer and manifest checked against the limits, the targets against the
//! destination (symlinks, existing files, free space), then consent. Any failure is answered
//! with a `Decline`, and nothing has been written.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tether_crypto::{TransferCipher, TransferSecret};
use tether_identity::NodeId;
use tokio::io::ReadHalf;
use tokio::sync::mpsc;

use crate::chunk::CHUNK_SIZE;
use crate::compress::Compression;
use crate::consent::{Decision, OfferSummary};
use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{ByteStream, ControlWriter, LaneCipher, eof, read_frame_from};
use crate::manifest::{CheckedEntry, EntryKind, ManifestBuilder};
use crate::negotiate::choose;
use crate::options::MAX_LANES;
use crate::protocol::{AbortCode, AcceptBody, Decline, Message, Offer, VERSION, cut_message};
use crate::receive::data::AttachedLane;
use crate::receive::disk::{self, Existing, FilePaths};
use crate::receive::{BusyGuard, LaneGuard, Receiver, aborted, blocking};

/// What consent produced.
pub(super) struct Accepted {
    /// Where the files go: the receiver's destination, or the one consent chose.
    pub(super) root: PathBuf,
    pub(super) entries: Vec<CheckedEntry>,
    pub(super) busy: BusyGuard,
    pub(super) lanes: Option<(LaneGuard, mpsc::Receiver<AttachedLane>)>,
    pub(super) ciphers: Vec<Arc<LaneCipher>>,
    /// The cipher agreed on, when encrypted.
    pub(super) cipher: Option<TransferCipher>,
}

/// Checks the offer and manifest, the destination, and consent; sends `Accept`.
pub(super) async fn before_accept(
    receiver: &Receiver,
    reader: &mut ReadHalf<Box<dyn ByteStream>>,
    writer: &ControlWriter,
    offer: &Offer,
    peer: NodeId,
    keys: Option<TransferSecret>,
) -> Result<Accepted, TransferError> {
    let config = &receiver.inner.config;
    if offer.version != VERSION {
        return Err(PeerError::Version(offer.version).into());
    }
    if offer.chunk_size != CHUNK_SIZE
        || offer.compression == Compression::Unknown
        || offer.lanes == 0
        || offer.lanes > MAX_LANES
    {
        return Err(
            PeerError::Protocol("unsupported chunk size, compression or lane count").into(),
        );
    }
    let secret = match (offer.encrypted, keys) {
        (true, None) => return Err(UsageError::KeysRequired.into()),
        (true, secret) => secret,
        (false, _) => None,
    };
    let mut builder = ManifestBuilder::new(config.limits, offer.entries, offer.total_bytes)
        .map_err(PeerError::from)?;
    while !builder.is_complete() {
        let frame = read_frame_from(reader).await?.ok_or_else(eof)?;
        builder
            .page_bytes(frame.payload().len())
            .map_err(PeerError::from)?;
        match Message::from_frame(&frame)? {
            Message::Manifest(page) => {
                for entry in page.entries {
                    builder.push(entry).map_err(PeerError::from)?;
                }
            }
            Message::Abort(abort) => return Err(aborted(abort)),
            _ => return Err(PeerError::Protocol("expected the manifest").into()),
        }
    }
    let entries = builder.finish().map_err(PeerError::from)?;
    // The cipher is chosen once the whole offer is read, so a sender refused for its cipher
    // list is waiting for the answer and reads the `Decline`.
    let cipher = if offer.encrypted {
        let offered = offer.ciphers.ciphers().map_err(PeerError::from)?;
        let aes_hardware = TransferCipher::aes_hardware();
        Some(choose(&offered, &config.ciphers, aes_hardware).map_err(PeerError::from)?)
    } else if !offer.ciphers.is_empty() {
        return Err(PeerError::Protocol("a plain offer lists ciphers").into());
    } else {
        None
    };

    let manifest: Vec<_> = entries.iter().map(|e| e.entry.clone()).collect();
    let files = manifest
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .count() as u64;
    let summary = OfferSummary {
        transfer_id: offer.transfer_id,
        peer,
        entries: &manifest,
        files,
        total_bytes: offer.total_bytes,
        encrypted: offer.encrypted,
    };
    // The person is asked only about an offer that fits the destination.
    let busy = claim_destination(receiver, &config.destination, &entries).await?;
    let (root, busy) = match config.consent.decide(&summary).await {
        Decision::Accept => (config.destination.clone(), busy),
        Decision::AcceptInto(root) => {
            drop(busy);
            let meta = std::fs::metadata(&root)
                .map_err(|e| LocalError::io("opening the chosen destination", &root, e))?;
            if !meta.is_dir() {
                return Err(LocalError::NotADirectory(root).into());
            }
            let busy = claim_destination(receiver, &root, &entries).await?;
            (root, busy)
        }
        Decision::Decline(reason) => return Err(TransferError::Declined(reason)),
    };
    let mut keys = secret
        .zip(cipher)
        .map(|(secret, cipher)| secret.into_keys(cipher));
    let mut ciphers = Vec::with_capacity(usize::from(offer.lanes));
    for index in 0..offer.lanes {
        ciphers.push(Arc::new(LaneCipher::derive(keys.as_mut(), index)?));
    }
    let lanes = if offer.lanes > 1 {
        Some(receiver.open_lanes(offer.transfer_id, peer, offer.lanes)?)
    } else {
        None
    };
    let answer = AcceptBody {
        cipher: cipher.map(|c| u64::from(c.wire_id())),
    };
    writer.send(&Message::Accept(answer)).await?;
    Ok(Accepted {
        root,
        entries,
        busy,
        lanes,
        ciphers,
        cipher,
    })
}

/// Checks the targets under `root` (existing files, symlinks, free space) and claims them
/// against other running transfers.
async fn claim_destination(
    receiver: &Receiver,
    root: &Path,
    entries: &[CheckedEntry],
) -> Result<BusyGuard, TransferError> {
    let config = &receiver.inner.config;
    let (targets, needed) = {
        let entries = entries.to_vec();
        let overwrite = config.overwrite;
        let root = root.to_owned();
        blocking(move || survey(&root, &entries, overwrite)).await??
    };
    if config.check_free_space {
        let available = disk::free_space(root)?;
        if needed > available {
            return Err(LocalError::DiskFull {
                path: root.to_owned(),
                needed,
                available,
            }
            .into());
        }
    }
    receiver.claim_targets(targets)
}

/// Every file's target, and the bytes the transfer may still need on disk. Refuses targets that
/// exist with other contents (unless overwriting) or pass through a symlink.
fn survey(
    root: &Path,
    entries: &[CheckedEntry],
    overwrite: bool,
) -> Result<(Vec<PathBuf>, u64), TransferError> {
    let mut targets = Vec::new();
    let mut needed = 0u64;
    // Each parent directory is checked once, not once per file in it; nothing under a parent
    // that does not exist is looked for (a new folder costs no lookup per file).
    let mut checked_parents = HashMap::new();
    for entry in entries {
        let parent = entry.path.parent().map(|p| p.as_str().to_owned());
        let parent_exists = match checked_parents.get(&parent) {
            Some(exists) => *exists,
            None => {
                let exists = disk::check_dirs(root, &entry.path)?;
                checked_parents.insert(parent, exists);
                exists
            }
        };
        let size = entry.entry.size;
        if entry.entry.kind == EntryKind::Dir {
            if parent_exists {
                disk::check_dir_or_absent(&entry.path.under(root))?;
            }
            continue;
        }
        let paths = FilePaths::new(root, &entry.path);
        if !parent_exists {
            needed = needed.saturating_add(size);
            targets.push(paths.target);
            continue;
        }
        match disk::existing(&paths.target)? {
            Existing::Absent => {}
            Existing::File(len) if len == size => {
                targets.push(paths.target);
                continue; // probably in place already; planning checks its hash
            }
            Existing::File(_) if overwrite => {}
            Existing::File(_) | Existing::Other => {
                return Err(LocalError::TargetExists(paths.target).into());
            }
        }
        if !matches!(disk::existing(&paths.partial)?, Existing::File(_)) {
            needed = needed.saturating_add(size);
        }
        targets.push(paths.target);
    }
    Ok((targets, needed))
}

/// Answers an offer this side will not take.
pub(super) async fn decline(writer: &ControlWriter, error: &TransferError) {
    let code = match error {
        TransferError::Link(_) | TransferError::Peer(PeerError::Aborted { .. }) => return,
        TransferError::Declined(_) => AbortCode::Declined,
        TransferError::Cancelled => AbortCode::Cancelled,
        TransferError::Stalled { .. } => AbortCode::Stalled,
        TransferError::Local(LocalError::DiskFull { .. }) => AbortCode::NoSpace,
        TransferError::Peer(_) | TransferError::Local(_) => AbortCode::Refused,
        TransferError::Usage(_) => AbortCode::Internal,
    };
    let message = match error {
        TransferError::Peer(error) => cut_message(&error.to_string()),
        TransferError::Declined(reason) => cut_message(reason),
        _ => String::new(),
    };
    writer
        .close(Some(&Message::Decline(Decline { code, message })))
        .await;
}
