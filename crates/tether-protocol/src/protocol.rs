//! `NetworkProtocol`: a protocol that paired devices speak on its own ALPN.

use iroh::endpoint::{Connection, ConnectionError, WriteError};
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
#[async_trait::async_trait]
pub trait NetworkProtocol: Send + Sync + std::fmt::Debug + 'static {
    /// The ALPN identifying the protocol and its version, e.g. `b"myapp/notes/1"`.
    ///
    /// ALPNs starting with `tether/` are reserved for Tether's own protocols.
    fn alpn(&self) -> &'static [u8];

    /// Serves one connection from an authenticated, paired peer.
    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError>;

    /// Called once when the service shuts down, before it closes the endpoint: stop taking
    /// new work and flush what must not be lost. The service waits for it at most
    /// [`PROTOCOL_SHUTDOWN_TIMEOUT`]. Does nothing unless overridden.
    async fn shutdown(&self) {}
}

/// How long the service waits for one protocol's [`NetworkProtocol::shutdown`].
pub const PROTOCOL_SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[async_trait::async_trait]
impl<P: NetworkProtocol + ?Sized> NetworkProtocol for Box<P> {
    fn alpn(&self) -> &'static [u8] {
        (**self).alpn()
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        (**self).accept(connection, peer).await
    }

    async fn shutdown(&self) {
        (**self).shutdown().await;
    }
}

#[async_trait::async_trait]
impl<P: NetworkProtocol + ?Sized> NetworkProtocol for std::sync::Arc<P> {
    fn alpn(&self) -> &'static [u8] {
        (**self).alpn()
    }

    async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
        (**self).accept(connection, peer).await
    }

    async fn shutdown(&self) {
        (**self).shutdown().await;
    }
}

/// Why a protocol handler stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The connection failed or was closed.
    #[error("connection lost")]
    Connection(#[from] ConnectionError),
    /// Writing to a stream failed.
    #[error("write failed")]
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

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let errors = [
            ProtocolError::Connection(ConnectionError::LocallyClosed),
            ProtocolError::Write(WriteError::ClosedStream),
            ProtocolError::Write(WriteError::ConnectionLost(ConnectionError::TimedOut)),
            ProtocolError::other(std::io::Error::other("disk gone")),
        ];
        for error in &errors {
            assert_no_repeated_layer(error);
        }
        assert_eq!(
            error_chain(&ProtocolError::Connection(ConnectionError::LocallyClosed)),
            "connection lost: closed"
        );
    }
}
