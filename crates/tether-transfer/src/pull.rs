//! Pulling: a device asks for an entry by id instead of being offered one.
//!
//! The requester opens a stream and sends `Pull { entry_id, resume_from }` first
//! ([`request_pull`]). The sharer reads it with [`read_hello`](crate::read_hello) as
//! [`Hello::Pull`](crate::Hello::Pull), resolves the id itself (the request carries no path, and
//! none from the requester is ever used) and either refuses ([`IncomingPull::refuse`]; the
//! requester gets [`PeerError::NotShared`]) or sends the entry on the same stream
//! ([`IncomingPull::serve`]). From the `Offer` on it is a push with the sharer as sender and the
//! requester as receiver: verification, resume records, ciphers and keys are a push's. The
//! requester's [`PulledEntry`] consent takes only the entry it asked for.
//!
//! ```text
//! requester                                        sharer
//!   Pull {entry_id, resume_from} ─►                resolve entry_id for this device
//!                            ◄─ Decline {not_shared | busy | internal, message}   (end)
//!                            ◄─ Offer ... (the push protocol, sharer sending, on this stream)
//! ```

use std::future::Future;
use std::pin::Pin;

use uuid::Uuid;

use crate::consent::{Consent, Decision, OfferSummary};
use crate::error::{PeerError, TransferError};
use crate::link::{ByteStream, read_message, send_message};
use crate::options::RunContext;
use crate::progress::TransferReport;
use crate::protocol::{AbortCode, Decline, Message, PullRequest, cut_message};
use crate::receive::incoming::IncomingOffer;
use crate::source::OutgoingTransfer;

/// The longest a pull's refusal may take to write (the engine's own declines are as bounded).
pub const DECLINE_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Asks the device at the other end of `stream` for `entry_id` (see the module docs).
///
/// `resume_from` is a hint: how many bytes of the entry the requester believes it holds. What
/// is actually kept is decided by the receiver, which verifies every kept chunk. Returns the
/// sharer's offer, to be run with [`Receiver::receive`](crate::Receiver::receive) under a
/// [`PulledEntry`] consent; a refusal is [`PeerError::NotShared`] (or [`PeerError::Declined`]
/// with the sharer's code, e.g. busy).
pub async fn request_pull<S: ByteStream>(
    mut stream: S,
    entry_id: Uuid,
    resume_from: u64,
) -> Result<IncomingOffer<S>, TransferError> {
    let request = Message::Pull(PullRequest {
        entry_id,
        resume_from,
    });
    send_message(&mut stream, &request).await?;
    match read_message(&mut stream).await? {
        Message::Offer(offer) => Ok(IncomingOffer { stream, offer }),
        Message::Decline(Decline {
            code: AbortCode::NotShared,
            ..
        }) => Err(PeerError::NotShared(entry_id).into()),
        Message::Decline(decline) => Err(PeerError::Declined {
            code: decline.code,
            message: decline.message,
        }
        .into()),
        Message::Abort(abort) => Err(PeerError::from(abort).into()),
        _ => Err(PeerError::Protocol("a pull request is answered with Offer or Decline").into()),
    }
}

/// A pull request read from a stream, not yet answered.
#[derive(Debug)]
pub struct IncomingPull<S> {
    stream: S,
    request: PullRequest,
}

impl<S: ByteStream> IncomingPull<S> {
    pub(crate) fn new(stream: S, request: PullRequest) -> Self {
        IncomingPull { stream, request }
    }

    /// The entry asked for, in the sharer's own ids. Resolve it with the sharer's own mapping;
    /// the request names no path.
    pub fn entry_id(&self) -> Uuid {
        self.request.entry_id
    }

    /// How many bytes the requester says it holds (a hint, never trusted for anything but
    /// display: the receiver verifies what it kept and asks for the rest).
    pub fn resume_from(&self) -> u64 {
        self.request.resume_from
    }

    /// Refuses: the entry is not shared with this device. Nothing was opened or read. The
    /// answer's write is bounded by [`DECLINE_WRITE_TIMEOUT`].
    pub async fn refuse(self) -> Result<(), TransferError> {
        self.decline(AbortCode::NotShared, "not shared with this device")
            .await
    }

    /// Refuses with another code (`busy`, `internal`); `message` is cut to
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN) bytes and is what the requester is shown.
    pub async fn decline(mut self, code: AbortCode, message: &str) -> Result<(), TransferError> {
        let decline = Message::Decline(Decline {
            code,
            message: cut_message(message),
        });
        // Bounded: a peer that grants no flow-control credit does not hold the task.
        let written = async {
            send_message(&mut self.stream, &decline).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut self.stream)
                .await
                .map_err(TransferError::Link)
        };
        tokio::time::timeout(DECLINE_WRITE_TIMEOUT, written)
            .await
            .unwrap_or_else(|_| {
                Err(TransferError::Link(std::io::Error::from(
                    std::io::ErrorKind::TimedOut,
                )))
            })
    }

    /// Sends `outgoing` (prepared from the sharer's own mapping of [`Self::entry_id`]) on this
    /// stream, as [`OutgoingTransfer::send`] with no extra lanes.
    pub async fn serve(
        self,
        outgoing: OutgoingTransfer,
        ctx: RunContext,
    ) -> Result<TransferReport, TransferError> {
        outgoing.send(self.stream, Vec::new(), ctx).await
    }
}

/// The requester's consent for a pull: accepts an offer only if it is the one entry asked for
/// (its top-level entry has the requested id, and every other entry lies beneath it), so a
/// sharer cannot answer a pull with files of its own choosing.
#[derive(Debug, Clone, Copy)]
pub struct PulledEntry {
    entry_id: Uuid,
}

