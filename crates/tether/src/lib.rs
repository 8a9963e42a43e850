//! Tether: pair your devices once with a short word code, then talk directly.
//!
//! This facade is all an application needs. [`NetworkingService`] composes the lower crates:
//! the device key and paired devices on disk (tether-registry), an iroh endpoint whose id is
//! the device key (tether-iroh), pairing by word code or ticket (tether-pairing), and encrypted
//! messages (tether-crypto session keys, tether-wire frames).
//!
//! * **Pairing.** One device calls [`NetworkingService::start_pairing_as_initiator`] and shows
//!   the code; the other calls [`NetworkingService::join_pairing`] with it. The code's first
//!   word is announced for discovery; the rest is proved with a PAKE and never leaves either
//!   device. Both sides then show the same verification code.
//! * **The gate.** A connection on any ALPN but `tether/pairing/1` is closed right after its
//!   TLS handshake, before any handler runs, unless the peer's proven key belongs to a paired,
//!   trusted, non-revoked device (close codes in [`gate`]).
//! * **Messages.** Each connection to a paired device runs a session handshake (fresh X25519
//!   keys, both identities' signatures, the pairing secret) and seals every message. Every
//!   [`DeviceHandle::send_message`] is a request that gets its answer or a typed error
//!   ([`NetworkError::Rejected`] for an `Error` reply, [`NetworkError::TimedOut`]): the
//!   service answers `Ping` itself, acknowledges a `LibraryAnnounce` (and hands it to the app
//!   as [`NetworkEvent::MessageReceived`]) and a short text ([`NetworkingService::send_text`],
//!   at most 64 KiB, [`NetworkEvent::TextReceived`]), and passes a `SyncRequest` or `LibraryRequest` to
//!   the app's [`RequestHandler`] (without one the answer is an `Unsupported` error).
//! * **Connections.** One pooled connection per device, dialled on demand, with keep-alive
//!   pings, dead-peer detection, and reconnection when a paired device reappears. Its
//!   [`ConnectionState`] (connecting, connected, idle, closing, closed) is on the
//!   [`DeviceHandle`] and in [`NetworkEvent::ConnectionStateChanged`]; a connection without
//!   application traffic for [`NetworkingConfig::idle_timeout`] is closed (keep-alive pings do
//!   not count) and the next message dials again.
//! * **Consent.** Paired is not "may write here": every incoming transfer goes to the app's
//!   [`TransferConsent`] ([`NetworkingConfig::consent`]) with a [`TransferOffer`] (device,
//!   file count, size, top-level names) before anything is written; it accepts, accepts into
//!   a directory of its choosing, or declines with a reason the sender sees. The default,
//!   [`MarkedDevicesOnly`], accepts only from devices marked with
//!   [`NetworkingService::set_auto_accept`].
//! * **Pulls.** A device may ask a paired one for an entry by id
//!   ([`DeviceHandle::request_file`]); the sharer's [`ShareProvider`]
//!   ([`NetworkingConfig::share_provider`]) says, per requesting device, which path an id names,
//!   or refuses ([`NetworkError::NotShared`]; the default, [`ShareNothing`], refuses all). The
//!   file arrives verified and resumable, as a push's would.
//! * **History.** Every transfer, both ways, pushes and pulls, verified or not, is recorded
//!   on both devices ([`NetworkingService::transfer_history`]: newest first, by device, the
//!   newest [`MAX_HISTORY`] kept).
//! * **Deliver when online.** [`NetworkingService::queue_send`] keeps a send in the store's
//!   outbox (at most [`MAX_OUTBOX`]) and the running service delivers it when the device is
//!   reachable, across restarts of either side ([`NetworkingService::outbox`],
//!   [`NetworkingService::cancel_queued`], [`NetworkEvent::QueuedSendDelivered`]).
//! * **Extensions.** [`NetworkingService::register_protocol`] serves a third party's
//!   [`NetworkProtocol`] on its own ALPN to paired devices only.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tether::NetworkError> {
//! use tether::{NetworkingConfig, NetworkingService, NetworkMessage, Ping};
//!
//! // Throwaway devices: their keys may stay unprotected (a kept device needs a passphrase).
//! let config = |dir| NetworkingConfig::local_only(dir).with_insecure_key_file();
//! let laptop = NetworkingService::start(config("/tmp/laptop")).await?;
//! let phone = NetworkingService::start(config("/tmp/phone")).await?;
//!
//! let mut invite = laptop.start_pairing_as_initiator()?;
//! let joined = phone.join_pairing(&invite.code).await?;
//! let paired = invite.paired().await?;
//! assert_eq!(joined.verification_code, paired.verification_code);
//!
//! let reply = phone
//!     .device(laptop.node_id())?
//!     .send_message(NetworkMessage::Ping(Ping { timestamp_ms: 1 }))
//!     .await?;
//! # let _ = reply;
//! # Ok(()) }
//! ```

