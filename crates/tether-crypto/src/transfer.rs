//! Per-transfer keys: a [`TransferSecret`] derived from a session's exporter, and the keys it
//! becomes once the two devices agree on the transfer's cipher.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::CryptoError;
use crate::cipher::TransferCipher;
use crate::kdf::Prk;
use crate::labels::TRANSFER_SECRET_LABEL;
use crate::lengths::{KEY_LEN, TRANSFER_ID_LEN};
use crate::role::Role;
use crate::session::SessionKeys;
use crate::traffic::TrafficSecrets;

/// One transfer's secret, derived from a session (or an enclosing transfer) with
/// [`SessionKeys::transfer_secret`], before the devices agree on the transfer's cipher.
///
/// It seals nothing itself: [`TransferSecret::into_keys`] turns it into the transfer's keys
/// under the agreed cipher, once. Wiped from memory on drop; `Debug` shows no bytes.
pub struct TransferSecret {
    secret: [u8; KEY_LEN],
    role: Role,
    rekey_interval_log2: u32,
}

impl TransferSecret {
    /// `t.secret` for transfer id `t` from an exporter (see [`crate::SessionSecrets`]).
    pub(crate) fn derive(
        exporter: &[u8; KEY_LEN],
        transfer_id: &[u8; TRANSFER_ID_LEN],
        role: Role,
        rekey_interval_log2: u32,
    ) -> Self {
        let secret = Prk::from_bytes(*exporter).expand_key(&[TRANSFER_SECRET_LABEL, transfer_id]);
        Self {
            secret,
            role,
            rekey_interval_log2,
        }
    }

    /// Which end of the session this side is (the transfer keys are mirrored the same way).
    pub fn role(&self) -> Role {
        self.role
    }

    /// The transfer's keys under `cipher`: the derivation labels name the cipher, so the same
    /// transfer under another cipher would have unrelated keys.
    pub fn into_keys(self, cipher: TransferCipher) -> SessionKeys {
        let secrets = TrafficSecrets::for_transfer(&self.secret, cipher);
        SessionKeys::new(&secrets, self.role, self.rekey_interval_log2, cipher)
    }

    /// The secret bytes, for golden test vectors only.
    #[doc(hidden)]
    #[cfg(any(test, feature = "danger"))]
    pub fn danger_to_bytes(&self) -> [u8; KEY_LEN] {
        self.secret
    }
}

impl fmt::Debug for TransferSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferSecret")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Drop for TransferSecret {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl ZeroizeOnDrop for TransferSecret {}

impl SessionKeys {
    /// The secret of one transfer, derived from this session's exporter; both sides derive it
    /// with the same id. Turn it into keys with [`TransferSecret::into_keys`] once the devices
    /// have agreed on the cipher.
    ///
    /// Each id may be used once per session: deriving the same keys twice would restart their
    /// counters and reuse nonces, so a second call with the same id fails with
    /// [`CryptoError::TransferIdReused`]. Transfer keys rekey like session keys and have their
    /// own exporter, so transfers can nest.
    pub fn transfer_secret(
        &mut self,
        transfer_id: &[u8; TRANSFER_ID_LEN],
    ) -> Result<TransferSecret, CryptoError> {
        self.claim_transfer_id(transfer_id)?;
        Ok(TransferSecret::derive(
            self.exporter(),
            transfer_id,
            self.role(),
            self.rekey_interval_log2(),
        ))
    }

    /// Keys for one transfer under `cipher`: [`Self::transfer_secret`] then
    /// [`TransferSecret::into_keys`]. Both sides derive them with the same id and cipher and get
    /// mirrored keys, like the session's own.
    pub fn transfer_keys(
        &mut self,
        transfer_id: &[u8; TRANSFER_ID_LEN],
        cipher: TransferCipher,
    ) -> Result<SessionKeys, CryptoError> {
        Ok(self.transfer_secret(transfer_id)?.into_keys(cipher))
    }
}
