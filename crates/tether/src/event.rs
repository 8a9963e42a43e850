//! `NetworkEvent`: what the service tells the application.

use std::pin::Pin;
use std::task::{Context, Poll};

use n0_future::Stream;
use tether_identity::{DeviceInfo, NodeId};
use tether_iroh::PathKind;
use tether_transfer::TransferReport;
use tether_wire::NetworkMessage;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use uuid::Uuid;

/// How many events a slow subscriber may fall behind before it misses some (and is told how
/// many, see [`NetworkEvent::Lagged`]).
pub(crate) const EVENT_BUFFER: usize = 1024;

/// Something that happened, for an app's UI or log: [`crate::NetworkingService::events`] (or
/// [`crate::Builder::events`], from before the service starts).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// This reader fell behind and `missed` events were dropped for it (only an
    /// [`EventStream`] says so). What it shows may be stale: ask the service again
    /// ([`crate::NetworkingService::device_statuses`], [`crate::NetworkingService::devices`]).
    Lagged {
        /// How many events this reader missed.
        missed: u64,
    },
    /// A device was seen by a discovery service.
    DeviceDiscovered {
        /// Its claimed key.
        node_id: NodeId,
        /// Which discovery saw it.
        source: &'static str,
    },
    /// No discovery sees a device any more: it said it left, its announcement expired, or
    /// newer sightings pushed it out. A paired device stays paired; its connection, if one is
    /// open, is not touched.
    DeviceLost {
        /// Its claimed key.
        node_id: NodeId,
    },
    /// A device paired with this one.
    Paired {
        /// Who.
        device: DeviceInfo,
        /// The six-digit code both screens show.
        verification_code: String,
    },
    /// A pairing is under way (its end is [`NetworkEvent::Paired`] or
    /// [`NetworkEvent::PairingFailed`]).
    PairingProgress {
        /// The other device (as its connection proved; what it says of itself comes with
        /// [`PairingStage::Proved`]).
        peer: NodeId,
        /// How far it got.
        stage: PairingStage,
    },
    /// A pairing attempt failed.
    PairingFailed {
        /// Why, for people.
        reason: String,
    },
    /// A paired device connected (either side dialled).
    Connected {
        /// Who.
        node_id: NodeId,
        /// Direct or relayed.
        path: PathKind,
    },
    /// A paired device's connection ended.
    Disconnected {
        /// Who.
        node_id: NodeId,
        /// Why.
        reason: String,
    },
    /// A paired device sent a message that is not an answer to one of ours.
    MessageReceived {
        /// Who.
        from: NodeId,
        /// What.
        message: NetworkMessage,
    },
    /// A paired device sent a text ([`crate::NetworkingService::send_text`]). Untrusted: up to
    /// [`NetworkingConfig::max_text_len`](crate::NetworkingConfig::max_text_len) bytes of any
    /// UTF-8, control characters included; escape them before showing it.
    TextReceived {
        /// Who.
        from: NodeId,
        /// What.
        text: String,
    },
    /// A paired device offered a transfer; the consent decides next (an accepted one goes
    /// on with [`NetworkEvent::IncomingTransfer`] events).
    TransferOffered {
        /// Who offers it.
        from: NodeId,
        /// The transfer.
        transfer_id: Uuid,
        /// Files and directories announced.
        entries: u64,
        /// File bytes announced.
        bytes: u64,
    },
    /// How an accepted incoming transfer goes: started (with what was kept from before),
    /// progress (bytes, rate, ETA), each file verified and in place, waiting on the sender.
    IncomingTransfer {
        /// Who sends it.
        from: NodeId,
        /// What happened.
        event: tether_transfer::TransferEvent,
    },
    /// An incoming transfer failed (not one the consent declined). What was verified stays;
    /// when `resumable`, the sender's next send of the same files resumes.
    TransferFailed {
        /// Who sent it.
        from: NodeId,
        /// The transfer.
        transfer_id: Uuid,
        /// Why, every layer once.
        reason: String,
        /// Whether sending again resumes it.
        resumable: bool,
    },
    /// A transfer from a paired device finished; every file is verified and in place.
    TransferReceived {
        /// Who sent it.
        from: NodeId,
        /// The receiver's account of it.
        report: TransferReport,
    },
    /// A paired device renamed itself, and the name shown for it here changed (a signed
    /// update from the device; not sent when the person renamed it here, which wins).
    DeviceRenamed {
        /// Who.
        node_id: NodeId,
        /// The name shown for it now.
        name: tether_identity::DeviceName,
    },
    /// A device was unpaired.
    Unpaired {
        /// Who.
        node_id: NodeId,
    },
    /// A paired device's connection moved to a new [`ConnectionState`]. Sent when a dial
    /// starts (`Connecting`), when a connection is set up (`Connected`, beside
    /// [`NetworkEvent::Connected`]), when this side starts closing it (`Closing`), and when it
    /// has ended (`Closed`, beside [`NetworkEvent::Disconnected`]; also when a dial fails).
    /// The flips between `Connected` and `Idle` that every request makes are not sent; ask
    /// [`crate::DeviceHandle::connection_state`].
    ConnectionStateChanged {
        /// Who.
        node_id: NodeId,
        /// The new state.
        state: ConnectionState,
    },
    /// A connection was closed because it carried no application traffic for the idle
    /// timeout (see [`crate::NetworkingConfig::idle_timeout`]). Not a failure: the device is
    /// still paired and reachable, and the next message dials again. A
    /// [`NetworkEvent::Disconnected`] follows.
    IdleClosed {
        /// Who.
        node_id: NodeId,
        /// `true` when the peer's idle timeout closed it, `false` when this device's did.
        by_peer: bool,
    },
    /// A queued send ([`crate::NetworkingService::queue_send`]) was delivered: the device
    /// verified every file, and the entry left the outbox (the transfer is in the history).
    QueuedSendDelivered {
        /// The entry.
        id: crate::outbox::id::OutboxId,
        /// The device.
        node_id: NodeId,
        /// The receiver's account of it.
        report: TransferReport,
    },
    /// A queued send failed in a way trying again does not cure (refused, a path gone, the
    /// device unpaired): it stays in the outbox, marked failed, until cancelled. Failures
    /// that reaching the device again cures are not events: the entry stays pending.
    QueuedSendFailed {
        /// The entry.
        id: crate::outbox::id::OutboxId,
        /// The device.
        node_id: NodeId,
        /// Why, every layer once.
        reason: String,
    },
    /// A paired device asked this one for an entry (see [`crate::ShareProvider`]): refused,
    /// started, completed or failed.
    Pull(PullEvent),
}

