//! Inputs and outputs over the transfer engine, run on a stream of the job's own connection:
//! every chunk checked against its BLAKE3 hash on arrival, files put in place atomically. No
//! hashing or verifying here; the engine does all of it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tether::{NodeId, RecvStream, SendStream, TransferError, TransferReport};
use tether_transfer::{
    AcceptAll, CancellationToken, Hello, Limits, OutgoingTransfer, Receiver, ReceiverConfig,
    RunContext, SendOptions, entry_id,
};

/// The most manifest bytes a job's inputs or outputs may list.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Walks and hashes `paths` (files or directories, each sent under its own name).
///
/// Unencrypted at the engine's layer: the job connection's QUIC/TLS already protects it end to
/// end between the two authenticated devices; the per-chunk BLAKE3 check stays.
pub(crate) async fn prepare(paths: &[PathBuf]) -> Result<OutgoingTransfer, TransferError> {
    let shared: HashMap<_, _> = paths.iter().map(|p| (entry_id(p), p.clone())).collect();
    let ids: Vec<_> = shared.keys().copied().collect();
    OutgoingTransfer::prepare(&shared, &ids, SendOptions::default().encrypt(false)).await
}

/// The top-level entries of `dir`, for sending a job's outputs.
pub(crate) fn top_level(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        paths.push(entry?.path());
    }
    paths.sort();
    Ok(paths)
}

/// The number of entries and bytes the receiver will see.
pub(crate) fn size_of(outgoing: &OutgoingTransfer) -> (u64, u64) {
    let entries = u64::try_from(outgoing.manifest().len()).unwrap_or(u64::MAX);
    (entries, outgoing.total_bytes())
}

/// Sends a prepared transfer over one bidirectional stream.
pub(crate) async fn send(
    outgoing: OutgoingTransfer,
    send: SendStream,
    recv: RecvStream,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    let stream = tokio::io::join(recv, send);
    outgoing
        .send(stream, Vec::new(), RunContext::new().cancel(cancel))
        .await
}

/// What an incoming transfer may hold: exactly what was announced, at most.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Expected {
    pub(crate) entries: u64,
    pub(crate) bytes: u64,
}

/// Receives one transfer from `peer` over one bidirectional stream into `dir`, refusing an
/// offer larger than `expected` before anything is written.
pub(crate) async fn receive(
    send: SendStream,
    recv: RecvStream,
    dir: &Path,
    peer: NodeId,
    expected: Expected,
    cancel: CancellationToken,
) -> Result<TransferReport, TransferError> {
    let stream = tokio::io::join(recv, send);
    let limits = Limits::default()
        .max_entries(expected.entries)
        .max_total_bytes(expected.bytes)
        .max_manifest_bytes(MAX_MANIFEST_BYTES);
    let config = ReceiverConfig::new(dir)
        .consent(AcceptAll)
        .limits(limits)
        .max_offers_per_peer(1);
    let receiver = Receiver::new(config);
    match tether_transfer::read_hello(stream).await? {
        Hello::Offer(offer) => {
            receiver
                .receive(offer, peer, RunContext::new().cancel(cancel))
                .await
        }
        _ => Err(
            tether_transfer::PeerError::Protocol("a job stream must start with an offer").into(),
        ),
    }
}
