//! The transport's error type.

/// What went wrong in the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The endpoint could not bind its socket.
    #[error("could not bind {addr}: {reason}")]
    Bind {
        /// The address it tried.
        addr: std::net::SocketAddr,
        /// iroh's explanation.
        reason: String,
    },
    /// A relay URL in the configuration or an address is not a URL.
    #[error("not a relay URL: {url:?}")]
    InvalidRelayUrl {
        /// The text given.
        url: String,
    },
    /// A URL in the configuration is not a URL.
    #[error("not a URL: {url:?}")]
    InvalidUrl {
        /// The text given.
        url: String,
    },
    /// A certificate file could not be read or holds no certificate.
    #[error("could not read certificates from {}: {reason}", path.display())]
    Certificates {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A QUIC setting of [`QuicTuning`](crate::QuicTuning) is out of its bounds.
    #[error("QUIC setting {setting} = {value} is outside {min}..={max}")]
    InvalidTuning {
        /// The setting's name.
        setting: &'static str,
        /// The value given.
        value: u64,
        /// The smallest value accepted.
        min: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A node id is not a valid iroh endpoint id.
    #[error("not a valid endpoint id")]
    InvalidNodeId,
    /// A connection could not be made.
    #[error("could not connect to {node}: {reason}")]
    Connect {
        /// The short id of the device.
        node: String,
        /// Why.
        reason: String,
    },
    /// The device does not serve the protocol asked for: the TLS handshake found no
    /// application protocol (ALPN) both sides speak. Trying again will not help.
    #[error("{node} does not serve the protocol {alpn:?}")]
    AlpnNotServed {
        /// The short id of the device.
        node: String,
        /// The ALPN asked for, as text.
        alpn: String,
    },
    /// mDNS could not start (no usable network interface).
    #[error("mDNS discovery could not start: {0}")]
    Mdns(String),
    /// The Mainline DHT client could not start (its configuration, or its UDP socket).
    #[error("the DHT client could not start: {0}")]
    Dht(String),
    /// The endpoint was closed.
    #[error("the endpoint is closed")]
    Closed,
    /// The loopback discovery directory cannot be used safely.
    #[error(transparent)]
    LoopbackDir(#[from] LoopbackDirError),
}

/// The loopback discovery directory is not private to this user, so records in it could be
/// someone else's (a planted slot claim redirects a joiner); [`LoopbackDirError::problem`]
/// says why.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {} for loopback discovery", path.display())]
pub struct LoopbackDirError {
    /// The directory.
    pub path: std::path::PathBuf,
    /// What is wrong with it.
    #[source]
    pub problem: LoopbackDirProblem,
}

/// What is wrong with a loopback discovery directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopbackDirProblem {
    /// It is a symbolic link, which could lead anywhere.
    #[error("it is a symbolic link; remove it and Tether creates the directory itself")]
    Symlink,
    /// It exists and is not a directory.
    #[error("it is not a directory")]
    NotADirectory,
    /// Another user owns it.
    #[error(
        "it belongs to uid {owner}, not to this user (uid {user}); remove it, or set \
         XDG_RUNTIME_DIR to a private directory"
    )]
    NotOwned {
        /// Its owner.
        owner: u32,
        /// This process's effective user.
        user: u32,
    },
    /// Its group or others may read, write or enter it.
    #[error("others can reach into it (mode {mode:03o}); it must be 0700")]
    OpenToOthers {
        /// Its permission bits.
        mode: u32,
    },
    /// It could not be created or inspected.
    #[error("it cannot be created or inspected")]
    Io(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use tether_identity::{assert_no_repeated_layer, error_chain};

    use super::*;

    #[test]
    fn every_variant_with_a_source_prints_it_once() {
        let dir = || LoopbackDirError {
            path: "/run/user/1/tether".into(),
            problem: LoopbackDirProblem::Io(std::io::Error::other("gone")),
        };
        assert_no_repeated_layer(&TransportError::LoopbackDir(dir()));
        assert_no_repeated_layer(&dir());
        assert_eq!(
            error_chain(&TransportError::LoopbackDir(dir())),
            "cannot use /run/user/1/tether for loopback discovery: it cannot be created or \
             inspected: gone"
        );
    }
}
