//! A two-party in-memory harness: drives an initiator and a joiner message by message, with a
//! virtual clock, a seeded generator, a "wire" that can tamper with or replace any message,
//! and control over who each side believes its peer is (the transport's authenticated id).
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, NodeId};
use tether_pairing::{
    Credential, Initiator, InitiatorConfig, InitiatorStep, Joiner, JoinerConfirming, LocalDevice,
    Paired, PairingCode, PairingError, Timestamp,
};

pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A device with a fresh identity and honest info.
pub(crate) fn device(rng: &mut ChaCha20Rng, name: &str) -> LocalDevice {
    let identity = NetworkIdentity::generate(rng);
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Desktop,
        public_key: identity.node_id(),
    };
    LocalDevice::new(identity, info).unwrap()
}

/// A device whose info claims `claimed` instead of its own key.
pub(crate) fn lying_device(rng: &mut ChaCha20Rng, name: &str, claimed: NodeId) -> LocalDevice {
    let identity = NetworkIdentity::generate(rng);
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name: DeviceName::new(name).unwrap(),
        device_type: DeviceType::Desktop,
        public_key: claimed,
    };
    LocalDevice::danger_new_unchecked(identity, info).unwrap()
}

/// A code with the given slot (so a wrong code still reaches the right initiator).
pub(crate) fn code_with_slot(rng: &mut ChaCha20Rng, slot: &PairingCode) -> PairingCode {
    let other = PairingCode::generate(rng);
    let mut words = other.words();
    words[0] = slot.words()[0];
    PairingCode::from_words(words).unwrap()
}

/// How one side ended.
#[derive(Debug)]
pub(crate) enum End {
    Paired(Box<Paired>),
    Failed(PairingError),
}

impl End {
    pub(crate) fn paired(&self) -> Option<&Paired> {
        match self {
            End::Paired(paired) => Some(paired),
            End::Failed(_) => None,
        }
    }

    pub(crate) fn error(&self) -> Option<&PairingError> {
        match self {
            End::Paired(_) => None,
            End::Failed(error) => Some(error),
        }
    }
}

/// The result of a driven handshake.
#[derive(Debug, Default)]
pub(crate) struct Run {
    /// How the initiator ended; `None` if it was left waiting.
    pub(crate) initiator: Option<End>,
    /// How the joiner ended; `None` if it was left waiting.
    pub(crate) joiner: Option<End>,
    /// The five protocol messages as they were put on the wire (before the wire's changes),
    /// in order; aborts are not included.
    pub(crate) messages: Vec<Vec<u8>>,
    /// Aborts, in order, with `true` if the joiner sent it.
    pub(crate) aborts: Vec<(bool, Vec<u8>)>,
}

impl Run {
    pub(crate) fn initiator_error(&self) -> Option<&PairingError> {
        self.initiator.as_ref().and_then(End::error)
    }

    pub(crate) fn joiner_error(&self) -> Option<&PairingError> {
        self.joiner.as_ref().and_then(End::error)
    }

    pub(crate) fn nobody_paired(&self) -> bool {
        self.initiator.as_ref().and_then(End::paired).is_none()
            && self.joiner.as_ref().and_then(End::paired).is_none()
    }
}

/// One side's view of the other: the id its transport authenticated.
pub(crate) struct Views {
    /// Who the initiator's transport says the joiner is.
    pub(crate) joiner_as_seen_by_initiator: NodeId,
    /// Who the joiner's transport says the initiator is.
    pub(crate) initiator_as_seen_by_joiner: NodeId,
}

enum JoinerState {
    Start(Joiner),
    Confirming(JoinerConfirming),
    Done,
}

