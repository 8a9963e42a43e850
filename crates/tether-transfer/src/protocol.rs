//! The `tether/transfer/1` control messages and how they travel.
//!
//! Control messages are JSON in tether-wire control frames (`{"type": ..., "body": ...}`, the same
//! shape as [`tether_wire::ControlMessage`]); file bytes travel in tether-wire data frames
//! ([`DataChunk`](tether_wire::DataChunk)), sealed when the transfer is encrypted. The wire crate's
//! [`FileRequest`] and [`FileResponse`] are reused as they are, so a `FileRequest` encoded by
//! tether-wire is a valid message here. See the crate docs for the sequence.
//!
//! Every list a peer sends is bounded here ([`MAX_HASHES_PER_PAGE`], [`MAX_RANGES_PER_WANT`],
//! the 1 MiB control frame cap) and again by the receiver's [`Limits`](crate::Limits).

use serde::{Deserialize, Serialize};
use tether_identity::error_chain;
use tether_wire::{FileRequest, FileResponse, Frame, FrameKind};
use uuid::Uuid;

use crate::abort::cut_on_decode;
pub(crate) use crate::abort::{Abort, AbortCode, MAX_MESSAGE_LEN, cut_message};
use crate::compress::Compression;
use crate::error::PeerError;
use crate::manifest::ManifestEntry;
use crate::negotiate::OfferedCiphers;

/// The protocol version in an [`Offer`]. Version 2 added the cipher choice (`ciphers` in the
/// offer, `cipher` in the accept); version 3 the decline codes `busy` and
/// `encryption_required`, and refuses names that collide after case folding or normalisation.
/// The decline code `bandwidth_quota` came later without a bump: a version-3 peer that does not
/// know it reads it as `other`.
pub(crate) const VERSION: u32 = 3;

/// Most chunk hashes in one [`ChunkHashes`] message (256 KiB of hex JSON).
pub(crate) const MAX_HASHES_PER_PAGE: usize = 4096;

/// Most ranges in one [`Want`], and in all the files of one [`Wants`] together.
pub(crate) const MAX_RANGES_PER_WANT: usize = 4096;

/// Most files named in one [`Wants`] (about 60 KiB of JSON for one range each).
pub(crate) const MAX_FILES_PER_WANTS: usize = 1024;

/// Target size of one manifest page's JSON (well under the 1 MiB control frame cap).
pub(crate) const MANIFEST_PAGE_BYTES: usize = 256 << 10;

/// A control message of the transfer protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body")]
pub(crate) enum Message {
    /// Sender → receiver, first on the control stream.
    Offer(Offer),
    /// Sender → receiver: the next entries of the manifest.
    Manifest(ManifestPage),
    /// Receiver → sender: consent given (and the cipher chosen); send the chunk hashes.
    Accept(AcceptBody),
    /// Receiver → sender: the transfer is refused.
    Decline(Decline),
    /// Sender → receiver: chunk hashes of one file.
    ChunkHashes(ChunkHashes),
    /// Receiver → sender: the chunks of `entry_id` from `resume_from` (a chunk boundary) on.
    FileRequest(FileRequest),
    /// Sender → receiver: answers a `FileRequest`; the chunks follow in data frames.
    FileResponse(FileResponse),
    /// Receiver → sender: these chunk ranges of one file.
    Want(Want),
    /// Receiver → sender: chunk ranges of several files, in one message; sent only to a sender
    /// whose [`Offer::wants`] says it reads them.
    Wants(Wants),
    /// Receiver → sender, before its first request: what it will ask for in all. Sent only to
    /// a sender whose [`Offer::plan`] says it reads it.
    Plan(Plan),
    /// Receiver → sender: every file is verified and in place.
    Complete(Complete),
    /// First message on every extra stream (lane) of a transfer.
    Lane(LaneHello),
    /// Either way: the transfer stops.
    Abort(Abort),
    /// Requester → sharer, first on a stream the requester opened: send me this entry. The
    /// sharer answers with an [`Offer`] (and the roles of a push go on, the sharer sending) or
    /// a [`Decline`] (`not_shared`, `busy`, `internal`).
    Pull(PullRequest),
}

impl Message {
    /// The control frame carrying this message.
    pub(crate) fn to_frame(&self) -> Result<Frame, PeerError> {
        let json = serde_json::to_vec(self).map_err(|e| PeerError::Encode(e.to_string()))?;
        Frame::new(FrameKind::Control, json).map_err(|e| PeerError::Encode(error_chain(&e)))
    }

