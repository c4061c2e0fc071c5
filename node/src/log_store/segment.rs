//! On-disk record format and segment scanning.
//!
//! A segment file `log-<first index, 20 digits>.seg` is a sequence of records:
//! `[payload length: u32 LE][check: u32 LE][payload = bincode(Entry)]`.
//! Record `n` of a segment holds the entry with index `first_index + n`. The records may be
//! followed by zeros, written ahead by the flusher; an all-zero tail is unused space.
//!
//! The check is the crc32 of the payload, XORed with [`SYNCED_BEFORE`] on a record the
//! flusher wrote while everything before it in the segment was already synced (the first
//! record after each sync). Such a record behind a damaged one proves the damaged one had
//! been synced: power loss cannot have done it, the data was damaged in place. Damage
//! followed only by unmarked records lies in the last write round, which a power loss may
//! leave with holes (writes reach the disk in any order until a sync), so it is a torn tail.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::types::{Entry, LogId};

use super::LeaderId;

use super::LogStoreError;

/// Bytes of the record header: payload length and crc.
pub(super) const HEADER_LEN: u64 = 8;

/// Upper bound on one record's payload; a larger length field is treated as garbage.
pub(super) const MAX_PAYLOAD_LEN: u32 = 512 << 20;

/// XORed into the check of a record written after everything before it was synced. Every
/// byte differs from zero, so damage to one byte of the check cannot turn a plain check
/// into a marked one or back.
const SYNCED_BEFORE: u32 = 0x5bd1_e995;

/// Marks the record at the start of `record` as written after everything before it in its
/// segment was synced (see the module docs).
pub(super) fn mark_synced_before(record: &mut [u8]) {
    let check = u32::from_le_bytes(record[4..8].try_into().expect("a record header"));
    record[4..8].copy_from_slice(&(check ^ SYNCED_BEFORE).to_le_bytes());
}

/// One record that passed its checks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Record<'a> {
    pub payload: &'a [u8],
    /// Written after everything before it in the segment was synced.
    pub synced_before: bool,
}

/// Where one entry's record lives inside its segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Loc {
    /// Byte offset of the record header.
    pub offset: u64,
    /// Payload length (the record is `HEADER_LEN + len` bytes).
    pub len: u32,
}

impl Loc {
    pub fn record_len(&self) -> u64 {
        HEADER_LEN + u64::from(self.len)
    }
}

pub(super) fn segment_file_name(first_index: u64) -> String {
    format!("log-{first_index:020}.seg")
}

pub(super) fn segment_path(dir: &Path, first_index: u64) -> PathBuf {
    dir.join(segment_file_name(first_index))
}

/// Parses `log-<20 digits>.seg`; anything else is not a segment.
pub(super) fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log-")?.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Appends the record of `entry` to `out` and returns its payload length.
pub(super) fn encode_record(entry: &Entry, out: &mut Vec<u8>) -> Result<u32, LogStoreError> {
    let payload = bincode::serialize(entry).map_err(|e| LogStoreError::Encode {
        index: entry.log_id.index,
        reason: e.to_string(),
    })?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_PAYLOAD_LEN)
        .ok_or(LogStoreError::EntryTooLarge {
            index: entry.log_id.index,
            len: payload.len(),
        })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(len)
}

/// Why a record could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RecordProblem {
    /// Fewer than `HEADER_LEN` bytes left.
    ShortHeader,
    /// A zero or absurd length field.
    BadLength(u32),
    /// The payload runs past the end of the data.
    ShortPayload { want: u32, have: u64 },
    /// The payload does not match its checksum.
    CrcMismatch,
}

impl std::fmt::Display for RecordProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordProblem::ShortHeader => write!(f, "short record header"),
            RecordProblem::BadLength(len) => write!(f, "invalid record length {len}"),
            RecordProblem::ShortPayload { want, have } => {
                write!(f, "short payload: want {want} bytes, have {have}")
            }
            RecordProblem::CrcMismatch => write!(f, "crc mismatch"),
        }
    }
}

/// Splits the record at the start of `buf` into its payload, checking length and crc.
pub(super) fn check_record(buf: &[u8]) -> Result<Record<'_>, RecordProblem> {
    if (buf.len() as u64) < HEADER_LEN {
        return Err(RecordProblem::ShortHeader);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return Err(RecordProblem::BadLength(len));
    }
    let rest = &buf[HEADER_LEN as usize..];
    if (rest.len() as u64) < u64::from(len) {
        return Err(RecordProblem::ShortPayload {
            want: len,
            have: rest.len() as u64,
        });
    }
    let payload = &rest[..len as usize];
    let hash = crc32fast::hash(payload);
    if hash != crc && hash ^ SYNCED_BEFORE != crc {
        return Err(RecordProblem::CrcMismatch);
    }
    Ok(Record {
        payload,
        synced_before: hash != crc,
    })
}

pub(super) fn decode_payload(payload: &[u8]) -> Result<Entry, String> {
    bincode::deserialize(payload).map_err(|e| format!("undecodable entry: {e}"))
}

