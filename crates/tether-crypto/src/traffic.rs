//! `TrafficSecrets`: the secrets a [`crate::SessionKeys`] is built from.

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::cipher::TransferCipher;
use crate::kdf::Prk;
use crate::labels::{TRANSFER_EXPORTER_LABEL, TRANSFER_I2R_LABEL, TRANSFER_R2I_LABEL};
use crate::lengths::KEY_LEN;
use crate::role::Role;

/// One key per direction plus an exporter: what a [`crate::SessionKeys`] is built from.
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct TrafficSecrets {
    pub(crate) initiator_to_responder: [u8; KEY_LEN],
    pub(crate) responder_to_initiator: [u8; KEY_LEN],
    pub(crate) exporter: [u8; KEY_LEN],
}

impl TrafficSecrets {
    /// The secrets of one transfer under `cipher`, from its [`crate::TransferSecret`] bytes.
    pub(crate) fn for_transfer(secret: &[u8; KEY_LEN], cipher: TransferCipher) -> Self {
        let prk = Prk::from_bytes(*secret);
        let name = cipher.name().as_bytes();
        Self {
            initiator_to_responder: prk.expand_key(&[TRANSFER_I2R_LABEL, b"/", name]),
            responder_to_initiator: prk.expand_key(&[TRANSFER_R2I_LABEL, b"/", name]),
            exporter: prk.expand_key(&[TRANSFER_EXPORTER_LABEL, b"/", name]),
        }
    }

    /// (sending key, receiving key) for `role`.
    pub(crate) fn directions(&self, role: Role) -> (&[u8; KEY_LEN], &[u8; KEY_LEN]) {
        match role {
            Role::Initiator => (&self.initiator_to_responder, &self.responder_to_initiator),
            Role::Responder => (&self.responder_to_initiator, &self.initiator_to_responder),
        }
    }
}
