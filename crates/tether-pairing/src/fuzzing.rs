//! Not API: the driver behind `fuzz/fuzz_targets/pairing_handshake.rs`, kept here so the seed
//! corpus can be written and replayed by this crate's tests with exactly the fuzzer's setup.
//!
//! [`run`] sets up an initiator and a joiner holding the same code (and a stranger with no
//! code), all from the caller's seeded generator, then reads the input as records
//! `op u8 ‖ len u16 (big-endian) ‖ payload` and performs each [`Op`] in turn. Honest
//! deliveries ([`Op::DeliverToInitiator`], [`Op::DeliverToJoiner`]) let the fuzzer reach deep
//! states; raw payloads let it say anything to either role at any point.
//!
//! It asserts the properties that must hold whatever the input: nothing panics; every decoded
//! message re-encodes to the same bytes; every message a role emits decodes and fits the cap;
//! the stranger never pairs; the initiator pairs at most once; and when both sides pair, they
//! agree on peers, secret and verification code.

use std::str::FromStr;
use std::time::Duration;

use rand_core::CryptoRng;
use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity, NodeId};

use crate::{
    Initiator, InitiatorConfig, InitiatorStep, Joiner, JoinerConfirming, LocalDevice,
    MAX_MESSAGE_LEN, Paired, PairingCode, PairingMessage, PairingTicket, Timestamp,
};

/// The seed of the generator the fuzz target and the seed tests pass to [`run`]
/// (`ChaCha20Rng::seed_from_u64(RNG_SEED)`), so seeds replay the same handshake.
pub const RNG_SEED: u64 = 0x7e7e_9a1d;

/// Texts parsed per input at most (see [`Op::ParseText`]).
pub const MAX_PARSED_TEXTS: usize = 4;

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The payload goes to the initiator, from the joiner's endpoint id.
    ToInitiator = 0,
    /// The payload goes to the initiator, from a stranger's endpoint id.
    ToInitiatorFromStranger = 1,
    /// The payload goes to the joiner.
    ToJoiner = 2,
    /// The joiner's last output goes to the initiator.
    DeliverToInitiator = 3,
    /// The initiator's last output to the joiner goes to it.
    DeliverToJoiner = 4,
    /// The clock moves on by the payload's first two bytes, in seconds.
    AdvanceClock = 5,
    /// The payload is parsed as a code and as a ticket (the first [`MAX_PARSED_TEXTS`] of an
    /// input; more reach no new path and only cost time: an unknown word scans the word list).
    ParseText = 6,
}

impl Op {
    fn from_byte(byte: u8) -> Self {
        match byte % 7 {
            0 => Self::ToInitiator,
            1 => Self::ToInitiatorFromStranger,
            2 => Self::ToJoiner,
            3 => Self::DeliverToInitiator,
            4 => Self::DeliverToJoiner,
            5 => Self::AdvanceClock,
            _ => Self::ParseText,
        }
    }
}

/// One encoded record, for writing seeds.
pub fn record(op: Op, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let payload = payload.get(..usize::from(len)).unwrap_or(payload);
    [&[op as u8][..], &len.to_be_bytes(), payload].concat()
}

/// How a run ended, for tests of the seeds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The initiator output a pairing.
    pub initiator_paired: bool,
    /// The joiner output a pairing.
    pub joiner_paired: bool,
    /// Every message either role emitted, in order, with `true` for the joiner's.
    pub emitted: Vec<(bool, Vec<u8>)>,
}

enum JoinerState {
    Start(Joiner),
    Confirming(JoinerConfirming),
    Done,
}

/// The devices and the code one input plays with: made from the RNG before the input runs.
#[derive(Clone)]
pub struct Fixture {
    initiator_device: LocalDevice,
    joiner_device: LocalDevice,
    stranger: NodeId,
    code: PairingCode,
}

impl Fixture {
    /// Makes the fixture from `rng`, as [`run`] does first.
    pub fn new<R: CryptoRng>(rng: &mut R) -> Self {
        let initiator_device = device(rng, "initiator");
        let joiner_device = device(rng, "joiner");
        let stranger = NetworkIdentity::generate(rng).node_id();
        let code = PairingCode::generate(rng);
        Self {
            initiator_device,
            joiner_device,
            stranger,
            code,
        }
    }
}

/// Runs one input; see the module docs.
pub fn run<R: CryptoRng>(data: &[u8], rng: &mut R) -> Outcome {
    run_with(Fixture::new(rng), data, rng)
}