/// Result of scanning one segment file from the start.
#[derive(Debug)]
pub(super) struct Scan {
    /// Locations of the valid records, in index order.
    pub locs: Vec<Loc>,
    /// Log ids of the valid entries, compressed to (first index, leader) runs.
    pub leaders: Vec<(u64, LeaderId)>,
    /// Log id of the last valid entry.
    pub last_log_id: Option<LogId>,
    /// Bytes covered by valid records.
    pub valid_len: u64,
    /// Size of the file (records, then possibly zeros written ahead of them).
    pub file_len: u64,
    /// The first invalid record, if the valid records reach neither the end of the file nor
    /// an all-zero tail.
    pub problem: Option<(u64, RecordProblem)>,
    /// With a problem: the first valid record of a later index found after it.
    pub valid_after: Option<Found>,
    /// With a problem: the first valid record after it that was written once everything
    /// before it was synced. It proves the damaged record had been synced, so the damage
    /// is corruption in place, not a torn tail (see the module docs).
    pub later_round: Option<Found>,
}

/// A valid record found past a damaged one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Found {
    /// Byte offset of its header.
    pub offset: u64,
    pub index: u64,
    pub synced_before: bool,
    /// Its length with the header.
    pub record_len: u64,
}

/// Reads and checks every record of the segment starting at `first_index`.
///
/// Records that fail the length or crc checks end the scan (reported in [`Scan::problem`]);
/// the caller decides whether that is a torn tail or corruption. A record whose crc is right but
/// whose entry is undecodable or out of sequence is corruption and fails here.
pub(super) fn scan_segment(path: &Path, first_index: u64) -> Result<Scan, LogStoreError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(|source| LogStoreError::io(path, source))?;
    let file_len = data.len() as u64;
    let mut scan = Scan {
        locs: Vec::new(),
        leaders: Vec::new(),
        last_log_id: None,
        valid_len: 0,
        file_len,
        problem: None,
        valid_after: None,
        later_round: None,
    };
    let mut pos = 0usize;
    while pos < data.len() {
        let payload = match check_record(&data[pos..]) {
            Ok(record) => record.payload,
            // Zeros written ahead of the records (`flusher`): unused space, not damage.
            Err(_) if data[pos..].iter().all(|&b| b == 0) => break,
            Err(problem) => {
                scan.problem = Some((pos as u64, problem));
                let bad_index = first_index + scan.locs.len() as u64;
                scan.valid_after = find_valid_record_after(&data, pos + 1, bad_index);
                scan.later_round = scan
                    .valid_after
                    .and_then(|first| find_later_round(&data, first));
                break;
            }
        };
        let corrupt = |reason: String| LogStoreError::Corrupt {
            path: path.to_path_buf(),
            offset: pos as u64,
            reason,
        };
        let entry = decode_payload(payload).map_err(corrupt)?;
        let expected = first_index + scan.locs.len() as u64;
        if entry.log_id.index != expected {
            return Err(corrupt(format!(
                "record holds index {} where index {expected} belongs",
                entry.log_id.index
            )));
        }
        if scan.leaders.last().map(|(_, leader)| *leader) != Some(entry.log_id.leader_id) {
            scan.leaders
                .push((entry.log_id.index, entry.log_id.leader_id));
        }
        scan.last_log_id = Some(entry.log_id);
        scan.locs.push(Loc {
            offset: pos as u64,
            len: payload.len() as u32,
        });
        pos += HEADER_LEN as usize + payload.len();
        scan.valid_len = pos as u64;
    }
    Ok(scan)
}

/// Byte offset of the log index inside a record's payload: bincode (fixed-width, little
/// endian) writes `Entry { log_id: { leader_id: { term, node_id }, index }, .. }` first.
const INDEX_IN_PAYLOAD: usize = 16;
/// How far past the damaged index a later record is looked for.
const MAX_INDEX_SKIP: u64 = 1 << 20;

/// Looks for a valid record holding an index after `bad_index` anywhere from byte `from` on.
/// The index field is checked first, so most offsets cost one comparison.
pub(super) fn find_valid_record_after(data: &[u8], from: usize, bad_index: u64) -> Option<Found> {
    let header = HEADER_LEN as usize;
    let min_payload = INDEX_IN_PAYLOAD + 8;
    let mut pos = from;
    while pos + header + min_payload <= data.len() {
        let at = pos + header + INDEX_IN_PAYLOAD;
        let index = u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        if index > bad_index && index - bad_index <= MAX_INDEX_SKIP {
            if let Ok(record) = check_record(&data[pos..]) {
                if decode_payload(record.payload).is_ok_and(|e| e.log_id.index == index) {
                    return Some(Found {
                        offset: pos as u64,
                        index,
                        synced_before: record.synced_before,
                        record_len: HEADER_LEN + record.payload.len() as u64,
                    });
                }
            }
        }
        pos += 1;
    }
    None
}

/// From the valid record `first` on, the first valid record marked as written after a sync:
/// follows the chain of records, and searches past any further damage.
fn find_later_round(data: &[u8], first: Found) -> Option<Found> {
    let mut found = first;
    loop {
        if found.synced_before {
            return Some(found);
        }
        let next = (found.offset + found.record_len) as usize;
        found = find_valid_record_after(data, next, found.index)?;
    }
}
