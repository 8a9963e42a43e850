//! What two devices say on a channel connection: length-prefixed frames, decoded within caps.
//!
//! A frame is a `u32` big-endian length, then that many bytes of a postcard-encoded [`Frame`].
//! The length is checked against [`MAX_FRAME_LEN`] before anything is allocated, and a decoded
//! frame is checked against the caps of what it carries (topic length, message size, cursor
//! count) before anyone acts on it.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

// The facade's HLC, through the crate root: the fuzz target compiles this file on its own,
// with `tether_wire::Hlc` at its root, so it does not build the facade and iroh.
use super::Hlc;

/// The protocol's version, sent in [`Frame::Hello`].
pub const VERSION: u16 = 1;
/// The longest topic name, in bytes of UTF-8.
pub const MAX_TOPIC_LEN: usize = 64;
/// The largest message body, in bytes.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024;
/// The most per-sender cursors a [`Frame::Subscribe`] may carry.
pub const MAX_CURSORS: usize = 256;
/// The largest frame, in bytes after its length prefix.
pub const MAX_FRAME_LEN: usize = 32 * 1024;

/// One frame of the channel protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// The first frame of the dialling side: which version it speaks.
    Hello {
        /// [`VERSION`].
        version: u16,
    },
    /// The sender subscribes to `topic`; it has seen each sender's messages up to its cursor
    /// and asks for what it missed since.
    Subscribe {
        /// The topic.
        topic: String,
        /// The last sequence number seen, per sender.
        cursors: Vec<Cursor>,
    },
    /// The sender left `topic`.
    Unsubscribe {
        /// The topic.
        topic: String,
    },
    /// A message on `topic`, live or from history.
    Message {
        /// The topic.
        topic: String,
        /// The device that published it (its node id's bytes).
        sender: [u8; 32],
        /// Its place in the sender's sequence on this topic, from 1.
        seq: u64,
        /// When the sender published it.
        hlc: Hlc,
        /// What it says.
        body: Vec<u8>,
    },
    /// The sender of this frame no longer holds its own messages on `topic` before `seq`:
    /// whoever misses them will not get them from it.
    Floor {
        /// The topic.
        topic: String,
        /// The oldest sequence number still held.
        seq: u64,
    },
}

/// The last sequence number seen from one sender on one topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The sender's node id bytes.
    pub sender: [u8; 32],
    /// The last sequence number seen (0: none).
    pub seq: u64,
}

/// Why bytes from a peer are not a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix announces more than [`MAX_FRAME_LEN`].
    #[error("a frame of {len} bytes is over the cap of {MAX_FRAME_LEN}")]
    TooLong {
        /// The announced length.
        len: usize,
    },
    /// The bytes are not a frame.
    #[error("malformed frame")]
    Malformed,
    /// The frame decodes but carries more than its caps allow, or an empty topic.
    #[error("frame out of bounds: {0}")]
    OutOfBounds(&'static str),
    /// The stream ended inside a frame.
    #[error("the stream ended inside a frame")]
    Truncated,
    /// The rest of a frame did not come within the deadline.
    #[error("a frame did not complete in time")]
    Stalled,
    /// Reading the stream failed.
    #[error("reading the stream failed")]
    Read(#[source] std::io::Error),
}

impl Frame {
    /// The frame's bytes, with their length prefix.
    pub fn encode(&self) -> Vec<u8> {
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let mut bytes = Vec::with_capacity(4 + body.len());
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes one frame's bytes (after the length prefix) and checks its caps.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_FRAME_LEN {
            return Err(DecodeError::TooLong { len: bytes.len() });
        }
        let (frame, rest) =
            postcard::take_from_bytes::<Frame>(bytes).map_err(|_| DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Malformed);
        }
        frame.check()?;
        Ok(frame)
    }

    /// Checks the caps of what the frame carries.
    fn check(&self) -> Result<(), DecodeError> {
        match self {
            Frame::Hello { .. } => Ok(()),
            Frame::Subscribe { topic, cursors } => {
                check_topic(topic)?;
                if cursors.len() > MAX_CURSORS {
                    return Err(DecodeError::OutOfBounds("too many cursors"));
                }
                Ok(())
            }
            Frame::Unsubscribe { topic } => check_topic(topic),
            Frame::Message {
                topic, seq, body, ..
            } => {
                check_topic(topic)?;
                if *seq == 0 {
                    return Err(DecodeError::OutOfBounds("sequence numbers start at 1"));
                }
                if body.len() > MAX_MESSAGE_LEN {
                    return Err(DecodeError::OutOfBounds("message too large"));
                }
                Ok(())
            }
            Frame::Floor { topic, .. } => check_topic(topic),
        }
    }
}

/// Whether `topic` is a topic name: 1 to [`MAX_TOPIC_LEN`] bytes, no control characters.
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= MAX_TOPIC_LEN && !topic.chars().any(char::is_control)
}

fn check_topic(topic: &str) -> Result<(), DecodeError> {
    if valid_topic(topic) {
        Ok(())
    } else {
        Err(DecodeError::OutOfBounds("bad topic name"))
    }
}

