//! `SessionKeys`: sealing and opening frames of one session, both directions.

use std::collections::HashSet;
use std::fmt;
use std::mem;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;
use crate::aead::EpochKey;
use crate::cipher::TransferCipher;
use crate::lengths::{KEY_LEN, TAG_LEN, TRANSFER_ID_LEN};
use crate::replay::{REPLAY_WINDOW, ReplayWindow};
use crate::role::Role;
use crate::traffic::TrafficSecrets;

/// Keys are replaced every `2^REKEY_INTERVAL_LOG2` frames per direction.
pub const REKEY_INTERVAL_LOG2: u32 = 32;

/// The shortest rekey interval test hooks may ask for: one replay window (`2^11` = 2048), so
/// that the window never spans more than two epochs.
pub const MIN_REKEY_INTERVAL_LOG2: u32 = REPLAY_WINDOW.trailing_zeros();

/// How many epochs ahead of the newest accepted frame a received counter may be. Each epoch
/// ahead costs one HKDF step before the frame can be authenticated, so this bounds the work a
/// forged counter can cause. A sender never skips an epoch unless a whole epoch of frames
/// (`2^32`) was lost.
pub const MAX_EPOCH_LOOKAHEAD: u64 = 4;

/// After this many frames fail authentication, a session refuses to open any more
/// (ChaCha20-Poly1305's integrity limit for frames up to 1 MiB; see [`TransferCipher`] for
/// the derivation and AES-256-GCM's limit).
pub const INTEGRITY_LIMIT: u64 = TransferCipher::ChaCha20Poly1305.integrity_limit();

/// The keys of one session (or one transfer): one key per direction, ChaCha20-Poly1305 for a
/// session, the agreed [`TransferCipher`] for a transfer.
///
/// * Each sealed frame uses the next 64-bit counter as its nonce; the caller sends the counter
///   with the frame (in its header) and passes it back to `open_*` on the other side.
/// * A received counter is accepted once: duplicates and counters more than [`REPLAY_WINDOW`]
///   below the newest are rejected, any order inside the window is fine. The window only moves
///   when a frame authenticates.
/// * Every `2^`[`REKEY_INTERVAL_LOG2`] frames (`2^20` for AES-256-GCM, see
///   [`TransferCipher::max_rekey_interval_log2`]), a direction's key is replaced by an HKDF step
///   from it and the old key wiped; the receiver follows from the counters. Counters never
///   repeat and `u64::MAX` is never used: sealing fails with
///   [`CryptoError::CounterExhausted`] instead.
/// * A frame (plaintext plus associated data) longer than
///   [`TransferCipher::max_message_len`] is refused with [`CryptoError::MessageTooLong`], and
///   after [`TransferCipher::integrity_limit`] failed opens nothing more is opened.
///
/// All key material is wiped on drop and never shown by `Debug`.
pub struct SessionKeys {
    role: Role,
    cipher: TransferCipher,
    rekey_interval_log2: u32,
    send: EpochKey,
    next_send: u64,
    /// The key of the epoch of the newest accepted counter.
    receive: EpochKey,
    /// The key of the epoch before, kept while the replay window still reaches into it.
    receive_previous: Option<EpochKey>,
    window: ReplayWindow,
    failed_opens: u64,
    exporter: [u8; KEY_LEN],
    transfer_ids: HashSet<[u8; TRANSFER_ID_LEN]>,
}

impl SessionKeys {
    pub(crate) fn new(
        secrets: &TrafficSecrets,
        role: Role,
        rekey_interval_log2: u32,
        cipher: TransferCipher,
    ) -> Self {
        let (send, receive) = secrets.directions(role);
        Self {
            role,
            cipher,
            rekey_interval_log2: rekey_interval_log2.clamp(
                MIN_REKEY_INTERVAL_LOG2,
                cipher.max_rekey_interval_log2().min(REKEY_INTERVAL_LOG2),
            ),
            send: EpochKey::new(cipher, 0, *send),
            next_send: 0,
            receive: EpochKey::new(cipher, 0, *receive),
            receive_previous: None,
            window: ReplayWindow::new(),
            failed_opens: 0,
            exporter: secrets.exporter,
            transfer_ids: HashSet::new(),
        }
    }

    /// Which end of the session these keys belong to.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The AEAD these keys seal with.
    pub fn cipher(&self) -> TransferCipher {
        self.cipher
    }

    fn check_len(&self, aad: &[u8], buf: &[u8]) -> Result<(), CryptoError> {
        if aad.len().saturating_add(buf.len()) > self.cipher.max_message_len() {
            return Err(CryptoError::MessageTooLong);
        }
        Ok(())
    }

