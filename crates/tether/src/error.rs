//! `NetworkError`: everything the service can report.

use tether_identity::NodeId;
use tether_transfer::{LocalError, TransferError};
use tokio::task::JoinError;
use tracing::error;

/// What went wrong in the networking service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetworkError {
    /// A connection could not be made.
    #[error("connection to {} failed: {reason}", .node.fmt_short())]
    ConnectionFailed {
        /// The device.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// A request got no answer in time.
    #[error("{what} timed out after {after:?}")]
    TimedOut {
        /// What timed out.
        what: &'static str,
        /// How long we waited.
        after: std::time::Duration,
    },
    /// The peer does not speak the protocol asked for.
    #[error("unknown protocol {alpn:?}")]
    UnknownProtocol {
        /// The ALPN.
        alpn: String,
    },
    /// The peer broke the protocol.
    #[error("protocol violation by {}: {reason}", .node.fmt_short())]
    ProtocolViolation {
        /// The device.
        node: NodeId,
        /// What it did.
        reason: String,
    },
    /// A signature or key confirmation did not verify.
    #[error("invalid signature from {}", .node.fmt_short())]
    InvalidSignature {
        /// The device.
        node: NodeId,
    },
    /// A sealed frame did not open.
    #[error("decryption failed on the connection to {}", .node.fmt_short())]
    DecryptionFailed {
        /// The device.
        node: NodeId,
    },
    /// The device is not paired with this one (or was unpaired).
    #[error("device {} is not paired", .0.fmt_short())]
    DeviceNotPaired(NodeId),
    /// No paired device goes by this name or device id.
    #[error("no paired device is called {0:?} or has that id")]
    UnknownDevice(String),
    /// The device turned the connection away: it does not count this device as paired (any
    /// more), or it blocked it. `code` is one of the close codes in [`crate::gate`].
    #[error("device {} refused the connection: {reason}", .node.fmt_short())]
    Refused {
        /// The device.
        node: NodeId,
        /// The QUIC close code it sent.
        code: u32,
        /// Its reason, as it sent it.
        reason: String,
    },
    /// The device answered the request with an `Error` reply (it has no handler for the
    /// request, the library does not exist, it is busy, ...). `message` is the device's own
    /// text: show it as the peer's words, not as trusted text.
    #[error("device {} answered with an error ({code:?}): {message:?}", .node.fmt_short())]
    Rejected {
        /// The device.
        node: NodeId,
        /// What went wrong, for programs.
        code: tether_wire::ErrorCode,
        /// What went wrong, in the device's words.
        message: String,
    },
    /// The device cannot be reached now.
    #[error("device {} is offline (no known address answered)", .0.fmt_short())]
    DeviceOffline(NodeId),
    /// Pairing failed.
    #[error("pairing failed")]
    Pairing(#[from] tether_pairing::PairingError),
    /// The pairing code was typed wrong (nothing was sent; fix it and try again).
    #[error(transparent)]
    Code(#[from] tether_pairing::CodeError),
    /// The pairing ticket could not be read.
    #[error(transparent)]
    Ticket(#[from] tether_pairing::TicketError),
    /// The pairing code (or ticket) this device showed ended without pairing.
    #[error("the pairing code ended")]
    CodeEnded(#[source] CodeEnded),
    /// No device on the network is waiting with this code.
    #[error(
        "no device is waiting for pairing code slot {slot:?} (is `tether pair` running on the other device?)"
    )]
    NoPairingPeer {
        /// The code's public word.
        slot: String,
    },
    /// More than one device claims the code's public word; pick one by node id.
    #[error("{count} devices are waiting with the word {slot:?}; ask for a new code")]
    AmbiguousPairingPeer {
        /// The code's public word.
        slot: String,
        /// How many claim it.
        count: usize,
    },
    /// The device key or its storage failed.
    #[error(transparent)]
    Keys(#[from] tether_registry::KeyError),
    /// The device registry failed.
    #[error(transparent)]
    Store(#[from] tether_registry::StoreError),
    /// A registry operation was refused.
    #[error(transparent)]
    Registry(#[from] tether_registry::RegistryError),
    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] tether_iroh::TransportError),
    /// A local file operation failed.
    #[error("{path}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The caller used the API wrongly.
    #[error("{0}")]
    Usage(String),
    /// A text to send is longer than the protocol takes; nothing was sent.
    #[error("the text is {len} bytes; at most {max} can be sent")]
    TextTooLong {
        /// Its length in bytes (UTF-8).
        len: usize,
        /// The most that can be sent: [`crate::limits::MAX_TEXT_LEN`].
        max: usize,
    },
    /// The device asked for an entry refused it: it shares no entry with that id with this
    /// device (or nothing at all). It opened and read nothing.
    #[error("entry {entry_id} is not shared with this device")]
    NotShared {
        /// The entry asked for.
        entry_id: uuid::Uuid,
    },
    /// A transfer would pass a paired device's bandwidth quota and was refused before it
    /// started, or reached it part-way and stopped (the receiver keeps what it verified:
    /// sending again after the reset, or after the quota is raised, resumes).
    #[error(transparent)]
    BandwidthQuota(#[from] crate::QuotaExceeded),
    /// A transfer failed (the receiver keeps what it verified, for a resume).
    #[error("transfer failed")]
    Transfer(#[source] TransferError),
    /// A task of the service or of a transfer panicked: a bug in Tether, not the device's or
    /// the network's doing. (A transfer keeps what the receiver verified, for a resume.)
    #[error("internal error: {what} panicked ({message}); this is a bug in Tether")]
    Panicked {
        /// Which task: "the transfer task", "a send lane", ...
        what: &'static str,
        /// The panic's message.
        message: String,
    },
    /// The service has shut down.
    #[error("the service is shut down")]
    Shutdown,
    /// The data directory belongs to another device id than the one the app gave.
    #[error("the data directory belongs to device {stored}, not to {given}")]
    DeviceIdMismatch {
        /// The id stored in the data directory.
        stored: tether_identity::DeviceId,
        /// The id the app gave.
        given: tether_identity::DeviceId,
    },
}

/// The peer sent nothing, not even the answer to a keep-alive ping, while a transfer used the
/// link: it died (killed, with no close frame) or the path to it was cut, and this side closed
/// the connection. It is the cause of the transfer's [`TransferError::Link`] (an `io::Error`
/// of kind `TimedOut`): resumable, like any lost link, once the device is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the peer went silent: nothing heard for {:.1} s, a keep-alive ping unanswered",
    .silent_for.as_secs_f32()
)]
#[non_exhaustive]
pub struct PeerSilent {
    /// How long nothing had come from the peer on the link when the transfer ended.
    pub silent_for: std::time::Duration,
}

/// Why a pairing code (or ticket) this device showed ended without pairing anyone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeEnded {
    /// Its lifetime ran out.
    #[error("it expired")]
    Expired,
    /// [`crate::NetworkingService::cancel_pairing`] withdrew it.
    #[error("it was cancelled")]
    Cancelled,
    /// A new code took its place (one code is shown at a time).
    #[error("a new code replaced it")]
    Replaced,
    /// A device paired with it (through a pending pairing this invite handed out).
    #[error("a device paired with it")]
    Used,
    /// A pairing attempt with it failed and used it up (a wrong guess burns a code).
    #[error("an attempt with it failed and used it up: {reason}")]
    Failed {
        /// What the attempt ended with.
        reason: String,
    },
}

impl NetworkError {
    /// What a task that did not finish means, logged with the panic's message: it panicked,
    /// or it was cancelled because the runtime is shutting down. `what` names the task.
    pub(crate) fn task_failed(what: &'static str, error: JoinError) -> Self {
        match error.try_into_panic() {
            Ok(payload) => NetworkError::Panicked {
                what,
                message: logged_panic(what, payload.as_ref()),
            },
            Err(_) => NetworkError::Shutdown,
        }
    }

    /// The profile's errors as the facade reports them: a file that cannot be read, parsed or
    /// written is [`NetworkError::Io`] naming it; another device id is
    /// [`NetworkError::DeviceIdMismatch`].
    pub(crate) fn from_profile(error: tether_registry::ProfileError) -> Self {
        use tether_registry::ProfileError;
        match error {
            ProfileError::Io { path, source, .. } => NetworkError::Io { path, source },
            ProfileError::Corrupt { path, source } => NetworkError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, source),
            },
            ProfileError::DeviceIdMismatch { stored, given } => {
                NetworkError::DeviceIdMismatch { stored, given }
            }
            other => NetworkError::Usage(tether_identity::error_chain(&other)),
        }
    }
}

