//! RESP2/RESP3 frames: incremental parsers with size limits, and encoding.
//!
//! Two parsers live here:
//!
//! - the **request** parser ([`RequestDecoder`], [`parse_request`]) reads what clients send: a
//!   RESP array of bulk strings (`*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n`), or an *inline* command line
//!   (`PING\r\n`, `SUBSCRIBE a "b c"\r\n`) as typed into telnet or sent by `redis-cli`;
//! - the **reply** parser ([`FrameDecoder`], [`parse_frame`]) reads every RESP2/RESP3 reply type,
//!   for tests, clients and the leader-forwarding path.
//!
//! Both take their input from a [`BytesMut`] that the caller keeps appending to, and return
//! `Ok(None)` while a message is incomplete. Nothing is removed from the buffer until a whole
//! message has been parsed, so the caller may simply append more bytes and call again.
//!
//! # Complexity
//!
//! The stateful decoders ([`RequestDecoder`], [`FrameDecoder`]) remember how far they got: every
//! input byte is examined a bounded number of times, so parsing is O(n) in the input size however
//! the bytes are split into reads (one byte at a time included). The stateless functions
//! ([`parse_request`], [`parse_frame`]) start over on each call: each call costs O(elements of the
//! pending message) for requests (bulk payloads are skipped by length, not scanned) and O(bytes of
//! the pending message) for replies. Connections should keep a decoder.
//!
//! Nesting depth is capped at [`MAX_NESTING`] so that neither parsing, encoding nor dropping a
//! frame can exhaust the stack. No input makes the parsers panic.

use std::ops::Range;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Deepest aggregate nesting accepted by the reply parser.
pub const MAX_NESTING: usize = 128;

/// A RESP value (RESP2 and RESP3).
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `+OK`. Carriage returns and line feeds are replaced by spaces when encoding.
    Simple(String),
    /// `-ERR message` (also RESP3 blob errors `!`). Sanitised like [`Frame::Simple`].
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo`
    Bulk(Bytes),
    /// The null bulk string `$-1` (RESP2) or RESP3 null `_`.
    Null,
    /// `*-1`, the RESP2 null array. RESP3 has a single null: it encodes as `_`.
    NullArray,
    /// `*n`
    Array(Vec<Frame>),
    /// RESP3 `%n`; a flattened key/value array in RESP2.
    Map(Vec<(Frame, Frame)>),
    /// RESP3 `~n`; an array in RESP2.
    Set(Vec<Frame>),
    /// RESP3 out-of-band `>n` (pub/sub messages); an array in RESP2.
    Push(Vec<Frame>),
    /// RESP3 `,1.5`; a bulk string in RESP2 (as Redis does).
    Double(f64),
    /// RESP3 `#t`/`#f`; the integer 1/0 in RESP2.
    Boolean(bool),
    /// RESP3 `(123…`, kept as its decimal text; a bulk string in RESP2.
    BigNumber(String),
    /// RESP3 `=n\r\ntxt:…`; a bulk string of `text` in RESP2.
    Verbatim { format: [u8; 3], text: Bytes },
}

impl Frame {
    /// `+OK`
    pub fn ok() -> Frame {
        Frame::Simple("OK".to_owned())
    }

    /// A simple string.
    pub fn simple(s: impl Into<String>) -> Frame {
        Frame::Simple(s.into())
    }

    /// An error; `msg` carries its own prefix (`ERR …`, `NOAUTH …`).
    pub fn error(msg: impl Into<String>) -> Frame {
        Frame::Error(msg.into())
    }

    /// A bulk string.
    pub fn bulk(b: impl Into<Bytes>) -> Frame {
        Frame::Bulk(b.into())
    }

    /// The bytes of a string-like frame (simple, bulk, verbatim, big number).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Frame::Simple(s) | Frame::BigNumber(s) => Some(s.as_bytes()),
            Frame::Bulk(b) | Frame::Verbatim { text: b, .. } => Some(b),
            _ => None,
        }
    }

    /// The elements of an array-like frame (array, set, push).
    pub fn as_array(&self) -> Option<&[Frame]> {
        match self {
            Frame::Array(v) | Frame::Set(v) | Frame::Push(v) => Some(v),
            _ => None,
        }
    }

    /// Is this a null (`$-1`, `*-1` or `_`)?
    pub fn is_null(&self) -> bool {
        matches!(self, Frame::Null | Frame::NullArray)
    }

    /// Encodes the frame into a fresh buffer.
    pub fn to_bytes(&self, proto: Protocol) -> Bytes {
        let mut out = BytesMut::new();
        encode(self, proto, &mut out);
        out.freeze()
    }
}

/// The protocol a connection speaks (switched by `HELLO 3`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// `2` or `3`, as HELLO reports it.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// Size limits applied while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string payload (default 4 MiB).
    pub max_bulk_len: usize,
    /// Most elements in one array (default 1 Mi; map entries count as pairs).
    pub max_array_len: usize,
    /// Longest inline command line, and longest header or simple-string line (default 64 KiB).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 4 * 1024 * 1024,
            max_array_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
        }
    }
}

/// Malformed RESP input. The messages follow Redis's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A negative array length other than -1 (`*-5\r\n`). The line has been consumed and the
    /// stream is still in step: see [`ProtocolError::is_fatal`].
    #[error("Protocol error: invalid multibulk length")]
    NegativeMultibulkLength,
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkCount,
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    #[error("Protocol error: expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("Protocol error: expected CRLF")]
    ExpectedCrlf,
    #[error("Protocol error: invalid type byte '{0}'")]
    InvalidTypeByte(char),
    #[error("Protocol error: aggregates nested too deeply")]
    NestingTooDeep,
    #[error("Protocol error: {0}")]
    Malformed(&'static str),
}

impl ProtocolError {
    /// Whether the byte stream can no longer be parsed after this error. The connection should
    /// then reply `-<error>` and close (as Redis does). Non-fatal errors consumed exactly the
    /// offending input: reply with the error and keep reading.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, ProtocolError::NegativeMultibulkLength)
    }
}

