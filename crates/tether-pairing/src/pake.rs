//! SPAKE2 over Ed25519 (the `spake2` crate), bound to both endpoint ids, with strict checks
//! on the peer's group element.
//!
//! The joiner plays SPAKE2 side A and the initiator side B. The SPAKE2 identities are the two
//! node ids with role labels, so each side's key depends on whom it believes it is talking to:
//! a relay in the middle, which must use its own endpoint id on each leg, makes the two legs'
//! keys differ and key confirmation fail.

use std::fmt;

use curve25519_dalek::edwards::CompressedEdwardsY;
use rand_core::CryptoRng;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use tether_identity::NodeId;
use zeroize::Zeroizing;

use crate::kinds::CredentialKind;
use crate::message::PAKE_MESSAGE_LEN;
use crate::{Misbehavior, PairingCode, PairingError, PairingTicket, Slot};

const CODE_PASSWORD_LABEL: &[u8] = b"tether/v1/pairing/password/code";
const TICKET_PASSWORD_LABEL: &[u8] = b"tether/v1/pairing/password/ticket";
const JOINER_IDENTITY_LABEL: &[u8] = b"tether/v1/pairing/joiner/";
const INITIATOR_IDENTITY_LABEL: &[u8] = b"tether/v1/pairing/initiator/";

/// SPAKE2's side bytes: the first byte of each message.
const SIDE_A: u8 = b'A';
const SIDE_B: u8 = b'B';

/// What both sides must know to pair: a [`PairingCode`] or a [`PairingTicket`]'s secret,
/// reduced to the PAKE password, its kind and its public slot.
///
/// Made with `From`; the password is wiped on drop and never shown by `Debug`.
///
/// ```
/// use tether_pairing::{Credential, PairingCode};
/// let code: PairingCode = "harbor-brave-lion-sunset".parse()?;
/// let credential = Credential::from(&code);
/// assert_eq!(credential.slot(), code.slot());
/// # Ok::<(), tether_pairing::CodeError>(())
/// ```
#[derive(Clone)]
pub struct Credential {
    kind: CredentialKind,
    slot: Slot,
    password: Zeroizing<Vec<u8>>,
}

impl Credential {
    /// Code or ticket.
    pub fn kind(&self) -> CredentialKind {
        self.kind
    }

    /// The public slot.
    pub fn slot(&self) -> Slot {
        self.slot
    }
}

impl From<&PairingCode> for Credential {
    /// The password is a label and all four word indices (the public slot adds nothing to the
    /// secret but costs nothing either).
    fn from(code: &PairingCode) -> Self {
        let mut password = Zeroizing::new(CODE_PASSWORD_LABEL.to_vec());
        for index in code.indices() {
            password.extend_from_slice(&index.to_be_bytes());
        }
        Self {
            kind: CredentialKind::Code,
            slot: code.slot(),
            password,
        }
    }
}

impl From<PairingCode> for Credential {
    fn from(code: PairingCode) -> Self {
        Self::from(&code)
    }
}

impl From<&PairingTicket> for Credential {
    fn from(ticket: &PairingTicket) -> Self {
        let mut password = Zeroizing::new(TICKET_PASSWORD_LABEL.to_vec());
        password.extend_from_slice(ticket.secret());
        Self {
            kind: CredentialKind::Ticket,
            slot: ticket.slot(),
            password,
        }
    }
}

impl From<PairingTicket> for Credential {
    fn from(ticket: PairingTicket) -> Self {
        Self::from(&ticket)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind)
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

/// The 32-byte SPAKE2 output, wiped on drop.
pub(crate) struct PakeKey(pub(crate) Zeroizing<[u8; 32]>);

/// The joiner's SPAKE2 state between its hello and the initiator's reply.
pub(crate) enum JoinerPake {
    Real(Spake2<Ed25519Group>),
    /// The fuzzing stand-in (see [`stand_in`]).
    #[cfg(fuzzing)]
    StandIn(stand_in::SideA),
}

impl JoinerPake {
    /// Starts side A; returns the state and the 33-byte message for the hello.
    pub(crate) fn start<R: CryptoRng + ?Sized>(
        credential: &Credential,
        joiner: &NodeId,
        initiator: &NodeId,
        rng: &mut R,
    ) -> Result<(Self, [u8; PAKE_MESSAGE_LEN]), PairingError> {
        let (id_a, id_b) = identity_bytes(joiner, initiator);
        #[cfg(fuzzing)]
        if tether_identity::danger_fuzzing::stand_ins() {
            let (state, message) = stand_in::SideA::start(&credential.password, id_a, id_b, rng);
            return Ok((Self::StandIn(state), message));
        }
        let password = Password::new(credential.password.as_slice());
        let (state, message) = Spake2::<Ed25519Group>::start_a_with_rng(
            &password,
            &Identity::new(&id_a),
            &Identity::new(&id_b),
            rng,
        );
        Ok((Self::Real(state), to_array(message)?))
    }