/// Drives a whole handshake. `wire(index, bytes)` sees protocol message `index` (0 = Hello ...
/// 4 = JoinerSignature) and returns what is delivered instead.
pub(crate) fn drive(
    initiator: &mut Initiator,
    joiner_device: LocalDevice,
    credential: Credential,
    views: &Views,
    now: Timestamp,
    rng: &mut ChaCha20Rng,
    mut wire: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
) -> Run {
    let mut run = Run::default();
    let (joiner, hello) = match Joiner::start(
        credential,
        joiner_device,
        views.initiator_as_seen_by_joiner,
        rng,
    ) {
        Ok(started) => started,
        Err(error) => {
            run.joiner = Some(End::Failed(error));
            return run;
        }
    };
    let mut state = JoinerState::Start(joiner);
    run.messages.push(hello.clone());
    let mut to_initiator = Some(wire(0, hello));
    let mut to_joiner: Option<Vec<u8>> = None;
    for _ in 0..10 {
        if let Some(bytes) = to_initiator.take() {
            match initiator.handle(views.joiner_as_seen_by_initiator, &bytes, now, rng) {
                Ok(InitiatorStep::Send(reply)) => {
                    let index = run.messages.len();
                    run.messages.push(reply.clone());
                    to_joiner = Some(wire(index, reply));
                }
                Ok(InitiatorStep::Paired(paired)) => run.initiator = Some(End::Paired(paired)),
                Err(failure) => {
                    if let Some(abort) = failure.message_for_peer() {
                        run.aborts.push((false, abort.to_vec()));
                        to_joiner = Some(abort.to_vec());
                    }
                    run.initiator = Some(End::Failed(failure.into_error()));
                }
            }
        }
        if let Some(bytes) = to_joiner.take() {
            let (next, outgoing) = match state {
                JoinerState::Start(joiner) => match joiner.handle_reply(&bytes) {
                    Ok((next, confirm)) => (JoinerState::Confirming(next), Some((confirm, false))),
                    Err(failure) => {
                        let abort = failure.message_for_peer().map(|m| (m.to_vec(), true));
                        run.joiner = Some(End::Failed(failure.into_error()));
                        (JoinerState::Done, abort)
                    }
                },
                JoinerState::Confirming(joiner) => match joiner.handle_confirm(&bytes) {
                    Ok((paired, last)) => {
                        run.joiner = Some(End::Paired(Box::new(paired)));
                        (JoinerState::Done, Some((last, false)))
                    }
                    Err(failure) => {
                        let abort = failure.message_for_peer().map(|m| (m.to_vec(), true));
                        run.joiner = Some(End::Failed(failure.into_error()));
                        (JoinerState::Done, abort)
                    }
                },
                JoinerState::Done => (JoinerState::Done, None),
            };
            state = next;
            match outgoing {
                Some((abort, true)) => {
                    run.aborts.push((true, abort.clone()));
                    to_initiator = Some(abort);
                }
                Some((message, false)) => {
                    let index = run.messages.len();
                    run.messages.push(message.clone());
                    to_initiator = Some(wire(index, message));
                }
                None => {}
            }
        }
        if to_initiator.is_none() && to_joiner.is_none() {
            break;
        }
    }
    run
}

/// A ready-made scene: an initiator showing a code, and an honest joiner who typed it.
pub(crate) struct Scene {
    pub(crate) rng: ChaCha20Rng,
    pub(crate) code: PairingCode,
    pub(crate) initiator: Initiator,
    pub(crate) initiator_device: LocalDevice,
    pub(crate) joiner_device: LocalDevice,
    pub(crate) now: Timestamp,
}

impl Scene {
    pub(crate) fn new(seed: u64) -> Self {
        Self::with_config(seed, InitiatorConfig::default())
    }

    pub(crate) fn with_config(seed: u64, config: InitiatorConfig) -> Self {
        let mut rng = rng(seed);
        let initiator_device = device(&mut rng, "initiator");
        let joiner_device = device(&mut rng, "joiner");
        let code = PairingCode::generate(&mut rng);
        let now = Timestamp::from_millis(1_000);
        let initiator = Initiator::new(&code, initiator_device.clone(), now, config).unwrap();
        Self {
            rng,
            code,
            initiator,
            initiator_device,
            joiner_device,
            now,
        }
    }

    pub(crate) fn initiator_id(&self) -> NodeId {
        self.initiator_device.node_id()
    }

    pub(crate) fn joiner_id(&self) -> NodeId {
        self.joiner_device.node_id()
    }

    pub(crate) fn honest_views(&self) -> Views {
        Views {
            joiner_as_seen_by_initiator: self.joiner_id(),
            initiator_as_seen_by_joiner: self.initiator_id(),
        }
    }

    /// Runs the honest joiner with `credential`, through `wire`.
    pub(crate) fn run_with(
        &mut self,
        credential: Credential,
        wire: impl FnMut(usize, Vec<u8>) -> Vec<u8>,
    ) -> Run {
        let views = self.honest_views();
        drive(
            &mut self.initiator,
            self.joiner_device.clone(),
            credential,
            &views,
            self.now,
            &mut self.rng,
            wire,
        )
    }

    /// Runs the honest joiner with the right code over an honest wire.
    pub(crate) fn run(&mut self) -> Run {
        let code = self.code.clone();
        self.run_with(Credential::from(&code), |_, bytes| bytes)
    }

    pub(crate) fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
    }
}