mod bandwidth;
mod builder;
mod close;
mod config;
mod consent;
mod error;
mod event;
pub mod gate;
mod history;
mod link;
mod lobby;
mod outbox;
mod pairing;
mod rate;
mod request;
mod retry;
mod service;
mod share;
mod sightings;
mod storage;
mod transfer;

pub use bandwidth::QuotaExceeded;
pub use builder::Builder;
pub use close::{PAIRING_ALPN, SYNC_ALPN};
pub use config::{DEFAULT_IDLE_TIMEOUT, NetworkingConfig};
pub use consent::{MarkedDevicesOnly, NOT_MARKED, TransferConsent, TransferOffer};
pub use error::{CodeEnded, NetworkError};
pub use event::{ConnectionState, EventStream, NetworkEvent, PairingStage, PullEvent};
pub use history::{MAX_HISTORY, TransferOutcome, TransferRecord};
pub use outbox::{MAX_OUTBOX, OutboxEntry, OutboxId, OutboxState};
pub use pairing::{PairedDevice, PendingPairing};
pub use rate::MessageRate;
pub use request::RequestHandler;
pub use service::{
    DeviceHandle, DeviceStatus, Diagnostics, NetworkingService, PULL_ANSWER_TIMEOUT, PairingInvite,
    PullOptions, RelayState, TransferQuotas,
};
pub use share::{MAX_PULLS_PER_DEVICE, ShareNothing, ShareProvider, SharedEntry};
pub use tether_transfer::{
    AbortCode, Collected, DEFAULT_LEFTOVER_IDLE, Decision, Direction as TransferDirection,
    FileProgress, Leftover, Leftovers, MAX_REASON_LEN, PathKind as TransferPathKind, Progress,
    Reason as LeftoverReason, Reserve, TransferCipher, TransferError, TransferEvent,
    TransferReport, Waiting,
};
pub use transfer::{TransferHandle, TransferOptions, lanes_for_round_trip};
/// Files as chunks: the 256 KiB chunks and per-chunk BLAKE3 hashes transfers verify with, for a
/// protocol that serves or checks file bytes the same way (each chunk's hash is a subtree of the
/// file's BLAKE3 tree, so the chunk hashes add up to the file's hash).
pub mod chunks {
    pub use tether_transfer::{
        CHUNK_SIZE, FileHashes, chunk_count, chunk_hash, chunk_len, chunk_offset, file_hashes,
        root_hash,
    };
}
/// The entry id a path gets by default (a hash of its bytes), for apps whose
/// [`ShareProvider`] names entries by their paths.
pub use tether_transfer::entry_id;

