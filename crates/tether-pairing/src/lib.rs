//! Pairing two Tether devices with a short word code, as sans-IO state machines.
//!
//! One device (the **initiator**) shows a [`PairingCode`] such as `harbor-brave-lion-sunset`,
//! or a [`PairingTicket`] for pairing across networks; the user types or scans it on the other
//! device (the **joiner**). The two run a five-message handshake over any reliable stream whose
//! transport has authenticated both endpoint ids (iroh's QUIC/TLS does):
//!
//! 1. joiner → initiator `Hello`: session id, slot, SPAKE2 message;
//! 2. initiator → joiner `Reply`: SPAKE2 message;
//! 3. joiner → initiator `JoinerConfirm`: MAC proving the code, sealed device info;
//! 4. initiator → joiner `InitiatorConfirm`: MAC proving the code, sealed device info and
//!    transcript signature;
//! 5. joiner → initiator `JoinerSignature`: sealed transcript signature.
//!
//! SPAKE2 is bound to both endpoint ids; every MAC, seal and signature covers the transcript of
//! everything before it. Each side ends with [`Paired`]: the peer's [`DeviceInfo`](tether_identity::DeviceInfo), its
//! [`NodeId`](tether_identity::NodeId), a 32-byte [`PairingSecret`] for `tether-crypto`'s session handshake, and a
//! [`VerificationCode`] both screens can show. A wrong code fails both sides with
//! [`PairingError::WrongCode`] and burns the code: an active attacker gets one guess per code.
//! `docs/pairing.md` has the full argument and a table of attacks.
//!
//! Nothing here reads a clock, opens a socket or draws its own randomness: pass `now` as a
//! [`Timestamp`] and a [`rand_core::CryptoRng`].
//!
//! On a stream each message is framed with a `u16` big-endian length: [`encode_message`] and
//! the sans-IO [`MessageDecoder`], or, with the `tokio` feature, `read_message` and
//! `write_message` over tokio's `AsyncRead`/`AsyncWrite`.
//!
//! ```
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//! use tether_identity::{DeviceId, DeviceInfo, DeviceName, DeviceType, NetworkIdentity};
//! use tether_pairing::{Initiator, InitiatorConfig, InitiatorStep, Joiner, LocalDevice, PairingCode, Timestamp};
//!
//! let mut rng = ChaCha20Rng::seed_from_u64(7);
//! let mut device = |name: &str| {
//!     let identity = NetworkIdentity::generate(&mut rng);
//!     let info = DeviceInfo {
//!         device_id: DeviceId::random(&mut rng),
//!         device_name: DeviceName::new(name).unwrap(),
//!         device_type: DeviceType::Laptop,
//!         public_key: identity.node_id(),
//!     };
//!     LocalDevice::new(identity, info).unwrap()
//! };
//! let (laptop, phone) = (device("laptop"), device("phone"));
//! let (laptop_id, phone_id) = (laptop.node_id(), phone.node_id());
//!
//! // The laptop shows a code; the user types it on the phone.
//! let code = PairingCode::generate(&mut rng);
//! let now = Timestamp::ZERO;
//! let mut initiator = Initiator::new(&code, laptop, now, InitiatorConfig::default())?;
//! let typed: PairingCode = code.to_string().to_uppercase().parse()?;
//!
//! // Each `handle` call is given the peer id the transport authenticated.
//! let (joiner, hello) = Joiner::start(&typed, phone, laptop_id, &mut rng)?;
//! let InitiatorStep::Send(reply) = initiator.handle(phone_id, &hello, now, &mut rng)? else { panic!() };
//! let (joiner, confirm) = joiner.handle_reply(&reply)?;
//! let InitiatorStep::Send(confirm_back) = initiator.handle(phone_id, &confirm, now, &mut rng)? else { panic!() };
//! let (phone_view, signature) = joiner.handle_confirm(&confirm_back)?;
//! let InitiatorStep::Paired(laptop_view) = initiator.handle(phone_id, &signature, now, &mut rng)? else { panic!() };
//!
//! assert_eq!(phone_view.peer(), laptop_id);
//! assert_eq!(laptop_view.peer_info().device_name.as_str(), "phone");
//! assert_eq!(phone_view.pairing_secret().as_bytes(), laptop_view.pairing_secret().as_bytes());
//! assert_eq!(phone_view.verification_code(), laptop_view.verification_code());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod abort;
mod code;
mod cursor;
mod device;
mod error;
mod framing;
#[cfg(any(test, feature = "danger"))]
#[doc(hidden)]
pub mod fuzzing;
mod initiator;
mod joiner;
mod kinds;
mod message;
mod outcome;
mod pake;
mod schedule;
mod ticket;
mod time;
mod transcript;
mod words;

pub use code::{PairingCode, Slot};
pub use device::{LocalDevice, TRANSCRIPT_SIGNING_CONTEXT};
pub use error::{
    CodeError, Failure, MessageError, Misbehavior, PairingError, Refusal, TicketError, UsageError,
};
pub use framing::{
    FramingError, LENGTH_PREFIX_LEN, MessageDecoder, encode_message, encode_message_into,
};
#[cfg(feature = "tokio")]
pub use framing::{StreamError, read_message, write_message};
pub use initiator::{CodeStatus, Initiator, InitiatorConfig, InitiatorStep};
pub use joiner::{Joiner, JoinerConfirming};
pub use kinds::{AbortReason, CredentialKind, MessageKind};
pub use message::{MAX_MESSAGE_LEN, PROTOCOL_VERSION, PairingMessage, SessionId};
pub use outcome::{Paired, VerificationCode};
pub use pake::Credential;
pub use tether_crypto::PairingSecret;
pub use ticket::PairingTicket;
pub use time::Timestamp;
