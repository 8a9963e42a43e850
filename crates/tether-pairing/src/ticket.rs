//! `PairingTicket`: everything a joiner needs to pair across networks, as one string.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use data_encoding::BASE32_NOPAD;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use tether_identity::NodeId;
use zeroize::Zeroizing;

use crate::cursor::{ByteReader, Truncated};
use crate::{Slot, TicketError};

const VERSION: u8 = 1;
const CHECKSUM_LABEL: &[u8] = b"tether/v1/pairing/ticket-checksum";
const CHECKSUM_LEN: usize = 4;
const SECRET_LEN: usize = 32;
const FAMILY_V4: u8 = 4;
const FAMILY_V6: u8 = 6;

/// A pairing ticket: the initiator's endpoint address and a full-entropy 32-byte secret, as one
/// copy-pasteable string such as `tether1aeaq...`.
///
/// Use a ticket where the joiner cannot find the initiator on the LAN (other networks, a QR
/// code). The handshake is the same as for a [`crate::PairingCode`], with the ticket's secret
/// as the PAKE password; a ticket expires and is single use like a code.
///
/// The text is `tether1` followed by unpadded base32 of a versioned binary form that ends in a
/// 4-byte checksum, so a ticket damaged in copying is reported as such instead of burning the
/// attempt. [`fmt::Display`] writes lowercase; [`PairingTicket::to_qr_string`] writes
/// uppercase, which QR codes store in their compact alphanumeric mode. Parsing ignores case
/// and whitespace, caps the input length before decoding, and never panics.
///
/// ```
/// use rand_chacha::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use tether_identity::NetworkIdentity;
/// use tether_pairing::PairingTicket;
///
/// let mut rng = ChaCha20Rng::seed_from_u64(1);
/// let node_id = NetworkIdentity::generate(&mut rng).node_id();
/// let addresses = vec!["192.168.1.20:4433".parse().unwrap()];
/// let ticket = PairingTicket::new(node_id, Some("https://relay.example".into()), addresses, &mut rng)?;
///
/// let text = ticket.to_string();
/// assert!(text.starts_with("tether1"));
/// let parsed: PairingTicket = ticket.to_qr_string().parse()?;
/// assert_eq!(parsed, ticket);
/// assert_eq!(parsed.relay_url(), Some("https://relay.example"));
/// # Ok::<(), tether_pairing::TicketError>(())
/// ```
///
/// The secret is wiped on drop and `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingTicket {
    initiator: NodeId,
    relay_url: Option<String>,
    direct_addresses: Vec<SocketAddr>,
    slot: Slot,
    secret: Zeroizing<[u8; SECRET_LEN]>,
}

impl PairingTicket {
    /// The text prefix.
    pub const PREFIX: &'static str = "tether1";
    /// Most direct addresses a ticket carries.
    pub const MAX_ADDRESSES: usize = 16;
    /// Longest relay URL, in bytes.
    pub const MAX_RELAY_URL_LEN: usize = 255;
    /// Longest ticket text accepted by [`FromStr`], whitespace included.
    pub const MAX_TEXT_LEN: usize = 2048;

    /// A ticket for the initiator `initiator`, reachable via `relay_url` and/or
    /// `direct_addresses`, with a fresh secret and slot from `rng`.
    ///
    /// IPv6 flow labels and scope ids are not carried.
    pub fn new<R: CryptoRng + ?Sized>(
        initiator: NodeId,
        relay_url: Option<String>,
        direct_addresses: Vec<SocketAddr>,
        rng: &mut R,
    ) -> Result<Self, TicketError> {
        if let Some(url) = &relay_url {
            check_relay_url(url)?;
        }
        if direct_addresses.len() > Self::MAX_ADDRESSES {
            return Err(TicketError::TooManyAddresses {
                max: Self::MAX_ADDRESSES,
            });
        }
        let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
        rng.fill_bytes(secret.as_mut_slice());
        Ok(Self {
            initiator,
            relay_url,
            direct_addresses: direct_addresses.into_iter().map(strip_v6_extras).collect(),
            slot: Slot::random(rng),
            secret,
        })
    }

    /// The initiator's node id (its iroh endpoint id); the joiner connects to it, and the
    /// transport proves the peer holds its key.
    pub fn initiator(&self) -> NodeId {
        self.initiator
    }

    /// The initiator's home relay, if it has one.
    pub fn relay_url(&self) -> Option<&str> {
        self.relay_url.as_deref()
    }

