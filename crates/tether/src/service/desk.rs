//! The pairing desk: the code (or ticket) this device shows, its number, the invite waiting
//! for its outcome, the confirmation slot, and the lobby its pairing connections sit in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;
use tether_pairing::{CodeStatus, Initiator};
use tether_registry::DeviceRegistry;
use tokio::sync::{broadcast, watch};

use crate::CodeEnded;
use crate::NetworkEvent;
use crate::lobby::Lobby;
use crate::pairing::{self, ConfirmSlot, PairedDevice};

/// How a shown code ended: a device paired with it, or why not.
pub(super) type Outcome = Result<PairedDevice, CodeEnded>;

/// The shown code's number and the channel its invite hears its outcome on.
type Current = Option<(u64, watch::Sender<Option<Outcome>>)>;

/// The showing side of pairing (see the module's documentation).
///
/// The code, its number, its outcome channel and the lobby's door change together, in
/// [`Self::with_shown`]; the joiners' exchanges read the code alone.
#[derive(Debug, Default)]
pub(super) struct PairingDesk {
    /// The code being shown, if any.
    initiator: Mutex<Option<Initiator>>,
    /// The number of the latest code shown (each new code gets the next).
    code_number: AtomicU64,
    /// The outcome channel of the code shown: each code's invite hears its own code's end,
    /// however many other codes ended since.
    current: Mutex<Current>,
    /// The invite that asked to confirm each joiner (see `PairingInvite::pending`).
    confirm: Arc<ConfirmSlot>,
    /// The pairing connections held now, shared with the gate.
    lobby: Arc<Lobby>,
    /// Whether the code shown has its slot announced (a word code's is, a ticket's is not).
    slot_announced: AtomicBool,
}

/// A code just shown: its number and where its invite hears how it ended.
pub(super) struct Shown {
    pub(super) number: u64,
    pub(super) outcome: watch::Receiver<Option<Outcome>>,
}

impl PairingDesk {
    /// The lobby, shared with the gate.
    pub(super) fn lobby(&self) -> &Arc<Lobby> {
        &self.lobby
    }

    /// The confirmation slot, shared with the invites.
    pub(super) fn confirm(&self) -> Arc<ConfirmSlot> {
        Arc::clone(&self.confirm)
    }

    /// Runs `change` on the shown code and its outcome channel, with both locked (the one
    /// place that takes both, always in this order).
    fn with_shown<R>(&self, change: impl FnOnce(&mut Option<Initiator>, &mut Current) -> R) -> R {
        let mut initiator = self.initiator.lock();
        let mut current = self.current.lock();
        let result = change(&mut initiator, &mut current);
        self.lobby.set_open(initiator.is_some());
        result
    }

    /// Shows `initiator`'s code (replacing any code shown before, whose invite hears it was
    /// replaced); `announced` says whether its slot is announced.
    pub(super) fn show(&self, initiator: Initiator, announced: bool) -> Shown {
        let (sender, outcome) = watch::channel(None);
        let (number, replaced) = self.with_shown(|shown, current| {
            let number = self.code_number.fetch_add(1, Ordering::AcqRel) + 1;
            *shown = Some(initiator);
            self.slot_announced.store(announced, Ordering::Release);
            (number, current.replace((number, sender)))
        });
        if let Some((_, replaced)) = replaced {
            replaced.send_replace(Some(Err(CodeEnded::Replaced)));
        }
        Shown { number, outcome }
    }

    /// Stops showing the code if its status is one `ended` accepts (after its timeouts ran),
    /// and tells its invite `outcome`; whether a code ended.
    pub(super) fn withdraw(
        &self,
        ended: impl FnOnce(CodeStatus) -> bool,
        outcome: impl FnOnce() -> Outcome,
    ) -> bool {
        let spent = self.with_shown(|shown, current| {
            let over = shown.as_mut().is_some_and(|initiator| {
                initiator.handle_timeout(pairing::now());
                ended(initiator.status())
            });
            shown.take_if(|_| over).and_then(|_| current.take())
        });
        let Some((_, sender)) = spent else {
            return false;
        };
        sender.send_replace(Some(outcome()));
        true
    }

