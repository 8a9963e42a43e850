//! Consent: the receiver's say over every incoming transfer.
//!
//! After the manifest has arrived and passed every check (paths, limits, free space), the
//! receiver asks its [`Consent`] whether to take it. The answer may take as long as a person
//! needs; the sender waits. Ready-made policies: [`AcceptAll`], [`DeclineAll`], and
//! [`TrustedPeers`] (accept from a set of devices, refuse the rest). To ask the user, implement
//! the trait and await the answer inside `decide`.
//!
//! A declined offer writes nothing: consent is asked before any file, directory, partial file
//! or resume record is created, and the decline reason goes back to the sender (cut to
//! [`MAX_REASON_LEN`] bytes).

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tether_identity::NodeId;
use uuid::Uuid;

use crate::manifest::Manifest;

/// What the receiver is asked to accept.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct OfferSummary<'a> {
    /// The transfer.
    pub transfer_id: Uuid,
    /// The device offering it (the connection's authenticated identity, as the service passes it).
    pub peer: NodeId,
    /// Every entry, already checked (see [`Manifest::iter`]). Paths are relative to the
    /// destination.
    pub entries: &'a Manifest,
    /// How many of the entries are files.
    pub files: u64,
    /// All file bytes.
    pub total_bytes: u64,
    /// Whether data frames are sealed with per-transfer keys.
    pub encrypted: bool,
}

impl OfferSummary<'_> {
    /// The distinct first components of the entries' paths, in manifest order: what a person
    /// would see arrive at the top of the destination.
    pub fn top_level_names(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .filter_map(|entry| entry.path.split('/').next().map(str::to_owned))
            .filter(|name| seen.insert(name.clone()))
            .collect()
    }
}

/// The longest decline reason sent to the sender, in bytes (a longer one is cut).
pub const MAX_REASON_LEN: usize = crate::protocol::MAX_MESSAGE_LEN;

/// The receiver's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Receive the files into the receiver's destination.
    Accept,
    /// Receive the files into this directory instead (it must exist). Placement inside it is
    /// confined exactly as in the default destination, and the checks (existing files,
    /// symlinks, free space) are made again for it before anything is written.
    AcceptInto(PathBuf),
    /// Refuse. The sender is told "declined" with this reason (cut to [`MAX_REASON_LEN`]
    /// bytes): write it for the person on the other device, and put nothing in it the sender
    /// should not learn.
    Decline(String),
}

/// Decides whether to receive an offer.
pub trait Consent: Send + Sync {
    /// The decision for `offer`.
    fn decide<'a>(
        &'a self,
        offer: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>>;
}

/// Accepts everything (for devices that are all the user's own and trusted alike).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl Consent for AcceptAll {
    fn decide<'a>(
        &'a self,
        _: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(std::future::ready(Decision::Accept))
    }
}

/// Refuses everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeclineAll;

impl Consent for DeclineAll {
    fn decide<'a>(
        &'a self,
        _: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(std::future::ready(Decision::Decline(
            "not accepting transfers".into(),
        )))
    }
}

/// Accepts from the listed devices, refuses the rest.
#[derive(Debug, Clone, Default)]
pub struct TrustedPeers {
    trusted: HashSet<NodeId>,
}

impl TrustedPeers {
    /// Trusts exactly `peers`.
    pub fn new(peers: impl IntoIterator<Item = NodeId>) -> Self {
        TrustedPeers {
            trusted: peers.into_iter().collect(),
        }
    }
}

impl Consent for TrustedPeers {
    fn decide<'a>(
        &'a self,
        offer: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        let decision = if self.trusted.contains(&offer.peer) {
            Decision::Accept
        } else {
            Decision::Decline(format!("{} is not trusted", offer.peer.fmt_short()))
        };
        Box::pin(std::future::ready(decision))
    }
}
