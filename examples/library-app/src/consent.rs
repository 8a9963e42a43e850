//! Consent for pushed files: the service asks [`AskTheUser`], which asks the app's UI over a
//! channel and waits for its answer.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use tether::{Decision, TransferConsent, TransferOffer};
use tokio::sync::{mpsc, oneshot};

/// What the sender is told when nobody is there to answer (the UI was closed).
pub const NOBODY_TO_ASK: &str = "nobody is there to accept files on this device";

/// One question for the UI: accept this offer? Answer it with one of the methods; dropping it
/// declines.
#[derive(Debug)]
pub struct ConsentRequest {
    /// What is offered, by whom.
    pub offer: TransferOffer,
    answer: oneshot::Sender<Decision>,
}

impl ConsentRequest {
    /// Receives the files into the app's receive directory.
    pub fn accept(self) {
        let _ = self.answer.send(Decision::Accept);
    }

    /// Receives the files into `dir` (it must exist).
    pub fn accept_into(self, dir: impl Into<PathBuf>) {
        let _ = self.answer.send(Decision::AcceptInto(dir.into()));
    }

    /// Refuses; the sender is shown `reason`.
    pub fn decline(self, reason: impl Into<String>) {
        let _ = self.answer.send(Decision::Decline(reason.into()));
    }
}

/// The UI's side: the questions to answer, in the order they come.
#[derive(Debug)]
pub struct ConsentRequests {
    requests: mpsc::Receiver<ConsentRequest>,
}

impl ConsentRequests {
    /// The next question; `None` once the app is gone.
    pub async fn next(&mut self) -> Option<ConsentRequest> {
        self.requests.recv().await
    }
}

/// The app's [`TransferConsent`]: devices the person marked auto-accept are accepted without
/// a question; for every other offer the UI is asked, and the sender waits for the answer.
#[derive(Debug, Clone)]
pub struct AskTheUser {
    ask: mpsc::Sender<ConsentRequest>,
}

impl AskTheUser {
    /// The consent and the UI's end of it. At most `pending` questions wait unanswered; more
    /// offers wait for room.
    pub fn new(pending: usize) -> (Self, ConsentRequests) {
        let (ask, requests) = mpsc::channel(pending.max(1));
        (Self { ask }, ConsentRequests { requests })
    }
}

impl TransferConsent for AskTheUser {
    fn decide<'a>(
        &'a self,
        offer: &'a TransferOffer,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            if offer.auto_accept {
                return Decision::Accept;
            }
            let (answer, decision) = oneshot::channel();
            let request = ConsentRequest {
                offer: offer.clone(),
                answer,
            };
            if self.ask.send(request).await.is_err() {
                return Decision::Decline(NOBODY_TO_ASK.to_owned());
            }
            decision
                .await
                .unwrap_or_else(|_| Decision::Decline(NOBODY_TO_ASK.to_owned()))
        })
    }
}
