//! Byte strings as byte strings in serde, for the payloads that dominate every encoding.
//!
//! serde's own impls treat a `Vec<u8>` as a sequence of integers: one call per byte to
//! encode (twice with bincode, which sizes first) and one per byte to decode. Messages go
//! through bincode on every hop (log record, AppendEntries, forward) and a snapshot holds
//! all of them: measured, encoding one 10 MB snapshot took 125-280 ms and stalled writes
//! for as long on a 2-core machine. bincode writes a byte string exactly as such a sequence
//! (a u64 length, then the bytes), so the encoding is unchanged: logs, snapshots and peers
//! of earlier builds read and write it as before.
//!
//! Use with `#[serde(with = "crate::wire_bytes::pairs")]` on field/value pairs and
//! `#[serde(with = "crate::wire_bytes::bytes")]` on one byte string.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// Encodes as a byte string.
pub struct Bytes<'a>(pub &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// Decodes a byte string (or, from self-describing formats, a sequence of integers).
pub struct ByteBuf(pub Vec<u8>);

impl<'de> Deserialize<'de> for ByteBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_byte_buf(ByteBufVisitor).map(ByteBuf)
    }
}

struct ByteBufVisitor;

impl<'de> Visitor<'de> for ByteBufVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
        Ok(v)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        while let Some(b) = seq.next_element::<u8>()? {
            out.push(b);
        }
        Ok(out)
    }
}

/// One byte string.
pub mod bytes {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        ByteBuf::deserialize(d).map(|b| b.0)
    }
}

/// Field/value pairs: a sequence of (byte string, byte string).
pub mod pairs {
    use super::*;

    pub fn serialize<S: Serializer>(pairs: &[(Vec<u8>, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(pairs.len()))?;
        for (field, value) in pairs {
            seq.serialize_element(&(Bytes(field), Bytes(value)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<crate::state_machine::FieldPairs, D::Error> {
        let pairs = Vec::<(ByteBuf, ByteBuf)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(f, v)| (f.0, v.0)).collect())
    }
}

/// Field/value pairs behind an `Arc`, encoded exactly as [`pairs`].
pub mod shared_pairs {
    use super::*;
    use crate::state_machine::Fields;

    pub fn serialize<S: Serializer>(pairs: &Fields, s: S) -> Result<S::Ok, S::Error> {
        super::pairs::serialize(pairs, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        super::pairs::deserialize(d).map(Fields::new)
    }
}

/// Field/value pairs borrowed for encoding (snapshot views).
pub struct PairsRef<'a>(pub &'a [(Vec<u8>, Vec<u8>)]);

impl Serialize for PairsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        pairs::serialize(self.0, s)
    }
}

/// Decodes field/value pairs written by [`PairsRef`] or [`pairs`].
#[derive(Debug)]
pub struct PairsBuf(pub Vec<(Vec<u8>, Vec<u8>)>);

impl<'de> Deserialize<'de> for PairsBuf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        pairs::deserialize(d).map(PairsBuf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Plain {
        data: Vec<u8>,
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Fast {
        #[serde(with = "bytes")]
        data: Vec<u8>,
        #[serde(with = "pairs")]
        fields: Vec<(Vec<u8>, Vec<u8>)>,
    }

    fn sample() -> (Plain, Fast) {
        let data: Vec<u8> = (0..=255).collect();
        let fields = vec![
            (b"message".to_vec(), vec![0, 1, 2, 255]),
            (Vec::new(), b"x".repeat(300)),
        ];
        (
            Plain {
                data: data.clone(),
                fields: fields.clone(),
            },
            Fast { data, fields },
        )
    }

    #[test]
    fn bincode_bytes_are_those_of_the_plain_encoding_both_ways() {
        let (plain, fast) = sample();
        let plain_bytes = bincode::serialize(&plain).unwrap();
        assert_eq!(bincode::serialize(&fast).unwrap(), plain_bytes);
        let decoded: Fast = bincode::deserialize(&plain_bytes).unwrap();
        assert_eq!(decoded, fast);
        let back: Plain = bincode::deserialize(&bincode::serialize(&fast).unwrap()).unwrap();
        assert_eq!(back, plain);
    }

    #[test]
    fn self_describing_formats_read_the_integer_sequences() {
        let (plain, fast) = sample();
        let json = serde_json::to_string(&plain).unwrap();
        assert_eq!(serde_json::from_str::<Fast>(&json).unwrap(), fast);
    }

    #[test]
    fn a_truncated_byte_string_is_an_error_not_a_short_read() {
        let (_, fast) = sample();
        let bytes = bincode::serialize(&fast).unwrap();
        assert!(bincode::deserialize::<Fast>(&bytes[..bytes.len() - 1]).is_err());
        assert!(bincode::deserialize::<Fast>(&bytes[..20]).is_err());
    }
}
