//! The gate: who may connect on which ALPN, decided before any handler runs.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};

use iroh::endpoint::{Connection, ConnectionError};
use tether_identity::NodeId;
use tether_iroh::{ConnectionGate, Refusal};
use tether_registry::{ConnectionRefused, DeviceRegistry};

use crate::NetworkError;
use crate::link::SYNC_ALPN;
use crate::lobby::{Full, Lobby};
use crate::pairing::PAIRING_ALPN;

/// QUIC close code: the peer is not paired with this device.
pub const CLOSE_NOT_PAIRED: u32 = 0x7002;
/// QUIC close code: the peer was unpaired (revoked).
pub const CLOSE_REVOKED: u32 = crate::link::CLOSE_REVOKED;
/// QUIC close code: the peer is paired but blocked.
pub const CLOSE_BLOCKED: u32 = 0x7005;
/// QUIC close code: the ALPN is not served here.
pub const CLOSE_UNKNOWN_ALPN: u32 = 0x7006;
/// QUIC close code: pairing is refused because no code or ticket is shown.
pub const CLOSE_NOT_PAIRING: u32 = 0x700B;
/// QUIC close code: pairing is refused for now: too many pairing connections (from this
/// device, or from everyone), or this silent connection gave its place to a newcomer.
pub const CLOSE_PAIRING_BUSY: u32 = 0x7008;
/// QUIC close code: a pairing connection ran past its deadline (first message, or the whole
/// exchange).
pub const CLOSE_PAIRING_TIMEOUT: u32 = 0x7009;
/// QUIC close code: the initiator's person rejected this joiner (it proved the code).
pub const CLOSE_PAIRING_DECLINED: u32 = 0x700A;
/// QUIC close code: the connection carried no application traffic for the idle timeout
/// ([`crate::NetworkingConfig::idle_timeout`]). Not a refusal and not a failure: the next
/// message dials again.
pub const CLOSE_IDLE: u32 = crate::link::CLOSE_IDLE;

/// Pairing is open to anyone while a code is shown, within the [`Lobby`]'s bounds (the PAKE
/// is the check); every other ALPN only to paired, trusted, non-revoked devices.
#[derive(Debug)]
pub(crate) struct RegistryGate {
    pub(crate) registry: DeviceRegistry,
    pub(crate) protocols: Arc<RwLock<HashSet<Vec<u8>>>>,
    pub(crate) lobby: Arc<Lobby>,
}

impl ConnectionGate for RegistryGate {
    fn admit(&self, peer: &NodeId, alpn: &[u8]) -> Result<(), Refusal> {
        if alpn == PAIRING_ALPN {
            return self.lobby.admits(peer).map_err(pairing_refusal);
        }
        let known = alpn == SYNC_ALPN
            || self
                .protocols
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(alpn);
        if !known {
            return Err(Refusal {
                code: CLOSE_UNKNOWN_ALPN,
                reason: "unknown protocol",
            });
        }
        self.registry
            .check_connection(peer)
            .map(drop)
            .map_err(|refused| match refused {
                ConnectionRefused::Revoked { .. } => Refusal {
                    code: CLOSE_REVOKED,
                    reason: "revoked",
                },
                ConnectionRefused::Blocked => Refusal {
                    code: CLOSE_BLOCKED,
                    reason: "blocked",
                },
                _ => Refusal {
                    code: CLOSE_NOT_PAIRED,
                    reason: "not paired",
                },
            })
    }
}

/// The close code and reason for a pairing connection the [`Lobby`] has no place for.
pub(crate) fn pairing_refusal(full: Full) -> Refusal {
    match full {
        Full::Closed => Refusal {
            code: CLOSE_NOT_PAIRING,
            reason: "no pairing code is shown",
        },
        Full::PeerBusy | Full::Busy => Refusal {
            code: CLOSE_PAIRING_BUSY,
            reason: "pairing is busy",
        },
    }
}

/// The refusal, if the peer closed `connection` with one of the gate's close codes: a
/// [`NetworkError::Refused`] saying which.
///
/// The gate closes a connection right after its TLS handshake, so a client learns of a
/// refusal on its first read or write; a third-party protocol's client (over
/// [`crate::NetworkingService::connect_protocol`]) can call this when a stream fails to tell
/// "refused" from other failures.
pub fn refusal(connection: &Connection) -> Option<NetworkError> {
    let Some(ConnectionError::ApplicationClosed(close)) = connection.close_reason() else {
        return None;
    };
    let code = u32::try_from(close.error_code.into_inner()).ok()?;
    let node = tether_iroh::peer_node_id(connection).ok()?;
    [
        CLOSE_NOT_PAIRED,
        CLOSE_REVOKED,
        CLOSE_BLOCKED,
        CLOSE_UNKNOWN_ALPN,
        CLOSE_NOT_PAIRING,
        CLOSE_PAIRING_BUSY,
        CLOSE_PAIRING_DECLINED,
    ]
    .contains(&code)
    .then(|| NetworkError::Refused {
        node,
        code,
        reason: String::from_utf8_lossy(&close.reason).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::{
        CLOSE_BLOCKED, CLOSE_IDLE, CLOSE_NOT_PAIRED, CLOSE_NOT_PAIRING, CLOSE_PAIRING_BUSY,
        CLOSE_PAIRING_DECLINED, CLOSE_PAIRING_TIMEOUT, CLOSE_REVOKED, CLOSE_UNKNOWN_ALPN,
    };
    use crate::link::{CLOSE_DEAD, CLOSE_NORMAL, CLOSE_PROTOCOL};

    /// A close code means one thing: an idle close read as a refusal, say, is not retried.
    #[test]
    fn close_codes_are_distinct() {
        let codes = [
            ("CLOSE_NORMAL", CLOSE_NORMAL),
            ("CLOSE_PROTOCOL", CLOSE_PROTOCOL),
            ("CLOSE_NOT_PAIRED", CLOSE_NOT_PAIRED),
            ("CLOSE_REVOKED", CLOSE_REVOKED),
            ("CLOSE_DEAD", CLOSE_DEAD),
            ("CLOSE_BLOCKED", CLOSE_BLOCKED),
            ("CLOSE_UNKNOWN_ALPN", CLOSE_UNKNOWN_ALPN),
            ("CLOSE_IDLE", CLOSE_IDLE),
            ("CLOSE_NOT_PAIRING", CLOSE_NOT_PAIRING),
            ("CLOSE_PAIRING_BUSY", CLOSE_PAIRING_BUSY),
            ("CLOSE_PAIRING_TIMEOUT", CLOSE_PAIRING_TIMEOUT),
            ("CLOSE_PAIRING_DECLINED", CLOSE_PAIRING_DECLINED),
        ];
        for (i, (a, code_a)) in codes.iter().enumerate() {
            for (b, code_b) in codes.iter().skip(i + 1) {
                assert_ne!(
                    code_a, code_b,
                    "{a} and {b} share the close code {code_a:#x}"
                );
            }
        }
    }
}
