//! The sender's run of a transfer.
//!
//! Offer and manifest out; `Accept` (or `Decline`) back; chunk hashes out; lanes greeted; then the
//! receiver's `Want`s and `FileRequest`s feed the [`WorkQueue`](queue::WorkQueue) and every lane
//! sends from it until the receiver reports `Complete` (see `data.rs`).

mod data;
mod lane;
mod queue;
mod requests;

use std::sync::Arc;
use std::time::Instant;

use tether_crypto::{TransferCipher, TransferSecret};
use tokio::io::{ReadHalf, WriteHalf};
use uuid::Uuid;

use crate::chunk::CHUNK_SIZE;
use crate::compress::Compression;
use crate::error::{LocalError, PeerError, TransferError, UsageError};
use crate::link::{
    ByteStream, ControlWriter, LaneCipher, abort_for, read_message, send_message, split,
};
use crate::negotiate::{CipherError, OfferedCiphers, check_answer};
use crate::options::{MAX_LANES, RunContext};
use crate::progress::{Direction, TransferEvent, TransferReport, emit};
use crate::protocol::{
    ChunkHashes, LaneHello, MANIFEST_PAGE_BYTES, MAX_HASHES_PER_PAGE, ManifestPage, Message, Offer,
    VERSION, encode_hashes,
};
use crate::source::OutgoingTransfer;
use crate::stall::Activity;
use crate::throttle::RateLimiter;
use data::DataPhase;

impl OutgoingTransfer {
    /// Sends the transfer over `control` and the extra `lanes` (data-only streams; may be empty)
    /// until the receiver has verified and placed every file.
    ///
    /// Resuming is running a transfer with the same files again: the receiver asks only for what
    /// it lacks. Cancelling (the context's token) tells the receiver and returns
    /// [`TransferError::Cancelled`].
    pub async fn send<S: ByteStream>(
        self,
        control: S,
        lanes: Vec<S>,
        ctx: RunContext,
    ) -> Result<TransferReport, TransferError> {
        let started = Instant::now();
        let lane_count = lanes.len() + 1;
        if lane_count > usize::from(MAX_LANES) {
            return Err(UsageError::BadOption("too many lanes").into());
        }
        let RunContext {
            keys,
            events,
            cancel,
            shared_limits,
            tally,
        } = ctx;
        let secret = match (self.options.encrypt, keys) {
            (true, None) => return Err(UsageError::KeysRequired.into()),
            (true, secret) => secret,
            (false, _) => None,
        };
        let offered = self.offered_ciphers()?;
        let activity = Activity::new();
        let (mut control_rx, control_tx) = split(control, &activity);
        let control_tx = ControlWriter::new(control_tx);

        let handshake = self.handshake(&mut control_rx, &control_tx, lane_count, &offered);
        let handshake = tokio::select! {
            result = handshake => result,
            () = cancel.cancelled() => Err(TransferError::Cancelled),
        };
        let ciphers = handshake.and_then(|(cipher, batches)| {
            lane_ciphers(secret, cipher, lane_count).map(|ciphers| (ciphers, batches))
        });
        let ((cipher, ciphers), batches) = match ciphers {
            Ok(ciphers) => ciphers,
            Err(error) => {
                control_tx.close(abort_for(&error).as_ref()).await;
                return Err(error);
            }
        };
        let lane_writers = greet_lanes(self.transfer_id, lanes, &activity).await?;
        let mut limiters = shared_limits;
        if let Some(rate) = self.options.rate_limit {
            limiters.push(RateLimiter::new(rate));
        }
        let mut report = TransferReport::new(self.transfer_id, Direction::Send);
        report.cipher = cipher;
        report.files = self.files.len() as u64;
        report.bytes_total = self.total_bytes();
        emit(
            events.as_ref(),
            TransferEvent::Started {
                transfer_id: self.transfer_id,
                direction: Direction::Send,
                files: report.files,
                bytes_total: report.bytes_total,
                bytes_resumed: 0,
            },
        );
        DataPhase {
            events,
            started,
            cancel,
            tally,
            report,
            activity,
            batches,
        }
        .run(
            self,
            control_rx,
            control_tx,
            lane_writers,
            ciphers,
            limiters,
        )
        .await
    }

    /// The ciphers to offer: none for a plain transfer, else the options' list (checked).
    fn offered_ciphers(&self) -> Result<Vec<TransferCipher>, TransferError> {
        if !self.options.encrypt {
            return Ok(Vec::new());
        }
        let ciphers = &self.options.ciphers;
        let duplicated = ciphers
            .iter()
            .enumerate()
            .any(|(i, c)| ciphers.iter().skip(i + 1).any(|d| d == c));
        if ciphers.is_empty() || duplicated {
            return Err(
                UsageError::BadOption("ciphers must list each cipher once, at least one").into(),
            );
        }
        Ok(ciphers.clone())
    }

