//! What the NAT in front of this device does (iroh's net report), whether the router mapped
//! a port for it (iroh's port mapper), and which port-mapping protocols the gateway offers.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use iroh::Watcher as _;

use crate::Transport;

/// How the NAT in front of this device maps its UDP port, as iroh's net report saw it by
/// asking the relays for this device's public address (QUIC address discovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatType {
    /// No net report: relays are off (nothing to ask), or none has answered yet.
    Unknown,
    /// A net report, but no relay answered over UDP: UDP may be blocked on this network.
    NoUdp,
    /// One server told this device its public address; telling the kinds apart takes two.
    OneServer,
    /// The same public address towards every server: endpoint-independent mapping ("cone",
    /// an easy NAT, or none). Hole punching works.
    EndpointIndependent,
    /// A different public address towards each server: the mapping varies by destination
    /// ("symmetric", a hard NAT). Hole punching fails unless the other side is easy or a
    /// port mapping exists; otherwise the relay carries the traffic.
    VariesByDestination,
}

/// The NAT as this device sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatStatus {
    /// The mapping behaviour.
    pub nat_type: NatType,
    /// This device's public addresses as the first relay to answer saw them (IPv4, IPv6).
    pub public_addrs: Vec<SocketAddr>,
}

/// Whether the home router maps a port for this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortMapping {
    /// The port mapper is off ([`crate::TransportConfig::port_mapping`]; always in the
    /// local-only configuration).
    Off,
    /// On, but no gateway granted a mapping (yet).
    NoneObtained,
    /// The router forwards this external address to this device's UDP port.
    Mapped(SocketAddrV4),
}

/// Which port-mapping protocols the gateway answered ([`Transport::probe_gateway`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct GatewayProtocols {
    /// UPnP IGD.
    pub upnp: bool,
    /// PCP.
    pub pcp: bool,
    /// NAT-PMP.
    pub nat_pmp: bool,
}

impl Transport {
    /// The NAT type from iroh's latest net report.
    pub fn nat_status(&self) -> NatStatus {
        let Some(report) = self.endpoint().net_report().get() else {
            return NatStatus {
                nat_type: NatType::Unknown,
                public_addrs: Vec::new(),
            };
        };
        let public_addrs: Vec<SocketAddr> = report
            .global_v4
            .map(SocketAddr::V4)
            .into_iter()
            .chain(report.global_v6.map(SocketAddr::V6))
            .collect();
        let public_ip = report.global_v4.map(|a| IpAddr::V4(*a.ip()));
        let remembered = (*self.mapping_memory.lock())
            .filter(|seen| seen.public_ip == public_ip)
            .map(|seen| seen.varies);
        let varies = report.mapping_varies_by_dest().or(remembered);
        let nat_type = match (report.has_udp(), varies) {
            (false, _) => NatType::NoUdp,
            (true, None) => NatType::OneServer,
            (true, Some(false)) => NatType::EndpointIndependent,
            (true, Some(true)) => NatType::VariesByDestination,
        };
        NatStatus {
            nat_type,
            public_addrs,
        }
    }

    /// The port mapping iroh's port mapper obtained: the advertised IPv4 address that is
    /// neither on a local interface nor one the relays saw (nor that address with the
    /// local port, which iroh adds behind a hard NAT).
    pub fn port_mapping(&self) -> PortMapping {
        if !self.config().port_mapping {
            return PortMapping::Off;
        }
        let report = self.endpoint().net_report().get();
        let public_v4 = report.as_ref().and_then(|r| r.global_v4);
        let local: HashSet<IpAddr> = netdev::get_interfaces()
            .iter()
            .flat_map(netdev::Interface::ip_addrs)
            .collect();
        let bound_ports: Vec<u16> = self.bound_addrs().iter().map(SocketAddr::port).collect();
        self.endpoint()
            .addr()
            .ip_addrs()
            .find_map(|addr| match addr {
                SocketAddr::V4(v4)
                    if !local.contains(&IpAddr::V4(*v4.ip()))
                        && Some(*v4) != public_v4
                        && !public_v4.is_some_and(|p| {
                            p.ip() == v4.ip() && bound_ports.contains(&v4.port())
                        }) =>
                {
                    Some(*v4)
                }
                _ => None,
            })
            .map_or(PortMapping::NoneObtained, PortMapping::Mapped)
    }

    /// Asks the default gateway which port-mapping protocols it offers (UPnP discovery by
    /// SSDP multicast on the LAN, PCP and NAT-PMP requests to the gateway). `None` when the
    /// port mapper is off (nothing is sent then) or no answer came within `within`;
    /// `Some(Err)` says why the probe could not run (no gateway, ...).
    pub async fn probe_gateway(
        &self,
        within: Duration,
    ) -> Option<Result<GatewayProtocols, String>> {
        if !self.config().port_mapping {
            return None;
        }
        let client = portmapper::Client::default();
        let answer = tokio::time::timeout(within, client.probe()).await.ok()?;
        Some(match answer {
            Ok(Ok(probe)) => Ok(GatewayProtocols {
                upnp: probe.upnp,
                pcp: probe.pcp,
                nat_pmp: probe.nat_pmp,
            }),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("the probe stopped".to_owned()),
        })
    }
}
