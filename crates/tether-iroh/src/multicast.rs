//! Whether multicast works on each interface, and so whether mDNS can find devices.
//!
//! For each up interface with an IPv4 address: its multicast flag, whether a socket can join
//! the mDNS group (224.0.0.251) on it, and whether a datagram sent to that group out of it
//! comes back to the sending socket (multicast loopback). The datagram goes to the group on
//! this check's own ephemeral port, never to mDNS's port 5353, with a TTL of 1: it does not
//! leave the link, and no mDNS responder reads it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// The mDNS IPv4 group.
pub const MDNS_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 251);

/// Which interfaces [`check_multicast`] tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Interfaces {
    /// Every up interface with an IPv4 address.
    All,
    /// Loopback interfaces only (the local-only configuration: nothing leaves the machine).
    LoopbackOnly,
}

/// One interface's multicast check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InterfaceMulticast {
    /// Its name (`eth0`).
    pub name: String,
    /// The IPv4 address the check used.
    pub addr: Ipv4Addr,
    /// A loopback interface (never a LAN: it does not count for mDNS).
    pub loopback: bool,
    /// The interface has the MULTICAST flag.
    pub flag: bool,
    /// What happened.
    pub outcome: MulticastOutcome,
}

/// What joining the mDNS group and sending to it on one interface did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MulticastOutcome {
    /// Joined, and our own datagram came back: multicast works on this interface.
    Works,
    /// Joining the group failed.
    JoinFailed(String),
    /// Joined, but sending failed (no route, a firewall refusing it, ...).
    SendFailed(String),
    /// Joined and sent, but nothing came back in time (a firewall dropping it, ...).
    NotLooped,
}

impl InterfaceMulticast {
    /// Multicast (and so mDNS) works on this interface.
    pub fn works(&self) -> bool {
        self.flag && self.outcome == MulticastOutcome::Works
    }
}

/// Whether mDNS can find devices on some LAN interface.
pub fn mdns_can_work(checks: &[InterfaceMulticast]) -> bool {
    checks.iter().any(|c| !c.loopback && c.works())
}

/// Checks multicast on `which` interfaces, waiting up to `wait` for each loopback datagram.
/// Blocking (up to `wait` per interface): run it off the async runtime.
pub fn check_multicast(which: Interfaces, wait: Duration) -> Vec<InterfaceMulticast> {
    let mut checks = Vec::new();
    for interface in netdev::get_interfaces() {
        if !interface.is_up() || (which == Interfaces::LoopbackOnly && !interface.is_loopback()) {
            continue;
        }
        let Some(addr) = interface.ipv4_addrs().first().copied() else {
            continue;
        };
        checks.push(InterfaceMulticast {
            name: interface.name.clone(),
            addr,
            loopback: interface.is_loopback(),
            flag: interface.is_multicast(),
            outcome: loop_back(addr, wait),
        });
    }
    checks
}

/// Joins [`MDNS_GROUP`] on the interface with `addr`, sends a nonce to the group out of it
/// and waits for it to come back.
fn loop_back(addr: Ipv4Addr, wait: Duration) -> MulticastOutcome {
    let socket = match joined_socket(addr) {
        Ok(socket) => socket,
        Err(error) => return MulticastOutcome::JoinFailed(error.to_string()),
    };
    let port = match socket.local_addr() {
        Ok(local) => local.port(),
        Err(error) => return MulticastOutcome::JoinFailed(error.to_string()),
    };
    let nonce = nonce(addr, port);
    let group = SocketAddr::V4(SocketAddrV4::new(MDNS_GROUP, port));
    if let Err(error) = socket.send_to(&nonce, group) {
        return MulticastOutcome::SendFailed(error.to_string());
    }
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || socket.set_read_timeout(Some(left)).is_err() {
            return MulticastOutcome::NotLooped;
        }
        match socket.recv_from(&mut buf) {
            Ok((n, _)) if buf.get(..n) == Some(&nonce[..]) => return MulticastOutcome::Works,
            Ok(_) => {}
            Err(_) => return MulticastOutcome::NotLooped,
        }
    }
}

fn joined_socket(addr: Ipv4Addr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)).into())?;
    socket.join_multicast_v4(&MDNS_GROUP, &addr)?;
    socket.set_multicast_if_v4(&addr)?;
    socket.set_multicast_loop_v4(true)?;
    socket.set_multicast_ttl_v4(1)?;
    Ok(socket.into())
}

/// What the check sends: a label, the interface address and port, and the time.
fn nonce(addr: Ipv4Addr, port: u16) -> [u8; 24] {
    let mut nonce = [0u8; 24];
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
        .to_le_bytes();
    for (out, byte) in nonce.iter_mut().zip(
        b"tether-mc"
            .iter()
            .chain(addr.octets().iter())
            .chain(port.to_le_bytes().iter())
            .chain(nanos.iter()),
    ) {
        *out = *byte;
    }
    nonce
}
