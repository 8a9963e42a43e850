//! Property tests for the two things users type or paste: codes and tickets.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tether_identity::NetworkIdentity;
use tether_pairing::{CodeError, PairingCode, PairingTicket, TicketError};

fn code() -> impl Strategy<Value = PairingCode> {
    any::<u64>().prop_map(|seed| PairingCode::generate(&mut ChaCha20Rng::seed_from_u64(seed)))
}

fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("-".to_owned()),
        Just(" ".to_owned()),
        Just("  ".to_owned()),
        Just("_".to_owned()),
        Just(".".to_owned()),
        Just(", ".to_owned()),
        Just("\t".to_owned()),
        Just(" - ".to_owned()),
        Just("/".to_owned()),
    ]
}

fn address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn relay_url() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("https?://[a-z0-9.-]{1,40}(:[0-9]{1,5})?(/[a-zA-Z0-9_./-]{0,40})?")
}

proptest! {
    #[test]
    fn codes_round_trip_through_their_text(code in code()) {
        let text = code.to_string();
        prop_assert_eq!(text.split('-').count(), PairingCode::WORDS);
        prop_assert_eq!(text.parse::<PairingCode>().unwrap(), code);
    }

    #[test]
    fn code_parsing_forgives_case_and_separators(
        code in code(),
        separators in proptest::collection::vec(separator(), 3),
        upper in proptest::collection::vec(any::<bool>(), 4),
        padding in "[ \t\n]{0,3}",
    ) {
        let words = code.words();
        let mut text = padding.clone();
        for (i, word) in words.iter().enumerate() {
            text.push_str(&if upper[i] { word.to_uppercase() } else { (*word).to_owned() });
            if let Some(separator) = separators.get(i) {
                text.push_str(separator);
            }
        }
        text.push_str(&padding);
        prop_assert_eq!(text.parse::<PairingCode>().unwrap(), code);
    }

    #[test]
    fn code_parsing_never_panics_and_errors_are_bounded(text in "\\PC{0,300}") {
        match text.parse::<PairingCode>() {
            Ok(code) => prop_assert_eq!(code.to_string().parse::<PairingCode>().unwrap(), code),
            Err(CodeError::UnknownWord { position, suggestions }) => {
                prop_assert!((1..=PairingCode::WORDS).contains(&position));
                prop_assert!(suggestions.len() <= 3);
            }
            Err(_) => {}
        }
    }

    #[test]
    fn a_typo_in_one_word_is_named_not_guessed(code in code(), which in 0usize..4, at in 0usize..8, letter in "[a-z]") {
        // Replace one letter of one word.
        let mut words: Vec<String> = code.words().iter().map(|w| (*w).to_owned()).collect();
        let word = &mut words[which];
        let at = at % word.len();
        word.replace_range(at..=at, &letter);
        match words.join("-").parse::<PairingCode>() {
            // Another valid word (or prefix): a different code, which the handshake will reject.
            Ok(other) => prop_assert!(other == code || other.words()[which] != code.words()[which]),
            Err(CodeError::UnknownWord { position, suggestions }) => {
                prop_assert_eq!(position, which + 1);
                // The intended word is one edit away, so it is suggested unless three other
                // words are at least as close (ties go in list order).
                prop_assert!(
                    suggestions.contains(&code.words()[which]) || suggestions.len() == 3,
                    "{:?}", suggestions
                );
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }

    #[test]
    fn tickets_round_trip(
        seed in any::<u64>(),
        relay in relay_url(),
        addresses in proptest::collection::vec(address(), 0..=PairingTicket::MAX_ADDRESSES),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let node_id = NetworkIdentity::generate(&mut rng).node_id();
        let ticket = PairingTicket::new(node_id, relay.clone(), addresses.clone(), &mut rng).unwrap();
        let text = ticket.to_string();
        prop_assert!(text.starts_with(PairingTicket::PREFIX));
        prop_assert!(text.len() <= PairingTicket::MAX_TEXT_LEN);
        let parsed: PairingTicket = text.parse().unwrap();
        prop_assert_eq!(&parsed, &ticket);
        prop_assert_eq!(parsed.initiator(), node_id);
        prop_assert_eq!(parsed.relay_url(), relay.as_deref());
        prop_assert_eq!(parsed.direct_addresses(), &addresses[..]);
        let qr = ticket.to_qr_string();
        prop_assert!(qr.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
        prop_assert_eq!(qr.parse::<PairingTicket>().unwrap(), ticket);
    }

    #[test]
    fn a_damaged_ticket_is_reported_not_used(seed in any::<u64>(), at in any::<prop::sample::Index>(), with in "[a-z2-7]") {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let node_id = NetworkIdentity::generate(&mut rng).node_id();
        let ticket = PairingTicket::new(node_id, None, vec![], &mut rng).unwrap();
        let text = ticket.to_string();
        let at = PairingTicket::PREFIX.len() + at.index(text.len() - PairingTicket::PREFIX.len());
        let mut damaged = text.clone();
        damaged.replace_range(at..=at, &with);
        if damaged != text {
            // A changed character changes the bytes; the checksum (or a length or padding
            // check) catches it, barring a 2^-32 checksum collision.
            prop_assert!(damaged.parse::<PairingTicket>().is_err());
        }
        // Cut short anywhere: refused.
        prop_assert!(text[..at].parse::<PairingTicket>().is_err());
    }

    #[test]
    fn ticket_parsing_never_panics(text in "\\PC{0,400}") {
        let _ = text.parse::<PairingTicket>();
        let _ = format!("tether1{text}").parse::<PairingTicket>();
    }

    #[test]
    fn arbitrary_ticket_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let text = format!("tether1{}", data_encoding_base32(&bytes));
        match text.parse::<PairingTicket>() {
            Ok(ticket) => prop_assert_eq!(ticket.to_string().parse::<PairingTicket>().unwrap(), ticket),
            Err(TicketError::TooLong) => prop_assert!(text.len() > PairingTicket::MAX_TEXT_LEN),
            Err(_) => {}
        }
    }
}

/// Unpadded lowercase RFC 4648 base32, as tickets use.
fn data_encoding_base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::new();
    for chunk in bytes.chunks(5) {
        let mut buffer = [0u8; 5];
        buffer[..chunk.len()].copy_from_slice(chunk);
        let value = buffer
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let chars = (chunk.len() * 8).div_ceil(5);
        for i in 0..chars {
            let index = (value >> (35 - 5 * i)) & 31;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}
