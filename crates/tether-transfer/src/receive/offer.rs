//! Before `Accept`: the offer and manifest checked against the limits (and the deadline), the
//! targets against the destination (symlinks, existing files, free space), then consent. Any
//! failure is answered with a `Decline`, and nothing has been written.
//!
//! Until consent the manifest is held once: its entries as they arrived (consent reads them
//! without a copy) and the names in the builder's tree; the survey borrows them and keeps 16
//! bytes per file for the busy check. Paths are parsed into [`CheckedEntry`]s only once the
//! offer is accepted.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tether_crypto::{TransferCipher, TransferSecret};
use tether_identity::{NodeId, error_chain};
use tokio::io::{AsyncReadExt, ReadHalf};
use tokio::sync::mpsc;

use crate::chunk::{CHUNK_SIZE, chunk_count};
use crate::compress::Compression;
use crate::consent::{Decision, OfferSummary};
use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{ByteStream, ControlWriter, LaneCipher, eof, read_frame_from};
use crate::manifest::{
    CheckedEntry, EntryKind, Manifest, ManifestBuilder, ManifestError, checked_path,
};
use crate::negotiate::choose;
use crate::options::{MAX_LANES, ReceiverConfig};
use crate::path::RelPath;
use crate::protocol::{AbortCode, AcceptBody, Decline, Message, Offer, VERSION, cut_message};
use crate::receive::data::AttachedLane;
use crate::receive::dest::{Destination, Placing};
use crate::receive::disk::{self, Existing, FilePaths};
use crate::receive::receiver::{BusyGuard, LaneGuard, Receiver, TargetKey};
use crate::receive::room::{FsRoom, Need};
use crate::receive::task::blocking;
use crate::storage::QuotaRefusal;