    /// Finishes with the initiator's message (side B), after checking it.
    pub(crate) fn finish(self, reply: &[u8; PAKE_MESSAGE_LEN]) -> Result<PakeKey, PairingError> {
        check_element(reply, SIDE_B)?;
        let key = match self {
            Self::Real(state) => state
                .finish(reply)
                .map_err(|_| Misbehavior::InvalidPakeMessage)?,
            #[cfg(fuzzing)]
            Self::StandIn(state) => state.finish(reply),
        };
        to_key(key)
    }
}

/// The initiator's whole SPAKE2 side: checks the joiner's message (side A), answers it and
/// derives the key at once, so no SPAKE2 state is kept between messages.
pub(crate) fn respond<R: CryptoRng + ?Sized>(
    credential: &Credential,
    joiner: &NodeId,
    initiator: &NodeId,
    hello: &[u8; PAKE_MESSAGE_LEN],
    rng: &mut R,
) -> Result<(PakeKey, [u8; PAKE_MESSAGE_LEN]), PairingError> {
    check_element(hello, SIDE_A)?;
    let (id_a, id_b) = identity_bytes(joiner, initiator);
    #[cfg(fuzzing)]
    if tether_identity::danger_fuzzing::stand_ins() {
        let (key, reply) = stand_in::respond(&credential.password, id_a, id_b, hello, rng);
        return Ok((to_key(key)?, reply));
    }
    let password = Password::new(credential.password.as_slice());
    let (state, reply) = Spake2::<Ed25519Group>::start_b_with_rng(
        &password,
        &Identity::new(&id_a),
        &Identity::new(&id_b),
        rng,
    );
    let key = state
        .finish(hello)
        .map_err(|_| Misbehavior::InvalidPakeMessage)?;
    Ok((to_key(key)?, to_array(reply)?))
}

/// The SPAKE2 identities of side A (the joiner) and side B (the initiator).
fn identity_bytes(joiner: &NodeId, initiator: &NodeId) -> (Vec<u8>, Vec<u8>) {
    let id_a = [JOINER_IDENTITY_LABEL, joiner.as_bytes()].concat();
    let id_b = [INITIATOR_IDENTITY_LABEL, initiator.as_bytes()].concat();
    (id_a, id_b)
}

/// Refuses a peer message unless it is from the expected side and its point is a canonical
/// encoding of an element of the prime-order subgroup other than a small-order one.
///
/// `spake2` itself only checks that the point decompresses. Honest messages always pass these
/// checks (they are `x·B + w·M` with `B` and `M` in the prime-order subgroup), so they cost
/// nothing but a scalar multiplication, and they close the door on non-canonical encodings and
/// torsion components as a way to shape the shared key.
pub(crate) fn check_element(message: &[u8; PAKE_MESSAGE_LEN], side: u8) -> Result<(), Misbehavior> {
    #[cfg(fuzzing)]
    if tether_identity::danger_fuzzing::stand_ins() {
        return stand_in::check_element(message, side);
    }
    let (first, point) = message
        .split_first()
        .ok_or(Misbehavior::InvalidPakeMessage)?;
    let point: [u8; 32] = point
        .try_into()
        .map_err(|_| Misbehavior::InvalidPakeMessage)?;
    let compressed = CompressedEdwardsY(point);
    let valid = *first == side
        && compressed.decompress().is_some_and(|element| {
            element.compress() == compressed
                && !element.is_small_order()
                && element.is_torsion_free()
        });
    if valid {
        Ok(())
    } else {
        Err(Misbehavior::InvalidPakeMessage)
    }
}

fn to_array(message: Vec<u8>) -> Result<[u8; PAKE_MESSAGE_LEN], PairingError> {
    message
        .try_into()
        .map_err(|_| PairingError::Internal("SPAKE2 message has an unexpected length"))
}

fn to_key(key: Vec<u8>) -> Result<PakeKey, PairingError> {
    let key = Zeroizing::new(key);
    let array: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| PairingError::Internal("SPAKE2 key has an unexpected length"))?;
    Ok(PakeKey(Zeroizing::new(array)))
}

