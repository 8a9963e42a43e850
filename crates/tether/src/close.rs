//! The names and numbers Tether's connections carry: its ALPNs and its QUIC close codes.
//!
//! A leaf: the gate, the link, pairing and the service all import from here, and this module
//! imports none of them. The public ones are also public as [`crate::gate`]'s close codes and
//! the crate's [`SYNC_ALPN`] and [`PAIRING_ALPN`].

use tether_protocol::Connection;

use crate::NetworkError;

/// The ALPN of Tether's messaging protocol.
pub const SYNC_ALPN: &[u8] = b"tether/sync/2";

/// The ALPN of Tether's pairing protocol, open to devices that are not paired yet.
pub const PAIRING_ALPN: &[u8] = b"tether/pairing/1";

/// The prefix of the ALPNs Tether keeps for itself; a third-party protocol may not use it.
pub(crate) const RESERVED_ALPN_PREFIX: &[u8] = b"tether/";

/// QUIC close code: a normal close.
pub(crate) const CLOSE_NORMAL: u32 = 0;
/// QUIC close code: the peer broke the protocol (bad handshake, frame that does not open).
pub(crate) const CLOSE_PROTOCOL: u32 = 0x7001;
/// QUIC close code: the peer is not paired with this device.
pub const CLOSE_NOT_PAIRED: u32 = 0x7002;
/// QUIC close code: the peer was unpaired (revoked).
pub const CLOSE_REVOKED: u32 = 0x7003;
/// QUIC close code: the peer stopped answering keep-alive pings.
pub(crate) const CLOSE_DEAD: u32 = 0x7004;
/// QUIC close code: the peer is paired but blocked.
pub const CLOSE_BLOCKED: u32 = 0x7005;
/// QUIC close code: the ALPN is not served here.
pub const CLOSE_UNKNOWN_ALPN: u32 = 0x7006;
/// QUIC close code: the connection carried no application traffic for the idle timeout
/// ([`crate::NetworkingConfig::idle_timeout`]). Not a refusal and not a failure: the next
/// message dials again.
pub const CLOSE_IDLE: u32 = 0x7007;
/// QUIC close code: pairing is refused for now: too many pairing connections (from this
/// device, or from everyone), or this silent connection gave its place to a newcomer.
pub const CLOSE_PAIRING_BUSY: u32 = 0x7008;
/// QUIC close code: a pairing connection ran past its deadline (first message, or the whole
/// exchange).
pub const CLOSE_PAIRING_TIMEOUT: u32 = 0x7009;
/// QUIC close code: the initiator's person rejected this joiner (it proved the code).
pub const CLOSE_PAIRING_DECLINED: u32 = 0x700A;
/// QUIC close code: pairing is refused because no code or ticket is shown.
pub const CLOSE_NOT_PAIRING: u32 = 0x700B;
/// QUIC close code: the peer dialled from an address none of this device's connections to it
/// use (it restarted on a new port, say) while those connections still looked open. This
/// device closed them all, this one too, and dials the peer back: the dialler waits for that
/// link instead of failing.
pub(crate) const CLOSE_REDIAL: u32 = 0x700C;

/// Refuses the ALPNs Tether keeps for itself (those starting with `tether/`).
pub(crate) fn check_alpn(alpn: &[u8]) -> Result<(), NetworkError> {
    if alpn.starts_with(RESERVED_ALPN_PREFIX) {
        return Err(NetworkError::Usage(
            "ALPNs starting with tether/ are reserved".to_owned(),
        ));
    }
    Ok(())
}

/// The close codes that mean "turned away": [`refusal`] reports a close with one of these as
/// [`NetworkError::Refused`].
const REFUSALS: [u32; 7] = [
    CLOSE_NOT_PAIRED,
    CLOSE_REVOKED,
    CLOSE_BLOCKED,
    CLOSE_UNKNOWN_ALPN,
    CLOSE_NOT_PAIRING,
    CLOSE_PAIRING_BUSY,
    CLOSE_PAIRING_DECLINED,
];

/// The refusal, if the peer closed `connection` with one of the gate's close codes: a
/// [`NetworkError::Refused`] saying which.
///
/// The gate closes a connection right after its TLS handshake, so a client learns of a
/// refusal on its first read or write; a third-party protocol's client (over
/// [`crate::NetworkingService::connect_protocol`]) can call this when a stream fails to tell
/// "refused" from other failures.
pub fn refusal(connection: &Connection) -> Option<NetworkError> {
    let close = tether_iroh::peer_close(connection)?;
    let code = u32::try_from(close.code).ok()?;
    let node = tether_iroh::peer_node_id(connection).ok()?;
    REFUSALS.contains(&code).then(|| NetworkError::Refused {
        node,
        code,
        reason: close.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("CLOSE_REDIAL", CLOSE_REDIAL),
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

    /// Only closes that turn a device away are refusals: an idle close, a dead peer or a
    /// pairing timeout are retried or reported otherwise.
    #[test]
    fn refusals_are_the_turning_away_codes() {
        for code in [
            CLOSE_NORMAL,
            CLOSE_PROTOCOL,
            CLOSE_DEAD,
            CLOSE_IDLE,
            CLOSE_PAIRING_TIMEOUT,
            CLOSE_REDIAL,
        ] {
            assert!(!REFUSALS.contains(&code), "{code:#x}");
        }
    }

    /// Tether's own ALPNs are reserved; a third party's is not.
    #[test]
    fn tethers_alpns_are_reserved() {
        assert!(check_alpn(SYNC_ALPN).is_err());
        assert!(check_alpn(PAIRING_ALPN).is_err());
        assert!(check_alpn(b"tether/anything").is_err());
        assert!(check_alpn(b"notes/1").is_ok());
        assert!(check_alpn(b"tether-notes/1").is_ok());
    }
}