    /// Addresses the initiator may be reached at directly.
    pub fn direct_addresses(&self) -> &[SocketAddr] {
        &self.direct_addresses
    }

    /// The public slot that names this ticket in the joiner's hello.
    pub fn slot(&self) -> Slot {
        self.slot
    }

    pub(crate) fn secret(&self) -> &[u8; SECRET_LEN] {
        &self.secret
    }

    /// The text in uppercase, for a QR code's alphanumeric mode.
    pub fn to_qr_string(&self) -> String {
        self.to_string().to_ascii_uppercase()
    }

    /// The binary form: version, node id, slot, secret, relay URL, addresses, checksum.
    fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let url = self.relay_url.as_deref().unwrap_or("");
        // Exact capacity, so the buffer holding the secret is never reallocated (and the old
        // copy left unwiped).
        let len = 1 + 32 + 2 + SECRET_LEN + 1 + url.len() + 1 + 19 * self.direct_addresses.len();
        let mut out = Zeroizing::new(Vec::with_capacity(len + CHECKSUM_LEN));
        out.push(VERSION);
        out.extend_from_slice(self.initiator.as_bytes());
        out.extend_from_slice(&self.slot.index().to_be_bytes());
        out.extend_from_slice(self.secret.as_slice());
        // `new` and `from_bytes` keep the URL within 255 bytes and the count within 16.
        out.push(u8::try_from(url.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(url.as_bytes());
        out.push(u8::try_from(self.direct_addresses.len()).unwrap_or(u8::MAX));
        for address in &self.direct_addresses {
            match address.ip() {
                IpAddr::V4(ip) => {
                    out.push(FAMILY_V4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(FAMILY_V6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&address.port().to_be_bytes());
        }
        let checksum = checksum(&out);
        out.extend_from_slice(&checksum);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, TicketError> {
        let (body, check) = bytes
            .split_last_chunk::<CHECKSUM_LEN>()
            .ok_or(TicketError::Truncated)?;
        if checksum(body) != *check {
            return Err(TicketError::Checksum);
        }
        let mut reader = ByteReader::new(body);
        let version = reader.u8()?;
        if version != VERSION {
            return Err(TicketError::UnsupportedVersion(version));
        }
        let initiator =
            NodeId::from_bytes(&reader.array()?).map_err(|_| TicketError::InvalidNodeId)?;
        let slot = Slot::from_index(reader.u16()?).ok_or(TicketError::InvalidSlot)?;
        let secret = Zeroizing::new(reader.array::<SECRET_LEN>()?);
        let url_len = usize::from(reader.u8()?);
        let relay_url = if url_len == 0 {
            None
        } else {
            let url = std::str::from_utf8(reader.take(url_len)?)
                .map_err(|_| TicketError::InvalidRelayUrl)?;
            check_relay_url(url)?;
            Some(url.to_owned())
        };
        let count = usize::from(reader.u8()?);
        if count > Self::MAX_ADDRESSES {
            return Err(TicketError::TooManyAddresses {
                max: Self::MAX_ADDRESSES,
            });
        }
        let mut direct_addresses = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = match reader.u8()? {
                FAMILY_V4 => IpAddr::V4(Ipv4Addr::from(reader.array::<4>()?)),
                FAMILY_V6 => IpAddr::V6(Ipv6Addr::from(reader.array::<16>()?)),
                _ => return Err(TicketError::InvalidAddress),
            };
            direct_addresses.push(SocketAddr::new(ip, reader.u16()?));
        }
        if !reader.is_empty() {
            return Err(TicketError::TrailingBytes);
        }
        Ok(Self {
            initiator,
            relay_url,
            direct_addresses,
            slot,
            secret,
        })
    }
}

impl From<Truncated> for TicketError {
    fn from(_: Truncated) -> Self {
        Self::Truncated
    }
}

fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest = Sha256::new()
        .chain_update(CHECKSUM_LABEL)
        .chain_update(body)
        .finalize();
    let mut out = [0u8; CHECKSUM_LEN];
    out.iter_mut()
        .zip(digest.iter())
        .for_each(|(out, byte)| *out = *byte);
    out
}

fn check_relay_url(url: &str) -> Result<(), TicketError> {
    let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
    let chars_ok = url.chars().all(|c| c.is_ascii_graphic());
    if scheme_ok && chars_ok && url.len() <= PairingTicket::MAX_RELAY_URL_LEN {
        Ok(())
    } else {
        Err(TicketError::InvalidRelayUrl)
    }
}

fn strip_v6_extras(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(address.ip(), address.port())
}

impl fmt::Display for PairingTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let encoded = Zeroizing::new(BASE32_NOPAD.encode(&self.to_bytes()));
        f.write_str(Self::PREFIX)?;
        f.write_str(&encoded.to_ascii_lowercase())
    }
}

impl FromStr for PairingTicket {
    type Err = TicketError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > Self::MAX_TEXT_LEN {
            return Err(TicketError::TooLong);
        }
        let compact: Zeroizing<String> = Zeroizing::new(
            text.chars()
                .filter(|c| !c.is_whitespace())
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        );
        let payload = compact
            .strip_prefix("TETHER1")
            .ok_or(TicketError::MissingPrefix)?;
        let len = BASE32_NOPAD
            .decode_len(payload.len())
            .map_err(|_| TicketError::Encoding)?;
        let mut bytes = Zeroizing::new(vec![0u8; len]);
        let written = BASE32_NOPAD
            .decode_mut(payload.as_bytes(), &mut bytes)
            .map_err(|_| TicketError::Encoding)?;
        Self::from_bytes(bytes.get(..written).ok_or(TicketError::Encoding)?)
    }
}

