//! `PairingCode`, the words a user reads off one screen and types on another, and `Slot`,
//! the public word that finds the initiator on the LAN.

use std::fmt;
use std::str::FromStr;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::CodeError;
use crate::words::{self, BITS_PER_WORD, Lookup, WORD_COUNT};

/// The public rendezvous word of a code or ticket.
///
/// The initiator announces its slot on the LAN (for example in an mDNS record) so the joiner
/// can find it, and the joiner names it in its first message so an initiator with several
/// codes open knows which one is meant. The slot is public: it adds nothing to a code's
/// secrecy, and the handshake never relies on it being secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(u16);

impl Slot {
    /// The slot with word-list index `index`, if it is below 2048.
    pub fn from_index(index: u16) -> Option<Self> {
        (index < WORD_COUNT).then_some(Self(index))
    }

    /// A uniformly random slot.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(random_index(rng))
    }

    /// Its index in the BIP39 English list, below 2048.
    pub fn index(self) -> u16 {
        self.0
    }

    /// Its word.
    pub fn word(self) -> &'static str {
        words::word(self.0)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slot({})", self.word())
    }
}

/// A one-time pairing code: four words from the BIP39 English list, such as
/// `harbor-brave-lion-sunset`.
///
/// The first word is the public [`Slot`]; the other three are the secret, 3 × 11 = 33 bits,
/// which only ever enter the handshake as a SPAKE2 password, so an eavesdropper cannot test
/// guesses offline and an active attacker gets one guess per code (see `docs/pairing.md`).
///
/// Text is parsed forgivingly: any case, any separators (spaces, `-`, `_`, `.`, ...), and a
/// word may be shortened to a prefix of four or more letters that only one word has. A word
/// that is not on the list is reported with the closest words, before anything is sent, so a
/// typo never costs an attempt.
///
/// ```
/// use tether_pairing::{CodeError, PairingCode};
///
/// let code: PairingCode = "  Harbor brave_LION.sunset ".parse()?;
/// assert_eq!(code.to_string(), "harbor-brave-lion-sunset");
/// assert_eq!(code.slot().word(), "harbor");
/// assert_eq!("harb-brav-lion-suns".parse::<PairingCode>()?, code);
///
/// let typo = "harbor-brave-lino-sunset".parse::<PairingCode>().unwrap_err();
/// assert!(matches!(typo, CodeError::UnknownWord { position: 3, ref suggestions }
///     if suggestions.contains(&"lion")));
/// # Ok::<(), CodeError>(())
/// ```
///
/// `Debug` shows only the slot; `Display` shows the whole code, for the user to read. The
/// words are wiped from memory on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct PairingCode {
    /// Word-list indices, each below 2048; `[0]` is the slot, the rest are secret.
    words: [u16; PairingCode::WORDS],
}

impl PairingCode {
    /// Words in a code.
    pub const WORDS: usize = 4;
    /// Of which secret.
    pub const SECRET_WORDS: usize = 3;
    /// Bits of secret in a code: 11 per secret word.
    pub const SECRET_BITS: u32 = Self::SECRET_WORDS as u32 * BITS_PER_WORD;
    /// Longest text [`FromStr`] looks at; longer input is refused outright.
    pub const MAX_TEXT_LEN: usize = 256;

