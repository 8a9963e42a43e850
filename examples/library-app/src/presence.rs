//! `example/library-presence/1`: a paired device asks which libraries are open here.
//!
//! The app's own protocol, on its own ALPN, registered with the builder's `.protocol(..)`.
//! Tether routes a connection to [`PresenceServer`] only once the peer's key is proven and
//! paired. One request per bidirectional stream; every read is bounded.
//!
//! | request | answer |
//! |---|---|
//! | `0x01` open libraries | `0x00`, then per open library (at most [`MAX_LIBRARIES`]): 16-byte id, `u8` name length, the name in UTF-8 (cut to [`MAX_NAME_LEN`] bytes) |
//!
//! Any other request is answered `0x01` and a UTF-8 reason.

use std::sync::Arc;

use tether::{
    Connection, NetworkProtocol, NetworkingService, NodeId, PairedPeer, ProtocolError, Uuid,
};

use crate::{PresenceError, Store};

/// The protocol's ALPN, with its version.
pub const PRESENCE_ALPN: &[u8] = b"example/library-presence/1";
/// The most libraries in an answer.
pub const MAX_LIBRARIES: usize = 64;
/// The longest name in an answer, in bytes.
pub const MAX_NAME_LEN: usize = 64;

const OP_OPEN_LIBRARIES: u8 = 0x01;
const STATUS_OK: u8 = 0x00;
const STATUS_REFUSED: u8 = 0x01;
/// The longest request.
const MAX_REQUEST_LEN: usize = 1;
/// The longest answer.
const MAX_ANSWER_LEN: usize = 1 + MAX_LIBRARIES * (16 + 1 + MAX_NAME_LEN);

/// A library as the presence protocol reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLibrary {
    /// The library's id.
    pub id: Uuid,
    /// Its name (possibly cut short). Chosen by the peer: escape it before showing it.
    pub name: String,
}

/// The server side: answers from the store.
#[derive(Debug, Clone)]
pub struct PresenceServer {
    store: Arc<Store>,
}

impl PresenceServer {
    /// A server answering from `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    async fn answer(&self, request: &[u8]) -> Vec<u8> {
        if request != [OP_OPEN_LIBRARIES] {
            return refusal("unknown request");
        }
        let store = Arc::clone(&self.store);
        let libraries = match tokio::task::spawn_blocking(move || store.libraries()).await {
            Ok(Ok(libraries)) => libraries,
            _ => return refusal("the library store failed"),
        };
        let mut answer = vec![STATUS_OK];
        for library in libraries
            .iter()
            .filter(|library| library.open)
            .take(MAX_LIBRARIES)
        {
            let name = cut(&library.name, MAX_NAME_LEN);
            answer.extend_from_slice(library.id.as_bytes());
            answer.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            answer.extend_from_slice(name.as_bytes());
        }
        answer
    }
}

#[tether::async_trait]
impl NetworkProtocol for PresenceServer {
    fn alpn(&self) -> &'static [u8] {
        PRESENCE_ALPN
    }

    async fn accept(&self, connection: Connection, _peer: PairedPeer) -> Result<(), ProtocolError> {
        while let Ok((mut send, mut recv)) = connection.accept_bi().await {
            let request = recv
                .read_to_end(MAX_REQUEST_LEN)
                .await
                .map_err(|error| ProtocolError::Violation(error.to_string()))?;
            send.write_all(&self.answer(&request).await).await?;
            send.finish().map_err(ProtocolError::other)?;
        }
        Ok(())
    }
}

/// Asks `device` (paired with `service`) which libraries are open on it.
pub async fn open_libraries(
    service: &NetworkingService,
    device: NodeId,
) -> Result<Vec<OpenLibrary>, PresenceError> {
    let connection = service.connect_protocol(device, PRESENCE_ALPN).await?;
    let answer = ask(&connection, &[OP_OPEN_LIBRARIES]).await;
    connection.close(0u32.into(), b"done");
    parse(&answer?)
}

async fn ask(connection: &Connection, request: &[u8]) -> Result<Vec<u8>, PresenceError> {
    // A failed stream may mean the device's gate turned us away: say so.
    let stream = |error: &dyn std::fmt::Display| match tether::gate::refusal(connection) {
        Some(refused) => PresenceError::Network(refused),
        None => PresenceError::Stream(error.to_string()),
    };
    let (mut send, mut recv) = connection.open_bi().await.map_err(|e| stream(&e))?;
    send.write_all(request).await.map_err(|e| stream(&e))?;
    send.finish().map_err(|e| stream(&e))?;
    recv.read_to_end(MAX_ANSWER_LEN)
        .await
        .map_err(|e| stream(&e))
}

fn parse(answer: &[u8]) -> Result<Vec<OpenLibrary>, PresenceError> {
    let mut body = match answer.split_first() {
        Some((&STATUS_OK, body)) => body,
        Some((&STATUS_REFUSED, reason)) => {
            return Err(PresenceError::Refused(
                String::from_utf8_lossy(reason).into_owned(),
            ));
        }
        _ => return Err(PresenceError::Malformed("unknown status")),
    };
    let mut libraries = Vec::new();
    while !body.is_empty() {
        let (id, rest) = body
            .split_first_chunk::<16>()
            .ok_or(PresenceError::Malformed("truncated id"))?;
        let (&len, rest) = rest
            .split_first()
            .ok_or(PresenceError::Malformed("truncated name length"))?;
        let name = rest
            .get(..usize::from(len))
            .ok_or(PresenceError::Malformed("truncated name"))?;
        body = rest.get(usize::from(len)..).unwrap_or_default();
        let name = std::str::from_utf8(name).map_err(|_| PresenceError::Malformed("not UTF-8"))?;
        libraries.push(OpenLibrary {
            id: Uuid::from_bytes(*id),
            name: name.to_owned(),
        });
        if libraries.len() > MAX_LIBRARIES {
            return Err(PresenceError::Malformed("too many libraries"));
        }
    }
    Ok(libraries)
}

fn refusal(reason: &str) -> Vec<u8> {
    let mut answer = vec![STATUS_REFUSED];
    answer.extend_from_slice(reason.as_bytes());
    answer
}

/// `name` cut to at most `max` bytes, at a character boundary.
fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 64), "abc");
    }

    #[test]
    fn a_malformed_answer_is_an_error_not_a_panic() {
        assert!(matches!(parse(&[]), Err(PresenceError::Malformed(_))));
        assert!(matches!(
            parse(&[0, 1, 2]),
            Err(PresenceError::Malformed(_))
        ));
        let mut answer = vec![0];
        answer.extend_from_slice(&[7; 16]);
        answer.push(5);
        answer.extend_from_slice(b"abc");
        assert!(matches!(parse(&answer), Err(PresenceError::Malformed(_))));
        assert!(matches!(parse(b"\x01no"), Err(PresenceError::Refused(reason)) if reason == "no"));
        let mut answer = vec![0];
        answer.extend_from_slice(&[7; 16]);
        answer.push(2);
        answer.extend_from_slice(b"ab");
        assert_eq!(
            parse(&answer).unwrap_or_default(),
            [OpenLibrary {
                id: Uuid::from_bytes([7; 16]),
                name: "ab".to_owned()
            }]
        );
    }
}
