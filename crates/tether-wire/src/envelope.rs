//! The encrypted envelope: a frame sealed with a session's keys.
//!
//! Sealing a plain frame of kind `K` gives a frame of kind `K.sealed()` whose payload is
//!
//! ```text
//! +-----------------------------+-----------------+------------------+
//! | ciphertext (plain payload)  | tag (TAG_LEN B) | counter u64 BE   |
//! +-----------------------------+-----------------+------------------+
//! ```
//!
//! * The associated data is the sealed frame's own five-byte header (length and kind), so a
//!   frame cut short, padded, or relabelled from control to data fails authentication.
//! * The counter is the ChaCha20-Poly1305 nonce, so changing it fails authentication too; the
//!   session keys reject a counter seen before or older than the replay window.
//! * The counter goes last so that sealing works in place: the plain payload is encrypted where
//!   it lies and tag and counter are appended, with no copy.
//!
//! Opening checks all that and gives back the plain frame. On any error the receiving keys are
//! unchanged, so a forged frame cannot disturb the session.

use tether_crypto::{CryptoError, SessionKeys, TAG_LEN};

use crate::frame::{COUNTER_LEN, Frame, FrameKind, SEAL_OVERHEAD, header_bytes};

/// Sealing a frame failed. Never the peer's fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The frame is already sealed.
    #[error("{0:?} frame is already sealed")]
    AlreadySealed(FrameKind),
    /// The keys refused to seal, e.g. [`CryptoError::CounterExhausted`]: start a new session.
    #[error("sealing failed")]
    Crypto(#[source] CryptoError),
}

/// Opening a sealed frame failed. The peer's fault (or an attacker's on the path), except
/// [`CryptoError::IntegrityLimit`], which says the session has seen too many forgeries and must
/// be closed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// A plain frame arrived where a sealed one was required.
    #[error("{0:?} frame is not sealed")]
    NotSealed(FrameKind),
    /// The payload is shorter than a tag and a counter.
    #[error("sealed payload of {len} bytes is shorter than the {SEAL_OVERHEAD}-byte overhead")]
    Truncated {
        /// The payload length.
        len: usize,
    },
    /// The keys rejected the frame: [`CryptoError::Authentication`] (tampered, truncated,
    /// relabelled, or sealed under other keys), [`CryptoError::Replayed`],
    /// [`CryptoError::TooOld`] (reordered beyond the replay window),
    /// [`CryptoError::TooFarAhead`] or [`CryptoError::IntegrityLimit`].
    #[error("opening failed")]
    Crypto(#[source] CryptoError),
}

impl Frame {
    /// Encrypts this plain frame with the sending half of `keys`.
    ///
    /// ```
    /// # use tether_wire::{ControlMessage, Frame, NetworkMessage};
    /// # fn demo(alice: &mut tether_crypto::SessionKeys, bob: &mut tether_crypto::SessionKeys)
    /// # -> Result<(), Box<dyn std::error::Error>> {
    /// let frame = Frame::control(&ControlMessage::new(NetworkMessage::Ack))?;
    /// let sealed = frame.clone().seal(alice)?;
    /// assert_eq!(sealed.open(bob)?, frame);
    /// # Ok(()) }
    /// ```
    pub fn seal(self, keys: &mut SessionKeys) -> Result<Frame, SealError> {
        let kind = self.kind();
        if kind.is_sealed() {
            return Err(SealError::AlreadySealed(kind));
        }
        let sealed_kind = kind.sealed();
        let mut payload = self.into_payload();
        // A plain payload is within its cap, and each sealed cap is the plain one plus
        // SEAL_OVERHEAD, so the sealed frame is within its cap.
        let header = header_bytes(sealed_kind, payload.len() + SEAL_OVERHEAD);
        payload.reserve_exact(SEAL_OVERHEAD);
        let counter = keys
            .seal_in_place(&header, &mut payload)
            .map_err(SealError::Crypto)?;
        payload.extend_from_slice(&counter.to_be_bytes());
        Ok(Frame::from_parts(sealed_kind, payload))
    }

    /// Checks and decrypts this sealed frame with the receiving half of `keys`, giving back the
    /// plain frame.
    pub fn open(self, keys: &mut SessionKeys) -> Result<Frame, OpenError> {
        let kind = self.kind();
        if !kind.is_sealed() {
            return Err(OpenError::NotSealed(kind));
        }
        let header = self.header();
        let mut payload = self.into_payload();
        let len = payload.len();
        let body_len = len
            .checked_sub(SEAL_OVERHEAD)
            .ok_or(OpenError::Truncated { len })?;
        let counter = payload
            .last_chunk::<COUNTER_LEN>()
            .map(|bytes| u64::from_be_bytes(*bytes))
            .ok_or(OpenError::Truncated { len })?;
        payload.truncate(body_len + TAG_LEN);
        keys.open_in_place(counter, &header, &mut payload)
            .map_err(OpenError::Crypto)?;
        Ok(Frame::from_parts(kind.plain(), payload))
    }
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let sealing = SealError::Crypto(CryptoError::Authentication);
        let opening = OpenError::Crypto(CryptoError::Authentication);
        assert_no_repeated_layer(&sealing);
        assert_no_repeated_layer(&opening);
        assert_eq!(
            error_chain(&opening),
            "opening failed: frame failed authentication"
        );
    }
}
