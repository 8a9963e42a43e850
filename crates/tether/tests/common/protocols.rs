//! Small third-party protocols the tests serve.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Echoes one stream, and counts the shutdown calls it hears.
#[derive(Debug, Default)]
pub(crate) struct Echo {
    pub(crate) shutdowns: Arc<AtomicUsize>,
}

/// [`Echo`]'s ALPN.
pub(crate) const ECHO_ALPN: &[u8] = b"test/echo/1";

#[tether::async_trait]
impl tether::NetworkProtocol for Echo {
    fn alpn(&self) -> &'static [u8] {
        ECHO_ALPN
    }

    async fn accept(
        &self,
        connection: tether::Connection,
        _peer: tether::PairedPeer,
    ) -> Result<(), tether::ProtocolError> {
        let (mut send, mut recv) = connection.accept_bi().await?;
        let bytes = recv
            .read_to_end(1024)
            .await
            .map_err(tether::ProtocolError::other)?;
        send.write_all(&bytes).await?;
        send.finish().map_err(tether::ProtocolError::other)?;
        connection.closed().await;
        Ok(())
    }

    async fn shutdown(&self) {
        self.shutdowns.fetch_add(1, Ordering::SeqCst);
    }
}

/// Accepts on `alpn` and does nothing.
#[derive(Debug)]
pub(crate) struct Idle(pub(crate) &'static [u8]);

#[tether::async_trait]
impl tether::NetworkProtocol for Idle {
    fn alpn(&self) -> &'static [u8] {
        self.0
    }

    async fn accept(
        &self,
        _connection: tether::Connection,
        _peer: tether::PairedPeer,
    ) -> Result<(), tether::ProtocolError> {
        Ok(())
    }
}

/// Sends "hello" on a new stream of a connection [`Echo`] serves, and checks it comes back.
#[allow(clippy::unwrap_used)]
pub(crate) async fn echo_hello(connection: &tether::Connection) {
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(b"hello").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(1024).await.unwrap(), b"hello");
}