/// Parses a decimal integer with Redis's `string2ll` rules: optional `-`, no `+`, no leading
/// zeros, no spaces, within `i64`.
pub fn parse_integer(s: &[u8]) -> Option<i64> {
    if s == b"0" {
        return Some(0);
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        if v > i64::MAX as u64 + 1 {
            None
        } else {
            Some((v as i64).wrapping_neg())
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Finds the `\r\n` that ends a line whose content starts at `start` and may be at most `max`
/// bytes long. `scan` remembers how far previous calls looked, so a line is scanned once.
/// Returns the index of the `\r`, `None` when more input is needed.
fn find_crlf(
    buf: &[u8],
    start: usize,
    scan: &mut usize,
    max: usize,
    too_long: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    let from = (*scan).max(start);
    let window_end = buf.len().min(start.saturating_add(max).saturating_add(1));
    if from < window_end {
        if let Some(i) = buf[from..window_end].iter().position(|&b| b == b'\r') {
            let cr = from + i;
            return match buf.get(cr + 1) {
                None => {
                    *scan = cr;
                    Ok(None)
                }
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(ProtocolError::ExpectedCrlf),
            };
        }
    }
    if buf.len() > start.saturating_add(max) {
        return Err(too_long);
    }
    *scan = window_end.max(from);
    Ok(None)
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

/// Incremental parser of client requests; keep one per connection.
///
/// Between calls the caller may only append to the buffer (until a call returns `Some` or an
/// error); the decoder remembers positions inside it. Returned arguments are zero-copy slices
/// of the buffer for RESP arrays: they keep the read buffer's allocation alive, so copy them
/// (`to_vec()`) before storing them for long.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// Bytes of the current command accepted so far (all of them still in the buffer).
    pos: usize,
    /// Scan hint for the line being looked at.
    scan: usize,
    state: RequestState,
}

#[derive(Debug, Clone)]
enum RequestState {
    Start,
    Multibulk {
        remaining: usize,
        args: Vec<Range<usize>>,
        bulk_len: Option<usize>,
    },
}

impl RequestDecoder {
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            pos: 0,
            scan: 0,
            state: RequestState::Start,
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Is a command partly parsed?
    pub fn is_mid_command(&self) -> bool {
        self.pos > 0 || self.scan > 0 || matches!(self.state, RequestState::Multibulk { .. })
    }

    /// Forgets any partly parsed command (the caller must also drop what it buffered).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.scan = 0;
        self.state = RequestState::Start;
    }

    /// Parses one command from the front of `buf`, removing its bytes. `Ok(None)`: need more
    /// input. Empty inline lines and `*0`/`*-1` arrays are skipped, as Redis does.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let result = self.decode_inner(buf);
        if result.is_err() {
            self.reset();
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        loop {
            match &mut self.state {
                RequestState::Start => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first != b'*' {
                        match self.inline(buf)? {
                            Some(args) if args.is_empty() => continue,
                            other => return Ok(other),
                        }
                    }
                    let Some(cr) = find_crlf(
                        buf,
                        1,
                        &mut self.scan,
                        self.limits.max_inline_len,
                        ProtocolError::TooBigMultibulkCount,
                    )?
                    else {
                        return Ok(None);
                    };
                    let n =
                        parse_integer(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if n <= 0 {
                        buf.advance(cr + 2);
                        self.reset();
                        if n < -1 {
                            return Err(ProtocolError::NegativeMultibulkLength);
                        }
                        continue;
                    }
                    let n =
                        usize::try_from(n).map_err(|_| ProtocolError::InvalidMultibulkLength)?;
                    if n > self.limits.max_array_len {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    self.pos = cr + 2;
                    self.scan = self.pos;
                    self.state = RequestState::Multibulk {
                        remaining: n,
                        args: Vec::with_capacity(n.min(1024)),
                        bulk_len: None,
                    };
                }
                RequestState::Multibulk {
                    remaining,
                    args,
                    bulk_len,
                } => {
                    while *remaining > 0 {
                        match *bulk_len {
                            None => {
                                let Some(&b) = buf.get(self.pos) else {
                                    return Ok(None);
                                };
                                if b != b'$' {
                                    return Err(ProtocolError::ExpectedBulk(char::from(b)));
                                }
                                let Some(cr) = find_crlf(
                                    buf,
                                    self.pos + 1,
                                    &mut self.scan,
                                    self.limits.max_inline_len,
                                    ProtocolError::TooBigBulkCount,
                                )?
                                else {
                                    return Ok(None);
                                };
                                let len = parse_integer(&buf[self.pos + 1..cr])
                                    .and_then(|n| usize::try_from(n).ok())
                                    .filter(|&n| n <= self.limits.max_bulk_len)
                                    .ok_or(ProtocolError::InvalidBulkLength)?;
                                self.pos = cr + 2;
                                self.scan = self.pos;
                                *bulk_len = Some(len);
                            }
                            Some(len) => {
                                let end = self.pos + len;
                                if buf.len() < end + 2 {
                                    return Ok(None);
                                }
                                if &buf[end..end + 2] != b"\r\n" {
                                    return Err(ProtocolError::ExpectedCrlf);
                                }
                                args.push(self.pos..end);
                                self.pos = end + 2;
                                self.scan = self.pos;
                                *remaining -= 1;
                                *bulk_len = None;
                            }
                        }
                    }
                    let ranges = std::mem::take(args);
                    let frozen = buf.split_to(self.pos).freeze();
                    self.reset();
                    return Ok(Some(ranges.into_iter().map(|r| frozen.slice(r)).collect()));
                }
            }
        }
    }

    /// An inline command: one line split into arguments. Returns `Some(vec![])` for a blank line.
    fn inline(&mut self, buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let max = self.limits.max_inline_len;
        let window_end = buf.len().min(max.saturating_add(1));
        let from = self.scan.min(window_end);
        let Some(i) = buf[from..window_end].iter().position(|&b| b == b'\n') else {
            if buf.len() > max {
                return Err(ProtocolError::TooBigInline);
            }
            self.scan = window_end;
            return Ok(None);
        };
        let nl = from + i;
        let line = buf.split_to(nl + 1);
        self.reset();
        let content = line[..nl].strip_suffix(b"\r").unwrap_or(&line[..nl]);
        split_inline(content).map(Some)
    }
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

/// Parses one client command from the front of `buf` (stateless form of [`RequestDecoder`]:
/// each call starts over, see the module docs on complexity).
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    RequestDecoder::new(*limits).decode(buf)
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline command line with Redis's `sdssplitargs` rules: whitespace separates
/// arguments; `"…"` understands `\n \r \t \b \a \\ \" \xHH`; `'…'` understands `\'`; a closing
/// quote must be followed by whitespace or the end of the line.
pub fn split_inline(line: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i == line.len() {
            return Ok(args);
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            let c = line.get(i).copied();
            if in_double {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'x') => {
                        let hi = line.get(i + 2).copied().and_then(hex_value);
                        let lo = line.get(i + 3).copied().and_then(hex_value);
                        if let (Some(hi), Some(lo)) = (hi, lo) {
                            current.push(hi * 16 + lo);
                            i += 3;
                        } else {
                            current.push(b'x');
                            i += 1;
                        }
                    }
                    Some(b'\\') if i + 1 < line.len() => {
                        i += 1;
                        current.push(match line[i] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    Some(b'"') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => current.push(b),
                }
            } else if in_single {
                match c {
                    None => return Err(ProtocolError::UnbalancedQuotes),
                    Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                        i += 1;
                        current.push(b'\'');
                    }
                    Some(b'\'') => {
                        if line.get(i + 1).is_some_and(|&b| !is_space(b)) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                        i += 1;
                        break;
                    }
                    Some(b) => current.push(b),
                }
            } else {
                match c {
                    None => break,
                    Some(b) if is_space(b) => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(b) => current.push(b),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(current));
    }
}

// ---------------------------------------------------------------------------------------------
// Replies
// ---------------------------------------------------------------------------------------------

/// Incremental parser of RESP2/RESP3 replies. Same buffer contract as [`RequestDecoder`].
/// RESP3 attributes (`|`) are read and dropped; streamed strings and aggregates (`$?`, `*?`)
/// are rejected.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    limits: Limits,
    pos: usize,
    scan: usize,
    stack: Vec<Partial>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AggKind {
    Array,
    Map,
    Set,
    Push,
    Attribute,
}

#[derive(Debug, Clone)]
struct Partial {
    kind: AggKind,
    remaining: usize,
    items: Vec<Frame>,
}

enum Step {
    Incomplete,
    Done(Frame),
    Open(AggKind, usize),
}

impl FrameDecoder {
    pub fn new(limits: Limits) -> Self {
        FrameDecoder {
            limits,
            pos: 0,
            scan: 0,
            stack: Vec::new(),
        }
    }

    /// Forgets any partly parsed frame.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.scan = 0;
        self.stack.clear();
    }

    /// Parses one frame from the front of `buf`, removing its bytes. `Ok(None)`: need more input.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode_inner(buf) {
            Ok(Some(frame)) => {
                buf.advance(self.pos);
                self.reset();
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.reset();
                Err(e)
            }
        }
    }

    fn decode_inner(&mut self, buf: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        'outer: loop {
            let mut frame = match self.step(buf)? {
                Step::Incomplete => return Ok(None),
                Step::Done(frame) => frame,
                Step::Open(kind, n) => {
                    let items = if kind == AggKind::Map || kind == AggKind::Attribute {
                        n.saturating_mul(2)
                    } else {
                        n
                    };
                    let partial = Partial {
                        kind,
                        remaining: items,
                        items: Vec::with_capacity(items.min(1024)),
                    };
                    if items > 0 {
                        if self.stack.len() >= MAX_NESTING {
                            return Err(ProtocolError::NestingTooDeep);
                        }
                        self.stack.push(partial);
                        continue 'outer;
                    }
                    match partial.finish() {
                        Some(frame) => frame,
                        None => continue 'outer,
                    }
                }
            };
            loop {
                let Some(top) = self.stack.last_mut() else {
                    return Ok(Some(frame));
                };
                top.items.push(frame);
                top.remaining -= 1;
                if top.remaining > 0 {
                    continue 'outer;
                }
                let Some(partial) = self.stack.pop() else {
                    return Err(ProtocolError::Malformed("parser stack underflow"));
                };
                match partial.finish() {
                    Some(done) => frame = done,
                    None => continue 'outer,
                }
            }
        }
    }

    fn line(
        &mut self,
        buf: &[u8],
        start: usize,
        too_long: ProtocolError,
    ) -> Result<Option<usize>, ProtocolError> {
        find_crlf(
            buf,
            start,
            &mut self.scan,
            self.limits.max_inline_len,
            too_long,
        )
    }

    /// Parses one element header (and, for scalars, its payload) at `self.pos`.
    fn step(&mut self, buf: &[u8]) -> Result<Step, ProtocolError> {
        let Some(&kind) = buf.get(self.pos) else {
            return Ok(Step::Incomplete);
        };
        let start = self.pos + 1;
        let too_long = match kind {
            b'$' | b'!' | b'=' => ProtocolError::TooBigBulkCount,
            b'*' | b'%' | b'~' | b'>' | b'|' => ProtocolError::TooBigMultibulkCount,
            b'+' | b'-' | b':' | b',' | b'#' | b'(' | b'_' => {
                ProtocolError::Malformed("line too long")
            }
            other => return Err(ProtocolError::InvalidTypeByte(char::from(other))),
        };
        let Some(cr) = self.line(buf, start, too_long)? else {
            return Ok(Step::Incomplete);
        };
        let line = &buf[start..cr];
        let after_line = cr + 2;
        let lossy = || String::from_utf8_lossy(line).into_owned();
        let scalar = match kind {
            b'+' => Frame::Simple(lossy()),
            b'-' => Frame::Error(lossy()),
            b':' => {
                let digits = line.strip_prefix(b"+").unwrap_or(line);
                Frame::Integer(
                    parse_integer(digits).ok_or(ProtocolError::Malformed("invalid integer"))?,
                )
            }
            b',' => {
                Frame::Double(parse_double(line).ok_or(ProtocolError::Malformed("invalid double"))?)
            }
            b'#' => match line {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(ProtocolError::Malformed("invalid boolean")),
            },
            b'(' => {
                let digits = line
                    .strip_prefix(b"-")
                    .or_else(|| line.strip_prefix(b"+"))
                    .unwrap_or(line);
                if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(ProtocolError::Malformed("invalid big number"));
                }
                Frame::BigNumber(lossy())
            }
            b'_' => {
                if !line.is_empty() {
                    return Err(ProtocolError::Malformed("invalid null"));
                }
                Frame::Null
            }
            b'$' | b'!' | b'=' => {
                if line == b"?" {
                    return Err(ProtocolError::Malformed(
                        "streamed strings are not supported",
                    ));
                }
                if kind == b'$' && line == b"-1" {
                    Frame::Null
                } else {
                    let len = parse_integer(line)
                        .and_then(|n| usize::try_from(n).ok())
                        .filter(|&n| n <= self.limits.max_bulk_len)
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    let end = after_line + len;
                    if buf.len() < end + 2 {
                        return Ok(Step::Incomplete);
                    }
                    if &buf[end..end + 2] != b"\r\n" {
                        return Err(ProtocolError::ExpectedCrlf);
                    }
                    let payload = &buf[after_line..end];
                    self.pos = end + 2;
                    self.scan = self.pos;
                    return Ok(Step::Done(match kind {
                        b'$' => Frame::Bulk(Bytes::copy_from_slice(payload)),
                        b'!' => Frame::Error(String::from_utf8_lossy(payload).into_owned()),
                        _ => {
                            if payload.len() < 4 || payload[3] != b':' {
                                return Err(ProtocolError::Malformed("invalid verbatim string"));
                            }
                            Frame::Verbatim {
                                format: [payload[0], payload[1], payload[2]],
                                text: Bytes::copy_from_slice(&payload[4..]),
                            }
                        }
                    }));
                }
            }
            _ => {
                if line == b"?" {
                    return Err(ProtocolError::Malformed(
                        "streamed aggregates are not supported",
                    ));
                }
                self.pos = after_line;
                self.scan = self.pos;
                if kind == b'*' && line == b"-1" {
                    return Ok(Step::Done(Frame::NullArray));
                }
                let n = parse_integer(line)
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= self.limits.max_array_len)
                    .ok_or(ProtocolError::InvalidMultibulkLength)?;
                let agg = match kind {
                    b'*' => AggKind::Array,
                    b'%' => AggKind::Map,
                    b'~' => AggKind::Set,
                    b'>' => AggKind::Push,
                    _ => AggKind::Attribute,
                };
                return Ok(Step::Open(agg, n));
            }
        };
        self.pos = after_line;
        self.scan = self.pos;
        Ok(Step::Done(scalar))
    }
}