pub use tether_identity::{
    DeviceId, DeviceInfo, DeviceName, DeviceNameError, DeviceType, ErrorChain, NodeId, error_chain,
};
/// Checks that error chains print each layer once; for tests.
#[doc(hidden)]
pub use tether_identity::{
    assert_no_repeated_layer, assert_no_repeated_segment, repeated_layer, repeated_segment,
};
pub use tether_iroh::{
    CongestionControl, ConnectionInfo, DhtConfig, DhtDiscovery, GatewayProtocols, GlobalDiscovery,
    GlobalDiscoveryConfig, InterfaceMulticast, Interfaces, LowestLatency, MDNS_GROUP,
    MulticastOutcome, NatStatus, NatType, PathKind, PeerAddr, PortMapping, QuicTuning, RelayConfig,
    TransportConfig, TrustedRoot, check_multicast, mdns_can_work,
};
pub use tether_pairing::{CodeError, InitiatorConfig, PairingCode, PairingError, TicketError};
pub use tether_protocol::{
    Connection, DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream, NetworkProtocol,
    PROTOCOL_SHUTDOWN_TIMEOUT, PairedPeer, ProtocolError, RecvStream, RelayCandidate,
    RelaySelector, SendStream, async_trait,
};
/// What this device keeps about a paired device ([`NetworkingService::paired_devices`],
/// [`DeviceHandle::info`]); [`PairedDevice`] is what a pairing returns.
pub use tether_registry::PairedDevice as StoredDevice;
pub use tether_registry::{
    Bandwidth, BandwidthAccount, BandwidthQuota, BandwidthUse, ByteSize, QuotaDirection,
    QuotaParseError, QuotaPeriod, UtcMinute,
};
pub use tether_registry::{
    ConnectionRefused, Device, DeviceState, DisconnectReason, KeyError, KeyManager, KeyOptions,
    KeyStorageKind, KeychainPolicy, NameSync, PassphrasePrompt, PassphrasePurpose, RegistryError,
    StateKind, StoreError, TrustLevel,
};
pub use tether_wire::{
    ContentHash, Encoding, ErrorCode, ErrorReply, FileRequest, FileResponse, Hlc, HlcError,
    LibraryAnnounce, LibraryInfo, LibraryRequest, MAX_DRIFT_MS, MessageKind, NameUpdate,
    NetworkMessage, Ping, Pong, SyncEntry, SyncRequest, SyncResponse, Text,
};
/// What one message may hold at most (entries per sync page, name and path lengths, the size
/// of a control message): an app sizes its pages by these.
pub mod limits {
    pub use tether_wire::limits::*;
}
/// Streams, for reading [`EventStream`] and writing a [`Discovery`] without another
/// dependency (futures-lite's, through n0-future).
pub use n0_future::stream;
pub use n0_future::{Stream, StreamExt};
/// A passphrase or other secret that is wiped from memory when dropped.
pub use zeroize::Zeroizing;
/// The errors inside a [`NetworkError`]'s chain, each nameable for an app to match on.
pub mod errors {
    pub use tether_iroh::{LoopbackDirError, LoopbackDirProblem, TransportError};
    pub use tether_pairing::{
        CodeError, Failure, MessageError, Misbehavior, PairingError, Refusal, TicketError,
        UsageError as PairingUsageError,
    };
    pub use tether_registry::{BoxedSource, KeyError, RegistryError, StoreError};
    pub use tether_transfer::{
        CipherError, DecodeError, LocalError, ManifestError, PathError, PeerError, TransferError,
        UsageError as TransferUsageError,
    };

    pub use tether_identity::IdentityError;
    pub use tether_wire::{EncodeError, LimitError, MessageError as WireMessageError};

    pub use crate::error::{CodeEnded, NetworkError, PeerSilent};
}

/// The lower-level types some of the facade's items mention (a registry state's connection,
/// the key manager's identity and storage key, a pairing code's slot): nameable, rarely needed.
pub mod detail {
    pub use tether_identity::{NetworkIdentity, Signature, SigningContext};
    pub use tether_iroh::{AdmitAll, ConnectionGate, Refusal as GateRefusal, Transport};
    pub use tether_pairing::{
        AbortReason, Credential, CredentialKind, MessageKind as PairingMessageKind, PairingTicket,
        Slot,
    };
    pub use tether_registry::{
        Argon2Params, BandwidthGrant, BandwidthRefusal, ConnectionInfo as RegistryConnection,
        ConnectionPath, PairingSessionId, StorageKey,
    };
    pub use tether_wire::FrameKind;
}
pub use tether_iroh::TransportError;

/// A relay server's URL.
pub use iroh::RelayUrl;
/// Ids of libraries and entries in messages.
pub use uuid::Uuid;

/// `docs/seed-api.md`: the seed's calls next to Tether's, each Tether block a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/seed-api.md")]
struct SeedApi;
