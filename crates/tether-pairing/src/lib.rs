//! Pairing (work in progress).
