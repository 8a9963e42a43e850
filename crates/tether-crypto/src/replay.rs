//! The sliding replay window over received frame counters (RFC 6479 style, as in WireGuard).

use crate::CryptoError;

/// The size of the replay window: the `REPLAY_WINDOW` counters ending at the highest one
/// received are accepted once each, in any order; anything older is rejected as too old.
pub const REPLAY_WINDOW: u64 = 2048;

const WORD_BITS: u64 = u64::BITS as u64;
/// One word more than the window needs, so that the word being filled never aliases a word
/// that is still inside the window (RFC 6479 §2).
const WORDS: u64 = REPLAY_WINDOW / WORD_BITS + 1;

/// Which counters near the top have been seen.
///
/// Counters are checked with [`ReplayWindow::check`] before authentication and recorded with
/// [`ReplayWindow::commit`] only after, so a forged frame never moves the window.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct ReplayWindow {
    /// One more than the highest counter committed; 0 before the first.
    top: u64,
    /// Bit `c % 64` of word `(c / 64) % WORDS` is set once counter `c` is committed.
    bitmap: [u64; WORDS as usize],
}

impl ReplayWindow {
    pub(crate) const fn new() -> Self {
        Self {
            top: 0,
            bitmap: [0; WORDS as usize],
        }
    }

    /// The highest counter committed so far, if any.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.top.checked_sub(1)
    }

    /// Whether `counter` may be accepted: new, or inside the window and not seen yet.
    pub(crate) fn check(&self, counter: u64) -> Result<(), CryptoError> {
        if counter >= self.top {
            return Ok(());
        }
        if self.top - counter > REPLAY_WINDOW {
            return Err(CryptoError::TooOld { counter });
        }
        let (word, bit) = Self::position(counter);
        if self.word(word) & bit != 0 {
            return Err(CryptoError::Replayed { counter });
        }
        Ok(())
    }

    /// Records `counter`, which must have passed [`Self::check`] and authentication.
    pub(crate) fn commit(&mut self, counter: u64) {
        if counter >= self.top {
            self.advance_to(counter);
        }
        let (word, bit) = Self::position(counter);
        if let Some(slot) = self.bitmap.get_mut(word) {
            *slot |= bit;
        }
    }

    /// Moves the top to just above `counter`, clearing the words of the blocks entered.
    fn advance_to(&mut self, counter: u64) {
        let new_block = counter / WORD_BITS;
        if let Some(highest) = self.highest() {
            let old_block = highest / WORD_BITS;
            let entered = new_block - old_block;
            if entered >= WORDS {
                self.bitmap = [0; WORDS as usize];
            } else {
                for block in old_block + 1..=new_block {
                    if let Some(slot) = self.bitmap.get_mut((block % WORDS) as usize) {
                        *slot = 0;
                    }
                }
            }
        }
        // Before the first commit the bitmap is all zero, so nothing needs clearing.
        self.top = counter.saturating_add(1);
    }

    fn position(counter: u64) -> (usize, u64) {
        (
            ((counter / WORD_BITS) % WORDS) as usize,
            1 << (counter % WORD_BITS),
        )
    }

    fn word(&self, index: usize) -> u64 {
        self.bitmap.get(index).copied().unwrap_or(0)
    }
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn accept(window: &mut ReplayWindow, counter: u64) -> Result<(), CryptoError> {
        window.check(counter)?;
        window.commit(counter);
        Ok(())
    }

    /// The obvious, slow definition the bitmap must agree with.
    #[derive(Default)]
    struct Model {
        seen: BTreeSet<u64>,
    }

    impl Model {
        fn accept(&mut self, counter: u64) -> Result<(), CryptoError> {
            let top = self.seen.last().map_or(0, |h| h + 1);
            if counter < top && top - counter > REPLAY_WINDOW {
                return Err(CryptoError::TooOld { counter });
            }
            if !self.seen.insert(counter) {
                return Err(CryptoError::Replayed { counter });
            }
            Ok(())
        }
    }

    // The WireGuard counter test (wireguard-go `replay_test.go`, itself from the kernel's
    // selftest), translated to our window of 2048.
    #[test]
    fn wireguard_style_sequence() {
        const W: u64 = REPLAY_WINDOW;
        let mut w = ReplayWindow::new();
        let steps: &[(u64, bool)] = &[
            (0, true),
            (1, true),
            (1, false),
            (9, true),
            (8, true),
            (7, true),
            (7, false),
            (W, true),
            (W - 1, true),
            (W - 1, false),
            (W - 2, true),
            (2, true),
            (2, false),
            (W + 16, true),
            (3, false),
            (W + 16, false),
            (W * 4, true),
            (W * 4 - (W - 1), true),
            (10, false),
            (W * 4 - W, false),
            (W * 4 - (W - 1), false),
            (W * 4 + 1, true),
            (W * 4 - (W - 1), false),
            (W * 4, false),
            (W * 4 + 1, false),
            (W * 4 + 2, true),
            (u64::MAX - 1, true),
            (u64::MAX - 2, true),
            (u64::MAX - 1, false),
            (u64::MAX - 1 - W, false),
            (u64::MAX - W, true),
        ];
        for (i, &(counter, ok)) in steps.iter().enumerate() {
            assert_eq!(
                accept(&mut w, counter).is_ok(),
                ok,
                "step {i}: counter {counter}"
            );
        }
    }

    #[test]
    fn errors_name_the_reason() {
        let mut w = ReplayWindow::new();
        accept(&mut w, 5000).unwrap();
        assert_eq!(
            accept(&mut w, 5000),
            Err(CryptoError::Replayed { counter: 5000 })
        );
        assert_eq!(
            accept(&mut w, 100),
            Err(CryptoError::TooOld { counter: 100 })
        );
        // The window is the `REPLAY_WINDOW` counters ending at the highest one received.
        let oldest = 5000 + 1 - REPLAY_WINDOW;
        assert_eq!(
            accept(&mut w, oldest - 1),
            Err(CryptoError::TooOld {
                counter: oldest - 1
            })
        );
        accept(&mut w, oldest).unwrap();
    }

    #[test]
    fn check_alone_does_not_record() {
        let mut w = ReplayWindow::new();
        w.check(7).unwrap();
        w.check(7).unwrap();
        assert_eq!(w.highest(), None);
        accept(&mut w, 7).unwrap();
        assert_eq!(w.highest(), Some(7));
    }

    proptest! {
        #[test]
        fn agrees_with_model(
            start in 0u64..(u64::MAX / 2),
            steps in proptest::collection::vec(
                prop_oneof![
                    // Mostly small moves around the top, sometimes big jumps.
                    4 => -2200i64..200,
                    1 => 0i64..10_000,
                ],
                1..400,
            ),
        ) {
            let mut window = ReplayWindow::new();
            let mut model = Model::default();
            let mut top = start;
            for step in steps {
                let counter = top.saturating_add_signed(step);
                prop_assert_eq!(accept(&mut window, counter), model.accept(counter));
                top = top.max(counter);
            }
        }
    }
}