/// Logs that the task `what` panicked with `payload`, and returns the panic's message.
pub(crate) fn logged_panic(what: &'static str, payload: &(dyn std::any::Any + Send)) -> String {
    let message = panic_message(payload);
    error!(task = what, %message, "a task panicked; this is a bug in Tether");
    message
}

/// A panic in one of the transfer's tasks is the facade's [`NetworkError::Panicked`], whatever
/// task it was in; a pull refused as not shared is [`NetworkError::NotShared`]; a bandwidth
/// quota reached part-way is [`NetworkError::BandwidthQuota`]; any other
/// transfer failure is [`NetworkError::Transfer`].
impl From<TransferError> for NetworkError {
    fn from(error: TransferError) -> Self {
        match error {
            TransferError::Peer(tether_transfer::PeerError::NotShared(entry_id)) => {
                NetworkError::NotShared { entry_id }
            }
            TransferError::Local(LocalError::Panicked { what, message }) => {
                NetworkError::Panicked { what, message }
            }
            other => match crate::bandwidth::reached(&other) {
                Some(reached) => NetworkError::BandwidthQuota(reached),
                None => NetworkError::Transfer(other),
            },
        }
    }
}

/// The text of a panic's payload (a `&str` or a `String`, as `panic!` makes it).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}

pub(crate) fn short(node: &NodeId) -> String {
    node.fmt_short()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicked_task_is_an_internal_error_with_its_message() {
        let joined = tokio::spawn(async { panic!("no {} here", "rate") }).await;
        let error =
            NetworkError::task_failed("the transfer task", joined.expect_err("it panicked"));
        assert!(
            matches!(&error, NetworkError::Panicked { what: "the transfer task", message }
                if message == "no rate here"),
            "{error:?}"
        );
        let text = error.to_string();
        assert!(
            text.contains("bug in Tether") && text.contains("no rate here"),
            "{text}"
        );
        assert!(
            !text.contains("offline") && !text.contains("connection"),
            "{text}"
        );

        let joined = tokio::spawn(async { panic!("static text") }).await;
        let error =
            NetworkError::task_failed("the transfer task", joined.expect_err("it panicked"));
        assert!(error.to_string().contains("(static text)"), "{error}");

        let task = tokio::spawn(std::future::pending::<()>());
        task.abort();
        let error =
            NetworkError::task_failed("the transfer task", task.await.expect_err("aborted"));
        assert!(matches!(error, NetworkError::Shutdown), "{error:?}");
    }

    /// A damaged `device.json` is reported as before: an I/O error (invalid data) naming it.
    #[test]
    fn a_damaged_profile_is_an_io_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(tether_registry::PROFILE_FILE);
        std::fs::write(&path, b"not json").unwrap();
        let refused = tether_registry::Profile::load_or_create(dir.path(), None, None, None);
        let error = NetworkError::from_profile(refused.unwrap_err());
        assert!(
            matches!(&error, NetworkError::Io { path: p, source }
                if *p == path && source.kind() == std::io::ErrorKind::InvalidData),
            "{error:?}"
        );
    }

    #[test]
    fn a_panic_inside_a_transfer_is_the_same_internal_error() {
        let panicked = TransferError::Local(LocalError::Panicked {
            what: "a send lane",
            message: "overflow".into(),
        });
        assert!(matches!(
            NetworkError::from(panicked),
            NetworkError::Panicked { what: "a send lane", message } if message == "overflow"
        ));
        let cancelled = NetworkError::from(TransferError::Cancelled);
        assert!(matches!(
            cancelled,
            NetworkError::Transfer(TransferError::Cancelled)
        ));
    }
}

