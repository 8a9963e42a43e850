//! The job protocol's messages and their framing: a `u32` big-endian length, then the message
//! in postcard. Every length is checked before anything is allocated, every read has a
//! deadline, and a decoded message is checked against its caps before it is used.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The job protocol's ALPN (its version is in the name).
pub const JOBS_ALPN: &[u8] = b"tether-jobs/1";

/// The most bytes of arguments a submission may carry (a worker may allow fewer per job).
pub const MAX_ARGS_LEN: usize = 16 * 1024;
/// The longest job name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The longest free text (a refusal's or failure's message, a progress note), in bytes.
pub const MAX_TEXT_LEN: usize = 1024;
/// The largest encoded message: a submission with the longest arguments and name, and room
/// for its fixed fields.
pub const MAX_MESSAGE_LEN: usize = MAX_ARGS_LEN + MAX_NAME_LEN + 64;

/// Why a worker refused a submission before running anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefusalCode {
    /// No handler is registered under that name.
    UnknownJob,
    /// This device may not submit that job.
    NotAllowed,
    /// As many jobs as allowed run already (per name, per device or in all).
    Busy,
    /// The arguments or inputs exceed the job's caps.
    TooLarge,
    /// The worker is shutting down.
    ShuttingDown,
}

/// How a job that was accepted ended without outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FailureCode {
    /// The handler returned an error.
    Handler,
    /// The job ran past its deadline.
    TimedOut,
    /// The submitter cancelled it.
    Cancelled,
    /// Receiving the inputs or sending the outputs failed.
    Transfer,
    /// Something failed on the worker itself (its disk, a task).
    Internal,
}

/// A job submission: the first message on a job connection's control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submit {
    /// The job's name, as the worker registered it.
    pub name: String,
    /// The job's arguments, opaque to the protocol.
    pub args: Vec<u8>,
    /// How many entries (files and directories) the inputs' manifest will hold.
    pub input_entries: u64,
    /// The inputs' file bytes, checked before the transfer starts.
    pub input_bytes: u64,
    /// The longest the submitter lets the job run, in milliseconds.
    pub timeout_ms: u64,
}

/// A handler's report of how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all (0 when unknown).
    pub total: u64,
    /// A short note, e.g. the file being worked on.
    pub note: String,
}

/// A message of the job protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// Submitter: run this job.
    Submit(Submit),
    /// Worker: accepted; send the inputs (if any).
    Accepted,
    /// Worker: refused, nothing ran.
    Refused {
        /// Why.
        code: RefusalCode,
        /// For the person on the other device.
        message: String,
    },
    /// Worker: the handler's progress.
    Progress(Progress),
    /// Either side: still here (sent every [`HEARTBEAT_INTERVAL`]).
    Heartbeat,
    /// Submitter: stop the job.
    Cancel,
    /// Worker: the handler succeeded; the outputs follow on a stream of their own.
    Finished {
        /// Entries in the outputs' manifest (0: no output stream follows).
        entries: u64,
        /// The outputs' file bytes.
        bytes: u64,
    },
    /// Worker: the job ended without outputs.
    Failed {
        /// How.
        code: FailureCode,
        /// For the person on the other device.
        message: String,
    },
}

/// How often each side says it is still there while a job runs.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// What is wrong with bytes a peer sent.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix exceeds [`MAX_MESSAGE_LEN`].
    #[error("a message of {0} bytes is over the cap")]
    TooLong(u64),
    /// The bytes are not a message.
    #[error("not a job protocol message")]
    Malformed,
    /// A field is over its cap.
    #[error("the {0} is over its cap")]
    FieldTooLong(&'static str),
}

/// Decodes one message body (without its length prefix) and checks its caps.
pub fn decode_message(bytes: &[u8]) -> Result<Message, DecodeError> {
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong(bytes.len() as u64));
    }
    let message: Message = postcard::from_bytes(bytes).map_err(|_| DecodeError::Malformed)?;
    check_caps(&message)?;
    Ok(message)
}

fn check_caps(message: &Message) -> Result<(), DecodeError> {
    match message {
        Message::Submit(submit) if submit.name.len() > MAX_NAME_LEN => {
            Err(DecodeError::FieldTooLong("job name"))
        }
        Message::Submit(submit) if submit.args.len() > MAX_ARGS_LEN => {
            Err(DecodeError::FieldTooLong("arguments"))
        }
        Message::Refused { message, .. } | Message::Failed { message, .. }
            if message.len() > MAX_TEXT_LEN =>
        {
            Err(DecodeError::FieldTooLong("message"))
        }
        Message::Progress(progress) if progress.note.len() > MAX_TEXT_LEN => {
            Err(DecodeError::FieldTooLong("progress note"))
        }
        _ => Ok(()),
    }
}

