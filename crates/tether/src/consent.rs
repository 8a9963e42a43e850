//! Consent to incoming transfers: what the app is asked, and how it answers.
//!
//! Being paired lets a device connect; it does not let it write files here. Every offer from a
//! paired device (after its manifest has passed the receiver's checks: paths, limits, free
//! space, and before anything is written) goes to the app's [`TransferConsent`], set in
//! [`crate::NetworkingConfig::consent`]. The app sees a [`TransferOffer`] (which device, how
//! many files, how many bytes, the names that would appear at the top of the destination) and
//! answers with a [`Decision`]: accept, accept into a directory of its choosing, or decline
//! with a reason the sender is shown.
//!
//! The default, [`MarkedDevicesOnly`], never asks and never accepts silently from everyone: it
//! accepts from the devices the person marked auto-accept
//! ([`crate::NetworkingService::set_auto_accept`]) and declines the rest. An app that can ask
//! its user implements [`TransferConsent`] and asks (it may take as long as the person needs;
//! the sender waits), usually skipping the question for [`TransferOffer::auto_accept`] devices.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tether_identity::{DeviceId, DeviceName, NodeId};
use tether_registry::DeviceRegistry;
use tether_transfer::{Decision, OfferSummary};
use uuid::Uuid;

/// An incoming transfer, as the app is asked about it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransferOffer {
    /// The transfer's id.
    pub transfer_id: Uuid,
    /// The offering device's node id (the connection's authenticated key).
    pub node_id: NodeId,
    /// Its device id.
    pub device_id: DeviceId,
    /// Its name, as this device shows it (what the peer said at pairing, or a rename here).
    /// Chosen by the peer: escape control characters before putting it on a terminal.
    pub device_name: DeviceName,
    /// Whether the person marked this device to be accepted without asking.
    pub auto_accept: bool,
    /// How many files.
    pub files: u64,
    /// All file bytes.
    pub total_bytes: u64,
    /// The distinct first components of the offered paths, in the sender's order: what would
    /// appear at the top of the destination. Chosen by the peer (already checked as safe
    /// relative names, but escape control characters before showing them).
    pub top_level: Vec<String>,
    /// Whether the data is sealed with per-transfer keys on top of QUIC's TLS.
    pub encrypted: bool,
}

/// Decides whether to receive an offer (see the module docs).
pub trait TransferConsent: Send + Sync + fmt::Debug + 'static {
    /// The decision for `offer`.
    fn decide<'a>(
        &'a self,
        offer: &'a TransferOffer,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;
}

/// The reason [`MarkedDevicesOnly`] gives the sender.
pub const NOT_MARKED: &str =
    "this device accepts files only from devices its owner marked auto-accept";

/// The default consent: accepts offers from devices marked auto-accept, declines the rest
/// (with [`NOT_MARKED`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkedDevicesOnly;

impl TransferConsent for MarkedDevicesOnly {
    fn decide<'a>(
        &'a self,
        offer: &'a TransferOffer,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        let decision = if offer.auto_accept {
            Decision::Accept
        } else {
            Decision::Decline(NOT_MARKED.to_owned())
        };
        Box::pin(std::future::ready(decision))
    }
}

/// The transfer engine's consent: fills in what the registry knows about the offering device
/// and asks the app's.
#[derive(Debug)]
pub(crate) struct RegistryConsent {
    pub(crate) registry: DeviceRegistry,
    pub(crate) app: Arc<dyn TransferConsent>,
}

impl tether_transfer::Consent for RegistryConsent {
    fn decide<'a>(
        &'a self,
        summary: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        // The gate let only paired devices in; one unpaired since is refused here.
        let Some(device) = self
            .registry
            .device(&summary.peer)
            .and_then(|device| device.paired)
        else {
            return Box::pin(std::future::ready(Decision::Decline(
                "the device is no longer paired".to_owned(),
            )));
        };
        let offer = TransferOffer {
            transfer_id: summary.transfer_id,
            node_id: summary.peer,
            device_id: device.info.device_id,
            device_name: device.info.device_name,
            auto_accept: device.auto_accept,
            files: summary.files,
            total_bytes: summary.total_bytes,
            top_level: summary.top_level_names(),
            encrypted: summary.encrypted,
        };
        Box::pin(async move { self.app.decide(&offer).await })
    }
}
