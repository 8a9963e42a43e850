//! Tether's wire protocol.
#![doc = "stub"]

mod codec;
mod content_hash;
mod control;
mod data;
mod envelope;
mod error;
mod frame;
mod hlc;
mod io;
pub mod limits;
mod message;

pub use codec::{FrameDecoder, FrameEncoder};
pub use content_hash::ContentHash;
pub use control::{ControlMessage, RequestId};
pub use data::{DATA_HEADER_LEN, DataChunk};
pub use envelope::{COUNTER_LEN, SEAL_OVERHEAD};
pub use error::{EncodeError, FrameError, HlcError, LimitError, MessageError, ReadError};
pub use frame::{FRAME_HEADER_LEN, Frame, FrameKind, MAX_PAYLOAD_LEN};
pub use hlc::{Hlc, MAX_DRIFT_MS};
pub use io::{read_frame, write_frame};
pub use message::{
    ErrorCode, ErrorReply, FileRequest, FileResponse, LibraryAnnounce, LibraryInfo, LibraryRequest,
    MessageKind, NetworkMessage, Ping, Pong, SyncEntry, SyncRequest, SyncResponse,
};