/// A cheap stand-in for SPAKE2, for fuzzing only (see `tether_identity::danger_fuzzing`).
///
/// The same protocol as SPAKE2 in the group of integers modulo 2^64 under addition:
/// `X = x·G + w·M`, `Y = y·G + w·N`, both sides reach `K = x·y·G`, and the key hashes the
/// password, both identities, both messages and `K`, so the same code gives the same key and a
/// different code or identity a different one. A message is the side byte, the element in 8
/// little-endian bytes and 24 zero bytes; [`check_element`] refuses any other encoding and the
/// element 0 (the stand-in's small-order point). Offline guessing is trivial here: never use it
/// outside a fuzz target.
#[cfg(fuzzing)]
// Fixed offsets into fixed-size arrays: no index can be out of range.
#[allow(clippy::indexing_slicing)]
pub(crate) mod stand_in {
    use rand_core::CryptoRng;
    use sha2::{Digest, Sha256};

    use super::{SIDE_A, SIDE_B};
    use crate::Misbehavior;
    use crate::message::PAKE_MESSAGE_LEN;

    const G: u64 = 0x9e37_79b9_7f4a_7c15;
    const M: u64 = 0xc2b2_ae3d_27d4_eb4f;
    const N: u64 = 0x1656_67b1_9e37_79f9;

    /// Side A between its message and the reply.
    pub(crate) struct SideA {
        x: u64,
        w: u64,
        id_a: Vec<u8>,
        id_b: Vec<u8>,
        password_hash: [u8; 32],
        message: [u8; PAKE_MESSAGE_LEN],
    }

    fn password_hash(password: &[u8]) -> [u8; 32] {
        Sha256::new_with_prefix(b"tether/fuzzing/stand-in-spake2/password")
            .chain_update(password)
            .finalize()
            .into()
    }

    fn scalar(hash: &[u8; 32]) -> u64 {
        u64::from_le_bytes(*hash.first_chunk::<8>().unwrap_or(&[0; 8]))
    }

    fn encode(side: u8, element: u64) -> [u8; PAKE_MESSAGE_LEN] {
        let mut message = [0u8; PAKE_MESSAGE_LEN];
        message[0] = side;
        message[1..9].copy_from_slice(&element.to_le_bytes());
        message
    }

