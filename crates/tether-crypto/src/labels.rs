//! Every HKDF and hash label of the session and transfer key schedules (see
//! [`crate::SessionSecrets`]). Each is an ASCII string under `tether/v1/`, and none is used
//! twice.

pub(crate) const TRANSCRIPT_LABEL: &[u8] = b"tether/v1/session/transcript";
pub(crate) const NEGOTIATION_LABEL: &[u8] = b"tether/v1/session/negotiation";
pub(crate) const I2R_LABEL: &[u8] = b"tether/v1/session/key/initiator-to-responder";
pub(crate) const R2I_LABEL: &[u8] = b"tether/v1/session/key/responder-to-initiator";
pub(crate) const EXPORTER_LABEL: &[u8] = b"tether/v1/session/exporter";
pub(crate) const CONFIRM_INITIATOR_LABEL: &[u8] = b"tether/v1/session/confirm/initiator";
pub(crate) const CONFIRM_RESPONDER_LABEL: &[u8] = b"tether/v1/session/confirm/responder";
pub(crate) const REKEY_LABEL: &[u8] = b"tether/v1/session/rekey";
pub(crate) const TRANSFER_SECRET_LABEL: &[u8] = b"tether/v1/transfer/secret";
// Each of these is followed by "/" and the cipher's name, so keys for one transfer under two
// ciphers are unrelated.
pub(crate) const TRANSFER_I2R_LABEL: &[u8] = b"tether/v1/transfer/key/initiator-to-responder";
pub(crate) const TRANSFER_R2I_LABEL: &[u8] = b"tether/v1/transfer/key/responder-to-initiator";
pub(crate) const TRANSFER_EXPORTER_LABEL: &[u8] = b"tether/v1/transfer/exporter";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_namespaced() {
        let labels = [
            TRANSCRIPT_LABEL,
            NEGOTIATION_LABEL,
            I2R_LABEL,
            R2I_LABEL,
            EXPORTER_LABEL,
            CONFIRM_INITIATOR_LABEL,
            CONFIRM_RESPONDER_LABEL,
            REKEY_LABEL,
            TRANSFER_SECRET_LABEL,
            TRANSFER_I2R_LABEL,
            TRANSFER_R2I_LABEL,
            TRANSFER_EXPORTER_LABEL,
        ];
        for (i, a) in labels.iter().enumerate() {
            assert!(a.starts_with(b"tether/v1/"));
            for b in labels.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }
}
