//! The BIP39 English word list: looking a typed word up, and suggesting the closest words
//! when it is not on the list.

use std::sync::OnceLock;

/// Words on the list: 2048, so each word carries exactly 11 bits.
pub(crate) const WORD_COUNT: u16 = 2048;

/// Bits of entropy in one uniformly chosen word.
pub(crate) const BITS_PER_WORD: u32 = 11;

/// Words longer than this are not on the list (the longest has 8 letters); we compare at
/// most this many characters so a hostile input costs little.
const MAX_COMPARED_CHARS: usize = 16;

/// Suggestions farther than this edit distance are not shown: they would be guesses.
const MAX_SUGGESTION_DISTANCE: usize = 2;

/// At most this many suggestions per unknown word.
pub(crate) const MAX_SUGGESTIONS: usize = 3;

/// The English list, in its official (alphabetical) order.
fn list() -> &'static [&'static str; 2048] {
    bip39::Language::English.word_list()
}

/// The word at `index`, which callers keep below [`WORD_COUNT`].
///
/// An out-of-range index (a bug, never input) gives the empty string rather than a panic.
pub(crate) fn word(index: u16) -> &'static str {
    list().get(usize::from(index)).copied().unwrap_or("")
}

/// What a typed word turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The word, or an unambiguous prefix of at least four letters, was found.
    Found(u16),
    /// Not on the list; these are the closest words (possibly none).
    Unknown(Vec<&'static str>),
}

/// Looks up one already-lowercased word.
///
/// Accepts a whole word, or (as BIP39 intends) a prefix of four or more letters that only one
/// word starts with: "harb" is "harbor". Anything else yields up to [`MAX_SUGGESTIONS`] words
/// within a small edit distance, closest first.
pub(crate) fn lookup(typed: &str) -> Lookup {
    if let Some(index) = bip39::Language::English.find_word(typed) {
        return Lookup::Found(index);
    }
    if typed.chars().count() >= 4 {
        // The list is sorted, so the words that start with `typed` are one run from here.
        let first = list().partition_point(|word| *word < typed);
        let matches = |index: usize| list().get(index).is_some_and(|w| w.starts_with(typed));
        if matches(first)
            && !matches(first + 1)
            && let Ok(index) = u16::try_from(first)
        {
            return Lookup::Found(index);
        }
    }
    Lookup::Unknown(suggestions(typed))
}

/// The closest listed words to `typed`, closest first, ties in list order.
fn suggestions(typed: &str) -> Vec<&'static str> {
    let typed = Letters::new(typed);
    let typed_len = typed.as_slice().len();
    let typed_mask = letter_mask(typed.as_slice().iter().copied());
    let mut scored: Vec<(usize, usize, &'static str)> = Vec::new();
    for (index, (word, &word_mask)) in list().iter().zip(word_masks()).enumerate() {
        // An edit changes the length by at most one, and removes at most one letter of one
        // word that the other lacks: words further off than MAX_SUGGESTION_DISTANCE by either
        // count are ruled out without the dynamic programme (most words, for most typing
        // errors). List words are ASCII: their length in bytes is in letters.
        let missing = (typed_mask & !word_mask)
            .count_ones()
            .max((word_mask & !typed_mask).count_ones()) as usize;
        if missing > MAX_SUGGESTION_DISTANCE
            || word.len().abs_diff(typed_len) > MAX_SUGGESTION_DISTANCE
        {
            continue;
        }
        let distance = edit_distance(typed.as_slice(), Letters::new(word).as_slice());
        if distance <= MAX_SUGGESTION_DISTANCE {
            scored.push((distance, index, *word));
        }
    }
    scored.sort_unstable();
    scored
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, _, word)| word)
        .collect()
}

/// [`letter_mask`] of every list word, computed once.
fn word_masks() -> &'static [u32] {
    static MASKS: OnceLock<Vec<u32>> = OnceLock::new();
    MASKS.get_or_init(|| {
        list()
            .iter()
            .map(|word| letter_mask(word.chars()))
            .collect()
    })
}

/// The set of letters in a word: bit 0 for `a` to bit 25 for `z`, bit 26 for anything else
/// (which no list word has).
fn letter_mask(letters: impl Iterator<Item = char>) -> u32 {
    letters.fold(0, |mask, letter| {
        let bit = match letter {
            'a'..='z' => u32::from(letter) - u32::from('a'),
            _ => 26,
        };
        mask | (1 << bit)
    })
}

/// The first [`MAX_COMPARED_CHARS`] letters of a word, on the stack: scoring a typed word
/// against all 2048 words allocates nothing per word.
struct Letters {
    chars: [char; MAX_COMPARED_CHARS],
    len: usize,
}

impl Letters {
    fn new(word: &str) -> Self {
        let mut letters = Self {
            chars: ['\0'; MAX_COMPARED_CHARS],
            len: 0,
        };
        for (slot, letter) in letters.chars.iter_mut().zip(word.chars()) {
            *slot = letter;
            letters.len += 1;
        }
        letters
    }

    fn as_slice(&self) -> &[char] {
        self.chars.get(..self.len).unwrap_or(&[])
    }
}