    /// Encrypts `buf` in place and appends the tag; returns the counter to send with it.
    pub fn seal_in_place(&mut self, aad: &[u8], buf: &mut Vec<u8>) -> Result<u64, CryptoError> {
        let (counter, tag) = self.seal_in_place_detached(aad, buf)?;
        buf.extend_from_slice(&tag);
        Ok(counter)
    }

    /// Checks and decrypts `buf` (ciphertext then tag) in place and removes the tag.
    ///
    /// On any error `buf` and the replay window are unchanged.
    pub fn open_in_place(
        &mut self,
        counter: u64,
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let len = buf.len();
        let body_len = len
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::Truncated { len })?;
        let (body, tag) = buf.split_at_mut(body_len);
        let tag: [u8; TAG_LEN] = (&*tag)
            .try_into()
            .map_err(|_| CryptoError::Truncated { len })?;
        self.open_in_place_detached(counter, aad, body, &tag)?;
        buf.truncate(body_len);
        Ok(())
    }

    /// Encrypts `buf` in place; returns the counter to send with it and the tag.
    pub fn seal_in_place_detached(
        &mut self,
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<(u64, [u8; TAG_LEN]), CryptoError> {
        self.check_len(aad, buf)?;
        let counter = self.next_send;
        if counter == u64::MAX {
            return Err(CryptoError::CounterExhausted);
        }
        let epoch = self.epoch_of(counter);
        while self.send.epoch() < epoch {
            self.send = self.send.next();
        }
        // The counter is spent even if sealing fails, so it can never be used twice.
        self.next_send = counter + 1;
        let tag = self.send.seal(counter, aad, buf)?;
        Ok((counter, tag))
    }

    /// Checks and decrypts `buf` in place against a detached tag.
    ///
    /// On any error `buf` and the replay window are unchanged.
    pub fn open_in_place_detached(
        &mut self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        if self.failed_opens >= self.cipher.integrity_limit() {
            return Err(CryptoError::IntegrityLimit);
        }
        self.check_len(aad, buf)?;
        if counter == u64::MAX {
            return Err(CryptoError::TooFarAhead { counter });
        }
        self.window.check(counter)?;
        let epoch = self.epoch_of(counter);
        let current = self.receive.epoch();
        let result = if epoch == current {
            self.receive.open(counter, aad, buf, tag)
        } else if epoch < current {
            // The window check above guarantees the previous epoch's key is still kept.
            match (&self.receive_previous, epoch + 1 == current) {
                (Some(previous), true) => previous.open(counter, aad, buf, tag),
                _ => Err(CryptoError::TooOld { counter }),
            }
        } else {
            return self.open_in_later_epoch(counter, aad, buf, tag);
        };
        self.finish_open(counter, result)
    }

    /// Opens a frame of a later epoch with keys derived on the side; they replace the current
    /// ones only if the frame authenticates.
    fn open_in_later_epoch(
        &mut self,
        counter: u64,
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        let epoch = self.epoch_of(counter);
        if epoch - self.receive.epoch() > MAX_EPOCH_LOOKAHEAD {
            return Err(CryptoError::TooFarAhead { counter });
        }
        let mut before = None;
        let mut candidate = self.receive.next();
        while candidate.epoch() < epoch {
            let next = candidate.next();
            before = Some(mem::replace(&mut candidate, next));
        }
        let result = candidate.open(counter, aad, buf, tag);
        if result.is_ok() {
            let old = mem::replace(&mut self.receive, candidate);
            self.receive_previous = Some(before.unwrap_or(old));
        }
        self.finish_open(counter, result)
    }

    fn finish_open(
        &mut self,
        counter: u64,
        result: Result<(), CryptoError>,
    ) -> Result<(), CryptoError> {
        match result {
            Ok(()) => {
                self.window.commit(counter);
                self.forget_unneeded_previous_key();
                Ok(())
            }
            Err(error) => {
                self.failed_opens = self.failed_opens.saturating_add(1);
                Err(error)
            }
        }
    }

    /// Drops (and so wipes) the previous epoch's key once the window no longer reaches it.
    fn forget_unneeded_previous_key(&mut self) {
        let Some(highest) = self.window.highest() else {
            return;
        };
        let epoch_start = self.receive.epoch() << self.rekey_interval_log2;
        // The previous epoch ends at `epoch_start - 1`; the window accepts counters down to
        // `highest + 1 - REPLAY_WINDOW`.
        if epoch_start.saturating_add(REPLAY_WINDOW) <= highest.saturating_add(1) {
            self.receive_previous = None;
        }
    }

    /// Records that this session derived keys for `transfer_id`; fails with
    /// [`CryptoError::TransferIdReused`] if it already did (see [`Self::transfer_secret`]).
    pub(crate) fn claim_transfer_id(
        &mut self,
        transfer_id: &[u8; TRANSFER_ID_LEN],
    ) -> Result<(), CryptoError> {
        if !self.transfer_ids.insert(*transfer_id) {
            return Err(CryptoError::TransferIdReused);
        }
        Ok(())
    }

    /// The exporter secret that transfer secrets are derived from.
    pub(crate) fn exporter(&self) -> &[u8; KEY_LEN] {
        &self.exporter
    }

    /// `log2` of this session's rekey interval, which its transfers inherit.
    pub(crate) fn rekey_interval_log2(&self) -> u32 {
        self.rekey_interval_log2
    }

    /// Moves the sending counter, for tests of counter exhaustion only. The key is *not*
    /// ratcheted to match, so the peer can no longer open what this side seals.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_set_next_send_counter(&mut self, counter: u64) {
        self.next_send = counter;
        let epoch = self.epoch_of(counter);
        if self.send.epoch() < epoch {
            self.send = self.send.relabelled(epoch);
        }
    }

    fn epoch_of(&self, counter: u64) -> u64 {
        counter >> self.rekey_interval_log2
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("role", &self.role)
            .field("cipher", &self.cipher)
            .field("next_send_counter", &self.next_send)
            .field("send_epoch", &self.send.epoch())
            .field("highest_received", &self.window.highest())
            .field("receive_epoch", &self.receive.epoch())
            .finish_non_exhaustive()
    }
}