/// What consent produced.
pub(super) struct Accepted {
    /// The destination, opened once for the whole transfer.
    pub(super) dest: Arc<Destination>,
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
    let config = &receiver.config();
    let secret = check_offer(config, offer, keys)?;
    let builder = ManifestBuilder::new(config.limits, offer.entries, offer.total_bytes)
        .map_err(PeerError::from)?;
    let deadline = config.manifest_timeout;
    let entries = tokio::time::timeout(deadline, read_manifest(reader, builder))
        .await
        .map_err(|_| {
            PeerError::from(ManifestError::TooSlow {
                secs: deadline.as_secs_f64().ceil() as u64,
            })
        })??;
    // The cipher is chosen once the whole offer is read, so a sender refused for its cipher
    // list is waiting for the answer and reads the `Decline`.
    let cipher = choose_cipher(config, offer)?;
    // Shared with the survey's thread, not copied.
    let entries = Arc::new(entries);
    let (dest, busy, data) = consent(receiver, offer, &entries, peer).await?;
    admit_budget(config, &peer, data)?;
    // Counted before `Accept`, so no byte is written past the device's quota.
    charge_quota(config, &peer, data)?;
    let entries = Arc::try_unwrap(entries).unwrap_or_else(|shared| (*shared).clone());
    let entries = entries
        .iter()
        .map(CheckedEntry::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(PeerError::from)?;
    let ciphers = lane_ciphers(offer.lanes, secret, cipher)?;
    let lanes = if offer.lanes > 1 {
        Some(receiver.open_lanes(offer.transfer_id, peer, offer.lanes)?)
    } else {
        None
    };
    let answer = AcceptBody {
        cipher: cipher.map(|c| u64::from(c.wire_id())),
        batches: true,
    };
    writer.send(&Message::Accept(answer)).await?;
    Ok(Accepted {
        dest,
        entries,
        busy,
        lanes,
        ciphers,
        cipher,
    })
}

/// Checks what the offer says of itself against this version and `config`; the transfer's
/// secret, when the offer is encrypted.
fn check_offer(
    config: &ReceiverConfig,
    offer: &Offer,
    keys: Option<TransferSecret>,
) -> Result<Option<TransferSecret>, TransferError> {
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
    if config.require_encryption && !offer.encrypted {
        return Err(PeerError::EncryptionRequired.into());
    }
    match (offer.encrypted, keys) {
        (true, None) => Err(UsageError::KeysRequired.into()),
        (true, secret) => Ok(secret),
        (false, _) => Ok(None),
    }
}

/// The cipher this side takes from the offer's list, when encrypted.
fn choose_cipher(
    config: &ReceiverConfig,
    offer: &Offer,
) -> Result<Option<TransferCipher>, TransferError> {
    if offer.encrypted {
        let offered = offer.ciphers.ciphers().map_err(PeerError::from)?;
        let aes_hardware = TransferCipher::aes_hardware();
        Ok(Some(
            choose(&offered, &config.ciphers, aes_hardware).map_err(PeerError::from)?,
        ))
    } else if !offer.ciphers.is_empty() {
        Err(PeerError::Protocol("a plain offer lists ciphers").into())
    } else {
        Ok(None)
    }
}

/// Claims the destination, then asks the consent policy: the person is asked only about an
/// offer that fits it. A policy that picks another destination has that one claimed instead.
async fn consent(
    receiver: &Receiver,
    offer: &Offer,
    entries: &Arc<Manifest>,
    peer: NodeId,
) -> Result<(Arc<Destination>, BusyGuard, u64), TransferError> {
    let config = &receiver.config();
    let (dest, busy, data) =
        claim_destination(receiver, &config.destination, entries, peer).await?;
    let summary = OfferSummary {
        transfer_id: offer.transfer_id,
        peer,
        entries,
        files: entries.files(),
        total_bytes: offer.total_bytes,
        encrypted: offer.encrypted,
    };
    match config.consent.decide(&summary).await {
        Decision::Accept => Ok((dest, busy, data)),
        Decision::AcceptInto(root) => {
            drop(busy);
            drop(dest);
            let meta = std::fs::metadata(&root)
                .map_err(|e| LocalError::io("opening the chosen destination", &root, e))?;
            if !meta.is_dir() {
                return Err(LocalError::NotADirectory(root).into());
            }
            claim_destination(receiver, &root, entries, peer).await
        }
        Decision::Decline(reason) => Err(TransferError::Declined(reason)),
    }
}

/// Each lane's cipher: derived from the transfer's keys under the agreed cipher, or plain.
fn lane_ciphers(
    lanes: u8,
    secret: Option<TransferSecret>,
    cipher: Option<TransferCipher>,
) -> Result<Vec<Arc<LaneCipher>>, TransferError> {
    let mut keys = secret
        .zip(cipher)
        .map(|(secret, cipher)| secret.into_keys(cipher));
    let mut ciphers = Vec::with_capacity(usize::from(lanes));
    for index in 0..lanes {
        ciphers.push(Arc::new(LaneCipher::derive(keys.as_mut(), index)?));
    }
    Ok(ciphers)
}

/// Checks the `bytes` an offer may place against what is left of `peer`'s bandwidth quota.
fn admit_budget(config: &ReceiverConfig, peer: &NodeId, bytes: u64) -> Result<(), LocalError> {
    match config.receive_budget.admit(peer, bytes) {
        Ok(()) => Ok(()),
        Err(refusal) => {
            tracing::info!(%peer, needed = bytes, used = refusal.used, quota = refusal.quota, "offer over the device's bandwidth quota");
            Err(LocalError::BandwidthQuota {
                needed: bytes,
                used: refusal.used,
                quota: refusal.quota,
                resets_at: refusal.resets_at,
            })
        }
    }
}

/// Counts the `bytes` an accepted offer may place against `peer`'s storage quota.
fn charge_quota(config: &ReceiverConfig, peer: &NodeId, bytes: u64) -> Result<(), LocalError> {
    if bytes == 0 {
        return Ok(());
    }
    match config.quota.charge(peer, bytes) {
        Ok(()) => Ok(()),
        Err(QuotaRefusal::Exceeded { quota, used }) => {
            tracing::info!(%peer, needed = bytes, used, quota, "offer over the device's quota");
            Err(LocalError::QuotaExceeded {
                needed: bytes,
                used,
                quota,
            })
        }
        Err(_) => Err(LocalError::QuotaUnavailable),
    }
}

/// Reads manifest pages into `builder` until every announced entry has arrived.
async fn read_manifest(
    reader: &mut ReadHalf<Box<dyn ByteStream>>,
    mut builder: ManifestBuilder,
) -> Result<Manifest, TransferError> {
    while !builder.is_complete() {
        let frame = read_frame_from(reader).await?.ok_or_else(eof)?;
        builder
            .page_bytes(frame.payload().len())
            .map_err(PeerError::from)?;
        match Message::from_frame(&frame)? {
            Message::Manifest(page) => {
                for entry in page.entries {
                    builder.push(&entry).map_err(PeerError::from)?;
                }
            }
            Message::Abort(abort) => return Err(PeerError::from(abort).into()),
            _ => return Err(PeerError::Protocol("expected the manifest").into()),
        }
    }
    Ok(builder.finish().map_err(PeerError::from)?)
}

/// Opens `root`, checks the targets under it (existing files, symlinks, room for the files
/// and directories less the reserves) and claims them against other running transfers.
/// Returns the bytes of file data the offer may still place, for the quota.
async fn claim_destination(
    receiver: &Receiver,
    root: &Path,
    entries: &Arc<Manifest>,
    peer: NodeId,
) -> Result<(Arc<Destination>, BusyGuard, u64), TransferError> {
    let config = &receiver.config();
    let (dest, targets, need) = {
        let entries = Arc::clone(entries);
        let overwrite = config.overwrite;
        let check = config.check_free_space;
        let (space, inodes) = (config.space_reserve, config.inode_reserve);
        let root = root.to_owned();
        blocking(move || {
            let mut dest = Destination::open(&root)?;
            let room = FsRoom::of(dest.root(), &root)?;
            let mut placing = Placing {
                keep_free: 0,
                sender: Some(peer),
            };
            let (targets, need) = survey(&dest, &entries, overwrite, room.block)?;
            if check {
                room.check(need, space, inodes, &root)?;
                placing.keep_free = space.of(room.total_bytes);
            }
            dest.set_placing(placing);
            Ok::<_, TransferError>((Arc::new(dest), targets, need))
        })
        .await??
    };
    let busy = receiver
        .claim_targets(targets.iter().map(|(_, key)| *key).collect())
        .map_err(|taken| {
            let path = targets
                .get(taken)
                .and_then(|(index, _)| entries.get(*index))
                .and_then(|entry| checked_path(&entry).ok())
                .map(|path| path.under(root))
                .unwrap_or_else(|| root.to_owned());
            TransferError::from(LocalError::TargetBusy(path))
        })?;
    Ok((dest, busy, need.data))
}

/// Every file's target (the entry's index and the target's key), and what the transfer may
/// still need on disk: files neither in place nor partly received already (in whole blocks of
/// `block` bytes, with their resume records), and every directory that does not exist yet,
/// listed or not. Refuses targets that exist with other contents (unless overwriting) or pass
/// through a symlink.
fn survey(
    dest: &Destination,
    entries: &Manifest,
    overwrite: bool,
    block: u64,
) -> Result<(Vec<(usize, TargetKey)>, Need), TransferError> {
    let mut targets = Vec::new();
    let mut need = Need::default();
    // Each parent directory is checked once, not once per file in it; nothing under a parent
    // that does not exist is looked for (a new folder costs no lookup per file).
    let mut checked_parents = HashMap::new();
    // Directories that do not exist yet, by the hash of their path, each counted once.
    let mut new_dirs = HashSet::new();
    let mut count_new = |path: Option<RelPath>, need: &mut Need| -> Result<(), TransferError> {
        let mut next = path;
        while let Some(dir) = next {
            let key = *blake3::hash(dir.as_str().as_bytes()).as_bytes();
            if new_dirs.contains(&key) || dest.find(dir.as_str())?.is_some() {
                break;
            }
            new_dirs.insert(key);
            need.dir(block);
            next = dir.parent();
        }
        Ok(())
    };
    for (index, entry) in entries.iter().enumerate() {
        let path = checked_path(&entry).map_err(PeerError::from)?;
        let parent = path.parent();
        let parent_name = parent.as_ref().map_or("", |p| p.as_str());
        // Parents are remembered by a hash, so long paths cost 32 bytes each here; the handle
        // comes from the destination's bounded cache, not kept here.
        let parent_key = parent
            .as_ref()
            .map(|p| *blake3::hash(p.as_str().as_bytes()).as_bytes());
        let dir = match checked_parents.get(&parent_key) {
            Some(false) => None,
            Some(true) => dest.find(parent_name)?,
            None => {
                let dir = dest.find(parent_name)?;
                checked_parents.insert(parent_key, dir.is_some());
                if dir.is_none() {
                    count_new(parent.clone(), &mut need)?;
                }
                dir
            }
        };
        let size = entry.size;
        if entry.kind == EntryKind::Dir {
            // A real directory or nothing; a symlink or a file is refused.
            let exists = dir.is_some() && dest.find(path.as_str())?.is_some();
            if !exists {
                count_new(Some(path), &mut need)?;
            }
            continue;
        }
        let resumable = chunk_count(size) > 1;
        let paths = FilePaths::new(dest.path(), &path);
        let key = (index, TargetKey::of(&paths.target));
        let Some(dir) = dir else {
            need.file(size, resumable, block);
            targets.push(key);
            continue;
        };
        match disk::existing(&dir, &paths.name, &paths.target)? {
            Existing::Absent => {}
            Existing::File(len) if len == size => {
                targets.push(key);
                continue; // probably in place already; planning checks its hash
            }
            Existing::File(_) if overwrite => {}
            Existing::File(_) | Existing::Other => {
                return Err(LocalError::TargetExists(paths.target).into());
            }
        }
        let partial = disk::existing(&dir, &paths.partial_name(), &paths.partial())?;
        if !matches!(partial, Existing::File(_)) {
            need.file(size, resumable, block);
        }
        targets.push(key);
    }
    Ok((targets, need))
}

/// Answers an offer this side will not take, then reads (and drops) what the sender still
/// writes, so that it is not cut off mid-manifest and reads the answer: until the sender
/// hangs up or pauses for [`DRAIN_IDLE`], for at most [`DRAIN_TIME`] and as many bytes as a
/// manifest may hold.
pub(super) async fn decline(
    writer: &ControlWriter,
    reader: &mut ReadHalf<Box<dyn ByteStream>>,
    config: &ReceiverConfig,
    error: &TransferError,
) {
    let code = match error {
        TransferError::Link(_) | TransferError::Peer(PeerError::Aborted { .. }) => return,
        TransferError::Declined(_) => AbortCode::Declined,
        TransferError::Cancelled => AbortCode::Cancelled,
        TransferError::Stalled { .. } => AbortCode::Stalled,
        TransferError::Local(LocalError::BandwidthQuota { .. }) => AbortCode::BandwidthQuota,
        TransferError::Local(local) if local.is_no_room() => AbortCode::NoSpace,
        // Another transfer holds the same targets: one whose link died and that this side has
        // not noticed yet ends soon, so the sender may try again (a restarted sender's resume).
        TransferError::Local(LocalError::TargetBusy(_)) => AbortCode::Busy,
        TransferError::Peer(PeerError::TooManyOffers { .. }) => AbortCode::Busy,
        TransferError::Peer(PeerError::EncryptionRequired) => AbortCode::EncryptionRequired,
        TransferError::Peer(_) | TransferError::Local(_) => AbortCode::Refused,
        TransferError::Usage(_) => AbortCode::Internal,
    };
    let message = match error {
        TransferError::Peer(error) => cut_message(&error_chain(error)),
        TransferError::Declined(reason) => cut_message(reason),
        TransferError::Local(local) => local.peer_message(),
        _ => String::new(),
    };
    writer
        .close(Some(&Message::Decline(Decline { code, message })))
        .await;
    let most = config.limits.max_manifest_bytes.saturating_add(1 << 20);
    let mut rest = reader.take(most);
    let mut buf = vec![0u8; 64 << 10];
    let drain = async {
        while let Ok(Ok(n)) = tokio::time::timeout(DRAIN_IDLE, rest.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME.min(config.manifest_timeout), drain).await;
}

/// How long a declined sender may go on writing before the stream is dropped.
const DRAIN_TIME: Duration = Duration::from_secs(30);

/// How long a declined sender may pause its writing before the stream is dropped.
const DRAIN_IDLE: Duration = Duration::from_millis(500);
