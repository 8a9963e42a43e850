//! Sans-IO framing: turn any split of a byte stream into frames, and frames into bytes.
//!
//! The decoder takes bytes from the caller's slice only as far as the current frame needs, so its
//! own memory is one frame at most, however much the caller hands it and however the stream is
//! split. Its allocation for a frame is made after the header has been checked against the cap.

use crate::frame::{
    EncodeError, FRAME_HEADER_LEN, Frame, FrameError, FrameKind, header_bytes, parse_header,
};

/// Incremental frame decoder.
///
/// ```
/// use tether_wire::{ControlMessage, FrameDecoder, FrameEncoder, NetworkMessage};
///
/// let mut encoder = FrameEncoder::new();
/// encoder.push_control(&ControlMessage::new(NetworkMessage::Ack)).unwrap();
/// let bytes = encoder.take();
///
/// let mut decoder = FrameDecoder::new();
/// let (first, second) = bytes.split_at(3); // any split works
/// let mut input = first;
/// assert!(decoder.decode(&mut input).unwrap().is_none());
/// let mut input = second;
/// let frame = decoder.decode(&mut input).unwrap().unwrap();
/// assert_eq!(ControlMessage::decode(frame.payload()).unwrap().message, NetworkMessage::Ack);
/// decoder.finish().unwrap();
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// Collecting the five header bytes.
    #[default]
    Header,
    /// `filled` header bytes so far.
    PartialHeader {
        header: [u8; FRAME_HEADER_LEN],
        filled: usize,
    },
    /// Collecting `len` payload bytes.
    Payload {
        kind: FrameKind,
        len: usize,
        payload: Vec<u8>,
    },
    /// An error was returned; nothing more is decoded.
    Failed,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from the front of `input` and returns the next whole frame, or `None` once
    /// `input` is used up without completing one. Call it again while `input` is not empty.
    ///
    /// After an error every later call returns [`FrameError::Poisoned`]: framing cannot resync.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        let result = self.step(input);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, input: &mut &[u8]) -> Result<Option<Frame>, FrameError> {
        loop {
            match &mut self.state {
                State::Failed => return Err(FrameError::Poisoned),
                State::Header => {
                    // Fast path: the whole header is in the input.
                    if let Some((header, rest)) = input.split_first_chunk::<FRAME_HEADER_LEN>() {
                        *input = rest;
                        self.start_payload(*header)?;
                    } else if input.is_empty() {
                        return Ok(None);
                    } else {
                        let mut header = [0; FRAME_HEADER_LEN];
                        let filled = take_into(&mut header, 0, input);
                        self.state = State::PartialHeader { header, filled };
                        return Ok(None);
                    }
                }
                State::PartialHeader { header, filled } => {
                    *filled = take_into(header, *filled, input);
                    if *filled < FRAME_HEADER_LEN {
                        return Ok(None);
                    }
                    let header = *header;
                    self.start_payload(header)?;
                }
                State::Payload { kind, len, payload } => {
                    let wanted = *len - payload.len();
                    let (now, rest) = input.split_at(wanted.min(input.len()));
                    payload.extend_from_slice(now);
                    *input = rest;
                    if payload.len() < *len {
                        return Ok(None);
                    }
                    let frame = Frame::from_parts(*kind, std::mem::take(payload));
                    self.state = State::Header;
                    return Ok(Some(frame));
                }
            }
        }
    }

    /// Checks a complete header and gets ready for its payload.
    fn start_payload(&mut self, header: [u8; FRAME_HEADER_LEN]) -> Result<(), FrameError> {
        let (kind, len) = parse_header(header)?;
        // `len` is at most the kind's cap (checked above), so this allocation is bounded.
        self.state = State::Payload {
            kind,
            len,
            payload: Vec::with_capacity(len),
        };
        Ok(())
    }

    /// Whether the decoder is between frames (so the stream may end here).
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Header)
    }

    /// Bytes of an unfinished frame held so far, header included.
    pub fn buffered_len(&self) -> usize {
        match &self.state {
            State::Header | State::Failed => 0,
            State::PartialHeader { filled, .. } => *filled,
            State::Payload { payload, .. } => FRAME_HEADER_LEN + payload.len(),
        }
    }

    /// Call when the stream ends: fails with [`FrameError::Truncated`] if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        match self.state {
            State::Header => Ok(()),
            State::Failed => Err(FrameError::Poisoned),
            State::PartialHeader { .. } | State::Payload { .. } => Err(FrameError::Truncated {
                received: self.buffered_len(),
            }),
        }
    }
}

/// Copies from the front of `input` into `header[filled..]`; returns the new fill level.
fn take_into(header: &mut [u8; FRAME_HEADER_LEN], filled: usize, input: &mut &[u8]) -> usize {
    let space = header.get_mut(filled..).unwrap_or_default();
    let n = space.len().min(input.len());
    let (now, rest) = input.split_at(n);
    if let Some(dst) = space.get_mut(..n) {
        dst.copy_from_slice(now);
    }
    *input = rest;
    filled + n
}

