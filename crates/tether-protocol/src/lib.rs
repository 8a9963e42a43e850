//! The traits a third party implements to extend Tether, and the few types they mention.
//!
//! * [`NetworkProtocol`]: a protocol on its own ALPN. Tether routes a connection to it only
//!   after the connection's peer has been authenticated (the QUIC/TLS handshake proves its key)
//!   and found among the paired, non-revoked devices; the handler is given that
//!   [`PairedPeer`] and never has to authenticate anyone itself.
//! * [`Discovery`]: a source of [`DiscoveredDevice`]s (mDNS on a LAN, a loopback rendezvous for
//!   tests and demos, a global service, or an app's own).
//! * [`RelaySelector`]: chooses which relay server to use among measured candidates.
//!
//! The traits are object safe (`Box<dyn NetworkProtocol>` works): their async methods are
//! written with [`async_trait`](macro@async_trait), re-exported here, which an implementation uses too.
//! Connections and streams are iroh's own types, re-exported here.
//!
//! ```
//! use tether_protocol::{Connection, NetworkProtocol, PairedPeer, ProtocolError, async_trait};
//!
//! /// Answers every bidirectional stream with the bytes it received.
//! #[derive(Debug)]
//! struct Echo;
//!
//! #[async_trait]
//! impl NetworkProtocol for Echo {
//!     fn alpn(&self) -> &'static [u8] {
//!         b"example/echo/1"
//!     }
//!
//!     async fn accept(&self, connection: Connection, peer: PairedPeer) -> Result<(), ProtocolError> {
//!         let (mut send, mut recv) = connection.accept_bi().await?;
//!         let bytes = recv.read_to_end(64 * 1024).await.map_err(ProtocolError::other)?;
//!         send.write_all(&bytes).await.map_err(ProtocolError::other)?;
//!         send.finish().map_err(ProtocolError::other)?;
//!         connection.closed().await;
//!         let _ = peer; // who it is: already checked
//!         Ok(())
//!     }
//! }
//!
//! // Object safe: handlers of different types can be kept together.
//! let handlers: Vec<Box<dyn NetworkProtocol>> = vec![Box::new(Echo)];
//! assert_eq!(handlers[0].alpn(), b"example/echo/1");
//! ```

mod discovery;
mod protocol;
mod relay;

pub use async_trait::async_trait;
pub use discovery::{DiscoveredDevice, Discovery, DiscoveryEvent, DiscoveryStream};
pub use iroh::endpoint::{Connection, RecvStream, SendStream};
pub use protocol::{NetworkProtocol, PROTOCOL_SHUTDOWN_TIMEOUT, PairedPeer, ProtocolError};
pub use relay::{RelayCandidate, RelaySelector};
pub use tether_identity::{DeviceInfo, NodeId};
