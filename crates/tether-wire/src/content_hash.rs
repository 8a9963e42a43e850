//! The BLAKE3 hash of file contents, as it travels in control messages.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte BLAKE3 digest; JSON carries it as 64 lowercase hex digits, the binary encoding as
/// the 32 bytes.
///
/// This crate only carries the value; computing and checking it is the transfer engine's job.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub [u8; 32]);

impl ContentHash {
    /// The digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({self})")
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 64];
        // Cannot fail: the output is exactly twice the input length.
        hex::encode_to_slice(self.0, &mut hex).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for ContentHash {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            crate::hex_bytes::serialize(&self.0, serializer)
        }
    }
}

impl<'de> Deserialize<'de> for ContentHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_str(HexVisitor)
        } else {
            crate::hex_bytes::deserialize(deserializer).map(ContentHash)
        }
    }
}

struct HexVisitor;

impl Visitor<'_> for HexVisitor {
    type Value = ContentHash;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("64 hex digits")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<ContentHash, E> {
        if value.len() != 64 {
            return Err(E::invalid_length(value.len(), &self));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(value, &mut bytes)
            .map_err(|_| E::invalid_value(de::Unexpected::Other("non-hex digits"), &self))?;
        Ok(ContentHash(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let hash = ContentHash([0xab; 32]);
        let json = serde_json::to_string(&hash).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<ContentHash>(&json).unwrap(), hash);
        // Upper case is accepted on input; output is always lower case.
        let upper = format!("\"{}\"", "AB".repeat(32));
        assert_eq!(serde_json::from_str::<ContentHash>(&upper).unwrap(), hash);
    }

    #[test]
    fn wrong_length_or_digits_rejected() {
        for bad in [
            "\"ab\"",
            "\"\"",
            &format!("\"{}\"", "zz".repeat(32)),
            "17",
            "null",
        ] {
            assert!(serde_json::from_str::<ContentHash>(bad).is_err(), "{bad}");
        }
    }
}
