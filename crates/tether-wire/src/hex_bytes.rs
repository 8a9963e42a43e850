//! Fixed-size byte arrays as lowercase hex strings in JSON (`#[serde(with = "crate::hex_bytes")]`),
//! and as the bare bytes (no length) in the binary encoding.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserializer, Serializer};

pub(crate) fn serialize<S: Serializer, const N: usize>(
    bytes: &[u8; N],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return serializer.serialize_str(&hex::encode(bytes));
    }
    let mut tuple = serializer.serialize_tuple(N)?;
    for byte in bytes {
        tuple.serialize_element(byte)?;
    }
    tuple.end()
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(HexVisitor::<N>(PhantomData))
    } else {
        deserializer.deserialize_tuple(N, HexVisitor::<N>(PhantomData))
    }
}

struct HexVisitor<const N: usize>(PhantomData<[u8; N]>);

impl<'de, const N: usize> Visitor<'de> for HexVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} hex digits or {N} bytes", N * 2)
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<[u8; N], A::Error> {
        let mut bytes = [0u8; N];
        for (i, slot) in bytes.iter_mut().enumerate() {
            *slot = seq
                .next_element()?
                .ok_or_else(|| de::Error::invalid_length(i, &self))?;
        }
        Ok(bytes)
    }
}