    /// Parses a control frame.
    pub(crate) fn from_frame(frame: &Frame) -> Result<Message, PeerError> {
        if frame.kind() != FrameKind::Control {
            return Err(PeerError::Protocol("expected a control frame"));
        }
        // serde_json's message can quote the peer's text (an unknown variant's name).
        serde_json::from_slice(frame.payload())
            .map_err(|e| PeerError::Malformed(cut_message(&e.to_string())))
    }
}

/// Body of [`Message::Offer`]: what is coming and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Offer {
    /// Must be [`VERSION`].
    pub(crate) version: u32,
    /// Names the transfer; per-transfer keys derive from it.
    pub(crate) transfer_id: Uuid,
    /// Entries in the manifest pages that follow.
    pub(crate) entries: u64,
    /// Sum of the file sizes.
    pub(crate) total_bytes: u64,
    /// Must be [`CHUNK_SIZE`](crate::CHUNK_SIZE).
    pub(crate) chunk_size: u32,
    /// How chunk bytes may be encoded.
    pub(crate) compression: Compression,
    /// Whether data frames are sealed with per-transfer keys.
    pub(crate) encrypted: bool,
    /// When encrypted: the ciphers the sender accepts, by wire id, most preferred first.
    #[serde(default, skip_serializing_if = "OfferedCiphers::is_empty")]
    pub(crate) ciphers: OfferedCiphers,
    /// Streams the sender will use, this one included.
    pub(crate) lanes: u8,
    /// The sender reads [`Message::Wants`]; absent (false) from senders that do not, which are
    /// then asked one file per [`Message::Want`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) wants: bool,
    /// The sender reads [`Message::Plan`] (and so counts its progress against what will be
    /// asked, as the receiver asks a window at a time); absent (false) from senders that do not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) plan: bool,
}

/// Body of [`Message::Accept`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AcceptBody {
    /// When encrypted: the wire id of the cipher the receiver picked from the offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cipher: Option<u64>,
    /// The receiver reads batch frames (several small files in one data frame, see `batch.rs`);
    /// absent (false) from receivers that do not, which are sent one frame per chunk.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) batches: bool,
}

/// Body of [`Message::Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ManifestPage {
    /// The next entries.
    pub(crate) entries: Vec<ManifestEntry>,
}

/// Body of [`Message::Decline`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decline {
    /// Why, for programs.
    pub(crate) code: AbortCode,
    /// Why, for people; untrusted text, cut to [`MAX_MESSAGE_LEN`] bytes when decoded.
    #[serde(deserialize_with = "cut_on_decode")]
    pub(crate) message: String,
}

/// Body of [`Message::ChunkHashes`]: the hashes of chunks `first..` of one file, as hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChunkHashes {
    /// The file.
    pub(crate) entry_id: Uuid,
    /// Index of the first chunk covered.
    pub(crate) first: u64,
    /// 64 hex digits per chunk, at most [`MAX_HASHES_PER_PAGE`] chunks.
    pub(crate) hashes: String,
}

/// Body of [`Message::Want`]: chunk index ranges `[start, end)` of one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Want {
    /// The file.
    pub(crate) entry_id: Uuid,
    /// At most [`MAX_RANGES_PER_WANT`] ranges.
    pub(crate) ranges: Vec<[u64; 2]>,
}

/// Body of [`Message::Wants`]: chunk ranges of several files, at most [`MAX_FILES_PER_WANTS`]
/// files and [`MAX_RANGES_PER_WANT`] ranges in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Wants {
    /// One entry per file, in the order they are asked for.
    pub(crate) files: Vec<Want>,
}

/// Body of [`Message::Plan`]: what the receiver lacks after looking at what it already has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    /// Files it will ask chunks of.
    pub(crate) files: u64,
    /// Bytes of those chunks.
    pub(crate) bytes: u64,
}

/// Body of [`Message::Complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Complete {
    /// Files now in place (received, resumed or already there).
    pub(crate) files: u64,
    /// Bytes whose BLAKE3 the receiver checked in this run.
    pub(crate) bytes_verified: u64,
}

/// Body of [`Message::Lane`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LaneHello {
    /// The transfer this stream belongs to.
    pub(crate) transfer_id: Uuid,
    /// Its index, `1..lanes`.
    pub(crate) index: u8,
}

