//! Texts between two paired services on loopback: a text arrives as `TextReceived` and is
//! acknowledged; one over the protocol's cap is refused by the sender before anything is sent;
//! one over the receiver's own limit is refused by the receiver, typed on both sides.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use crate::common;

use std::time::Duration;

use common::{Lab, event_within, next_event, pair};
use tether::limits::MAX_TEXT_LEN;
use tether::{ErrorCode, NetworkError, NetworkEvent, NetworkingService, NodeId};

/// The receiving phone's own limit, below the protocol's.
const PHONE_LIMIT: usize = 1024;

fn text_from(sender: NodeId) -> impl Fn(&NetworkEvent) -> bool {
    move |event| matches!(event, NetworkEvent::TextReceived { from, .. } if *from == sender)
}

async fn received(
    events: &mut tokio::sync::broadcast::Receiver<NetworkEvent>,
    sender: NodeId,
) -> String {
    match next_event(events, text_from(sender)).await {
        NetworkEvent::TextReceived { text, .. } => text,
        other => unreachable!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_arrives_as_an_event_and_over_limit_texts_are_refused_on_both_sides() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let mut phone_config = lab.config("phone");
    phone_config.max_text_len = PHONE_LIMIT;
    let phone = NetworkingService::start(phone_config).await.unwrap();
    pair(&laptop, &phone).await;
    let mut laptop_events = laptop.subscribe();
    let mut phone_events = phone.subscribe();
    let to_phone = laptop.device(phone.node_id()).unwrap();

    // Over the protocol's cap: refused here, before anything is sent.
    let too_long = "x".repeat(MAX_TEXT_LEN + 1);
    let error = to_phone.send_text(too_long).await.unwrap_err();
    assert!(
        matches!(error, NetworkError::TextTooLong { len, max: MAX_TEXT_LEN } if len == MAX_TEXT_LEN + 1),
        "{error:?}"
    );

    // A text, control characters and all, arrives as it was sent.
    let note = "Wi-Fi \"attic\": hunter2\n\u{1b}[31mnot red\u{1b}[0m é 📶";
    to_phone.send_text(note).await.unwrap();
    assert_eq!(received(&mut phone_events, laptop.node_id()).await, note);

    // Over the phone's own limit but within the protocol's: the phone refuses it, and the
    // laptop hears why at once.
    let over_phone = "y".repeat(PHONE_LIMIT + 1);
    let error = to_phone.send_text(over_phone).await.unwrap_err();
    assert!(
        matches!(
            &error,
            NetworkError::Rejected {
                code: ErrorCode::LimitExceeded,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(
        event_within(
            &mut phone_events,
            Duration::from_millis(300),
            text_from(laptop.node_id())
        )
        .await
        .is_none(),
        "a refused text is no event"
    );

    // The other way, a text of exactly the protocol's cap in multi-byte characters.
    let longest = "é".repeat(MAX_TEXT_LEN / 2);
    assert_eq!(longest.len(), MAX_TEXT_LEN);
    phone
        .device(laptop.node_id())
        .unwrap()
        .send_text(longest.clone())
        .await
        .unwrap();
    assert_eq!(received(&mut laptop_events, phone.node_id()).await, longest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_to_an_unpaired_device_is_refused() {
    let lab = Lab::new();
    let laptop = lab.start("laptop").await;
    let stranger = lab.start("stranger").await;
    let error = laptop
        .send_text(stranger.node_id(), "hello")
        .await
        .unwrap_err();
    assert!(
        matches!(error, NetworkError::DeviceNotPaired(node) if node == stranger.node_id()),
        "{error:?}"
    );
}