    /// Stops showing the code, if any; its invite hears it was cancelled.
    pub(super) fn cancel(&self) {
        let _ = self.withdraw(|_| true, || Err(CodeEnded::Cancelled));
    }

    /// Drops the outcome channel: the invite still waiting hears that the service is gone.
    pub(super) fn close(&self) {
        let _ = self.with_shown(|_, current| current.take());
    }

    /// The public slot of the word code being shown, if any (a ticket's is never announced).
    pub(super) fn shown_slot(&self) -> Option<String> {
        if !self.slot_announced.load(Ordering::Acquire) {
            return None;
        }
        let shown = self.initiator.lock();
        shown
            .as_ref()
            .map(|initiator| initiator.slot().word().to_owned())
    }

    /// What a joiner's exchange is served with.
    pub(super) fn serving<'a>(
        &'a self,
        registry: &'a DeviceRegistry,
        events: &'a broadcast::Sender<NetworkEvent>,
    ) -> pairing::Desk<'a> {
        pairing::Desk {
            initiator: &self.initiator,
            code_number: &self.code_number,
            confirm: &self.confirm,
            registry,
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_core::UnwrapErr;
    use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity};
    use tether_pairing::{CodeStatus, Initiator, LocalDevice, PairingCode};
    use tokio::sync::watch;

    use super::{Outcome, PairingDesk};
    use crate::CodeEnded;
    use crate::lobby::Full;
    use crate::pairing;

    fn initiator() -> Initiator {
        let mut rng = UnwrapErr(getrandom::SysRng);
        let identity = NetworkIdentity::generate(&mut rng);
        let info = DeviceInfo {
            device_id: DeviceId::random(&mut rng),
            device_name: DeviceName::new("desk").unwrap(),
            device_type: DeviceType::Desktop,
            public_key: identity.node_id(),
        };
        let device = LocalDevice::new(identity, info).unwrap();
        let code = PairingCode::generate(&mut rng);
        Initiator::new(code, device, pairing::now(), Default::default()).unwrap()
    }

    fn ended(outcome: &watch::Receiver<Option<Outcome>>) -> Option<Result<(), CodeEnded>> {
        outcome.borrow().clone().map(|ended| ended.map(drop))
    }

    fn stranger() -> tether_identity::NodeId {
        NetworkIdentity::from_secret_bytes(&[7; 32]).node_id()
    }

    #[test]
    fn a_new_code_replaces_the_shown_one_and_each_invite_hears_its_own_end() {
        let desk = PairingDesk::default();
        assert_eq!(desk.lobby().admits(&stranger()), Err(Full::Closed));
        let first = desk.show(initiator(), true);
        assert!(
            desk.shown_slot().is_some(),
            "a word code's slot is announced"
        );
        assert_eq!(desk.lobby().admits(&stranger()), Ok(()));
        let second = desk.show(initiator(), false);
        assert_eq!(second.number, first.number + 1);
        assert_eq!(ended(&first.outcome), Some(Err(CodeEnded::Replaced)));
        assert_eq!(ended(&second.outcome), None);
        assert_eq!(desk.shown_slot(), None, "a ticket's slot is not announced");

        // A status the caller does not count as an end leaves the code shown.
        assert!(!desk.withdraw(|status| status == CodeStatus::Expired, || Ok(unreachable())));
        assert_eq!(desk.lobby().admits(&stranger()), Ok(()));
        desk.cancel();
        assert_eq!(ended(&second.outcome), Some(Err(CodeEnded::Cancelled)));
        assert_eq!(desk.lobby().admits(&stranger()), Err(Full::Closed));
        // Nothing is shown: nothing more ends.
        assert!(!desk.withdraw(|_| true, || Err(CodeEnded::Expired)));
    }

    #[tokio::test]
    async fn closing_the_desk_tells_the_waiting_invite_that_the_service_is_gone() {
        let desk = PairingDesk::default();
        let mut shown = desk.show(initiator(), true);
        desk.close();
        assert!(
            shown.outcome.changed().await.is_err(),
            "the outcome channel is closed"
        );
        assert_eq!(ended(&shown.outcome), None);
    }

    fn unreachable() -> crate::PairedDevice {
        panic!("a code that did not end has no outcome")
    }
}
