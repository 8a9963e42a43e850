//! What the transport keeps of iroh's net reports, and its port-mapper setting (read by the
//! `nat` module; apart so that the transport need not import it).

use std::net::IpAddr;
use std::sync::Arc;

use iroh::Watcher as _;
use iroh::endpoint::{Endpoint, PortmapperConfig};
use n0_future::StreamExt as _;

/// The last mapping verdict a net report gave (two servers answered), and the public IP it
/// was measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeenMapping {
    pub(crate) public_ip: Option<IpAddr>,
    pub(crate) varies: bool,
}

/// Where [`watch_net_reports`] keeps the last verdict.
pub(crate) type MappingMemory = Arc<parking_lot::Mutex<Option<SeenMapping>>>;

/// Keeps the last mapping verdict of iroh's net reports. A report that asked one server only
/// (after the relay selector kept one relay in the map, which also makes iroh start over
/// with a full report) has no verdict; the remembered one stands while the public IP is the
/// same. The task ends when the endpoint is dropped.
pub(crate) fn watch_net_reports(endpoint: &Endpoint) -> MappingMemory {
    let memory = MappingMemory::default();
    let seen = Arc::clone(&memory);
    let mut reports = endpoint.net_report().stream();
    tokio::spawn(async move {
        while let Some(report) = reports.next().await {
            if let Some(report) = report
                && let Some(varies) = report.mapping_varies_by_dest()
            {
                *seen.lock() = Some(SeenMapping {
                    public_ip: report.global_v4.map(|a| IpAddr::V4(*a.ip())),
                    varies,
                });
            }
        }
    });
    memory
}

/// iroh's port-mapper setting for `port_mapping`.
pub(crate) fn portmapper_config(port_mapping: bool) -> PortmapperConfig {
    if port_mapping {
        PortmapperConfig::default()
    } else {
        PortmapperConfig::Disabled
    }
}