impl Partial {
    /// The finished aggregate, or `None` for an attribute (which is dropped).
    fn finish(self) -> Option<Frame> {
        let items = self.items;
        match self.kind {
            AggKind::Array => Some(Frame::Array(items)),
            AggKind::Set => Some(Frame::Set(items)),
            AggKind::Push => Some(Frame::Push(items)),
            AggKind::Attribute => None,
            AggKind::Map => {
                let mut pairs = Vec::with_capacity(items.len() / 2);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                Some(Frame::Map(pairs))
            }
        }
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(Limits::default())
    }
}

/// Parses one reply frame from the front of `buf` (stateless form of [`FrameDecoder`]).
pub fn parse_frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, ProtocolError> {
    FrameDecoder::new(*limits).decode(buf)
}

fn parse_double(line: &[u8]) -> Option<f64> {
    match line {
        b"inf" | b"+inf" => Some(f64::INFINITY),
        b"-inf" => Some(f64::NEG_INFINITY),
        b"nan" | b"-nan" => Some(f64::NAN),
        _ => {
            // Rust's parser also accepts "infinity" and friends; RESP3 only has the forms above.
            if line
                .iter()
                .any(|b| b.is_ascii_alphabetic() && *b != b'e' && *b != b'E')
            {
                return None;
            }
            std::str::from_utf8(line).ok()?.parse().ok()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

/// Appends the encoding of `frame` in protocol `proto` to `out`.
///
/// In RESP2, RESP3-only types are downgraded the way Redis does: maps are flattened arrays,
/// sets and pushes are arrays, doubles, big numbers and verbatim strings are bulk strings,
/// booleans are 1/0 integers. Nulls are `$-1`/`*-1` in RESP2 and `_` in RESP3.
pub fn encode(frame: &Frame, proto: Protocol, out: &mut BytesMut) {
    let resp3 = proto == Protocol::Resp3;
    match frame {
        Frame::Simple(s) => put_line(out, b'+', s.as_bytes()),
        Frame::Error(s) => put_line(out, b'-', s.as_bytes()),
        Frame::Integer(n) => put_header(out, b':', *n),
        Frame::Bulk(b) => put_bulk(out, b'$', b),
        Frame::Null if resp3 => out.put_slice(b"_\r\n"),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::NullArray if resp3 => out.put_slice(b"_\r\n"),
        Frame::NullArray => out.put_slice(b"*-1\r\n"),
        Frame::Array(items) => put_aggregate(out, b'*', items, proto),
        Frame::Set(items) => put_aggregate(out, if resp3 { b'~' } else { b'*' }, items, proto),
        Frame::Push(items) => put_aggregate(out, if resp3 { b'>' } else { b'*' }, items, proto),
        Frame::Map(pairs) => {
            if resp3 {
                put_header(out, b'%', len_i64(pairs.len()));
            } else {
                put_header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
            }
            for (k, v) in pairs {
                encode(k, proto, out);
                encode(v, proto, out);
            }
        }
        Frame::Double(d) => {
            let text = format_double(*d);
            if resp3 {
                put_line(out, b',', text.as_bytes());
            } else {
                put_bulk(out, b'$', text.as_bytes());
            }
        }
        Frame::Boolean(b) if resp3 => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::Boolean(b) => put_header(out, b':', i64::from(*b)),
        Frame::BigNumber(s) if resp3 => put_line(out, b'(', s.as_bytes()),
        Frame::BigNumber(s) => put_bulk(out, b'$', s.as_bytes()),
        Frame::Verbatim { format, text } if resp3 => {
            put_header(out, b'=', len_i64(text.len() + 4));
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Frame::Verbatim { text, .. } => put_bulk(out, b'$', text),
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn put_aggregate(out: &mut BytesMut, kind: u8, items: &[Frame], proto: Protocol) {
    put_header(out, kind, len_i64(items.len()));
    for item in items {
        encode(item, proto, out);
    }
}

/// `<kind><decimal>\r\n`
fn put_header(out: &mut BytesMut, kind: u8, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.reserve(24);
    out.put_u8(kind);
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[i..]);
    out.put_slice(b"\r\n");
}

fn put_bulk(out: &mut BytesMut, kind: u8, payload: &[u8]) {
    put_header(out, kind, len_i64(payload.len()));
    out.reserve(payload.len() + 2);
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

/// A line-based string; CR and LF would break the framing and become spaces.
fn put_line(out: &mut BytesMut, kind: u8, s: &[u8]) {
    out.reserve(s.len() + 3);
    out.put_u8(kind);
    if s.iter().any(|&b| b == b'\r' || b == b'\n') {
        out.extend(
            s.iter()
                .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
    } else {
        out.put_slice(s);
    }
    out.put_slice(b"\r\n");
}

/// Shortest text that parses back to the same double; `inf`, `-inf`, `nan` as RESP3 spells them.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else if d == 0.0 || (1e-5..1e17).contains(&d.abs()) {
        format!("{d}")
    } else {
        format!("{d:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut buf = BytesMut::from(input);
        parse_request(&mut buf, &Limits::default())
    }

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter()
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect()
    }

    fn small_limits() -> Limits {
        Limits {
            max_bulk_len: 8,
            max_array_len: 4,
            max_inline_len: 16,
        }
    }

    #[test]
    fn parses_multibulk_and_consumes_exactly_one_command() {
        let mut buf =
            BytesMut::from(&b"*2\r\n$4\r\nECHO\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let limits = Limits::default();
        assert_eq!(
            parse_request(&mut buf, &limits).unwrap(),
            Some(args(&["ECHO", "hello"]))
        );
        assert_eq!(&buf[..], b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            parse_request(&mut buf, &limits).unwrap(),
            Some(args(&["PING"]))
        );
        assert!(buf.is_empty());
        assert_eq!(parse_request(&mut buf, &limits).unwrap(), None);
    }

    #[test]
    fn binary_and_empty_bulks() {
        let got = req(b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\n\r\n\x00\xff\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            got,
            vec![
                Bytes::from_static(b"SET"),
                Bytes::new(),
                Bytes::from_static(b"\r\n\x00\xff")
            ]
        );
    }

    #[test]
    fn every_strict_prefix_is_incomplete_and_untouched() {
        let input = b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$11\r\nhello world\r\n";
        for cut in 0..input.len() {
            let mut buf = BytesMut::from(&input[..cut]);
            assert_eq!(
                parse_request(&mut buf, &Limits::default()).unwrap(),
                None,
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut);
        }
        assert_eq!(
            req(input).unwrap(),
            Some(args(&["PUBLISH", "ch", "hello world"]))
        );
    }

    #[test]
    fn inline_commands() {
        assert_eq!(req(b"PING\r\n").unwrap(), Some(args(&["PING"])));
        assert_eq!(
            req(b"SUBSCRIBE a b\n").unwrap(),
            Some(args(&["SUBSCRIBE", "a", "b"]))
        );
        assert_eq!(
            req(b"  set   k\t v  \r\n").unwrap(),
            Some(args(&["set", "k", "v"]))
        );
        assert_eq!(req(b"PING").unwrap(), None);
        assert_eq!(req(b"PING\r").unwrap(), None);
    }

    #[test]
    fn inline_quoting_follows_redis() {
        assert_eq!(
            req(b"publish \"my ch\" 'it''s'\r\n"),
            Err(ProtocolError::UnbalancedQuotes),
            "a closing quote must be followed by a space"
        );
        assert_eq!(
            req(b"publish \"my ch\" 'it\\'s' \"a\\x41\\n\\\"\\\\\" \"\"\r\n").unwrap(),
            Some(vec![
                Bytes::from_static(b"publish"),
                Bytes::from_static(b"my ch"),
                Bytes::from_static(b"it's"),
                Bytes::from_static(b"aA\n\"\\"),
                Bytes::new(),
            ])
        );
        assert_eq!(req(b"echo \"abc\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(req(b"echo 'abc\r\n"), Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(
            req(b"echo a\"b c\"d\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
        assert_eq!(
            req(b"echo a\"b c\"\r\n").unwrap(),
            Some(args(&["echo", "ab c"]))
        );
        assert_eq!(
            req(b"echo \"\\xZZ\"\r\n").unwrap(),
            Some(args(&["echo", "xZZ"]))
        );
    }

    #[test]
    fn blank_lines_and_empty_arrays_are_skipped() {
        let mut buf = BytesMut::from(&b"\r\n   \n*0\r\n*-1\r\nPING\r\n"[..]);
        assert_eq!(
            parse_request(&mut buf, &Limits::default()).unwrap(),
            Some(args(&["PING"]))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn malformed_requests_get_redis_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*2\r\n:1\r\n", "Protocol error: expected '$', got ':'"),
            (
                b"*2\r\n*1\r\n$1\r\na\r\n",
                "Protocol error: expected '$', got '*'",
            ),
            (b"*1\r\n$x\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$3\r\nfooXY", "Protocol error: expected CRLF"),
            (b"*1\r\n$3\r\nfoo\r", ""),
            (b"*1\rX", "Protocol error: expected CRLF"),
            (b"*-5\r\n", "Protocol error: invalid multibulk length"),
        ];
        for (input, msg) in cases {
            match req(input) {
                Err(e) => assert_eq!(
                    e.to_string(),
                    *msg,
                    "input {:?}",
                    String::from_utf8_lossy(input)
                ),
                Ok(None) => assert!(
                    msg.is_empty(),
                    "input {:?} incomplete",
                    String::from_utf8_lossy(input)
                ),
                Ok(Some(a)) => panic!("input {:?} parsed as {a:?}", String::from_utf8_lossy(input)),
            }
        }
    }

    #[test]
    fn limits_are_enforced() {
        let l = small_limits();
        let run = |input: &[u8]| parse_request(&mut BytesMut::from(input), &l);
        assert_eq!(run(b"*5\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(run(b"*4\r\n").unwrap(), None);
        assert_eq!(run(b"*1\r\n$9\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(
            run(b"*1\r\n$8\r\n12345678\r\n").unwrap(),
            Some(args(&["12345678"]))
        );
        // Inline: 16 bytes of content are fine, 17 are not, with or without the newline yet.
        assert_eq!(
            run(b"0123456789abcdef\n").unwrap(),
            Some(args(&["0123456789abcdef"]))
        );
        assert_eq!(
            run(b"0123456789abcdefg\n"),
            Err(ProtocolError::TooBigInline)
        );
        assert_eq!(run(b"0123456789abcdefg"), Err(ProtocolError::TooBigInline));
        assert_eq!(run(b"0123456789abcdef").unwrap(), None);
        // Header lines longer than the inline limit.
        assert_eq!(
            run(b"*00000000000000000"),
            Err(ProtocolError::TooBigMultibulkCount)
        );
        assert_eq!(
            run(b"*1\r\n$00000000000000000"),
            Err(ProtocolError::TooBigBulkCount)
        );
        assert_eq!(run(b"*1\r\n$0000000000000000").unwrap(), None);
        assert_eq!(
            ProtocolError::TooBigBulkCount.to_string(),
            "Protocol error: too big bulk count string"
        );
        assert_eq!(
            ProtocolError::TooBigMultibulkCount.to_string(),
            "Protocol error: too big mbulk count string"
        );
        assert_eq!(
            ProtocolError::TooBigInline.to_string(),
            "Protocol error: too big inline request"
        );
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate_up_front() {
        // One million elements declared, none sent: must not reserve a million slots.
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"*1048576\r\n"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        match &dec.state {
            RequestState::Multibulk { args, .. } => assert!(args.capacity() <= 1024),
            RequestState::Start => panic!("expected a pending multibulk"),
        }
        assert_eq!(
            req(b"*99999999999999999999\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            req(b"*1\r\n$99999999999999999999\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
    }

    #[test]
    fn negative_multibulk_length_is_not_fatal() {
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::from(&b"*-2\r\n*1\r\n$4\r\nPING\r\n"[..]);
        let err = dec.decode(&mut buf).unwrap_err();
        assert!(!err.is_fatal());
        assert_eq!(dec.decode(&mut buf).unwrap(), Some(args(&["PING"])));
        assert!(ProtocolError::InvalidBulkLength.is_fatal());
    }

    #[test]
    fn decoder_is_resumable_byte_by_byte() {
        let input = b"*3\r\n$4\r\nXADD\r\n$2\r\nch\r\n$1\r\n*\r\nPING\r\n";
        let mut dec = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in input.iter() {
            buf.put_u8(b);
            while let Some(a) = dec.decode(&mut buf).unwrap() {
                got.push(a);
            }
        }
        assert_eq!(got, vec![args(&["XADD", "ch", "*"]), args(&["PING"])]);
        assert!(!dec.is_mid_command());
    }

    #[test]
    fn parse_integer_follows_string2ll() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-1"), Some(-1));
        assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(
                parse_integer(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    fn frame(input: &[u8]) -> Result<Option<Frame>, ProtocolError> {
        parse_frame(&mut BytesMut::from(input), &Limits::default())
    }

    #[test]
    fn parses_every_reply_type() {
        let cases: Vec<(&[u8], Frame)> = vec![
            (b"+OK\r\n", Frame::ok()),
            (b"-ERR bad\r\n", Frame::error("ERR bad")),
            (b":-42\r\n", Frame::Integer(-42)),
            (b":+7\r\n", Frame::Integer(7)),
            (b"$3\r\nfoo\r\n", Frame::bulk("foo")),
            (b"$-1\r\n", Frame::Null),
            (b"*-1\r\n", Frame::NullArray),
            (b"_\r\n", Frame::Null),
            (b"*0\r\n", Frame::Array(vec![])),
            (
                b"*2\r\n:1\r\n*1\r\n+a\r\n",
                Frame::Array(vec![
                    Frame::Integer(1),
                    Frame::Array(vec![Frame::simple("a")]),
                ]),
            ),
            (
                b"%1\r\n+k\r\n:1\r\n",
                Frame::Map(vec![(Frame::simple("k"), Frame::Integer(1))]),
            ),
            (b"~1\r\n#t\r\n", Frame::Set(vec![Frame::Boolean(true)])),
            (
                b">2\r\n+message\r\n#f\r\n",
                Frame::Push(vec![Frame::simple("message"), Frame::Boolean(false)]),
            ),
            (b",1.5\r\n", Frame::Double(1.5)),
            (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
            (b",1e300\r\n", Frame::Double(1e300)),
            (
                b"(-123456789012345678901234567890\r\n",
                Frame::BigNumber("-123456789012345678901234567890".into()),
            ),
            (b"!5\r\nERR x\r\n", Frame::error("ERR x")),
            (
                b"=8\r\ntxt:ab\r\n\r\n",
                Frame::Verbatim {
                    format: *b"txt",
                    text: Bytes::from_static(b"ab\r\n"),
                },
            ),
            (b"|1\r\n+ttl\r\n:3\r\n:5\r\n", Frame::Integer(5)),
            (
                b"*2\r\n|0\r\n:1\r\n|1\r\n+a\r\n+b\r\n:2\r\n",
                Frame::Array(vec![Frame::Integer(1), Frame::Integer(2)]),
            ),
        ];
        for (input, want) in cases {
            let mut buf = BytesMut::from(input);
            let got = parse_frame(&mut buf, &Limits::default()).unwrap();
            assert_eq!(
                got,
                Some(want),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
            assert!(buf.is_empty());
        }
        match frame(b",nan\r\n").unwrap() {
            Some(Frame::Double(d)) => assert!(d.is_nan()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_replies_are_errors() {
        let cases: &[&[u8]] = &[
            b"?\r\n",
            b":abc\r\n",
            b"#x\r\n",
            b",infinity\r\n",
            b",\r\n",
            b"_x\r\n",
            b"(12a\r\n",
            b"$-2\r\n",
            b"$?\r\n",
            b"*?\r\n",
            b"*-2\r\n",
            b"%-1\r\n",
            b"$3\r\nfooXX",
            b"=2\r\nab\r\n",
            b"+a\rb\r\n",
        ];
        for input in cases {
            assert!(
                frame(input).is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            frame(b"?").unwrap_err().to_string(),
            "Protocol error: invalid type byte '?'"
        );
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowing() {
        let mut input = Vec::new();
        for _ in 0..100_000 {
            input.extend_from_slice(b"*1\r\n");
        }
        input.extend_from_slice(b":1\r\n");
        assert_eq!(frame(&input), Err(ProtocolError::NestingTooDeep));
        let mut ok = Vec::new();
        for _ in 0..MAX_NESTING {
            ok.extend_from_slice(b"*1\r\n");
        }
        ok.extend_from_slice(b":1\r\n");
        assert!(matches!(frame(&ok), Ok(Some(Frame::Array(_)))));
    }

    fn enc(f: &Frame, proto: Protocol) -> Vec<u8> {
        f.to_bytes(proto).to_vec()
    }

    #[test]
    fn encodes_resp2_and_resp3() {
        use Protocol::{Resp2, Resp3};
        let map = Frame::Map(vec![
            (Frame::bulk("server"), Frame::bulk("raftbus")),
            (Frame::bulk("proto"), Frame::Integer(3)),
        ]);
        assert_eq!(
            enc(&map, Resp3),
            b"%2\r\n$6\r\nserver\r\n$7\r\nraftbus\r\n$5\r\nproto\r\n:3\r\n"
        );
        assert_eq!(
            enc(&map, Resp2),
            b"*4\r\n$6\r\nserver\r\n$7\r\nraftbus\r\n$5\r\nproto\r\n:3\r\n"
        );
        let push = Frame::Push(vec![
            Frame::bulk("message"),
            Frame::bulk("ch"),
            Frame::bulk("hi"),
        ]);
        assert_eq!(
            enc(&push, Resp3),
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            enc(&push, Resp2),
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
        assert_eq!(enc(&Frame::Null, Resp2), b"$-1\r\n");
        assert_eq!(enc(&Frame::Null, Resp3), b"_\r\n");
        assert_eq!(enc(&Frame::NullArray, Resp2), b"*-1\r\n");
        assert_eq!(enc(&Frame::NullArray, Resp3), b"_\r\n");
        assert_eq!(
            enc(&Frame::Integer(i64::MIN), Resp2),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(enc(&Frame::Integer(0), Resp2), b":0\r\n");
        assert_eq!(enc(&Frame::Boolean(true), Resp2), b":1\r\n");
        assert_eq!(enc(&Frame::Boolean(false), Resp3), b"#f\r\n");
        assert_eq!(enc(&Frame::Double(1.0), Resp3), b",1\r\n");
        assert_eq!(enc(&Frame::Double(0.25), Resp2), b"$4\r\n0.25\r\n");
        assert_eq!(enc(&Frame::Double(f64::NAN), Resp3), b",nan\r\n");
        assert_eq!(enc(&Frame::Double(-1e300), Resp3), b",-1e300\r\n");
        assert_eq!(
            enc(&Frame::Set(vec![Frame::Integer(1)]), Resp3),
            b"~1\r\n:1\r\n"
        );
        assert_eq!(
            enc(&Frame::Set(vec![Frame::Integer(1)]), Resp2),
            b"*1\r\n:1\r\n"
        );
        assert_eq!(enc(&Frame::BigNumber("12".into()), Resp2), b"$2\r\n12\r\n");
        let verbatim = Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"hi"),
        };
        assert_eq!(enc(&verbatim, Resp3), b"=6\r\ntxt:hi\r\n");
        assert_eq!(enc(&verbatim, Resp2), b"$2\r\nhi\r\n");
        assert_eq!(enc(&Frame::error("ERR a\r\nb"), Resp2), b"-ERR a  b\r\n");
        assert_eq!(enc(&Frame::simple("x\ny"), Resp3), b"+x y\r\n");
    }

    /// Proptest suites. Each prints how many parser runs it made (`--nocapture` to see them);
    /// `PROPTEST_CASES` scales them.
    mod props {
        use std::sync::atomic::{AtomicU64, Ordering};

        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        use super::super::*;

        type ReqOutcome = Vec<Result<Vec<Bytes>, ProtocolError>>;

        /// Feeds `input` in chunks (cycling through `chunks`; empty = one byte at a time) to
        /// a decoder, collecting every outcome until a fatal error or the end of the input.
        fn feed_requests(
            input: &[u8],
            chunks: &[usize],
            limits: Limits,
            stateless: bool,
        ) -> ReqOutcome {
            let mut dec = RequestDecoder::new(limits);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut off = 0;
            let mut turn = 0;
            loop {
                loop {
                    let r = if stateless {
                        parse_request(&mut buf, &limits)
                    } else {
                        dec.decode(&mut buf)
                    };
                    match r {
                        Ok(Some(a)) => out.push(Ok(a)),
                        Ok(None) => break,
                        Err(e) => {
                            let fatal = e.is_fatal();
                            out.push(Err(e));
                            if fatal {
                                return out;
                            }
                        }
                    }
                }
                if off == input.len() {
                    return out;
                }
                let size = chunks
                    .get(turn % chunks.len().max(1))
                    .copied()
                    .unwrap_or(1)
                    .max(1);
                turn += 1;
                let end = off.saturating_add(size).min(input.len());
                buf.extend_from_slice(&input[off..end]);
                off = end;
            }
        }

        fn feed_frames(
            input: &[u8],
            chunks: &[usize],
            limits: Limits,
        ) -> Vec<Result<Frame, ProtocolError>> {
            let mut dec = FrameDecoder::new(limits);
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            let mut off = 0;
            let mut turn = 0;
            loop {
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(f)) => out.push(Ok(f)),
                        Ok(None) => break,
                        Err(e) => {
                            out.push(Err(e));
                            return out;
                        }
                    }
                }
                if off == input.len() {
                    return out;
                }
                let size = chunks
                    .get(turn % chunks.len().max(1))
                    .copied()
                    .unwrap_or(1)
                    .max(1);
                turn += 1;
                let end = off.saturating_add(size).min(input.len());
                buf.extend_from_slice(&input[off..end]);
                off = end;
            }
        }

        fn limits_strategy() -> impl Strategy<Value = Limits> {
            prop_oneof![
                Just(Limits::default()),
                (1usize..24, 0usize..6, 1usize..24).prop_map(|(b, a, i)| Limits {
                    max_bulk_len: b,
                    max_array_len: a,
                    max_inline_len: i,
                }),
            ]
        }

        /// Bytes that look a little like RESP, so the parsers get past the first byte often.
        fn resp_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
            let token = prop_oneof![
                any::<u8>().prop_map(|b| vec![b]),
                Just(b"\r\n".to_vec()),
                Just(b"*".to_vec()),
                Just(b"$".to_vec()),
                Just(b"-1".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"'".to_vec()),
                Just(b"\\".to_vec()),
                Just(b" ".to_vec()),
                (0u8..12).prop_map(|d| d.to_string().into_bytes()),
                prop::sample::select(vec![
                    b'+', b'-', b':', b',', b'#', b'(', b'_', b'%', b'~', b'>', b'|', b'!', b'='
                ])
                .prop_map(|b| vec![b]),
            ];
            prop::collection::vec(token, 0..64).prop_map(|v| v.concat())
        }

        fn chunks_strategy() -> impl Strategy<Value = Vec<usize>> {
            prop::collection::vec(1usize..40, 1..12)
        }

        fn config() -> Config {
            Config {
                failure_persistence: None,
                ..Config::default()
            }
        }

        #[test]
        fn random_bytes_never_panic_and_chunking_does_not_matter() {
            let runs = AtomicU64::new(0);
            let mut runner = TestRunner::new(config());
            let strategy = (
                prop_oneof![prop::collection::vec(any::<u8>(), 0..128), resp_ish_bytes()],
                chunks_strategy(),
                limits_strategy(),
            );
            runner
                .run(&strategy, |(input, chunks, limits)| {
                    let whole = feed_requests(&input, &[usize::MAX], limits, false);
                    prop_assert_eq!(&feed_requests(&input, &[], limits, false), &whole);
                    prop_assert_eq!(&feed_requests(&input, &chunks, limits, false), &whole);
                    prop_assert_eq!(&feed_requests(&input, &chunks, limits, true), &whole);
                    let whole = feed_frames(&input, &[usize::MAX], limits);
                    prop_assert_eq!(&feed_frames(&input, &[], limits), &whole);
                    prop_assert_eq!(&feed_frames(&input, &chunks, limits), &whole);
                    runs.fetch_add(7, Ordering::Relaxed);
                    Ok(())
                })
                .unwrap();
            eprintln!(
                "random_bytes: {} cases, {} parser runs",
                config().cases,
                runs.load(Ordering::Relaxed)
            );
        }

        #[derive(Debug, Clone)]
        enum Cmd {
            Multibulk(Vec<Vec<u8>>),
            Inline(Vec<Vec<u8>>, &'static str),
        }

        fn quote_inline(arg: &[u8]) -> Vec<u8> {
            let mut out = vec![b'"'];
            for &b in arg {
                match b {
                    b'"' => out.extend_from_slice(b"\\\""),
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    0x20..=0x7e => out.push(b),
                    _ => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            out.push(b'"');
            out
        }

        fn cmd_strategy() -> impl Strategy<Value = Cmd> {
            prop_oneof![
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..6)
                    .prop_map(Cmd::Multibulk),
                (
                    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 1..5),
                    prop::sample::select(vec!["\r\n", "\n"]),
                )
                    .prop_map(|(a, end)| Cmd::Inline(a, end)),
            ]
        }

        fn encode_cmd(cmd: &Cmd, out: &mut Vec<u8>) {
            match cmd {
                Cmd::Multibulk(args) => {
                    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
                    for a in args {
                        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                        out.extend_from_slice(a);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                Cmd::Inline(args, end) => {
                    for (i, a) in args.iter().enumerate() {
                        if i > 0 {
                            out.push(b' ');
                        }
                        out.extend_from_slice(&quote_inline(a));
                    }
                    out.extend_from_slice(end.as_bytes());
                }
            }
        }

        #[test]
        fn valid_pipelines_parse_the_same_however_chopped() {
            let runs = AtomicU64::new(0);
            let mut runner = TestRunner::new(config());
            let strategy = (
                prop::collection::vec(cmd_strategy(), 1..8),
                chunks_strategy(),
            );
            runner
                .run(&strategy, |(cmds, chunks)| {
                    let mut input = Vec::new();
                    for c in &cmds {
                        encode_cmd(c, &mut input);
                    }
                    let want: ReqOutcome = cmds
                        .iter()
                        .map(|c| match c {
                            Cmd::Multibulk(a) | Cmd::Inline(a, _) => {
                                Ok(a.iter().map(|x| Bytes::copy_from_slice(x)).collect())
                            }
                        })
                        .collect();
                    let limits = Limits::default();
                    prop_assert_eq!(&feed_requests(&input, &[usize::MAX], limits, false), &want);
                    prop_assert_eq!(&feed_requests(&input, &[], limits, false), &want);
                    prop_assert_eq!(&feed_requests(&input, &chunks, limits, false), &want);
                    prop_assert_eq!(&feed_requests(&input, &chunks, limits, true), &want);
                    runs.fetch_add(4, Ordering::Relaxed);
                    Ok(())
                })
                .unwrap();
            eprintln!(
                "valid_pipelines: {} cases, {} parser runs",
                config().cases,
                runs.load(Ordering::Relaxed)
            );
        }

        fn frame_strategy() -> impl Strategy<Value = Frame> {
            let leaf = prop_oneof![
                "[^\r\n]{0,12}".prop_map(Frame::Simple),
                "[^\r\n]{0,12}".prop_map(Frame::Error),
                any::<i64>().prop_map(Frame::Integer),
                prop::collection::vec(any::<u8>(), 0..32).prop_map(|v| Frame::Bulk(Bytes::from(v))),
                Just(Frame::Null),
                Just(Frame::NullArray),
                prop_oneof![
                    any::<f64>().prop_filter("nan is never equal", |d| !d.is_nan()),
                    Just(f64::INFINITY),
                    Just(f64::NEG_INFINITY),
                    Just(0.1),
                    Just(-0.0),
                ]
                .prop_map(Frame::Double),
                any::<bool>().prop_map(Frame::Boolean),
                "-?[1-9][0-9]{0,40}".prop_map(Frame::BigNumber),
                ("[a-z]{3}", prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(f, t)| {
                    Frame::Verbatim {
                        format: f.as_bytes().try_into().unwrap_or(*b"txt"),
                        text: Bytes::from(t),
                    }
                }),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Array),
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Set),
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Frame::Push),
                    prop::collection::vec((inner.clone(), inner), 0..4).prop_map(Frame::Map),
                ]
            })
        }

        /// What parsing the encoding of `f` must give back.
        fn expected(f: &Frame, proto: Protocol) -> Frame {
            let resp3 = proto == Protocol::Resp3;
            let all = |v: &[Frame]| v.iter().map(|x| expected(x, proto)).collect::<Vec<_>>();
            match f {
                Frame::NullArray if resp3 => Frame::Null,
                Frame::Array(v) => Frame::Array(all(v)),
                Frame::Set(v) if resp3 => Frame::Set(all(v)),
                Frame::Push(v) if resp3 => Frame::Push(all(v)),
                Frame::Set(v) | Frame::Push(v) => Frame::Array(all(v)),
                Frame::Map(p) if resp3 => Frame::Map(
                    p.iter()
                        .map(|(k, v)| (expected(k, proto), expected(v, proto)))
                        .collect(),
                ),
                Frame::Map(p) => Frame::Array(
                    p.iter()
                        .flat_map(|(k, v)| [expected(k, proto), expected(v, proto)])
                        .collect(),
                ),
                Frame::Double(d) if !resp3 => Frame::Bulk(Bytes::from(format_double(*d))),
                Frame::Boolean(b) if !resp3 => Frame::Integer(i64::from(*b)),
                Frame::BigNumber(s) if !resp3 => Frame::Bulk(Bytes::from(s.clone())),
                Frame::Verbatim { text, .. } if !resp3 => Frame::Bulk(text.clone()),
                other => other.clone(),
            }
        }

        #[test]
        fn frames_round_trip_however_chopped() {
            let runs = AtomicU64::new(0);
            let mut runner = TestRunner::new(config());
            let strategy = (
                prop::collection::vec(frame_strategy(), 1..4),
                chunks_strategy(),
            );
            runner
                .run(&strategy, |(frames, chunks)| {
                    for proto in [Protocol::Resp2, Protocol::Resp3] {
                        let mut out = BytesMut::new();
                        for f in &frames {
                            encode(f, proto, &mut out);
                        }
                        let want: Vec<Result<Frame, ProtocolError>> =
                            frames.iter().map(|f| Ok(expected(f, proto))).collect();
                        let limits = Limits::default();
                        prop_assert_eq!(&feed_frames(&out, &[usize::MAX], limits), &want);
                        prop_assert_eq!(&feed_frames(&out, &[], limits), &want);
                        prop_assert_eq!(&feed_frames(&out, &chunks, limits), &want);
                        // Re-encoding what was parsed gives the same bytes.
                        let mut again = BytesMut::new();
                        for f in &want {
                            encode(
                                f.as_ref().map_err(|e| TestCaseError::fail(e.to_string()))?,
                                proto,
                                &mut again,
                            );
                        }
                        prop_assert_eq!(&again[..], &out[..]);
                        runs.fetch_add(3, Ordering::Relaxed);
                    }
                    Ok(())
                })
                .unwrap();
            eprintln!(
                "frames_round_trip: {} cases, {} parser runs",
                config().cases,
                runs.load(Ordering::Relaxed)
            );
        }
    }
}