/// Body of [`Message::Pull`]: two fixed-size fields, so its JSON is at most
/// [`MAX_PULL_REQUEST_LEN`] bytes; a longer one is refused (and the 1 MiB control frame cap
/// bounds what is read before that), as are unknown fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PullRequest {
    /// The sharer's entry id, as its application names it. Never a path.
    pub(crate) entry_id: Uuid,
    /// How many bytes of the entry the requester believes it holds (a hint; the requester
    /// verifies what it kept and asks for exactly what it lacks).
    pub(crate) resume_from: u64,
}

/// Longest JSON of a [`Message::Pull`] (about 110 bytes with the largest values), with room.
pub(crate) const MAX_PULL_REQUEST_LEN: usize = 256;

/// Hashes as hex, for a [`ChunkHashes`] page.
pub(crate) fn encode_hashes(hashes: &[[u8; 32]]) -> String {
    let mut out = String::with_capacity(hashes.len() * 64);
    for hash in hashes {
        out.push_str(&hex::encode(hash));
    }
    out
}

/// Reads a [`ChunkHashes`] page's hex; `None` unless it is whole hashes, at most a page.
pub(crate) fn decode_hashes(hex_digits: &str) -> Option<Vec<[u8; 32]>> {
    if !hex_digits.len().is_multiple_of(64) || hex_digits.len() / 64 > MAX_HASHES_PER_PAGE {
        return None;
    }
    let mut bytes = vec![0u8; hex_digits.len() / 2];
    hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
    Some(
        bytes
            .chunks_exact(32)
            .filter_map(|c| <[u8; 32]>::try_from(c).ok())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_wire::ControlMessage;

    #[test]
    fn wire_file_request_reads_as_ours() {
        let request = FileRequest {
            entry_id: Uuid::from_u128(7),
            resume_from: 1 << 20,
        };
        let frame = Frame::control(&ControlMessage::new(request.clone())).unwrap();
        assert_eq!(
            Message::from_frame(&frame).unwrap(),
            Message::FileRequest(request)
        );
    }

    #[test]
    fn the_largest_wants_fits_a_control_frame() {
        let files: Vec<Want> = (0..MAX_FILES_PER_WANTS)
            .map(|i| Want {
                entry_id: Uuid::from_u128(u128::MAX - i as u128),
                ranges: vec![[u64::MAX - 1, u64::MAX]; MAX_RANGES_PER_WANT / MAX_FILES_PER_WANTS],
            })
            .collect();
        let wants = Message::Wants(Wants { files });
        let frame = wants.to_frame().unwrap();
        assert!(frame.payload().len() < 1 << 20, "{}", frame.payload().len());
        assert_eq!(Message::from_frame(&frame).unwrap(), wants);
    }

    #[test]
    fn round_trips_and_shapes() {
        let accept = Message::Accept(AcceptBody::default()).to_frame().unwrap();
        assert_eq!(accept.payload(), br#"{"type":"Accept","body":{}}"#);
        let accept = Message::Accept(AcceptBody {
            cipher: Some(2),
            batches: false,
        });
        let frame = accept.to_frame().unwrap();
        assert_eq!(frame.payload(), br#"{"type":"Accept","body":{"cipher":2}}"#);
        assert_eq!(Message::from_frame(&frame).unwrap(), accept);
        let accept = Message::Accept(AcceptBody {
            cipher: None,
            batches: true,
        });
        let frame = accept.to_frame().unwrap();
        assert_eq!(
            frame.payload(),
            br#"{"type":"Accept","body":{"batches":true}}"#
        );
        assert_eq!(Message::from_frame(&frame).unwrap(), accept);
        let abort = Message::Abort(Abort {
            code: AbortCode::SourceChanged,
            message: "x".into(),
        });
        let back = Message::from_frame(&abort.to_frame().unwrap()).unwrap();
        assert_eq!(back, abort);
        let unknown = Frame::new(
            FrameKind::Control,
            br#"{"type":"Abort","body":{"code":"teapot","message":"","extra":1}}"#.to_vec(),
        )
        .unwrap();
        assert!(matches!(
            Message::from_frame(&unknown).unwrap(),
            Message::Abort(Abort {
                code: AbortCode::Other,
                ..
            })
        ));
        let bad = Frame::new(FrameKind::Control, br#"{"type":"Teleport"}"#.to_vec()).unwrap();
        assert!(matches!(
            Message::from_frame(&bad),
            Err(PeerError::Malformed(_))
        ));
        let data = Frame::new(FrameKind::Data, vec![0; 30]).unwrap();
        assert!(matches!(
            Message::from_frame(&data),
            Err(PeerError::Protocol(_))
        ));
    }

    #[test]
    fn a_pull_request_round_trips_and_is_strict() {
        let pull = Message::Pull(PullRequest {
            entry_id: Uuid::from_u128(u128::MAX),
            resume_from: u64::MAX,
        });
        let frame = pull.to_frame().unwrap();
        assert!(
            frame.payload().len() <= MAX_PULL_REQUEST_LEN,
            "{}",
            frame.payload().len()
        );
        assert_eq!(Message::from_frame(&frame).unwrap(), pull);
        for bad in [
            &br#"{"type":"Pull","body":{"entry_id":"00000000-0000-0000-0000-000000000007"}}"#[..],
            br#"{"type":"Pull","body":{"entry_id":"x","resume_from":0}}"#,
            br#"{"type":"Pull","body":{"entry_id":"00000000-0000-0000-0000-000000000007","resume_from":-1}}"#,
            br#"{"type":"Pull","body":{"entry_id":"00000000-0000-0000-0000-000000000007","resume_from":0,"path":"/etc/passwd"}}"#,
        ] {
            let frame = Frame::new(FrameKind::Control, bad.to_vec()).unwrap();
            assert!(
                matches!(Message::from_frame(&frame), Err(PeerError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let refusal = Message::Decline(Decline {
            code: AbortCode::NotShared,
            message: String::new(),
        });
        let frame = refusal.to_frame().unwrap();
        assert_eq!(
            frame.payload(),
            br#"{"type":"Decline","body":{"code":"not_shared","message":""}}"#
        );
        assert_eq!(Message::from_frame(&frame).unwrap(), refusal);
    }

    #[test]
    fn hashes_hex() {
        let hashes = vec![[1u8; 32], [0xab; 32]];
        let hex = encode_hashes(&hashes);
        assert_eq!(decode_hashes(&hex), Some(hashes));
        assert_eq!(decode_hashes(&hex[..63]), None);
        assert_eq!(decode_hashes(&"zz".repeat(32)), None);
        assert_eq!(
            decode_hashes(&"00".repeat(32 * (MAX_HASHES_PER_PAGE + 1))),
            None
        );
        assert_eq!(decode_hashes(""), Some(vec![]));
        assert_eq!(cut_message(&"é".repeat(1000)).len(), MAX_MESSAGE_LEN);
    }

    mod round_trips {
        use proptest::prelude::*;
        use tether_crypto::TransferCipher;
        use tether_wire::ContentHash;

        use super::*;
        use crate::manifest::EntryKind;

        fn uuid() -> impl Strategy<Value = Uuid> {
            any::<u128>().prop_map(Uuid::from_u128)
        }

        fn code() -> impl Strategy<Value = AbortCode> {
            prop_oneof![
                Just(AbortCode::Declined),
                Just(AbortCode::Cancelled),
                Just(AbortCode::SourceChanged),
                Just(AbortCode::NoSpace),
                Just(AbortCode::Refused),
                Just(AbortCode::Protocol),
                Just(AbortCode::Internal),
                Just(AbortCode::Stalled),
                Just(AbortCode::Busy),
                Just(AbortCode::EncryptionRequired),
                Just(AbortCode::NotShared),
                Just(AbortCode::BandwidthQuota),
                Just(AbortCode::Other),
            ]
        }

        /// Free text within [`MAX_MESSAGE_LEN`] bytes (up to 4 bytes a character).
        fn text() -> impl Strategy<Value = String> {
            "\\PC{0,256}"
        }

        fn entry() -> impl Strategy<Value = ManifestEntry> {
            (
                uuid(),
                "\\PC{0,40}",
                any::<bool>(),
                any::<u64>(),
                any::<u64>(),
                any::<[u8; 32]>(),
            )
                .prop_map(|(id, path, file, size, mtime_ns, hash)| ManifestEntry {
                    id,
                    path,
                    kind: if file {
                        EntryKind::File
                    } else {
                        EntryKind::Dir
                    },
                    size,
                    mtime_ns,
                    hash: file.then_some(ContentHash(hash)),
                })
        }

        fn want() -> impl Strategy<Value = Want> {
            (uuid(), prop::collection::vec(any::<[u64; 2]>(), 0..8))
                .prop_map(|(entry_id, ranges)| Want { entry_id, ranges })
        }

        fn offer() -> impl Strategy<Value = Offer> {
            (
                (
                    any::<u32>(),
                    uuid(),
                    any::<u64>(),
                    any::<u64>(),
                    any::<u32>(),
                ),
                (
                    any::<bool>(),
                    any::<bool>(),
                    any::<u8>(),
                    any::<bool>(),
                    any::<bool>(),
                ),
                prop::sample::subsequence(
                    vec![TransferCipher::ChaCha20Poly1305, TransferCipher::Aes256Gcm],
                    0..=2,
                ),
            )
                .prop_map(
                    |(
                        (version, transfer_id, entries, total_bytes, chunk_size),
                        (zstd, encrypted, lanes, wants, plan),
                        ciphers,
                    )| Offer {
                        version,
                        transfer_id,
                        entries,
                        total_bytes,
                        chunk_size,
                        compression: if zstd {
                            Compression::Zstd
                        } else {
                            Compression::None
                        },
                        encrypted,
                        ciphers: OfferedCiphers::new(&ciphers),
                        lanes,
                        wants,
                        plan,
                    },
                )
        }

        fn message() -> impl Strategy<Value = Message> {
            prop_oneof![
                offer().prop_map(Message::Offer),
                prop::collection::vec(entry(), 0..4)
                    .prop_map(|entries| Message::Manifest(ManifestPage { entries })),
                (any::<Option<u64>>(), any::<bool>()).prop_map(|(cipher, batches)| {
                    Message::Accept(AcceptBody { cipher, batches })
                }),
                (code(), text())
                    .prop_map(|(code, message)| Message::Decline(Decline { code, message })),
                (
                    uuid(),
                    any::<u64>(),
                    prop::collection::vec(any::<[u8; 32]>(), 0..4)
                )
                    .prop_map(|(entry_id, first, hashes)| Message::ChunkHashes(
                        ChunkHashes {
                            entry_id,
                            first,
                            hashes: encode_hashes(&hashes),
                        }
                    )),
                (uuid(), any::<u64>()).prop_map(|(entry_id, resume_from)| {
                    Message::FileRequest(FileRequest {
                        entry_id,
                        resume_from,
                    })
                }),
                (
                    uuid(),
                    any::<u64>(),
                    any::<[u8; 32]>(),
                    any::<u32>(),
                    any::<u64>()
                )
                    .prop_map(|(entry_id, size, hash, chunk_size, offset)| {
                        Message::FileResponse(FileResponse {
                            entry_id,
                            size,
                            hash: ContentHash(hash),
                            chunk_size,
                            offset,
                        })
                    }),
                want().prop_map(Message::Want),
                prop::collection::vec(want(), 0..4)
                    .prop_map(|files| Message::Wants(Wants { files })),
                (any::<u64>(), any::<u64>())
                    .prop_map(|(files, bytes)| Message::Plan(Plan { files, bytes })),
                (any::<u64>(), any::<u64>()).prop_map(|(files, bytes_verified)| {
                    Message::Complete(Complete {
                        files,
                        bytes_verified,
                    })
                }),
                (uuid(), any::<u8>()).prop_map(|(transfer_id, index)| {
                    Message::Lane(LaneHello { transfer_id, index })
                }),
                (code(), text())
                    .prop_map(|(code, message)| Message::Abort(Abort { code, message })),
                (uuid(), any::<u64>()).prop_map(|(entry_id, resume_from)| {
                    Message::Pull(PullRequest {
                        entry_id,
                        resume_from,
                    })
                }),
            ]
        }

        proptest! {
            /// Every message reads back as itself from its control frame.
            #[test]
            fn every_message_round_trips(message in message()) {
                let frame = message.to_frame().unwrap();
                prop_assert_eq!(Message::from_frame(&frame).unwrap(), message);
            }

            /// A peer's text longer than the bound is cut, on a character boundary, to a prefix.
            #[test]
            fn long_text_is_cut_to_a_prefix(code in code(), message in "\\PC{200,600}") {
                let frame = Message::Abort(Abort { code, message: message.clone() }).to_frame().unwrap();
                let Message::Abort(back) = Message::from_frame(&frame).unwrap() else {
                    return Err(TestCaseError::fail("not an Abort"));
                };
                prop_assert!(back.message.len() <= MAX_MESSAGE_LEN);
                prop_assert!(message.starts_with(&back.message));
                prop_assert_eq!(back.message == message, message.len() <= MAX_MESSAGE_LEN);
            }

            /// Chunk hashes read back from their hex.
            #[test]
            fn hashes_round_trip(hashes in prop::collection::vec(any::<[u8; 32]>(), 0..64)) {
                prop_assert_eq!(decode_hashes(&encode_hashes(&hashes)), Some(hashes));
            }
        }
    }
}