/// The optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
/// two neighbouring letters each cost one ("lino" → "lion" is 1). Only the first
/// [`MAX_COMPARED_CHARS`] letters of `b` count.
pub(crate) fn edit_distance(a: &[char], b: &[char]) -> usize {
    // Three rolling rows of the classic dynamic programme, on the stack; `at` reads a cell,
    // treating a missing one as unreachable, so no index can panic.
    const ROW: usize = MAX_COMPARED_CHARS + 1;
    fn at(row: &[usize; ROW], column: usize) -> usize {
        row.get(column).copied().unwrap_or(usize::MAX)
    }
    let b = b.get(..MAX_COMPARED_CHARS).unwrap_or(b);
    let mut before_previous = [usize::MAX; ROW];
    let mut previous = [usize::MAX; ROW];
    for (j, cell) in previous.iter_mut().enumerate().take(b.len() + 1) {
        *cell = j;
    }
    let mut previous_char: Option<char> = None;
    for (i, &char_a) in a.iter().enumerate() {
        let mut current = [usize::MAX; ROW];
        if let Some(first) = current.first_mut() {
            *first = i + 1;
        }
        let mut previous_b: Option<char> = None;
        for (j, &char_b) in b.iter().enumerate() {
            let substitute = at(&previous, j).saturating_add(usize::from(char_a != char_b));
            let delete = at(&previous, j + 1).saturating_add(1);
            let insert = at(&current, j).saturating_add(1);
            let mut best = substitute.min(delete).min(insert);
            if previous_char == Some(char_b) && previous_b == Some(char_a) && j > 0 {
                best = best.min(at(&before_previous, j - 1).saturating_add(1));
            }
            if let Some(cell) = current.get_mut(j + 1) {
                *cell = best;
            }
            previous_b = Some(char_b);
        }
        before_previous = previous;
        previous = current;
        previous_char = Some(char_a);
    }
    at(&previous, b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distance(a: &str, b: &str) -> usize {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        edit_distance(&a, &b)
    }

    #[test]
    fn the_list_is_the_bip39_english_list() {
        assert_eq!(list().len(), usize::from(WORD_COUNT));
        assert_eq!(word(0), "abandon");
        assert_eq!(word(2047), "zoo");
        assert_eq!(word(2048), "");
        assert_eq!(1u32 << BITS_PER_WORD, u32::from(WORD_COUNT));
    }

    #[test]
    fn four_letters_identify_a_word() {
        // BIP39 promises this; the prefix rule relies on it.
        let mut prefixes: Vec<String> =
            list().iter().map(|w| w.chars().take(4).collect()).collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), 2048);
    }

    #[test]
    fn distances() {
        assert_eq!(distance("lion", "lion"), 0);
        assert_eq!(distance("lino", "lion"), 1);
        assert_eq!(distance("lio", "lion"), 1);
        assert_eq!(distance("lions", "lion"), 1);
        assert_eq!(distance("loin", "lion"), 1);
        assert_eq!(distance("xyz", "lion"), 4);
        assert_eq!(distance("", "lion"), 4);
        assert_eq!(distance("lion", ""), 4);
        assert_eq!(distance("abcd", "badc"), 2);
    }

    /// The letter-set filter only skips words the edit distance would have refused too.
    #[test]
    fn the_filter_keeps_every_close_word() {
        let brute = |typed: &str| -> Vec<&'static str> {
            let a: Vec<char> = typed.chars().take(MAX_COMPARED_CHARS).collect();
            let mut scored: Vec<(usize, usize, &'static str)> = list()
                .iter()
                .enumerate()
                .filter_map(|(index, word)| {
                    let b: Vec<char> = word.chars().collect();
                    let distance = edit_distance(&a, &b);
                    (distance <= MAX_SUGGESTION_DISTANCE).then_some((distance, index, *word))
                })
                .collect();
            scored.sort_unstable();
            scored
                .into_iter()
                .take(MAX_SUGGESTIONS)
                .map(|(_, _, w)| w)
                .collect()
        };
        for (i, word) in list().iter().enumerate().step_by(29) {
            let mut typos = vec![format!("{word}s"), word.chars().rev().collect::<String>()];
            let chars: Vec<char> = word.chars().collect();
            typos.push(chars.iter().skip(1).collect());
            let mut swapped = chars.clone();
            swapped.swap(0, 1);
            typos.push(swapped.iter().collect());
            let mut substituted = chars.clone();
            substituted[i % chars.len()] = 'q';
            typos.push(substituted.iter().collect());
            typos.push(format!("x{word}é"));
            for typo in typos {
                assert_eq!(suggestions(&typo), brute(&typo), "{typo}");
            }
        }
    }

    /// The binary-search prefix rule finds what a scan of the whole list finds.
    #[test]
    fn prefixes_match_a_linear_scan() {
        for word in list() {
            for len in 4..=word.len() {
                let prefix = &word[..len];
                let mut scan = list()
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| w.starts_with(prefix));
                let expected = match (scan.next(), scan.next()) {
                    (Some((index, _)), None) => Some(index as u16),
                    _ => None,
                };
                let found = match lookup(prefix) {
                    Lookup::Found(index) => Some(index),
                    Lookup::Unknown(_) => None,
                };
                assert_eq!(found, expected, "{prefix}");
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            lookup("harbor"),
            Lookup::Found(list().iter().position(|w| *w == "harbor").unwrap() as u16)
        );
        assert_eq!(lookup("harb"), lookup("harbor"));
        assert_eq!(lookup("harbo"), lookup("harbor"));
        // Three letters are not enough for a prefix, and "act" is itself a word.
        assert!(matches!(lookup("act"), Lookup::Found(_)));
        match lookup("sunsett") {
            Lookup::Unknown(words) => assert_eq!(words.first(), Some(&"sunset")),
            other => panic!("{other:?}"),
        }
        match lookup("lino") {
            Lookup::Unknown(words) => assert!(words.contains(&"lion"), "{words:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(lookup("qqqqqqqq"), Lookup::Unknown(vec![]));
    }
}
