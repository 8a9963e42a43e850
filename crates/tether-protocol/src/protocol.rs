//! `NetworkProtocol`: a protocol that paired devices speak on its own ALPN.

use std::future::Future;

use iroh::endpoint::{ConnectionError, WriteError};
use tether_identity::{DeviceInfo, NodeId};

/// A paired device whose connection has been authenticated.
///
/// `node_id` is the key the connection's TLS handshake proved; `device` is what that device
/// told us when it paired, and its `public_key` equals `node_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedPeer {
    /// The authenticated key of the peer (its iroh endpoint id).
    pub node_id: NodeId,
    /// The device's info as recorded at pairing.
    pub device: DeviceInfo,
}

/// A protocol on its own ALPN, served to paired devices only.
///
/// Register it with the service; the service adds its ALPN to the endpoint and, for each
/// incoming connection on that ALPN, checks the peer against the paired devices and calls
/// [`NetworkProtocol::accept`] on a task of its own. A connection from anyone else is closed
/// before `accept` runs. When `accept` returns, the service drops its handle to the
/// connection.
pub trait NetworkProtocol: Send + Sync + std::fmt::Debug + 'static {
    /// The ALPN identifying the protocol and its version, e.g. `b"myapp/notes/1"`.
    ///
    /// ALPNs starting with `tether/` are reserved for Tether's own protocols.
    fn alpn(&self) -> &'static [u8];

    /// Serves one connection from an authenticated, paired peer.
    fn accept(
        &self,
        connection: iroh::endpoint::Connection,
        peer: PairedPeer,
    ) -> impl Future<Output = Result<(), ProtocolError>> + Send;
}

/// Why a protocol handler stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The connection failed or was closed.
    #[error("connection lost: {0}")]
    Connection(#[from] ConnectionError),
    /// Writing to a stream failed.
    #[error("write failed: {0}")]
    Write(#[from] WriteError),
    /// The peer broke the protocol's rules.
    #[error("protocol violation: {0}")]
    Violation(String),
    /// Anything else.
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl ProtocolError {
    /// Wraps any error.
    pub fn other(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Other(Box::new(error))
    }
}