/// Runs one input on a fixture made before (the fuzz target makes it once, with the RNG's state
/// after it, and clones both for every input: the same as [`run`], without the set-up's cost).
pub fn run_with<R: CryptoRng>(fixture: Fixture, data: &[u8], rng: &mut R) -> Outcome {
    let Fixture {
        initiator_device,
        joiner_device,
        stranger,
        code,
    } = fixture;
    let (initiator_id, joiner_id) = (initiator_device.node_id(), joiner_device.node_id());
    let mut now = Timestamp::ZERO;
    let Ok(mut initiator) =
        Initiator::new(&code, initiator_device, now, InitiatorConfig::default())
    else {
        return Outcome::default();
    };
    let Ok((joiner, hello)) = Joiner::start(&code, joiner_device, initiator_id, rng) else {
        return Outcome::default();
    };
    let mut outcome = Outcome::default();
    outcome.emitted.push((true, hello.clone()));
    let mut state = JoinerState::Start(joiner);
    let mut to_initiator = Some(hello);
    let mut to_joiner: Option<Vec<u8>> = None;
    let mut paired: Vec<(bool, Paired)> = Vec::new();

    let mut parsed_texts = 0;
    let mut input = data;
    while let Some((&op, rest)) = input.split_first() {
        let Some((len, rest)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        input = rest;
        let (target, bytes) = match Op::from_byte(op) {
            Op::ToInitiator => (Some(joiner_id), Some(payload.to_vec())),
            Op::ToInitiatorFromStranger => (Some(stranger), Some(payload.to_vec())),
            Op::ToJoiner => (None, Some(payload.to_vec())),
            Op::DeliverToInitiator => (Some(joiner_id), to_initiator.take()),
            Op::DeliverToJoiner => (None, to_joiner.take()),
            Op::AdvanceClock => {
                let seconds = payload
                    .first_chunk::<2>()
                    .map_or(1, |b| u16::from_be_bytes(*b));
                now = now.saturating_add(Duration::from_secs(u64::from(seconds)));
                continue;
            }
            Op::ParseText => {
                if parsed_texts < MAX_PARSED_TEXTS {
                    parsed_texts += 1;
                    parse_text(payload);
                }
                continue;
            }
        };
        let Some(bytes) = bytes else { continue };
        check_canonical(&bytes);
        match target {
            Some(peer) => {
                let (reply, done) = match initiator.handle(peer, &bytes, now, rng) {
                    Ok(InitiatorStep::Send(reply)) => (Some(reply), None),
                    Ok(InitiatorStep::Paired(result)) => (None, Some(*result)),
                    Err(failure) => (failure.message_for_peer().map(<[u8]>::to_vec), None),
                };
                if let Some(result) = done {
                    assert_eq!(peer, joiner_id, "only the joiner knows the code");
                    assert_eq!(result.peer(), joiner_id);
                    outcome.initiator_paired = true;
                    paired.push((false, result));
                }
                if let Some(reply) = reply {
                    check_emitted(&reply);
                    outcome.emitted.push((false, reply.clone()));
                    if peer == joiner_id {
                        to_joiner = Some(reply);
                    }
                }
            }
            None => {
                let (next, reply) = step_joiner(state, &bytes, &mut paired, initiator_id);
                state = next;
                if let Some(reply) = reply {
                    check_emitted(&reply);
                    outcome.emitted.push((true, reply.clone()));
                    to_initiator = Some(reply);
                }
            }
        }
    }
    outcome.joiner_paired = paired.iter().any(|(joiner, _)| *joiner);
    check_agreement(&paired);
    outcome
}

fn step_joiner(
    state: JoinerState,
    bytes: &[u8],
    paired: &mut Vec<(bool, Paired)>,
    initiator_id: NodeId,
) -> (JoinerState, Option<Vec<u8>>) {
    match state {
        JoinerState::Start(joiner) => match joiner.handle_reply(bytes) {
            Ok((next, confirm)) => (JoinerState::Confirming(next), Some(confirm)),
            Err(failure) => (
                JoinerState::Done,
                failure.message_for_peer().map(<[u8]>::to_vec),
            ),
        },
        JoinerState::Confirming(joiner) => match joiner.handle_confirm(bytes) {
            Ok((result, last)) => {
                assert_eq!(result.peer(), initiator_id);
                paired.push((true, result));
                (JoinerState::Done, Some(last))
            }
            Err(failure) => (
                JoinerState::Done,
                failure.message_for_peer().map(<[u8]>::to_vec),
            ),
        },
        JoinerState::Done => (JoinerState::Done, None),
    }
}

fn check_canonical(bytes: &[u8]) {
    if let Ok(message) = PairingMessage::from_bytes(bytes) {
        assert_eq!(message.to_bytes(), bytes, "decoding must be canonical");
    }
}

fn check_emitted(bytes: &[u8]) {
    assert!(bytes.len() <= MAX_MESSAGE_LEN);
    assert!(
        PairingMessage::from_bytes(bytes).is_ok(),
        "emitted messages decode"
    );
}

fn check_agreement(paired: &[(bool, Paired)]) {
    let initiators = paired.iter().filter(|(joiner, _)| !*joiner).count();
    assert!(initiators <= 1, "a code pairs at most once");
    let mut joiner_side = paired.iter().filter(|(joiner, _)| *joiner).map(|(_, p)| p);
    let mut initiator_side = paired.iter().filter(|(joiner, _)| !*joiner).map(|(_, p)| p);
    if let (Some(j), Some(i)) = (joiner_side.next(), initiator_side.next()) {
        assert_eq!(j.pairing_secret().as_bytes(), i.pairing_secret().as_bytes());
        assert_eq!(j.verification_code(), i.verification_code());
    }
}

fn parse_text(payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    if let Ok(code) = PairingCode::from_str(&text) {
        assert_eq!(PairingCode::from_str(&code.to_string()).ok(), Some(code));
    }
    if let Ok(ticket) = PairingTicket::from_str(&text) {
        assert_eq!(
            PairingTicket::from_str(&ticket.to_string()).ok(),
            Some(ticket.clone())
        );
        assert_eq!(
            PairingTicket::from_str(&ticket.to_qr_string()).ok(),
            Some(ticket)
        );
    }
}

fn device<R: CryptoRng>(rng: &mut R, name: &str) -> LocalDevice {
    let identity = NetworkIdentity::generate(rng);
    let Ok(device_name) = DeviceName::new(name) else {
        unreachable!("the fuzzing device names are valid")
    };
    let info = DeviceInfo {
        device_id: DeviceId::random(rng),
        device_name,
        device_type: DeviceType::Other,
        public_key: identity.node_id(),
    };
    match LocalDevice::new(identity, info) {
        Ok(device) => device,
        Err(error) => unreachable!("a fresh device is valid: {error}"),
    }
}
