//! The gate: who may connect on which ALPN, decided before any handler runs, and the close
//! codes a turned-away connection carries (defined with the ALPNs in the crate's leaf module
//! `close.rs`; public here).

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::RwLock;
use tether_identity::NodeId;
use tether_iroh::{ConnectionGate, Refusal};
use tether_registry::{ConnectionRefused, DeviceRegistry};

pub use crate::close::{
    CLOSE_BLOCKED, CLOSE_IDLE, CLOSE_NOT_PAIRED, CLOSE_NOT_PAIRING, CLOSE_PAIRING_BUSY,
    CLOSE_PAIRING_DECLINED, CLOSE_PAIRING_TIMEOUT, CLOSE_REVOKED, CLOSE_UNKNOWN_ALPN, refusal,
};
use crate::close::{PAIRING_ALPN, SYNC_ALPN};
use crate::lobby::{Full, Lobby};

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
        let known = alpn == SYNC_ALPN || self.protocols.read().contains(alpn);
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