    /// A fresh random code.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut words = [0u16; Self::WORDS];
        for word in &mut words {
            *word = random_index(rng);
        }
        Self { words }
    }

    /// Builds a code from four words; see [`FromStr`] for the forgiving text form.
    pub fn from_words(words: [&str; Self::WORDS]) -> Result<Self, CodeError> {
        let tokens: Zeroizing<Vec<String>> =
            Zeroizing::new(words.iter().map(|w| w.to_lowercase()).collect());
        Self::from_tokens(&tokens)
    }

    /// The public first word.
    pub fn slot(&self) -> Slot {
        Slot(self.words.first().copied().unwrap_or(0))
    }

    /// All four words, slot first.
    pub fn words(&self) -> [&'static str; Self::WORDS] {
        self.words.map(words::word)
    }

    /// The word-list indices, slot first; these are what the PAKE password is made from.
    pub(crate) fn indices(&self) -> &[u16; Self::WORDS] {
        &self.words
    }

    fn from_tokens(tokens: &[String]) -> Result<Self, CodeError> {
        if tokens.len() != Self::WORDS {
            return Err(CodeError::WordCount {
                expected: Self::WORDS,
                found: tokens.len(),
            });
        }
        let mut words = [0u16; Self::WORDS];
        for (position, (slot, token)) in words.iter_mut().zip(tokens).enumerate() {
            match words::lookup(token) {
                Lookup::Found(index) => *slot = index,
                Lookup::Unknown(suggestions) => {
                    return Err(CodeError::UnknownWord {
                        position: position + 1,
                        suggestions,
                    });
                }
            }
        }
        Ok(Self { words })
    }
}

/// A uniform index below 2048: 2048 is a power of two, so masking 11 bits is unbiased.
fn random_index<R: CryptoRng + ?Sized>(rng: &mut R) -> u16 {
    let mut bytes = [0u8; 2];
    rng.fill_bytes(&mut bytes);
    u16::from_le_bytes(bytes) & (WORD_COUNT - 1)
}

impl FromStr for PairingCode {
    type Err = CodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() > Self::MAX_TEXT_LEN {
            return Err(CodeError::TooLong {
                max: Self::MAX_TEXT_LEN,
            });
        }
        let tokens: Zeroizing<Vec<String>> = Zeroizing::new(
            text.split(|c: char| !c.is_alphanumeric())
                .filter(|token| !token.is_empty())
                .map(str::to_lowercase)
                .collect(),
        );
        Self::from_tokens(&tokens)
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for word in self.words() {
            if !first {
                f.write_str("-")?;
            }
            f.write_str(word)?;
            first = false;
        }
        Ok(())
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingCode")
            .field("slot", &self.slot())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;

    #[test]
    fn forgiving_parse() {
        let code: PairingCode = "harbor-brave-lion-sunset".parse().unwrap();
        for text in [
            "HARBOR BRAVE LION SUNSET",
            "  harbor   brave\tlion\nsunset  ",
            "harbor_brave.lion,sunset",
            "harbor--brave--lion--sunset-",
            "Harb-Brav-Lion-Suns",
        ] {
            assert_eq!(text.parse::<PairingCode>().unwrap(), code, "{text}");
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            "harbor brave lion".parse::<PairingCode>().unwrap_err(),
            CodeError::WordCount {
                expected: 4,
                found: 3
            }
        );
        assert_eq!(
            "".parse::<PairingCode>().unwrap_err(),
            CodeError::WordCount {
                expected: 4,
                found: 0
            }
        );
        let long = "a".repeat(PairingCode::MAX_TEXT_LEN + 1);
        assert!(matches!(
            long.parse::<PairingCode>(),
            Err(CodeError::TooLong { .. })
        ));
        let err = "harbor brave lion sunsett"
            .parse::<PairingCode>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "word 4 is not a code word; did you mean \"sunset\"?"
        );
        let err = "harbor brave lion qqqqqqqq"
            .parse::<PairingCode>()
            .unwrap_err();
        assert_eq!(err.to_string(), "word 4 is not a code word");
    }

    #[test]
    fn secret_bits() {
        assert_eq!(PairingCode::SECRET_BITS, 33);
    }

    #[test]
    fn debug_hides_the_secret_words() {
        let code: PairingCode = "harbor-brave-lion-sunset".parse().unwrap();
        let debug = format!("{code:?}");
        assert!(debug.contains("harbor"));
        for secret in ["brave", "lion", "sunset"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn generated_codes_use_the_whole_list() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..4096 {
            let code = PairingCode::generate(&mut rng);
            assert!(code.indices().iter().all(|&i| i < WORD_COUNT));
            seen.extend(code.indices().iter().copied());
        }
        // 16384 draws from 2048 values miss a given value with probability e^-8.
        assert!(seen.len() > 2000, "{}", seen.len());
    }
}
