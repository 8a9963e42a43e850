//! An example third-party protocol on Tether: paired devices leave each other notes.
//!
//! It shows what a protocol author writes, and all they need to: a [`NetworkProtocol`] on its
//! own ALPN ([`NOTES_ALPN`]), served with [`NetworkingService::register_protocol`], and a
//! client that opens connections with [`NetworkingService::connect_protocol`]. Tether routes a
//! connection to [`NotesServer`] only after the peer's key was proven in the TLS handshake and
//! found among the paired devices; the handler is told who the peer is ([`PairedPeer`]) and
//! never authenticates anyone itself. Nothing here depends on iroh or on Tether's lower crates.
//!
//! # Wire format
//!
//! One request per bidirectional stream; the client finishes its side after the request.
//!
//! | request | body | answer |
//! |---|---|---|
//! | `0x01` add | the note, UTF-8, at most [`MAX_NOTE_LEN`] bytes | `0x00`, `u64` BE count of notes from this device, 32-byte BLAKE3 of the note |
//! | `0x02` list | — | `0x00`, then per note: `u16` BE length, UTF-8 text |
//!
//! An answer starting with `0x01` is a refusal followed by a UTF-8 reason.
//!
//! ```no_run
//! # async fn demo(laptop: tether::NetworkingService, phone: tether::NetworkingService)
//! # -> Result<(), tether_example_notes::NotesError> {
//! use tether_example_notes::{NotesClient, NotesServer};
//!
//! let notes = NotesServer::default();
//! laptop.register_protocol(notes.clone())?;
//!
//! let client = NotesClient::connect(&phone, laptop.node_id()).await?;
//! let receipt = client.add("buy milk").await?;
//! assert_eq!(receipt.count, 1);
//! assert_eq!(notes.notes_from(&phone.node_id()), ["buy milk"]);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tether::{Connection, NetworkProtocol, PairedPeer, ProtocolError};
use tether::{NetworkError, NetworkingService, NodeId};

/// The protocol's ALPN, with its version.
pub const NOTES_ALPN: &[u8] = b"example/notes/1";
/// The longest note, in bytes.
pub const MAX_NOTE_LEN: usize = 4096;
/// The most notes kept per device.
pub const MAX_NOTES_PER_DEVICE: usize = 1000;

const OP_ADD: u8 = 0x01;
const OP_LIST: u8 = 0x02;
const STATUS_OK: u8 = 0x00;
const STATUS_REFUSED: u8 = 0x01;
/// The longest answer: a full list.
const MAX_ANSWER_LEN: usize = 1 + MAX_NOTES_PER_DEVICE * (2 + MAX_NOTE_LEN);

/// The server side: keeps notes in memory, per device that wrote them.
///
/// Cheap to clone; clones share the notes (keep one to read them, register another).
#[derive(Debug, Clone, Default)]
pub struct NotesServer {
    notes: Arc<Mutex<HashMap<NodeId, Vec<String>>>>,
}

impl NotesServer {
    /// The notes `device` left here, oldest first.
    pub fn notes_from(&self, device: &NodeId) -> Vec<String> {
        self.notes.lock().get(device).cloned().unwrap_or_default()
    }

    /// How many notes are kept, from all devices.
    pub fn total(&self) -> usize {
        self.notes.lock().values().map(Vec::len).sum()
    }

    /// Answers one request from `peer`.
    fn answer(&self, peer: &PairedPeer, request: &[u8]) -> Vec<u8> {
        match request.split_first() {
            Some((&OP_ADD, body)) => match std::str::from_utf8(body) {
                Ok(note) if note.len() <= MAX_NOTE_LEN => self.add(peer.node_id, note),
                Ok(_) => refusal("the note is too long"),
                Err(_) => refusal("a note must be UTF-8"),
            },
            Some((&OP_LIST, [])) => {
                let mut answer = vec![STATUS_OK];
                for note in self.notes_from(&peer.node_id) {
                    let len = u16::try_from(note.len()).unwrap_or(u16::MAX);
                    answer.extend_from_slice(&len.to_be_bytes());
                    answer.extend_from_slice(note.as_bytes());
                }
                answer
            }
            _ => refusal("unknown request"),
        }
    }

    fn add(&self, author: NodeId, note: &str) -> Vec<u8> {
        let mut notes = self.notes.lock();
        let mine = notes.entry(author).or_default();
        if mine.len() >= MAX_NOTES_PER_DEVICE {
            return refusal("too many notes");
        }
        mine.push(note.to_owned());
        let count = u64::try_from(mine.len()).unwrap_or(u64::MAX);
        let mut answer = vec![STATUS_OK];
        answer.extend_from_slice(&count.to_be_bytes());
        answer.extend_from_slice(blake3::hash(note.as_bytes()).as_bytes());
        answer
    }
}

fn refusal(reason: &str) -> Vec<u8> {
    let mut answer = vec![STATUS_REFUSED];
    answer.extend_from_slice(reason.as_bytes());
    answer
}

