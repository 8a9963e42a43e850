//! The running transcript hash both sides keep.
//!
//! Everything either side sent or accepted goes in, in order, each entry as
//! `u32 length ‖ label ‖ u32 length ‖ data` so no two different sequences of entries hash the
//! same way. The entries are (see `docs/pairing.md`):
//!
//! | # | label | data | hash taken after it (name in the code) |
//! |---|---|---|---|
//! | 0 | `tether/v1/pairing/transcript` | credential kind, initiator id, joiner id | |
//! | 1 | `hello` | the Hello as sent | |
//! | 2 | `reply` | the Reply as sent | `h2`: key schedule salt, joiner MAC, seal of joiner info |
//! | 3 | `joiner-confirm` | the JoinerConfirm as sent | |
//! | 4 | `joiner-info` | the joiner's device info (plaintext JSON) | `h3`: initiator MAC, seal of initiator info |
//! | 5 | `initiator-info` | the initiator's device info (plaintext JSON) | `h_sig`: signed by the initiator |
//! | 6 | `initiator-confirm` | the InitiatorConfirm as sent | `h4`: signed by the joiner, seal of that signature |
//! | 7 | `joiner-signature` | the JoinerSignature as sent | `h5`: pairing secret, verification code |

use sha2::{Digest, Sha256};
use tether_identity::NodeId;

use crate::kinds::CredentialKind;

const DOMAIN: &[u8] = b"tether/v1/pairing/transcript";

/// Labels of the transcript entries.
pub(crate) mod label {
    pub(crate) const HELLO: &[u8] = b"hello";
    pub(crate) const REPLY: &[u8] = b"reply";
    pub(crate) const JOINER_CONFIRM: &[u8] = b"joiner-confirm";
    pub(crate) const JOINER_INFO: &[u8] = b"joiner-info";
    pub(crate) const INITIATOR_INFO: &[u8] = b"initiator-info";
    pub(crate) const INITIATOR_CONFIRM: &[u8] = b"initiator-confirm";
    pub(crate) const JOINER_SIGNATURE: &[u8] = b"joiner-signature";
}

/// A SHA-256 transcript, forked cheaply to read intermediate hashes.
#[derive(Clone)]
pub(crate) struct Transcript(Sha256);

impl Transcript {
    /// Starts a transcript bound to the credential kind and both endpoint ids.
    pub(crate) fn new(kind: CredentialKind, initiator: &NodeId, joiner: &NodeId) -> Self {
        let mut context = Vec::with_capacity(1 + 2 * NodeId::LENGTH);
        context.push(kind.byte());
        context.extend_from_slice(initiator.as_bytes());
        context.extend_from_slice(joiner.as_bytes());
        let mut transcript = Self(Sha256::new());
        transcript.absorb(DOMAIN, &context);
        transcript
    }

    /// Appends one labelled entry.
    pub(crate) fn absorb(&mut self, label: &[u8], data: &[u8]) {
        for part in [label, data] {
            // Entries are at most a few kilobytes; a u32 length is exact.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            self.0.update(len.to_be_bytes());
            self.0.update(part);
        }
    }

    /// The hash of everything so far; the transcript can keep growing.
    pub(crate) fn hash(&self) -> [u8; 32] {
        self.0.clone().finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;

    use super::*;

    #[test]
    fn entries_are_unambiguous_and_ordered() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = NetworkIdentity::generate(&mut rng).node_id();
        let b = NetworkIdentity::generate(&mut rng).node_id();
        let base = Transcript::new(CredentialKind::Code, &a, &b);
        let hash_of = |entries: &[(&[u8], &[u8])]| {
            let mut t = base.clone();
            for (label, data) in entries {
                t.absorb(label, data);
            }
            t.hash()
        };
        let reference = hash_of(&[(b"ab", b"c")]);
        assert_ne!(reference, hash_of(&[(b"a", b"bc")]));
        assert_ne!(reference, hash_of(&[(b"ab", b""), (b"c", b"")]));
        assert_ne!(
            hash_of(&[(b"x", b"1"), (b"y", b"2")]),
            hash_of(&[(b"y", b"2"), (b"x", b"1")])
        );
        // Swapping the roles' ids or the credential kind changes everything.
        assert_ne!(
            base.hash(),
            Transcript::new(CredentialKind::Code, &b, &a).hash()
        );
        assert_ne!(
            base.hash(),
            Transcript::new(CredentialKind::Ticket, &a, &b).hash()
        );
        // Reading a hash does not consume the transcript.
        assert_eq!(base.hash(), base.hash());
    }
}
