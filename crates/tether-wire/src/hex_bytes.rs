//! Fixed-size byte arrays as lowercase hex strings in JSON (`#[serde(with = "crate::hex_bytes")]`).

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&hex::encode(bytes))
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    deserializer.deserialize_str(HexVisitor::<N>(PhantomData))
}

struct HexVisitor<const N: usize>(PhantomData<[u8; N]>);

impl<const N: usize> Visitor<'_> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hex digits", N * 2)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<[u8; N], E> {
        if value.len() != N * 2 {
            return Err(E::invalid_length(value.len(), &self));
        }
        let mut bytes = [0u8; N];
        hex::decode_to_slice(value, &mut bytes)
            .map_err(|_| E::invalid_value(de::Unexpected::Other("non-hex digits"), &self))?;
        Ok(bytes)
    }
}