impl fmt::Debug for PairingTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingTicket")
            .field("initiator", &self.initiator)
            .field("relay_url", &self.relay_url)
            .field("direct_addresses", &self.direct_addresses)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;

    use super::*;

    fn ticket() -> PairingTicket {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let node_id = NetworkIdentity::generate(&mut rng).node_id();
        let addresses = vec![
            "10.0.0.2:7000".parse().unwrap(),
            "[fe80::1%3]:7001".parse().unwrap(),
        ];
        PairingTicket::new(node_id, None, addresses, &mut rng).unwrap()
    }

    #[test]
    fn round_trips_and_strips_scope_ids() {
        let ticket = ticket();
        let parsed: PairingTicket = ticket.to_string().parse().unwrap();
        assert_eq!(parsed, ticket);
        assert_eq!(parsed.direct_addresses()[1].to_string(), "[fe80::1]:7001");
        let qr = ticket.to_qr_string();
        assert!(
            qr.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
            "{qr}"
        );
        let wrapped: String = qr
            .chars()
            .collect::<Vec<_>>()
            .chunks(20)
            .map(|c| c.iter().collect::<String>() + "\n ")
            .collect();
        assert_eq!(wrapped.parse::<PairingTicket>().unwrap(), ticket);
    }

    #[test]
    fn damage_is_reported() {
        let text = ticket().to_string();
        assert_eq!(
            "tether2abc".parse::<PairingTicket>(),
            Err(TicketError::MissingPrefix)
        );
        assert_eq!(
            "tether1".parse::<PairingTicket>(),
            Err(TicketError::Truncated)
        );
        assert_eq!(
            "tether1!!".parse::<PairingTicket>(),
            Err(TicketError::Encoding)
        );
        let cut = &text[..text.len() - 8];
        assert!(cut.parse::<PairingTicket>().is_err());
        // Change one character in the middle: the checksum catches it.
        let mut chars: Vec<char> = text.chars().collect();
        let middle = chars.len() / 2;
        chars[middle] = if chars[middle] == 'a' { 'b' } else { 'a' };
        let altered: String = chars.into_iter().collect();
        assert_eq!(altered.parse::<PairingTicket>(), Err(TicketError::Checksum));
        let long = format!("tether1{}", "a".repeat(PairingTicket::MAX_TEXT_LEN));
        assert_eq!(long.parse::<PairingTicket>(), Err(TicketError::TooLong));
    }

    #[test]
    fn debug_hides_the_secret() {
        let ticket = ticket();
        let debug = format!("{ticket:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(!debug.contains(&data_encoding::HEXLOWER.encode(ticket.secret())));
    }

    #[test]
    fn bad_relay_urls_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let node_id = NetworkIdentity::generate(&mut rng).node_id();
        for url in [
            "",
            "ftp://x",
            "https://a b",
            "https://\u{7}",
            &format!("https://{}", "a".repeat(250)),
        ] {
            assert_eq!(
                PairingTicket::new(node_id, Some(url.to_owned()), vec![], &mut rng),
                Err(TicketError::InvalidRelayUrl),
                "{url:?}"
            );
        }
    }
}
