//! Domain separation for signatures.

/// A label naming what a signature is for, so that a signature made for one purpose never
/// verifies for another.
///
/// Signatures are Ed25519ph (RFC 8032 §5.1) with this label as the RFC's context string. The
/// context is part of what is signed, so a pairing-transcript signature cannot be replayed as,
/// say, a session-handshake signature; and because Ed25519ph differs from plain Ed25519, none of
/// our signatures is valid for the plain Ed25519 that the iroh/TLS layer uses with the same key.
///
/// Tether's labels look like `tether/v1/<purpose>` and are constants of the crate that uses them:
///
/// ```
/// use tether_identity::SigningContext;
/// const PAIRING_TRANSCRIPT: SigningContext = SigningContext::new("tether/v1/pairing/transcript");
/// assert_eq!(PAIRING_TRANSCRIPT.label(), "tether/v1/pairing/transcript");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SigningContext(&'static str);

impl SigningContext {
    /// The longest label RFC 8032 allows, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Makes a context from a label of at most [`Self::MAX_LEN`] bytes.
    ///
    /// Labels are compile-time constants; a label that is too long fails to compile when used in
    /// a `const` item, as it should.
    pub const fn new(label: &'static str) -> Self {
        assert!(
            label.len() <= Self::MAX_LEN,
            "a signing context is at most 255 bytes"
        );
        Self(label)
    }

    /// The label.
    pub const fn label(self) -> &'static str {
        self.0
    }
}
