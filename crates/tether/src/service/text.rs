//! Texts: a short text to a paired device, acknowledged once its service has it.

use tether_identity::NodeId;
use tether_wire::limits::MAX_TEXT_LEN;
use tether_wire::{NetworkMessage, Text};

use super::core::NetworkingService;
use crate::NetworkError;

impl NetworkingService {
    /// Sends `text` (at most [`MAX_TEXT_LEN`](crate::limits::MAX_TEXT_LEN) bytes of UTF-8) to a
    /// paired device, sealed like every message, and returns once the device's service has
    /// taken it (it then emits [`NetworkEvent::TextReceived`](crate::NetworkEvent::TextReceived)).
    ///
    /// A longer text is refused here, before anything is sent ([`NetworkError::TextTooLong`]).
    /// A device that takes shorter texts ([`crate::NetworkingConfig::max_text_len`]) answers
    /// [`NetworkError::Rejected`] with [`crate::ErrorCode::LimitExceeded`]; one whose Tether
    /// predates texts answers it with [`crate::ErrorCode::UnknownMessage`]. Otherwise as
    /// [`Self::send_message`].
    pub async fn send_text(
        &self,
        node_id: NodeId,
        text: impl Into<String>,
    ) -> Result<(), NetworkError> {
        let text = text.into();
        if text.len() > MAX_TEXT_LEN {
            return Err(NetworkError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            });
        }
        match self
            .send_message(node_id, NetworkMessage::Text(Text { text }))
            .await?
        {
            NetworkMessage::Ack => Ok(()),
            other => Err(NetworkError::ProtocolViolation {
                node: node_id,
                reason: format!("answered a text with a {}", other.kind().as_str()),
            }),
        }
    }
}
