//! Third-party protocols, type-erased so the service can keep them by ALPN.

use std::future::Future;
use std::pin::Pin;

use iroh::endpoint::Connection;
use tether_protocol::{NetworkProtocol, PairedPeer, ProtocolError};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub(crate) trait DynProtocol: Send + Sync + std::fmt::Debug + 'static {
    fn accept(
        &self,
        connection: Connection,
        peer: PairedPeer,
    ) -> BoxFuture<'_, Result<(), ProtocolError>>;
}

impl<P: NetworkProtocol> DynProtocol for P {
    fn accept(
        &self,
        connection: Connection,
        peer: PairedPeer,
    ) -> BoxFuture<'_, Result<(), ProtocolError>> {
        Box::pin(NetworkProtocol::accept(self, connection, peer))
    }
}
