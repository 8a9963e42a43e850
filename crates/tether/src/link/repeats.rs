//! Requests the peer named across links (`"once"`): answered once, a repeat from the
//! service's answer cache.
//!
//! The peer sends a request again on a new link when the old one died before the answer came.
//! The first time, the app's handler (or the inbox, for an announcement) answers it and the
//! answer goes into the cache; a repeat gets the cached answer, or waits for the first one's
//! when that is still being answered. The cache is the service's, shared by all its links,
//! sans-IO in `tether_session::AnswerCache`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tether_identity::NodeId;
use tether_session::{AnswerCache, AnswerCacheConfig, Begin, RequestKey};
use tether_wire::{ErrorCode, ErrorReply, NetworkMessage};
use tokio::sync::oneshot;
use tracing::debug;

use crate::error::short;

/// The service's answer cache, shared by its links; a repeat waiting for an answer is the
/// sending half of its channel.
pub(crate) type AnswerSlot = Arc<Mutex<AnswerCache<oneshot::Sender<NetworkMessage>>>>;

/// The service's answer cache: [`AnswerCacheConfig`]'s bounds (1024 requests, 8 MiB of
/// answers, 8 repeats waiting on one), each answer kept for 60 s or three times
/// `request_timeout`, whichever is longer: past a sender's whole retry budget, which is its
/// `request_timeout` (10 s by default).
pub(crate) fn answer_cache(request_timeout: Duration) -> AnswerSlot {
    let defaults = AnswerCacheConfig::default();
    let config = AnswerCacheConfig {
        ttl: defaults.ttl.max(request_timeout.saturating_mul(3)),
        ..defaults
    };
    Arc::new(Mutex::new(AnswerCache::new(config)))
}

/// What to do with one named request.
#[derive(Debug)]
pub(super) enum Once {
    /// The first time: answer it, and the answer is kept.
    First(Pending),
    /// A repeat of an answered request: this is its answer.
    Cached(NetworkMessage),
    /// A repeat of a request being answered: its answer comes here.
    Shared(oneshot::Receiver<NetworkMessage>),
    /// Too many repeats wait for the same request already.
    Crowded,
    /// No room in the cache: answered as if it were not named.
    Untracked,
}

impl Once {
    /// Looks the request `key` from `peer` up in the cache.
    pub(super) fn begin(cache: &AnswerSlot, peer: NodeId, key: RequestKey) -> Self {
        let mut answers = cache.lock();
        match answers.begin(Instant::now(), peer, key) {
            Begin::First => Self::First(Pending {
                cache: Arc::clone(cache),
                peer,
                key: Some(key),
            }),
            Begin::Cached(reply) => {
                debug!(peer = %short(&peer), key = key.bits(), "a repeated request; answered from the answer cache");
                Self::Cached(reply)
            }
            Begin::InProgress => {
                let (sender, receiver) = oneshot::channel();
                match answers.share(peer, key, sender) {
                    Ok(()) => {
                        debug!(peer = %short(&peer), key = key.bits(), "a repeated request; sharing the answer being made");
                        Self::Shared(receiver)
                    }
                    Err(_) => Self::Crowded,
                }
            }
            Begin::Untracked => Self::Untracked,
        }
    }

    /// The request's answer: `run` makes it the first time (or when the cache has no room),
    /// a repeat gets the first one's. `None`: no answer (the first one's handler failed; the
    /// peer's retry asks again).
    pub(super) async fn answer<F>(self, run: impl FnOnce() -> F) -> Option<NetworkMessage>
    where
        F: Future<Output = NetworkMessage>,
    {
        match self {
            Self::First(pending) => {
                let reply = run().await;
                pending.finish(&reply);
                Some(reply)
            }
            Self::Untracked => Some(run().await),
            Self::Cached(reply) => Some(reply),
            Self::Shared(answer) => answer.await.ok(),
            Self::Crowded => Some(NetworkMessage::Error(ErrorReply {
                code: ErrorCode::Busy,
                message: "this request is being answered already".to_owned(),
            })),
        }
    }
}

/// A named request being answered the first time: abandoned in the cache (its repeats get
/// no answer, a later one runs again) unless [`Pending::finish`]ed.
#[derive(Debug)]
pub(super) struct Pending {
    cache: AnswerSlot,
    peer: NodeId,
    key: Option<RequestKey>,
}

impl Pending {
    /// The request was answered: the answer is kept, and the repeats that wait get it.
    pub(super) fn finish(mut self, reply: &NetworkMessage) {
        let Some(key) = self.key.take() else { return };
        let sharers = self
            .cache
            .lock()
            .finish(Instant::now(), self.peer, key, reply);
        for sharer in sharers {
            let _ = sharer.send(reply.clone());
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            // The repeats' channels close with them: they get no answer either.
            drop(self.cache.lock().abandon(self.peer, key));
        }
    }
}