/// Reads one frame: `Ok(None)` when the stream ends cleanly between frames. The first byte
/// may take as long as it likes (a quiet channel is not a fault); the rest of the frame must
/// come within `deadline`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    deadline: std::time::Duration,
) -> Result<Option<Frame>, DecodeError> {
    let mut first = [0u8; 1];
    match reader.read(&mut first).await {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(error) => return Err(DecodeError::Read(error)),
    }
    let body = tokio::time::timeout(deadline, async {
        let mut rest = [0u8; 3];
        read_all(reader, &mut rest).await?;
        let [b0] = first;
        let [b1, b2, b3] = rest;
        let len = usize::try_from(u32::from_be_bytes([b0, b1, b2, b3])).unwrap_or(usize::MAX);
        if len > MAX_FRAME_LEN {
            return Err(DecodeError::TooLong { len });
        }
        let mut body = vec![0u8; len];
        read_all(reader, &mut body).await?;
        Ok(body)
    })
    .await
    .map_err(|_| DecodeError::Stalled)??;
    Frame::decode(&body).map(Some)
}

async fn read_all<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut [u8]) -> Result<(), DecodeError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(DecodeError::Truncated)
        }
        Err(error) => Err(DecodeError::Read(error)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn message(body: Vec<u8>) -> Frame {
        Frame::Message {
            topic: "notes".to_owned(),
            sender: [7; 32],
            seq: 3,
            hlc: Hlc {
                physical_ms: 10,
                logical: 1,
                node: 7,
            },
            body,
        }
    }

    /// One frame of each kind, on `topic`, the message carrying `body`.
    fn every_kind(topic: &str, body: &[u8]) -> [Frame; 5] {
        [
            Frame::Hello { version: VERSION },
            Frame::Subscribe {
                topic: topic.to_owned(),
                cursors: vec![Cursor {
                    sender: [1; 32],
                    seq: 9,
                }],
            },
            message(body.to_vec()),
            Frame::Floor {
                topic: topic.to_owned(),
                seq: 4,
            },
            Frame::Unsubscribe {
                topic: topic.to_owned(),
            },
        ]
    }

    #[tokio::test]
    async fn frames_round_trip_through_a_stream() {
        let frames = every_kind("notes", b"hi");
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = bytes.as_slice();
        for frame in &frames {
            let read = read_frame(&mut reader, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(read.as_ref(), Some(frame));
        }
        assert!(
            read_frame(&mut reader, Duration::from_secs(1))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_length_over_the_cap_is_refused_before_reading_the_body() {
        let bytes = u32::MAX.to_be_bytes();
        let refused = read_frame(&mut bytes.as_slice(), Duration::from_secs(1)).await;
        assert!(
            matches!(refused, Err(DecodeError::TooLong { .. })),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_frame_cut_short_is_truncated() {
        let bytes = message(b"hello".to_vec()).encode();
        let cut = &bytes[..bytes.len() - 1];
        let refused = read_frame(&mut &cut[..], Duration::from_secs(1)).await;
        assert!(
            matches!(refused, Err(DecodeError::Truncated)),
            "{refused:?}"
        );
    }

    #[test]
    fn caps_are_checked_after_decoding() {
        let too_big = message(vec![0; MAX_MESSAGE_LEN + 1]).encode();
        assert!(matches!(
            Frame::decode(&too_big[4..]),
            Err(DecodeError::OutOfBounds(_))
        ));
        let empty_topic = Frame::Unsubscribe {
            topic: String::new(),
        }
        .encode();
        assert!(matches!(
            Frame::decode(&empty_topic[4..]),
            Err(DecodeError::OutOfBounds(_))
        ));
        let many = Frame::Subscribe {
            topic: "t".to_owned(),
            cursors: vec![
                Cursor {
                    sender: [0; 32],
                    seq: 0
                };
                MAX_CURSORS + 1
            ],
        }
        .encode();
        assert!(matches!(
            Frame::decode(&many[4..]),
            Err(DecodeError::OutOfBounds(_))
        ));
        let mut trailing = message(b"x".to_vec()).encode();
        trailing.push(0);
        assert!(matches!(
            Frame::decode(&trailing[4..]),
            Err(DecodeError::Malformed)
        ));
    }

    /// The fuzz target's seeds (`fuzz/seeds/channel_frame`): one stream of every frame kind,
    /// and each frame alone. `TETHER_BLESS=1` writes them; otherwise they must be current.
    #[test]
    fn fuzz_seeds_are_current() {
        let frames = every_kind("kitchen", b"out of milk");
        let mut seeds: Vec<(String, Vec<u8>)> = frames
            .iter()
            .enumerate()
            .map(|(i, frame)| (format!("frame_{i}.bin"), frame.encode()))
            .collect();
        seeds.push((
            "stream.bin".to_owned(),
            frames.iter().flat_map(Frame::encode).collect(),
        ));
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/channel_frame");
        let bless = std::env::var_os("TETHER_BLESS").is_some();
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (name, bytes) in seeds {
            let path = dir.join(name);
            if bless {
                std::fs::write(&path, &bytes).unwrap();
            }
            assert_eq!(
                std::fs::read(&path).ok(),
                Some(bytes),
                "{} is stale; regenerate with TETHER_BLESS=1 cargo test -p tether-channels --lib fuzz_seeds",
                path.display()
            );
        }
    }

    #[test]
    fn the_largest_message_fits_in_a_frame() {
        let frame = message(vec![0xff; MAX_MESSAGE_LEN]);
        let bytes = frame.encode();
        assert!(bytes.len() - 4 <= MAX_FRAME_LEN);
        assert_eq!(Frame::decode(&bytes[4..]).unwrap(), frame);
    }
}
