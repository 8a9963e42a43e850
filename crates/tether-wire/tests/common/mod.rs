//! Fixed sample messages shared by the golden-file and fuzz-seed tests.

#![allow(dead_code, missing_docs)]

use tether_wire::{
    ContentHash, ControlMessage, ErrorCode, ErrorReply, FileRequest, FileResponse, Hlc,
    LibraryAnnounce, LibraryInfo, LibraryRequest, MessageKind, NameUpdate, NetworkMessage, Ping,
    Pong, RequestId, SyncEntry, SyncRequest, SyncResponse, Text,
};
use uuid::Uuid;

pub(crate) const LIBRARY: Uuid = Uuid::from_u128(0x6f1e_2c3d_4b5a_4978_8a6b_5c4d_3e2f_1a0b);
pub(crate) const ENTRY: Uuid = Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd);

pub(crate) fn hlc(physical_ms: u64, logical: u32) -> Hlc {
    Hlc {
        physical_ms,
        logical,
        node: 0x00c0_ffee_0000_0001,
    }
}

pub(crate) fn sync_entry(i: u64) -> SyncEntry {
    SyncEntry {
        entry_id: Uuid::from_u128(u128::from(i) << 64 | 0x4000_8000_0000_0000),
        path: format!("photos/2026/img_{i:04}.jpg"),
        size: 1_000_000 + i,
        hash: Some(ContentHash([i as u8; 32])),
        hlc: hlc(1_780_000_000_000 + i, 0),
        deleted: false,
    }
}

/// One sample of `kind`, with a request id where the kind is a request or a response.
pub(crate) fn sample(kind: MessageKind) -> ControlMessage {
    let id = RequestId(42);
    match kind {
        MessageKind::LibraryAnnounce => ControlMessage::new(LibraryAnnounce {
            libraries: vec![LibraryInfo {
                id: LIBRARY,
                name: "Family photos \u{1F4F7} \"2026\"".into(),
                entry_count: 12_345,
                updated: hlc(1_780_000_000_000, 3),
            }],
        }),
        MessageKind::LibraryRequest => ControlMessage::with_id(
            id,
            LibraryRequest {
                library_id: LIBRARY,
            },
        ),
        MessageKind::SyncRequest => ControlMessage::with_id(
            id,
            SyncRequest {
                library_id: LIBRARY,
                after: hlc(1_779_999_000_000, 0),
            },
        ),
        MessageKind::SyncResponse => ControlMessage::with_id(
            id,
            SyncResponse {
                library_id: LIBRARY,
                entries: vec![
                    sync_entry(1),
                    SyncEntry {
                        entry_id: ENTRY,
                        path: "notes/old.txt".into(),
                        size: 0,
                        hash: None,
                        hlc: hlc(1_780_000_000_002, 7),
                        deleted: true,
                    },
                ],
                has_more: true,
            },
        ),
        MessageKind::FileRequest => ControlMessage::with_id(
            id,
            FileRequest {
                entry_id: ENTRY,
                resume_from: 524_288,
            },
        ),
        MessageKind::FileResponse => ControlMessage::with_id(
            id,
            FileResponse {
                entry_id: ENTRY,
                size: 3_000_000,
                hash: ContentHash(*b"0123456789abcdef0123456789abcdef"),
                chunk_size: 262_144,
                offset: 524_288,
            },
        ),
        MessageKind::Ping => ControlMessage::with_id(
            RequestId(7),
            Ping {
                timestamp_ms: 1_780_000_000_123,
            },
        ),
        MessageKind::Pong => ControlMessage::with_id(
            RequestId(7),
            Pong {
                timestamp_ms: 1_780_000_000_123,
            },
        ),
        MessageKind::NameUpdate => ControlMessage::with_id(
            id,
            NameUpdate {
                name: "Anna's desk \u{1F5A5}".into(),
                changed_ms: 1_780_000_000_456,
                signature: std::array::from_fn(|i| i as u8),
            },
        ),
        MessageKind::Text => ControlMessage::with_id(
            id,
            Text {
                text: "Wi-Fi: \"attic\" \u{1F4F6}\nhttps://example.org/a?b=c".into(),
            },
        ),
        MessageKind::Ack => ControlMessage::with_id(id, NetworkMessage::Ack),
        MessageKind::Error => ControlMessage::with_id(
            id,
            ErrorReply {
                code: ErrorCode::NotFound,
                message: "no library 6f1e2c3d-4b5a-4978-8a6b-5c4d3e2f1a0b".into(),
            },
        ),
        other => panic!("no sample for {other:?}"),
    }
}

/// A file name for `kind`: `SyncResponse` → `sync_response`.
pub(crate) fn snake_name(kind: MessageKind) -> String {
    let mut out = String::new();
    for (i, c) in kind.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Deterministic session keys: `(initiator, responder)`, derived through tether-crypto's key
/// schedule from fixed ephemeral secrets, ids and pairing secret (the same ones the
/// `envelope_open` fuzz target uses).
pub(crate) fn session_pair() -> (tether_crypto::SessionKeys, tether_crypto::SessionKeys) {
    use tether_crypto::{EphemeralKeyPair, PairingSecret, Role, SessionSecrets, Transcript};

    let secrets = || {
        let initiator = EphemeralKeyPair::danger_from_secret_bytes([0x11; 32]);
        let responder = EphemeralKeyPair::danger_from_secret_bytes([0x22; 32]);
        let transcript = Transcript {
            initiator_id: [0x33; 32],
            responder_id: [0x44; 32],
            initiator_ephemeral: initiator.public_key(),
            responder_ephemeral: responder.public_key(),
        };
        let shared = initiator
            .diffie_hellman(&transcript.responder_ephemeral)
            .unwrap();
        SessionSecrets::derive(&PairingSecret::from_bytes([0x55; 32]), shared, &transcript)
    };
    (
        secrets().into_session_keys(Role::Initiator),
        secrets().into_session_keys(Role::Responder),
    )
}