#[tether::async_trait]
impl NetworkProtocol for NotesServer {
    fn alpn(&self) -> &'static [u8] {
        NOTES_ALPN
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        // `peer` is already authenticated and paired: Tether checked before calling us.
        // One request per stream, until the client closes the connection.
        while let Ok((mut send, mut recv)) = connection.accept_bi().await {
            let request = recv
                .read_to_end(1 + MAX_NOTE_LEN)
                .await
                .map_err(|error| ProtocolError::Violation(error.to_string()))?;
            send.write_all(&self.answer(&peer, &request)).await?;
            send.finish().map_err(ProtocolError::other)?;
        }
        Ok(())
    }
}

/// What the server answered to a note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    /// How many notes from this device the server now keeps.
    pub count: u64,
    /// BLAKE3 of the note as the server stored it.
    pub hash: [u8; 32],
}

/// Why a notes request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotesError {
    /// Tether could not connect (not paired, offline, refused, ...).
    #[error(transparent)]
    Network(#[from] NetworkError),
    /// The connection or a stream failed.
    #[error("notes stream failed: {0}")]
    Stream(String),
    /// The server refused the request.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server's answer does not follow the protocol.
    #[error("malformed answer: {0}")]
    Malformed(&'static str),
    /// The note is longer than [`MAX_NOTE_LEN`]; nothing was sent.
    #[error("a note is at most {MAX_NOTE_LEN} bytes")]
    TooLong,
}

/// The client side: one connection to a paired device's [`NotesServer`].
#[derive(Debug)]
pub struct NotesClient {
    connection: Connection,
}

impl NotesClient {
    /// Connects to `device`, which must be paired with `service`.
    pub async fn connect(service: &NetworkingService, device: NodeId) -> Result<Self, NotesError> {
        let connection = service.connect_protocol(device, NOTES_ALPN).await?;
        Ok(Self { connection })
    }

    /// Leaves a note; the receipt's hash is checked against the note sent.
    pub async fn add(&self, note: &str) -> Result<Receipt, NotesError> {
        if note.len() > MAX_NOTE_LEN {
            return Err(NotesError::TooLong);
        }
        let mut request = vec![OP_ADD];
        request.extend_from_slice(note.as_bytes());
        let body = self.request(&request).await?;
        let (count, hash) = body
            .split_first_chunk::<8>()
            .ok_or(NotesError::Malformed("short receipt"))?;
        let hash: [u8; 32] = hash
            .try_into()
            .map_err(|_| NotesError::Malformed("receipt hash length"))?;
        if hash != *blake3::hash(note.as_bytes()).as_bytes() {
            return Err(NotesError::Malformed("the server stored something else"));
        }
        Ok(Receipt {
            count: u64::from_be_bytes(*count),
            hash,
        })
    }

    /// The notes this device left on the server, oldest first.
    pub async fn list(&self) -> Result<Vec<String>, NotesError> {
        let mut body = self.request(&[OP_LIST]).await?.into_iter();
        let mut notes = Vec::new();
        while let Some(high) = body.next() {
            let low = body
                .next()
                .ok_or(NotesError::Malformed("truncated length"))?;
            let len = usize::from(u16::from_be_bytes([high, low]));
            let text: Vec<u8> = body.by_ref().take(len).collect();
            if text.len() != len {
                return Err(NotesError::Malformed("truncated note"));
            }
            notes.push(String::from_utf8(text).map_err(|_| NotesError::Malformed("not UTF-8"))?);
        }
        Ok(notes)
    }

    /// Sends raw request bytes (for tests of the server's checks) and returns the answer's
    /// body after an OK status.
    pub async fn request(&self, request: &[u8]) -> Result<Vec<u8>, NotesError> {
        // A failed stream may mean the server's gate turned us away: say so.
        let stream = |error: &dyn std::fmt::Display| match tether::gate::refusal(&self.connection) {
            Some(refused) => NotesError::Network(refused),
            None => NotesError::Stream(error.to_string()),
        };
        let (mut send, mut recv) = self.connection.open_bi().await.map_err(|e| stream(&e))?;
        send.write_all(request).await.map_err(|e| stream(&e))?;
        send.finish().map_err(|e| stream(&e))?;
        let answer = recv
            .read_to_end(MAX_ANSWER_LEN)
            .await
            .map_err(|e| stream(&e))?;
        match answer.split_first() {
            Some((&STATUS_OK, body)) => Ok(body.to_vec()),
            Some((&STATUS_REFUSED, reason)) => Err(NotesError::Refused(
                String::from_utf8_lossy(reason).into_owned(),
            )),
            _ => Err(NotesError::Malformed("unknown status")),
        }
    }

    /// Closes the connection; the server's handler returns.
    pub fn close(&self) {
        self.connection.close(0u32.into(), b"done");
    }
}