/// Collects encoded frames in a buffer for the caller to write out.
///
/// ```
/// use tether_wire::{ControlMessage, FrameEncoder, Ping};
///
/// let mut encoder = FrameEncoder::new();
/// encoder.push_control(&ControlMessage::new(Ping { timestamp_ms: 1 })).unwrap();
/// let bytes: Vec<u8> = encoder.take(); // write these to the stream
/// assert_eq!(&bytes[..5], &[0, 0, 0, 42, 0x01]);
/// ```
#[derive(Debug, Default)]
pub struct FrameEncoder {
    buf: Vec<u8>,
}

impl FrameEncoder {
    /// An empty encoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a frame.
    pub fn push(&mut self, frame: &Frame) {
        frame.encode_into(&mut self.buf);
    }

    /// Appends a frame of `kind` whose payload `write` appends to the buffer in place. On error,
    /// or when the payload is over the kind's cap, the buffer is unchanged.
    pub(crate) fn push_with(
        &mut self,
        kind: FrameKind,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        if let Err(err) = write(&mut self.buf) {
            self.buf.truncate(start);
            return Err(err);
        }
        let len = self.buf.len() - start - FRAME_HEADER_LEN;
        let cap = kind.max_payload_len();
        if len > cap {
            self.buf.truncate(start);
            return Err(EncodeError::TooLarge { kind, len, cap });
        }
        if let Some(header) = self.buf.get_mut(start..start + FRAME_HEADER_LEN) {
            header.copy_from_slice(&header_bytes(kind, len));
        }
        Ok(())
    }

    /// The bytes encoded so far.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the bytes encoded so far, leaving the encoder empty.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Drops the first `n` bytes, e.g. after a partial write.
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(..n.min(self.buf.len()));
    }

    /// Whether no bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ControlMessage;
    use crate::message::{NetworkMessage, Ping};

    fn sample_stream() -> (Vec<Frame>, Vec<u8>) {
        let frames = vec![
            Frame::control(&ControlMessage::new(Ping { timestamp_ms: 1 })).unwrap(),
            Frame::new(FrameKind::Data, vec![9; 100]).unwrap(),
            Frame::new(FrameKind::SealedControl, vec![]).unwrap(),
            Frame::control(&ControlMessage::new(NetworkMessage::Ack)).unwrap(),
        ];
        let mut encoder = FrameEncoder::new();
        frames.iter().for_each(|frame| encoder.push(frame));
        (frames, encoder.take())
    }

    fn decode_all(decoder: &mut FrameDecoder, mut input: &[u8]) -> Vec<Frame> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut input).unwrap() {
            out.push(frame);
        }
        assert!(input.is_empty());
        out
    }

    #[test]
    fn byte_at_a_time_and_all_at_once_agree() {
        let (frames, bytes) = sample_stream();
        let mut decoder = FrameDecoder::new();
        assert_eq!(decode_all(&mut decoder, &bytes), frames);
        decoder.finish().unwrap();

        let mut decoder = FrameDecoder::new();
        let mut got = Vec::new();
        for byte in bytes.chunks(1) {
            got.extend(decode_all(&mut decoder, byte));
            assert!(decoder.buffered_len() <= FRAME_HEADER_LEN + 100);
        }
        assert_eq!(got, frames);
        decoder.finish().unwrap();
    }

    #[test]
    fn truncated_stream_reported_at_finish() {
        let (_, bytes) = sample_stream();
        let mut decoder = FrameDecoder::new();
        decode_all(&mut decoder, &bytes[..bytes.len() - 1]);
        assert!(!decoder.is_idle());
        assert!(matches!(
            decoder.finish(),
            Err(FrameError::Truncated { .. })
        ));
    }

    #[test]
    fn decoder_is_poisoned_after_an_error() {
        let mut decoder = FrameDecoder::new();
        let mut input = &[0u8, 0, 0, 0, 1, 0, 0, 0, 1, 1][..];
        assert_eq!(decoder.decode(&mut input), Err(FrameError::Empty));
        assert_eq!(decoder.decode(&mut input), Err(FrameError::Poisoned));
        assert_eq!(decoder.finish(), Err(FrameError::Poisoned));
    }

    #[test]
    fn push_control_matches_frame_control() {
        let message = ControlMessage::new(Ping { timestamp_ms: 42 });
        let mut a = FrameEncoder::new();
        a.push_control(&message).unwrap();
        let mut b = FrameEncoder::new();
        b.push(&Frame::control(&message).unwrap());
        assert_eq!(a.bytes(), b.bytes());
        a.consume(3);
        assert_eq!(a.bytes(), &b.bytes()[3..]);
    }
}
