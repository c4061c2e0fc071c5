//! Message payloads: a unique message id, the publisher, and a checksum, padded to size.
//!
//! Layout (ASCII): `rb:<msg id, 16 hex>:<crc32 of everything after it, 8 hex>:<filler>`.
//! The filler is derived from the id, so a corrupted or swapped body is detected.

use crate::history::MsgId;

const PREFIX: &[u8] = b"rb:";
/// Bytes before the filler: prefix, 16 hex, colon, 8 hex, colon.
pub const HEADER_LEN: usize = 3 + 16 + 1 + 8 + 1;

/// Builds a payload of exactly `max(size, HEADER_LEN)` bytes.
pub fn encode(msg: MsgId, size: usize) -> Vec<u8> {
    let filler_len = size.saturating_sub(HEADER_LEN);
    let filler: Vec<u8> = (0..filler_len)
        .map(|i| b'a' + ((msg as usize).wrapping_add(i) % 26) as u8)
        .collect();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&msg.to_be_bytes());
    hasher.update(&filler);
    let crc = hasher.finalize();
    let mut out = Vec::with_capacity(HEADER_LEN + filler_len);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(format!("{msg:016x}:{crc:08x}:").as_bytes());
    out.extend_from_slice(&filler);
    out
}

/// What a received payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A harness message whose checksum matches.
    Intact(MsgId),
    /// It names a message id, but the body does not match its checksum.
    Corrupt(MsgId),
    /// Not a harness message at all.
    Foreign,
}

pub fn decode(payload: &[u8]) -> Decoded {
    if payload.len() < HEADER_LEN || !payload.starts_with(PREFIX) {
        return Decoded::Foreign;
    }
    let text = |range: std::ops::Range<usize>| std::str::from_utf8(&payload[range]).ok();
    let Some(msg) = text(3..19).and_then(|s| u64::from_str_radix(s, 16).ok()) else {
        return Decoded::Foreign;
    };
    let Some(crc) = text(20..28).and_then(|s| u32::from_str_radix(s, 16).ok()) else {
        return Decoded::Foreign;
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&msg.to_be_bytes());
    hasher.update(&payload[HEADER_LEN..]);
    if payload[19] == b':' && payload[28] == b':' && hasher.finalize() == crc {
        Decoded::Intact(msg)
    } else {
        Decoded::Corrupt(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_sizes() {
        for size in [0, 10, 29, 30, 100, 4096] {
            let p = encode(12345, size);
            assert_eq!(p.len(), size.max(HEADER_LEN));
            assert_eq!(decode(&p), Decoded::Intact(12345));
        }
    }

    #[test]
    fn corruption_is_detected() {
        let mut p = encode(7, 100);
        p[50] ^= 1;
        assert_eq!(decode(&p), Decoded::Corrupt(7));
        assert_eq!(decode(b"hello world"), Decoded::Foreign);
    }
}
