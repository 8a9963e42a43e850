//! What a connection looks like right now: path, round trip, congestion window, bytes.

use std::time::Duration;

use iroh::endpoint::Connection;
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
