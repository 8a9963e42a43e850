//! Known-answer tests from the RFCs, run through this crate's own API.
//!
//! * RFC 7748 §5.2 (X25519 function) and §6.1 (Diffie-Hellman) through [`EphemeralKeyPair`].
//! * RFC 8439 §2.8.2 (ChaCha20-Poly1305 AEAD) through the seal/open code `SessionKeys` uses.
//! * RFC 5869 appendix A, test cases 1–3 (HKDF-SHA256) through [`Prk`].

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use tether_crypto::{
    CryptoError, EphemeralKeyPair, EphemeralPublicKey, Prk, TransferCipher, danger_open_with_nonce,
    danger_seal_with_nonce,
};

const CHACHA: TransferCipher = TransferCipher::ChaCha20Poly1305;
const AES: TransferCipher = TransferCipher::Aes256Gcm;

fn bytes<const N: usize>(text: &str) -> [u8; N] {
    hex::decode(text).unwrap().try_into().unwrap()
}

fn x25519(scalar: [u8; 32], u: [u8; 32]) -> [u8; 32] {
    EphemeralKeyPair::danger_from_secret_bytes(scalar)
        .diffie_hellman(&EphemeralPublicKey::from_bytes(u))
        .unwrap()
        .danger_to_bytes()
}

#[test]
fn rfc7748_section_5_2_x25519_function() {
    let vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ];
    for (scalar, u, expected) in vectors {
        assert_eq!(x25519(bytes(scalar), bytes(u)), bytes::<32>(expected));
    }
}

#[test]
fn rfc7748_section_5_2_iterated_1000_times() {
    let mut k = [0u8; 32];
    k[0] = 9;
    let mut u = k;
    for round in 1..=1000 {
        let result = x25519(k, u);
        u = k;
        k = result;
        if round == 1 {
            assert_eq!(
                k,
                bytes::<32>("422c8e7a6227d7bca1350b3e2bb7279f7897b87bb6854b783c60e80311ae3079")
            );
        }
    }
    assert_eq!(
        k,
        bytes::<32>("684cf59ba83309552800ef566f2f4d3c1c3887c49360e3875f2eb94d99532c51")
    );
}