/// Encodes a message with its length prefix. Free text is cut to [`MAX_TEXT_LEN`] first; a
/// submission over its caps is refused.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, DecodeError> {
    let message = cut_text(message.clone());
    check_caps(&message)?;
    let body = postcard::to_allocvec(&message).map_err(|_| DecodeError::Malformed)?;
    let len = u32::try_from(body.len()).map_err(|_| DecodeError::TooLong(body.len() as u64))?;
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Cuts `text` to at most [`MAX_TEXT_LEN`] bytes at a character boundary.
pub(crate) fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_LEN {
        let mut end = MAX_TEXT_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn cut_text(message: Message) -> Message {
    match message {
        Message::Refused { code, message } => Message::Refused {
            code,
            message: cut(message),
        },
        Message::Failed { code, message } => Message::Failed {
            code,
            message: cut(message),
        },
        Message::Progress(Progress { done, total, note }) => Message::Progress(Progress {
            done,
            total,
            note: cut(note),
        }),
        other => other,
    }
}

/// Why reading a message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing arrived within the deadline.
    #[error("no message within {0:?}")]
    Silent(Duration),
    /// The stream ended or failed.
    #[error("stream failed")]
    Stream(#[source] std::io::Error),
    /// The peer sent something that is not a message.
    #[error("bad message")]
    Decode(#[from] DecodeError),
}

/// Reads one message, all of it within `deadline`.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(
    reader: &mut R,
    deadline: Duration,
) -> Result<Message, ReadError> {
    tokio::time::timeout(deadline, read_unbounded(reader))
        .await
        .map_err(|_| ReadError::Silent(deadline))?
}

async fn read_unbounded<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Message, ReadError> {
    let mut prefix = [0u8; 4];
    reader
        .read_exact(&mut prefix)
        .await
        .map_err(ReadError::Stream)?;
    let len = u32::from_be_bytes(prefix);
    let len = usize::try_from(len).map_err(|_| DecodeError::TooLong(u64::from(len)))?;
    if len > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLong(len as u64).into());
    }
    let mut body = vec![0u8; len];
    reader
        .read_exact(&mut body)
        .await
        .map_err(ReadError::Stream)?;
    Ok(decode_message(&body)?)
}

/// Writes one message, within `deadline`.
pub(crate) async fn write_message<W: AsyncWrite + Unpin>(
    writer: &mut W,
    message: &Message,
    deadline: Duration,
) -> std::io::Result<()> {
    let bytes = encode_message(message).map_err(std::io::Error::other)?;
    let write = async {
        writer.write_all(&bytes).await?;
        writer.flush().await
    };
    tokio::time::timeout(deadline, write)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn every_kind() -> Vec<Message> {
        vec![
            Message::Submit(Submit {
                name: "blake3-tree".into(),
                args: vec![1, 2, 3],
                input_entries: 4,
                input_bytes: 5,
                timeout_ms: 6,
            }),
            Message::Accepted,
            Message::Refused {
                code: RefusalCode::NotAllowed,
                message: "no".into(),
            },
            Message::Progress(Progress {
                done: 1,
                total: 2,
                note: "a.txt".into(),
            }),
            Message::Heartbeat,
            Message::Cancel,
            Message::Finished {
                entries: 1,
                bytes: 2,
            },
            Message::Failed {
                code: FailureCode::Handler,
                message: "bad input".into(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for message in every_kind() {
            let bytes = encode_message(&message).unwrap();
            let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(len, bytes.len() - 4);
            assert_eq!(decode_message(&bytes[4..]).unwrap(), message);
        }
    }

    #[tokio::test]
    async fn a_length_over_the_cap_is_refused_before_reading_the_body() {
        let prefix = u32::try_from(MAX_MESSAGE_LEN + 1).unwrap().to_be_bytes();
        let mut stream: &[u8] = &prefix;
        let error = read_message(&mut stream, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(error, ReadError::Decode(DecodeError::TooLong(_))));
    }

    #[tokio::test]
    async fn a_peer_that_stops_mid_message_is_silent_not_waited_for() {
        let (mut ours, mut theirs) = tokio::io::duplex(64);
        theirs.write_all(&[0, 0, 0, 9, 1]).await.unwrap();
        tokio::time::pause();
        let error = read_message(&mut ours, Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, ReadError::Silent(_)), "{error:?}");
    }

    #[test]
    fn over_long_fields_are_refused_when_decoded_and_cut_when_encoded() {
        let submit = Message::Submit(Submit {
            name: "x".repeat(MAX_NAME_LEN + 1),
            args: Vec::new(),
            input_entries: 0,
            input_bytes: 0,
            timeout_ms: 0,
        });
        let body = postcard::to_allocvec(&submit).unwrap();
        assert_eq!(
            decode_message(&body),
            Err(DecodeError::FieldTooLong("job name"))
        );
        assert!(encode_message(&submit).is_err());
        let failed = Message::Failed {
            code: FailureCode::Handler,
            message: "é".repeat(MAX_TEXT_LEN),
        };
        let bytes = encode_message(&failed).unwrap();
        match decode_message(&bytes[4..]).unwrap() {
            Message::Failed { message, .. } => assert!(message.len() <= MAX_TEXT_LEN),
            other => panic!("{other:?}"),
        }
        let body = postcard::to_allocvec(&failed).unwrap();
        assert_eq!(
            decode_message(&body),
            Err(DecodeError::FieldTooLong("message"))
        );
    }

    /// The fuzz target `job_message`'s seeds are one body of every message kind; run with
    /// `TETHER_BLESS=1` to write them after a change to the messages.
    #[test]
    fn the_fuzz_seeds_are_the_current_encodings() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/job_message");
        let bless = std::env::var_os("TETHER_BLESS").is_some();
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
        }
        for (i, message) in every_kind().iter().enumerate() {
            let body = encode_message(message).unwrap().split_off(4);
            let path = dir.join(format!("message-{i}"));
            if bless {
                std::fs::write(&path, &body).unwrap();
            } else {
                let seed = std::fs::read(&path).unwrap_or_default();
                assert_eq!(
                    seed,
                    body,
                    "{} is stale: run with TETHER_BLESS=1",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn garbage_is_a_typed_error() {
        assert_eq!(decode_message(&[0xff, 0xff]), Err(DecodeError::Malformed));
        assert_eq!(decode_message(&[]), Err(DecodeError::Malformed));
    }
}
