//! Which answer fits which request.
//!
//! A request kind has exactly one answer kind (a `LibraryAnnounce` or a `Text` sent as a
//! request is acknowledged with an `Ack`, a `LibraryRequest` is answered with a `LibraryAnnounce`), and
//! any request may be answered with an `Error`. Answer kinds are never requests.

use tether_wire::MessageKind;

/// The answer a request of `kind` expects, or `None` when `kind` is itself an answer.
pub fn expected_answer(kind: MessageKind) -> Option<MessageKind> {
    Some(match kind {
        MessageKind::Ping => MessageKind::Pong,
        MessageKind::LibraryAnnounce | MessageKind::Text => MessageKind::Ack,
        MessageKind::LibraryRequest => MessageKind::LibraryAnnounce,
        MessageKind::SyncRequest => MessageKind::SyncResponse,
        MessageKind::FileRequest => MessageKind::FileResponse,
        MessageKind::NameUpdate => MessageKind::Ack,
        _ => return None,
    })
}

/// Whether `reply` may answer a request of kind `request`: its expected answer, or an error.
pub fn answers(request: MessageKind, reply: MessageKind) -> bool {
    reply == MessageKind::Error || expected_answer(request) == Some(reply)
}

/// Whether a request of this kind is answered by the application (it asks for data only the
/// application has); the session answers the others itself.
pub fn needs_app(kind: MessageKind) -> bool {
    matches!(kind, MessageKind::SyncRequest | MessageKind::LibraryRequest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_kind_has_one_answer_and_answers_have_none() {
        for kind in MessageKind::ALL {
            match expected_answer(kind) {
                Some(answer) => {
                    assert!(answers(kind, answer));
                    assert!(answers(kind, MessageKind::Error));
                    assert!(!answers(kind, MessageKind::Ping));
                }
                None => assert!(matches!(
                    kind,
                    MessageKind::Pong
                        | MessageKind::Ack
                        | MessageKind::Error
                        | MessageKind::SyncResponse
                        | MessageKind::FileResponse
                )),
            }
        }
    }

    #[test]
    fn only_sync_and_library_requests_go_to_the_app() {
        for kind in MessageKind::ALL {
            let app = needs_app(kind);
            assert_eq!(
                app,
                kind == MessageKind::SyncRequest || kind == MessageKind::LibraryRequest
            );
            if app {
                assert!(expected_answer(kind).is_some());
            }
        }
    }
}