#[cfg(test)]
mod chain_tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};
    use tether_transfer::{AbortCode, PeerError};

    use super::*;

    fn declined() -> TransferError {
        TransferError::Peer(PeerError::Declined {
            code: AbortCode::NoSpace,
            message: "X".into(),
        })
    }

    fn store_closed() -> tether_registry::StoreError {
        tether_registry::StoreError::Closed {
            path: "/data/secrets.redb".into(),
        }
    }

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let errors = [
            NetworkError::Pairing(tether_pairing::PairingError::Usage(
                tether_pairing::UsageError::PeerIsSelf,
            )),
            NetworkError::Code(tether_pairing::CodeError::TooLong { max: 9 }),
            NetworkError::Ticket(tether_pairing::TicketError::Checksum),
            NetworkError::CodeEnded(CodeEnded::Expired),
            NetworkError::Keys(tether_registry::KeyError::Io {
                action: "read",
                path: "/data/device.key".into(),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            }),
            NetworkError::Store(store_closed()),
            NetworkError::Registry(tether_registry::RegistryError::Store(store_closed())),
            NetworkError::Transport(tether_iroh::TransportError::Closed),
            NetworkError::Io {
                path: "/d/f".into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            },
            NetworkError::Transfer(declined()),
            NetworkError::Transfer(TransferError::Link(std::io::Error::other(
                tether_protocol::ProtocolError::Connection(
                    iroh::endpoint::ConnectionError::LocallyClosed,
                ),
            ))),
        ];
        for error in &errors {
            assert_no_repeated_layer(error);
        }
        assert_eq!(
            error_chain(&NetworkError::Transfer(declined())),
            "transfer failed: peer: declined (NoSpace): X"
        );
    }
}