    fn element(message: &[u8; PAKE_MESSAGE_LEN]) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&message[1..9]);
        u64::from_le_bytes(bytes)
    }

    fn random_scalar<R: CryptoRng + ?Sized>(rng: &mut R) -> u64 {
        let mut bytes = [0u8; 8];
        rng.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes) | 1
    }

    fn key(
        password_hash: &[u8; 32],
        id_a: &[u8],
        id_b: &[u8],
        x_message: &[u8],
        y_message: &[u8],
        k: u64,
    ) -> Vec<u8> {
        let mut hash = Sha256::new_with_prefix(b"tether/fuzzing/stand-in-spake2/key");
        for part in [&password_hash[..], id_a, id_b, x_message, y_message] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part);
        }
        hash.update(k.to_le_bytes());
        hash.finalize().to_vec()
    }

    impl SideA {
        pub(crate) fn start<R: CryptoRng + ?Sized>(
            password: &[u8],
            id_a: Vec<u8>,
            id_b: Vec<u8>,
            rng: &mut R,
        ) -> (Self, [u8; PAKE_MESSAGE_LEN]) {
            let password_hash = password_hash(password);
            let (x, w) = (random_scalar(rng), scalar(&password_hash));
            let message = encode(SIDE_A, x.wrapping_mul(G).wrapping_add(w.wrapping_mul(M)));
            let state = Self {
                x,
                w,
                id_a,
                id_b,
                password_hash,
                message,
            };
            (state, message)
        }

        pub(crate) fn finish(self, reply: &[u8; PAKE_MESSAGE_LEN]) -> Vec<u8> {
            let y_g = element(reply).wrapping_sub(self.w.wrapping_mul(N));
            let k = self.x.wrapping_mul(y_g);
            key(
                &self.password_hash,
                &self.id_a,
                &self.id_b,
                &self.message,
                reply,
                k,
            )
        }
    }

    /// Side B at once: the key and the reply.
    pub(crate) fn respond<R: CryptoRng + ?Sized>(
        password: &[u8],
        id_a: Vec<u8>,
        id_b: Vec<u8>,
        hello: &[u8; PAKE_MESSAGE_LEN],
        rng: &mut R,
    ) -> (Vec<u8>, [u8; PAKE_MESSAGE_LEN]) {
        let password_hash = password_hash(password);
        let (y, w) = (random_scalar(rng), scalar(&password_hash));
        let reply = encode(SIDE_B, y.wrapping_mul(G).wrapping_add(w.wrapping_mul(N)));
        let x_g = element(hello).wrapping_sub(w.wrapping_mul(M));
        let k = y.wrapping_mul(x_g);
        (key(&password_hash, &id_a, &id_b, hello, &reply, k), reply)
    }

    pub(crate) fn check_element(
        message: &[u8; PAKE_MESSAGE_LEN],
        side: u8,
    ) -> Result<(), Misbehavior> {
        let canonical = message[9..].iter().all(|&byte| byte == 0);
        if message[0] == side && canonical && element(message) != 0 {
            Ok(())
        } else {
            Err(Misbehavior::InvalidPakeMessage)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use tether_identity::NetworkIdentity;

    use super::*;

    fn ids(rng: &mut ChaCha20Rng) -> (NodeId, NodeId) {
        (
            NetworkIdentity::generate(rng).node_id(),
            NetworkIdentity::generate(rng).node_id(),
        )
    }

    #[test]
    fn same_password_same_key_else_different() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (joiner, initiator) = ids(&mut rng);
        let code = PairingCode::generate(&mut rng);
        let other = PairingCode::generate(&mut rng);
        for (joiner_code, equal) in [(&code, true), (&other, false)] {
            let (state, hello) = JoinerPake::start(
                &Credential::from(joiner_code),
                &joiner,
                &initiator,
                &mut rng,
            )
            .unwrap();
            let (initiator_key, reply) = respond(
                &Credential::from(&code),
                &joiner,
                &initiator,
                &hello,
                &mut rng,
            )
            .unwrap();
            let joiner_key = state.finish(&reply).unwrap();
            assert_eq!(*joiner_key.0 == *initiator_key.0, equal);
        }
    }

    #[test]
    fn identities_are_bound() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let (joiner, initiator) = ids(&mut rng);
        let (_, mallory) = ids(&mut rng);
        let credential = Credential::from(&PairingCode::generate(&mut rng));
        let (state, hello) = JoinerPake::start(&credential, &joiner, &mallory, &mut rng).unwrap();
        let (initiator_key, reply) =
            respond(&credential, &joiner, &initiator, &hello, &mut rng).unwrap();
        assert_ne!(*state.finish(&reply).unwrap().0, *initiator_key.0);
    }

    #[test]
    fn bad_elements_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (joiner, initiator) = ids(&mut rng);
        let credential = Credential::from(&PairingCode::generate(&mut rng));
        let (_, hello) = JoinerPake::start(&credential, &joiner, &initiator, &mut rng).unwrap();
        assert_eq!(check_element(&hello, SIDE_A), Ok(()));
        // Wrong side byte (a reflected message).
        assert!(check_element(&hello, SIDE_B).is_err());
        // The identity point and another small-order point.
        let mut identity = [0u8; 33];
        identity[0] = SIDE_A;
        identity[1] = 1;
        assert!(check_element(&identity, SIDE_A).is_err());
        let mut order_two = [0u8; 33];
        order_two[0] = SIDE_A;
        order_two[1..].copy_from_slice(&{
            let mut y = [0xffu8; 32];
            y[0] = 0xec;
            y[31] = 0x7f;
            y
        });
        assert!(check_element(&order_two, SIDE_A).is_err());
        // A torsion component added to an honest point.
        let honest = CompressedEdwardsY(hello[1..].try_into().unwrap())
            .decompress()
            .unwrap();
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let mut mixed = [SIDE_A; 33];
        mixed[1..].copy_from_slice((honest + torsion).compress().as_bytes());
        assert!(check_element(&mixed, SIDE_A).is_err());
    }
}
