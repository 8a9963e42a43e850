//! A device's state, the few types its states carry, and the events that report changes.
//!
//! ```text
//!   (unknown) ──discovered──► Discovered { addr } ──begin_pairing──► Pairing { session }
//!       └────────────────begin_pairing──────────────────────────────────┘   │
//!                                         pairing_failed: back to Discovered (or forgotten)
//!                                                       complete_pairing ▼
//!                              Paired ──connected──► Connected { connection }
//!                                                     ▲         │ disconnected
//!                                            connected│         ▼
//!                                                   Disconnected { reason }
//! ```
//!
//! Every other step is refused with [`crate::RegistryError::IllegalTransition`]. Paired
//! devices are the ones in `Paired`, `Connected` or `Disconnected`; a revoked device leaves the
//! registry altogether, and its node id is refused until it pairs again.

use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use tether_identity::{DeviceName, NodeId};

use crate::{PairedDevice, TrustLevel};

/// Where a device is in its life with this one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceState {
    /// Seen (on the LAN, or by address), not paired.
    Discovered {
        /// Where it was seen.
        addr: SocketAddr,
    },
    /// A pairing with it is in progress.
    Pairing {
        /// The pairing session.
        session: PairingSessionId,
    },
    /// Paired, not connected (the state of every paired device after a restart).
    Paired,
    /// Paired and connected.
    Connected {
        /// The live connection.
        connection: ConnectionInfo,
    },
    /// Paired; the last connection ended.
    Disconnected {
        /// Why it ended.
        reason: DisconnectReason,
    },
}

impl DeviceState {
    /// The state without its data.
    pub fn kind(&self) -> StateKind {
        match self {
            Self::Discovered { .. } => StateKind::Discovered,
            Self::Pairing { .. } => StateKind::Pairing,
            Self::Paired => StateKind::Paired,
            Self::Connected { .. } => StateKind::Connected,
            Self::Disconnected { .. } => StateKind::Disconnected,
        }
    }

    /// Whether the device is paired (paired, connected or disconnected).
    pub fn is_paired(&self) -> bool {
        matches!(
            self.kind(),
            StateKind::Paired | StateKind::Connected | StateKind::Disconnected
        )
    }
}

/// The name of a [`DeviceState`], without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StateKind {
    /// [`DeviceState::Discovered`].
    Discovered,
    /// [`DeviceState::Pairing`].
    Pairing,
    /// [`DeviceState::Paired`].
    Paired,
    /// [`DeviceState::Connected`].
    Connected,
    /// [`DeviceState::Disconnected`].
    Disconnected,
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Discovered => "discovered",
            Self::Pairing => "pairing",
            Self::Paired => "paired",
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
        })
    }
}

/// Identifies one pairing attempt, chosen by the caller (the pairing driver).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairingSessionId(pub u64);

impl fmt::Display for PairingSessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a live connection reaches the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionPath {
    /// Directly, over UDP (after hole punching, or on the LAN).
    Direct,
    /// Through a relay server.
    Relay,
}

/// What is known about a live connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// How the connection reaches the peer.
    pub path: ConnectionPath,
    /// The peer's address on a direct path.
    pub remote_addr: Option<SocketAddr>,
    /// The relay, on a relayed path (or the peer's home relay if known).
    pub relay_url: Option<String>,
    /// When the connection was established.
    pub connected_at: SystemTime,
}

impl ConnectionInfo {
    /// A direct connection to `remote_addr`.
    pub fn direct(remote_addr: SocketAddr, connected_at: SystemTime) -> Self {
        Self {
            path: ConnectionPath::Direct,
            remote_addr: Some(remote_addr),
            relay_url: None,
            connected_at,
        }
    }

    /// A connection through the relay at `relay_url`.
    pub fn relayed(relay_url: impl Into<String>, connected_at: SystemTime) -> Self {
        Self {
            path: ConnectionPath::Relay,
            remote_addr: None,
            relay_url: Some(relay_url.into()),
            connected_at,
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// Either side closed it normally.
    Closed,
    /// The peer stopped answering.
    TimedOut,
    /// This device was told to block the peer.
    Blocked,
    /// This device is shutting down.
    LocalShutdown,
    /// A transport or protocol error, described.
    Error(String),
}

/// Why a connection from a node is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionRefused {
    /// The node is not paired with this device.
    NotPaired,
    /// The node was paired and then revoked.
    Revoked {
        /// When it was revoked.
        at: SystemTime,
    },
    /// The node is paired and blocked.
    Blocked,
}

impl fmt::Display for ConnectionRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotPaired => f.write_str("not paired"),
            Self::Revoked { .. } => f.write_str("its pairing was revoked"),
            Self::Blocked => f.write_str("it is blocked"),
        }
    }
}

/// A device as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Device {
    /// Its node id.
    pub node_id: NodeId,
    /// Its state.
    pub state: DeviceState,
    /// Its stored record, if it is paired.
    pub paired: Option<PairedDevice>,
}

/// A change in the registry, as published to [`crate::DeviceRegistry::subscribe`]rs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryEvent {
    /// A device changed state (`from` is `None` for a device the registry did not know).
    StateChanged {
        /// The device.
        node_id: NodeId,
        /// Its previous state.
        from: Option<StateKind>,
        /// Its new state.
        to: DeviceState,
    },
    /// A failed pairing left nothing known about the device, so it left the registry.
    Forgotten {
        /// The device.
        node_id: NodeId,
    },
    /// A paired device's trust level changed.
    TrustChanged {
        /// The device.
        node_id: NodeId,
        /// Its new trust level.
        trust: TrustLevel,
    },
    /// A paired device was renamed.
    Renamed {
        /// The device.
        node_id: NodeId,
        /// Its new name.
        name: DeviceName,
    },
    /// A device was unpaired; its connections must be closed and new ones are refused.
    Revoked {
        /// The device.
        node_id: NodeId,
    },
}