impl Drop for SessionKeys {
    fn drop(&mut self) {
        self.exporter.zeroize();
    }
}

// `exporter` is wiped above; every `EpochKey` wipes itself on drop.
impl ZeroizeOnDrop for SessionKeys {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pair(log2: u32) -> (SessionKeys, SessionKeys) {
        let secrets = TrafficSecrets {
            initiator_to_responder: [1; KEY_LEN],
            responder_to_initiator: [2; KEY_LEN],
            exporter: [3; KEY_LEN],
        };
        (
            SessionKeys::new(
                &secrets,
                Role::Initiator,
                log2,
                TransferCipher::ChaCha20Poly1305,
            ),
            SessionKeys::new(
                &secrets,
                Role::Responder,
                log2,
                TransferCipher::ChaCha20Poly1305,
            ),
        )
    }

    fn send_and_receive(alice: &mut SessionKeys, bob: &mut SessionKeys) -> u64 {
        let mut buf = vec![0u8; 8];
        let counter = alice.seal_in_place(b"", &mut buf).unwrap();
        bob.open_in_place(counter, b"", &mut buf).unwrap();
        counter
    }

    #[test]
    fn previous_epoch_key_is_kept_only_while_the_window_reaches_it() {
        let (mut alice, mut bob) = pair(MIN_REKEY_INTERVAL_LOG2);
        let epoch = 1u64 << MIN_REKEY_INTERVAL_LOG2;
        while send_and_receive(&mut alice, &mut bob) < epoch {}
        // Just crossed into epoch 1: the end of epoch 0 is still inside the window.
        assert_eq!(bob.receive.epoch(), 1);
        assert!(bob.receive_previous.is_some());
        while send_and_receive(&mut alice, &mut bob) < epoch + REPLAY_WINDOW - 2 {}
        assert!(
            bob.receive_previous.is_some(),
            "counter {} still in window",
            epoch - 1
        );
        send_and_receive(&mut alice, &mut bob);
        // Highest is now epoch + REPLAY_WINDOW - 1: counter epoch - 1 has left the window.
        assert!(bob.receive_previous.is_none());
        assert_eq!(alice.send.epoch(), 1);
    }

    #[test]
    fn rekey_interval_is_clamped() {
        let (alice, _) = pair(1);
        assert_eq!(alice.rekey_interval_log2, MIN_REKEY_INTERVAL_LOG2);
        let (alice, _) = pair(64);
        assert_eq!(alice.rekey_interval_log2, REKEY_INTERVAL_LOG2);
    }

    #[test]
    fn failed_opens_count_towards_the_integrity_limit() {
        let (_, mut bob) = pair(REKEY_INTERVAL_LOG2);
        let mut forged = vec![0u8; 32];
        assert_eq!(
            bob.open_in_place(0, b"", &mut forged),
            Err(CryptoError::Authentication)
        );
        assert_eq!(bob.failed_opens, 1);
        bob.failed_opens = INTEGRITY_LIMIT;
        assert_eq!(
            bob.open_in_place(0, b"", &mut forged),
            Err(CryptoError::IntegrityLimit)
        );
    }
}