    /// Offer, manifest, the receiver's answer (the cipher, when encrypted, and whether it reads
    /// batch frames), chunk hashes.
    async fn handshake(
        &self,
        control_rx: &mut ReadHalf<Box<dyn ByteStream>>,
        control_tx: &ControlWriter,
        lanes: usize,
        ciphers: &[TransferCipher],
    ) -> Result<(Option<TransferCipher>, bool), TransferError> {
        let offer = Message::Offer(Offer {
            version: VERSION,
            transfer_id: self.transfer_id,
            entries: self.entries.len() as u64,
            total_bytes: self.total_bytes(),
            chunk_size: CHUNK_SIZE,
            compression: if self.options.compress {
                Compression::Zstd
            } else {
                Compression::None
            },
            encrypted: self.options.encrypt,
            ciphers: OfferedCiphers::new(ciphers),
            lanes: u8::try_from(lanes).unwrap_or(MAX_LANES),
            wants: true,
            plan: true,
        });
        control_tx.send(&offer).await?;
        let mut page = Vec::new();
        let mut page_bytes = 0;
        for entry in &self.entries {
            let len = serde_json::to_vec(entry).map_or(0, |json| json.len());
            if !page.is_empty() && page_bytes + len > MANIFEST_PAGE_BYTES {
                let entries = std::mem::take(&mut page);
                control_tx
                    .send(&Message::Manifest(ManifestPage { entries }))
                    .await?;
                page_bytes = 0;
            }
            page.push(entry.clone());
            page_bytes += len + 1;
        }
        if !page.is_empty() {
            control_tx
                .send(&Message::Manifest(ManifestPage { entries: page }))
                .await?;
        }
        let (cipher, batches) = match read_message(control_rx).await? {
            Message::Accept(accept) => (
                check_answer(ciphers, self.options.encrypt, accept.cipher)
                    .map_err(PeerError::from)?,
                accept.batches,
            ),
            Message::Decline(decline) => {
                return Err(PeerError::Declined {
                    code: decline.code,
                    message: decline.message,
                }
                .into());
            }
            Message::Abort(abort) => {
                return Err(PeerError::from(abort).into());
            }
            _ => return Err(PeerError::Protocol("expected Accept or Decline").into()),
        };
        for file in self.files.iter().filter(|f| f.hashes.len() >= 2) {
            let entry_id = self
                .entries
                .get(file.entry_index)
                .map(|e| e.id)
                .ok_or_else(|| LocalError::Task("a source file without its entry".into()))?;
            for (page, hashes) in file.hashes.chunks(MAX_HASHES_PER_PAGE).enumerate() {
                let message = Message::ChunkHashes(ChunkHashes {
                    entry_id,
                    first: (page * MAX_HASHES_PER_PAGE) as u64,
                    hashes: encode_hashes(hashes),
                });
                control_tx.send(&message).await?;
            }
        }
        Ok((cipher, batches))
    }
}

/// The transfer's keys under the agreed cipher, and each lane's cipher from them.
fn lane_ciphers(
    secret: Option<TransferSecret>,
    cipher: Option<TransferCipher>,
    lanes: usize,
) -> Result<(Option<TransferCipher>, Vec<Arc<LaneCipher>>), TransferError> {
    let mut keys = match (secret, cipher) {
        (Some(secret), Some(cipher)) => Some(secret.into_keys(cipher)),
        (None, None) => None,
        _ => return Err(PeerError::Cipher(CipherError::Mismatch).into()),
    };
    let mut ciphers = Vec::with_capacity(lanes);
    for index in 0..lanes {
        let index = u8::try_from(index).unwrap_or(u8::MAX);
        ciphers.push(Arc::new(LaneCipher::derive(keys.as_mut(), index)?));
    }
    Ok((cipher, ciphers))
}

/// Splits each extra lane and sends its `LaneHello` (index 1, 2, ...), returning the writers.
async fn greet_lanes<S: ByteStream>(
    transfer_id: Uuid,
    lanes: Vec<S>,
    activity: &Arc<Activity>,
) -> Result<Vec<WriteHalf<Box<dyn ByteStream>>>, TransferError> {
    let mut writers = Vec::with_capacity(lanes.len());
    for (index, lane) in lanes.into_iter().enumerate() {
        let (_, mut writer) = split(lane, activity);
        let hello = Message::Lane(LaneHello {
            transfer_id,
            index: u8::try_from(index + 1).unwrap_or(u8::MAX),
        });
        send_message(&mut writer, &hello).await?;
        writers.push(writer);
    }
    Ok(writers)
}
