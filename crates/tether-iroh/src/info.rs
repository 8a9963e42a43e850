//! What a connection looks like right now: path, round trip, congestion window, bytes; the
//! peer's addresses on it; and how the peer closed it.

use std::net::SocketAddr;
use std::time::Duration;

use iroh::endpoint::{Connection, ConnectionError};
use serde::{Deserialize, Serialize};

/// Whether packets go straight to the peer or through a relay server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PathKind {
    /// A direct UDP path (on the LAN, or hole punched through NATs).
    Direct,
    /// Through a relay server.
    Relayed,
    /// No path is selected (yet).
    Unknown,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Direct => "direct",
            Self::Relayed => "relayed",
            Self::Unknown => "unknown",
        })
    }
}

/// A snapshot of a connection's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The selected path.
    pub path: PathKind,
    /// The selected path's remote address (a socket address or a relay URL).
    pub remote: Option<String>,
    /// The relay server carrying the connection, when the selected path is relayed.
    pub relay_url: Option<iroh::RelayUrl>,
    /// The selected path's smoothed round-trip time.
    pub rtt: Option<Duration>,
    /// The selected path's congestion window, in bytes.
    pub congestion_window: Option<u64>,
    /// UDP payload bytes sent on the connection.
    pub bytes_sent: u64,
    /// UDP payload bytes received on the connection.
    pub bytes_received: u64,
    /// Packets the connection counted as lost.
    pub lost_packets: u64,
}

impl ConnectionInfo {
    /// Reads the current state of `connection`.
    pub fn of(connection: &Connection) -> Self {
        let stats = connection.stats();
        let mut info = Self {
            path: PathKind::Unknown,
            remote: None,
            relay_url: None,
            rtt: None,
            congestion_window: None,
            bytes_sent: stats.udp_tx.bytes,
            bytes_received: stats.udp_rx.bytes,
            lost_packets: stats.lost_packets,
        };
        for path in connection.paths().iter() {
            if !path.is_selected() {
                continue;
            }
            let path_stats = path.stats();
            info.path = if path.is_relay() {
                PathKind::Relayed
            } else {
                PathKind::Direct
            };
            info.remote = Some(format!("{:?}", path.remote_addr()));
            if let iroh::TransportAddr::Relay(url) = path.remote_addr() {
                info.relay_url = Some(url.clone());
            }
            info.rtt = Some(path_stats.rtt);
            info.congestion_window = Some(path_stats.cwnd);
        }
        info
    }
}

/// The peer's direct (IP) addresses on `connection`, the selected path's first: what to keep
/// as the device's last known addresses. Empty when every path goes through a relay.
pub fn direct_addrs(connection: &Connection) -> Vec<SocketAddr> {
    let mut addrs = Vec::new();
    for path in connection.paths().iter() {
        if let iroh::TransportAddr::Ip(addr) = path.remote_addr() {
            if path.is_selected() {
                addrs.insert(0, *addr);
            } else {
                addrs.push(*addr);
            }
        }
    }
    addrs
}

/// A relay the peer is reached through on `connection`, selected path or not: kept with a
/// pairing, so a device behind a NAT that hole punching cannot pass stays reachable.
pub fn relay_url(connection: &Connection) -> Option<iroh::RelayUrl> {
    connection
        .paths()
        .iter()
        .find_map(|path| match path.remote_addr() {
            iroh::TransportAddr::Relay(url) => Some(url.clone()),
            _ => None,
        })
}

/// How the peer closed a connection: the application close code and reason it sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerClose {
    /// The close code.
    pub code: u64,
    /// The reason, as text (invalid UTF-8 replaced).
    pub reason: String,
}

/// The application close code and reason, if the peer closed `connection` with one; `None`
/// while it is open, or when it ended otherwise (closed here, timed out, reset).
pub fn peer_close(connection: &Connection) -> Option<PeerClose> {
    let Some(ConnectionError::ApplicationClosed(close)) = connection.close_reason() else {
        return None;
    };
    Some(PeerClose {
        code: close.error_code.into_inner(),
        reason: String::from_utf8_lossy(&close.reason).into_owned(),
    })
}
