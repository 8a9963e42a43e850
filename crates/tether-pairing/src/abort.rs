//! How a failure is told to the peer (an `Abort` message), and how a received abort becomes
//! an error, so that both sides of a failed handshake report the same cause.

use crate::message::{Body, PairingMessage, SessionId};
use crate::{AbortReason, Failure, Misbehavior, PairingError, Refusal};

/// The failure for `error` in `session`, with the abort the peer should get (none when the
/// peer itself aborted: answering an abort with an abort could loop).
pub(crate) fn fail(session: SessionId, error: PairingError) -> Failure {
    let reason = match &error {
        PairingError::PeerAborted(_) => return Failure::new(error, None),
        PairingError::WrongCode => AbortReason::WrongCode,
        PairingError::Expired => AbortReason::Expired,
        PairingError::CodeUsed => AbortReason::CodeUsed,
        PairingError::CodeBurned => AbortReason::CodeBurned,
        PairingError::Refused(_) => AbortReason::Busy,
        PairingError::PeerMisbehaved(Misbehavior::WrongRendezvous) => AbortReason::WrongRendezvous,
        _ => AbortReason::ProtocolError,
    };
    Failure::new(error, Some(abort_message(session, reason)))
}

/// The failure for bytes that did not decode; the abort names the session if the header did.
pub(crate) fn fail_undecodable(bytes: &[u8], error: PairingError) -> Failure {
    let session = PairingMessage::session_hint(bytes).unwrap_or(SessionId::from_bytes([0; 16]));
    fail(session, error)
}

/// The encoded abort.
pub(crate) fn abort_message(session: SessionId, reason: AbortReason) -> Vec<u8> {
    PairingMessage::new(session, Body::Abort { reason }).to_bytes()
}

/// The error a side reports when the peer aborted with `reason`: the same words the peer's
/// own error used, where there are such words.
pub(crate) fn error_for_abort(reason: AbortReason) -> PairingError {
    match reason {
        AbortReason::WrongCode => PairingError::WrongCode,
        AbortReason::Expired => PairingError::Expired,
        AbortReason::CodeUsed => PairingError::CodeUsed,
        AbortReason::CodeBurned => PairingError::CodeBurned,
        AbortReason::Busy => PairingError::Refused(Refusal::InitiatorBusy),
        other => PairingError::PeerAborted(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_name_the_same_cause() {
        let session = SessionId::from_bytes([3; 16]);
        for error in [
            PairingError::WrongCode,
            PairingError::Expired,
            PairingError::CodeUsed,
            PairingError::CodeBurned,
        ] {
            let failure = fail(session, error.clone());
            let message = PairingMessage::from_bytes(failure.message_for_peer().unwrap()).unwrap();
            assert_eq!(message.session_id(), session);
            assert_eq!(error_for_abort(message.abort_reason().unwrap()), error);
        }
        let aborted = fail(session, PairingError::PeerAborted(AbortReason::Cancelled));
        assert_eq!(aborted.message_for_peer(), None);
        let undecodable = fail_undecodable(&[1], PairingError::WrongCode);
        let message = PairingMessage::from_bytes(undecodable.message_for_peer().unwrap()).unwrap();
        assert_eq!(message.session_id(), SessionId::from_bytes([0; 16]));
    }
}