/// How far a pairing got, in [`NetworkEvent::PairingProgress`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairingStage {
    /// Joining side: the device showing the code was reached; the code is being proved.
    Connected,
    /// Showing side: the joiner proved the code. Both screens show `verification_code`; the
    /// pairing is stored once accepted ([`crate::PairingInvite::pending`]), or at once when
    /// the invite does not ask.
    Proved {
        /// What the joiner says of itself (its key is the one its connection proved).
        device: DeviceInfo,
        /// The six-digit code both screens show.
        verification_code: String,
    },
}

/// The state of the connection to one paired device.
///
/// "In use" means application traffic: a request waiting for its answer, a request of the
/// peer's that the app's [`crate::RequestHandler`] is answering, a transfer running over the
/// connection, or a connection of a third-party protocol to the device being open. Keep-alive
/// pings and their answers are not application traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// A dial to the device is under way and no connection is open.
    Connecting,
    /// A connection is open and in use.
    Connected,
    /// A connection is open and nothing uses it. After
    /// [`crate::NetworkingConfig::idle_timeout`] in this state it is closed.
    Idle,
    /// This side has closed the connection; it is finishing.
    Closing,
    /// No connection (none was made yet, or the last one ended).
    Closed,
}

impl std::fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Idle => "idle",
            Self::Closing => "closing",
            Self::Closed => "closed",
        })
    }
}

/// The service's events as a [`Stream`]: each change once, in order, and a
/// [`NetworkEvent::Lagged`] where a slow reader missed some. Ends when the service is gone.
#[derive(Debug)]
pub struct EventStream {
    inner: BroadcastStream<NetworkEvent>,
}

impl EventStream {
    pub(crate) fn new(receiver: broadcast::Receiver<NetworkEvent>) -> Self {
        Self {
            inner: BroadcastStream::new(receiver),
        }
    }
}

impl Stream for EventStream {
    type Item = NetworkEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx).map(|next| {
            next.map(|event| match event {
                Ok(event) => event,
                Err(BroadcastStreamRecvError::Lagged(missed)) => NetworkEvent::Lagged { missed },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use n0_future::StreamExt;

    use super::*;

    #[tokio::test]
    async fn a_slow_reader_is_told_how_many_events_it_missed() {
        let (events, receiver) = broadcast::channel(2);
        let mut stream = EventStream::new(receiver);
        let node_id = tether_identity::NetworkIdentity::from_secret_bytes(&[7; 32]).node_id();
        for _ in 0..5 {
            events.send(NetworkEvent::Unpaired { node_id }).unwrap();
        }
        drop(events);
        let mut seen = Vec::new();
        while let Some(event) = stream.next().await {
            seen.push(event);
        }
        assert!(
            matches!(
                seen.as_slice(),
                [
                    NetworkEvent::Lagged { missed: 3 },
                    NetworkEvent::Unpaired { .. },
                    NetworkEvent::Unpaired { .. },
                ]
            ),
            "{seen:?}"
        );
    }
}

/// What happened to a pull a paired device asked this one for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PullEvent {
    /// The entry was resolved and hashed, and is being sent.
    Started {
        /// The requesting device.
        from: NodeId,
        /// The entry asked for.
        entry_id: Uuid,
        /// The transfer that carries it.
        transfer_id: Uuid,
        /// All its file bytes.
        bytes_total: u64,
        /// How many bytes the requester said it holds (a hint; it asks for what it lacks).
        resume_from: u64,
    },
    /// The requester verified and placed everything.
    Completed {
        /// The requesting device.
        from: NodeId,
        /// The entry asked for.
        entry_id: Uuid,
        /// This side's (the sender's) account of it.
        report: TransferReport,
    },
    /// The entry is not shared with the device (or the device is no longer paired): refused,
    /// nothing opened.
    Refused {
        /// The requesting device.
        from: NodeId,
        /// The entry asked for.
        entry_id: Uuid,
    },
    /// The pull failed after it was accepted (or the device had too many pulls at once). A
    /// link lost midway is resumable: the requester asks again.
    Failed {
        /// The requesting device.
        from: NodeId,
        /// The entry asked for.
        entry_id: Uuid,
        /// Why, for people (the error's chain).
        reason: String,
    },
}
