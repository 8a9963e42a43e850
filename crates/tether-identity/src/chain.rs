//! Printing an error with its causes, once each.
//!
//! Every error in Tether follows rustls's rule: a variant's message describes its own layer
//! only, and what caused it is its [`source`](std::error::Error::source). Whoever turns an
//! error into text for a person, an event or a log prints the whole chain with
//! [`ErrorChain`] (or [`error_chain`]), the way anyhow's `{:#}` does: `outer: inner: cause`.

use std::error::Error;
use std::fmt;

/// At most this many layers are printed; a deeper chain ends with `: ...`.
const MAX_LAYERS: usize = 32;

/// Shows an error and its sources, outermost first, joined by `": "`.
///
/// ```
/// # use tether_identity::{DeviceNameError, ErrorChain, IdentityError};
/// let error = IdentityError::DeviceName(DeviceNameError::Empty);
/// assert_eq!(error.to_string(), "invalid device name");
/// assert_eq!(ErrorChain(&error).to_string(), "invalid device name: it is empty");
/// ```
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        let mut layers = 1;
        while let Some(cause) = next {
            if layers == MAX_LAYERS {
                return f.write_str(": ...");
            }
            write!(f, ": {cause}")?;
            next = cause.source();
            layers += 1;
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `error` and its sources as one line of text (see [`ErrorChain`]).
pub fn error_chain(error: &dyn Error) -> String {
    ErrorChain(error).to_string()
}

/// The first layer of `error`'s chain whose message repeats the next layer's message, as
/// `(outer, inner)` texts; `None` when every layer describes itself only. For tests.
#[doc(hidden)]
pub fn repeated_layer(error: &dyn Error) -> Option<(String, String)> {
    let mut outer = error.to_string();
    let mut next = error.source();
    let mut layers = 1;
    while let Some(cause) = next {
        let inner = cause.to_string();
        if outer.contains(&inner) {
            return Some((outer, inner));
        }
        layers += 1;
        if layers > MAX_LAYERS {
            break;
        }
        outer = inner;
        next = cause.source();
    }
    None
}

/// Panics, naming the chain, when a layer of `error`'s chain repeats the next one (see
/// [`repeated_layer`]). For tests.
#[doc(hidden)]
#[track_caller]
pub fn assert_no_repeated_layer(error: &dyn Error) {
    let repeated = repeated_layer(error);
    assert!(
        repeated.is_none(),
        "error chain repeats a layer: (outer, inner) = {repeated:?} (chain: {})",
        ErrorChain(error)
    );
}

/// In a chain printed as text (`outer: inner: cause`, as [`ErrorChain`] or anyhow's `{:#}`
/// print it), the first run of layers that comes again right after itself, joined by `": "`;
/// `None` if there is none. For tests, on text such as a CLI's stderr or an event's reason.
#[doc(hidden)]
pub fn repeated_segment(text: &str) -> Option<String> {
    let layers: Vec<&str> = text.split(": ").map(str::trim).collect();
    for start in 0..layers.len() {
        let room = (layers.len() - start) / 2;
        for run in 1..=room {
            let first = layers.get(start..start + run)?;
            let second = layers.get(start + run..start + 2 * run)?;
            if first == second {
                return Some(first.join(": "));
            }
        }
    }
    None
}

/// Panics, naming the text, when [`repeated_segment`] finds a repeated run of layers in it.
/// For tests.
#[doc(hidden)]
#[track_caller]
pub fn assert_no_repeated_segment(text: &str) {
    let repeated = repeated_segment(text);
    assert!(
        repeated.is_none(),
        "error text repeats {repeated:?}: {text}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("repeating: {0}")]
    struct Repeating(#[source] Inner);

    fn closed() -> std::io::Error {
        std::io::Error::other("closed")
    }

    #[test]
    fn a_chain_prints_each_layer_once() {
        let error = Outer(Inner(closed()));
        assert_eq!(error_chain(&error), "outer: inner: closed");
        assert_eq!(repeated_layer(&error), None);
        assert_no_repeated_layer(&error);
        assert_eq!(repeated_segment(&error_chain(&error)), None);
    }

    #[test]
    fn a_layer_that_prints_its_source_is_found() {
        let error = Repeating(Inner(closed()));
        assert_eq!(
            repeated_layer(&error),
            Some(("repeating: inner".to_owned(), "inner".to_owned()))
        );
        assert_eq!(
            error_chain(&error),
            "repeating: inner: inner: closed",
            "the chain shows the repetition"
        );
        assert_eq!(
            repeated_segment(&error_chain(&error)).as_deref(),
            Some("inner")
        );
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_no_repeated_layer(&error);
        }));
        assert!(panicked.is_err());
    }

    #[test]
    fn repeated_runs_of_layers_are_found_in_text() {
        let text =
            "transfer failed: link lost: connection lost: link lost: connection lost: closed";
        assert_eq!(
            repeated_segment(text).as_deref(),
            Some("link lost: connection lost")
        );
        let text = "transfer failed: peer: declined (NoSpace): X: peer: declined (NoSpace): X: \
                    declined (NoSpace): X";
        assert_eq!(
            repeated_segment(text).as_deref(),
            Some("peer: declined (NoSpace): X")
        );
        assert_eq!(
            repeated_segment("transfer failed: peer: declined (NoSpace): X"),
            None
        );
        assert_eq!(repeated_segment(""), None);
    }
}