impl PulledEntry {
    /// Takes only `entry_id`.
    pub fn new(entry_id: Uuid) -> Self {
        PulledEntry { entry_id }
    }

    fn check(&self, offer: &OfferSummary<'_>) -> Decision {
        let mut entries = offer.entries.iter();
        let Some(top) = entries.next() else {
            return Decision::Decline("the offer holds nothing".to_owned());
        };
        if top.id != self.entry_id || top.path.contains('/') {
            return Decision::Decline("the offer is not the entry asked for".to_owned());
        }
        let inside = format!("{}/", top.path);
        if entries.any(|entry| !entry.path.starts_with(&inside)) {
            return Decision::Decline("the offer holds more than the entry asked for".to_owned());
        }
        Decision::Accept
    }
}

impl Consent for PulledEntry {
    fn decide<'a>(
        &'a self,
        offer: &'a OfferSummary<'a>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(std::future::ready(self.check(offer)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{EntryKind, Limits, ManifestBuilder, ManifestEntry};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;

    fn manifest(entries: &[(u128, &str)]) -> crate::Manifest {
        let mut builder = ManifestBuilder::new(Limits::default(), entries.len() as u64, 0).unwrap();
        for (id, path) in entries {
            builder
                .push(&ManifestEntry {
                    id: Uuid::from_u128(*id),
                    path: (*path).to_owned(),
                    kind: EntryKind::Dir,
                    size: 0,
                    mtime_ns: 0,
                    hash: None,
                })
                .unwrap();
        }
        builder.finish().unwrap()
    }

    fn decide(asked: u128, entries: &[(u128, &str)]) -> Decision {
        let manifest = manifest(entries);
        let summary = OfferSummary {
            transfer_id: Uuid::nil(),
            peer: NetworkIdentity::generate(&mut ChaCha20Rng::seed_from_u64(7)).node_id(),
            entries: &manifest,
            files: 0,
            total_bytes: 0,
            encrypted: true,
        };
        PulledEntry::new(Uuid::from_u128(asked)).check(&summary)
    }

    #[test]
    fn only_the_entry_asked_for_is_taken() {
        assert_eq!(decide(1, &[(1, "a")]), Decision::Accept);
        assert_eq!(decide(1, &[(1, "a"), (2, "a/b")]), Decision::Accept);
        assert!(matches!(decide(1, &[(2, "a")]), Decision::Decline(_)));
        assert!(matches!(
            decide(1, &[(1, "a"), (2, "b")]),
            Decision::Decline(_)
        ));
        assert!(matches!(
            decide(1, &[(1, "a"), (2, "ab")]),
            Decision::Decline(_)
        ));
        assert!(matches!(decide(1, &[]), Decision::Decline(_)));
    }

    #[tokio::test]
    async fn refusals_read_as_typed_errors() {
        let (requester, sharer) = tokio::io::duplex(1 << 16);
        let entry = Uuid::from_u128(9);
        let asking = tokio::spawn(request_pull(requester, entry, 42));
        let crate::Hello::Pull(pull) = crate::read_hello(sharer).await.unwrap() else {
            panic!("not a pull");
        };
        assert_eq!((pull.entry_id(), pull.resume_from()), (entry, 42));
        pull.refuse().await.unwrap();
        let refused = asking.await.unwrap().unwrap_err();
        assert!(
            matches!(refused, TransferError::Peer(PeerError::NotShared(id)) if id == entry),
            "{refused:?}"
        );

        let (requester, mut sharer) = tokio::io::duplex(1 << 16);
        let asking = tokio::spawn(request_pull(requester, entry, 0));
        let _ = read_message(&mut sharer).await.unwrap();
        let busy = Message::Decline(Decline {
            code: AbortCode::Busy,
            message: "later".into(),
        });
        send_message(&mut sharer, &busy).await.unwrap();
        let refused = asking.await.unwrap().unwrap_err();
        assert!(
            matches!(
                refused,
                TransferError::Peer(PeerError::Declined {
                    code: AbortCode::Busy,
                    ..
                })
            ),
            "{refused:?}"
        );

        // Any other first answer is the sharer's protocol violation.
        let (requester, mut sharer) = tokio::io::duplex(1 << 16);
        let asking = tokio::spawn(request_pull(requester, entry, 0));
        let _ = read_message(&mut sharer).await.unwrap();
        let complete = Message::Complete(crate::protocol::Complete {
            files: 1,
            bytes_verified: 0,
        });
        send_message(&mut sharer, &complete).await.unwrap();
        let wrong = asking.await.unwrap().unwrap_err();
        assert!(
            matches!(wrong, TransferError::Peer(PeerError::Protocol(_))),
            "{wrong:?}"
        );
    }

    #[tokio::test]
    async fn an_oversized_pull_request_is_refused() {
        use tether_wire::{Frame, FrameKind};
        let (mut requester, sharer) = tokio::io::duplex(1 << 16);
        let padded = format!(
            r#"{{"type":"Pull","body":{{"entry_id":"00000000-0000-0000-0000-000000000009",{}"resume_from":0}}}}"#,
            " ".repeat(crate::protocol::MAX_PULL_REQUEST_LEN)
        );
        let frame = Frame::new(FrameKind::Control, padded.into_bytes()).unwrap();
        crate::link::send_frame(&mut requester, &frame)
            .await
            .unwrap();
        let refused = crate::read_hello(sharer).await.unwrap_err();
        assert!(
            matches!(refused, TransferError::Peer(PeerError::Protocol(_))),
            "{refused:?}"
        );
    }
}