#[test]
fn rfc7748_section_6_1_diffie_hellman() {
    let alice_secret = bytes("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    let alice_public = bytes("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    let bob_secret = bytes("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    let bob_public = bytes("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    let shared = bytes::<32>("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

    let alice = EphemeralKeyPair::danger_from_secret_bytes(alice_secret);
    let bob = EphemeralKeyPair::danger_from_secret_bytes(bob_secret);
    assert_eq!(alice.public_key().to_bytes(), alice_public);
    assert_eq!(bob.public_key().to_bytes(), bob_public);
    let alice_shared = alice
        .diffie_hellman(&EphemeralPublicKey::from_bytes(bob_public))
        .unwrap();
    let bob_shared = bob
        .diffie_hellman(&EphemeralPublicKey::from_bytes(alice_public))
        .unwrap();
    assert_eq!(alice_shared.danger_to_bytes(), shared);
    assert_eq!(bob_shared.danger_to_bytes(), shared);
}

const RFC8439_KEY: &str = "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f";
const RFC8439_NONCE: &str = "070000004041424344454647";
const RFC8439_AAD: &str = "50515253c0c1c2c3c4c5c6c7";
const RFC8439_PLAINTEXT: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";
const RFC8439_CIPHERTEXT: &str = "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6\
3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58\
fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116";
const RFC8439_TAG: &str = "1ae10b594f09e26a7e902ecbd0600691";

#[test]
fn rfc8439_section_2_8_2_aead_seal() {
    let mut buf = RFC8439_PLAINTEXT.to_vec();
    let tag = danger_seal_with_nonce(
        CHACHA,
        &bytes(RFC8439_KEY),
        &bytes(RFC8439_NONCE),
        &hex::decode(RFC8439_AAD).unwrap(),
        &mut buf,
    )
    .unwrap();
    assert_eq!(hex::encode(&buf), RFC8439_CIPHERTEXT);
    assert_eq!(tag, bytes::<16>(RFC8439_TAG));
}

#[test]
fn rfc8439_section_2_8_2_aead_open_and_reject_tampering() {
    let key = bytes(RFC8439_KEY);
    let nonce = bytes(RFC8439_NONCE);
    let aad = hex::decode(RFC8439_AAD).unwrap();
    let tag = bytes(RFC8439_TAG);
    let ciphertext = hex::decode(RFC8439_CIPHERTEXT).unwrap();

    let mut buf = ciphertext.clone();
    danger_open_with_nonce(CHACHA, &key, &nonce, &aad, &mut buf, &tag).unwrap();
    assert_eq!(buf, RFC8439_PLAINTEXT);

    let mut flipped = ciphertext.clone();
    flipped[0] ^= 0x80;
    assert_eq!(
        danger_open_with_nonce(CHACHA, &key, &nonce, &aad, &mut flipped, &tag),
        Err(CryptoError::Authentication)
    );
    let mut buf = ciphertext;
    assert_eq!(
        danger_open_with_nonce(CHACHA, &key, &nonce, &aad[1..], &mut buf, &tag),
        Err(CryptoError::Authentication)
    );
}

/// AES-256-GCM known answers, each `(key, nonce, aad, plaintext, ciphertext, tag)`: test
/// case 16 of McGrew and Viega's GCM specification (the one NIST SP 800-38D's test vectors
/// start from: AES-256, 96-bit IV, associated data, a partial last block), one case of NIST
/// CAVP `gcmEncryptExtIV256.rsp`, and test cases 13 and 14 (all-zero key and nonce).
const AES_256_GCM_VECTORS: [[&str; 6]; 4] = [
    [
        "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
        "cafebabefacedbaddecaf888",
        "feedfacedeadbeeffeedfacedeadbeefabaddad2",
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
        "76fc6ece0f4e1768cddf8853bb2d551b",
    ],
    [
        "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b",
        "ac93a1a6145299bde902f21a",
        "1e0889016f67601c8ebea4943bc23ad6",
        "2d71bcfa914e4ac045b2aa60955fad24",
        "8995ae2e6df3dbf96fac7b7137bae67f",
        "eca5aa77d51d4a0a14d9c51e1da474ab",
    ],
    [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000",
        "",
        "",
        "",
        "530f8afbc74536b9a963b4f1c4cb738b",
    ],
    [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "000000000000000000000000",
        "",
        "00000000000000000000000000000000",
        "cea7403d4d606b6e074ec5d3baf39d18",
        "d0d1c8a799996bf0265b98b5d48ab919",
    ],
];

#[test]
fn aes_256_gcm_known_answers_seal_and_open() {
    for [key, nonce, aad, plaintext, ciphertext, tag] in AES_256_GCM_VECTORS {
        let (key, nonce) = (bytes::<32>(key), bytes::<12>(nonce));
        let aad = hex::decode(aad).unwrap();
        let mut buf = hex::decode(plaintext).unwrap();
        let sealed_tag = danger_seal_with_nonce(AES, &key, &nonce, &aad, &mut buf).unwrap();
        assert_eq!(hex::encode(&buf), ciphertext);
        assert_eq!(sealed_tag, bytes::<16>(tag));

        danger_open_with_nonce(AES, &key, &nonce, &aad, &mut buf, &sealed_tag).unwrap();
        assert_eq!(hex::encode(&buf), plaintext);

        // Any flipped tag bit, and the same bytes under ChaCha20-Poly1305, fail.
        let sealed = hex::decode(ciphertext).unwrap();
        let mut bad_tag = sealed_tag;
        bad_tag[15] ^= 1;
        let mut copy = sealed.clone();
        assert_eq!(
            danger_open_with_nonce(AES, &key, &nonce, &aad, &mut copy, &bad_tag),
            Err(CryptoError::Authentication)
        );
        assert_eq!(copy, sealed, "a failed open leaves the ciphertext");
        assert_eq!(
            danger_open_with_nonce(CHACHA, &key, &nonce, &aad, &mut copy, &sealed_tag),
            Err(CryptoError::Authentication)
        );
    }
}

struct HkdfCase {
    ikm: &'static str,
    salt: &'static str,
    info: &'static str,
    prk: &'static str,
    okm: &'static str,
}

const RFC5869_SHA256: [HkdfCase; 3] = [
    // A.1: basic test case.
    HkdfCase {
        ikm: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        salt: "000102030405060708090a0b0c",
        info: "f0f1f2f3f4f5f6f7f8f9",
        prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    },
    // A.2: longer inputs and outputs.
    HkdfCase {
        ikm: "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\
              202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f\
              404142434445464748494a4b4c4d4e4f",
        salt: "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f\
               808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f\
               a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        info: "b0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecf\
               d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeef\
               f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
        prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c\
              59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71\
              cc30c58179ec3e87c14c01d5c1f3434f1d87",
    },
    // A.3: zero-length salt and info.
    HkdfCase {
        ikm: "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
        salt: "",
        info: "",
        prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    },
];

#[test]
fn rfc5869_hkdf_sha256_cases_1_to_3() {
    for (index, case) in RFC5869_SHA256.iter().enumerate() {
        let unhex = |text: &str| hex::decode(text.replace(' ', "")).unwrap();
        let prk = Prk::extract(&unhex(case.salt), &unhex(case.ikm));
        assert_eq!(
            hex::encode(prk.danger_to_bytes()),
            case.prk,
            "case {}",
            index + 1
        );

        let expected = unhex(case.okm);
        let mut okm = vec![0u8; expected.len()];
        prk.expand(&[&unhex(case.info)], &mut okm).unwrap();
        assert_eq!(okm, expected, "case {}", index + 1);

        // The same through a PRK given as bytes, with the info split in two.
        let info = unhex(case.info);
        let (first, second) = info.split_at(info.len() / 2);
        let mut okm = vec![0u8; expected.len()];
        Prk::from_bytes(prk.danger_to_bytes())
            .expand(&[first, second], &mut okm)
            .unwrap();
        assert_eq!(okm, expected, "case {}", index + 1);
    }
}
