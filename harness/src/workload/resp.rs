//! A minimal RESP client for the connections the harness must fully control: subscribers
//! (a dedicated socket, a client name, bounded buffering, exact disconnect detection) and
//! the final XRANGE reads.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Largest bulk string or array accepted from a server.
const MAX_BULK: usize = 512 * 1024 * 1024;
const MAX_ARRAY: usize = 16 * 1024 * 1024;
/// Deepest nesting accepted (XREAD replies nest four levels).
const MAX_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(b) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A connection: its two halves, usable apart (a subscriber pings while a read waits).
pub struct RespConn {
    rx: RespReader,
    tx: RespWriter,
}

/// The reading half: replies and push messages.
pub struct RespReader {
    reader: BufReader<OwnedReadHalf>,
    line: Vec<u8>,
}

/// The writing half: commands.
pub struct RespWriter {
    writer: BufWriter<OwnedWriteHalf>,
}

impl RespConn {
    /// Connects (the caller has checked the address is allowed).
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<RespConn> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        Ok(RespConn {
            rx: RespReader {
                reader: BufReader::with_capacity(64 * 1024, r),
                line: Vec::with_capacity(128),
            },
            tx: RespWriter {
                writer: BufWriter::new(w),
            },
        })
    }

    /// Both halves, to write while a read is pending.
    pub fn halves(&mut self) -> (&mut RespReader, &mut RespWriter) {
        (&mut self.rx, &mut self.tx)
    }

    /// Writes one command as a RESP array of bulk strings.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        self.tx.send(args).await
    }

    /// Sends a command and reads its reply.
    pub async fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Value> {
        self.send(args).await?;
        self.read().await
    }

    /// Reads one reply or push message.
    pub async fn read(&mut self) -> io::Result<Value> {
        self.rx.read().await
    }
}

impl RespWriter {
    /// Writes one command as a RESP array of bulk strings.
    pub async fn send<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            let a = a.as_ref();
            buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            buf.extend_from_slice(a);
            buf.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&buf).await?;
        self.writer.flush().await
    }
}

impl RespReader {
    /// Reads one reply or push message. Not cancel-safe: a read dropped halfway leaves the
    /// stream mid-reply, so callers that time out give the connection up.
    pub async fn read(&mut self) -> io::Result<Value> {
        self.read_value(0).await
    }

    async fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        let n = self.reader.read_until(b'\n', &mut self.line).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by server",
            ));
        }
        if !self.line.ends_with(b"\r\n") {
            return Err(bad("reply line without CRLF"));
        }
        self.line.truncate(self.line.len() - 2);
        Ok(())
    }

    fn line_number(&self) -> io::Result<i64> {
        std::str::from_utf8(&self.line[1..])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad length or integer in reply"))
    }

    fn read_value(
        &mut self,
        depth: usize,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<Value>> + Send + '_>> {
        Box::pin(async move {
            if depth > MAX_DEPTH {
                return Err(bad("reply nested too deeply"));
            }
            self.read_line().await?;
            let Some(&kind) = self.line.first() else {
                return Err(bad("empty reply line"));
            };
            let text = || String::from_utf8_lossy(&self.line[1..]).into_owned();
            match kind {
                b'+' => Ok(Value::Simple(text())),
                b'-' => Ok(Value::Error(text())),
                b':' => Ok(Value::Int(self.line_number()?)),
                b'_' => Ok(Value::Nil),
                b'$' => {
                    let n = self.line_number()?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let n = n as usize;
                    if n > MAX_BULK {
                        return Err(bad("bulk string too large"));
                    }
                    let mut buf = vec![0u8; n + 2];
                    self.reader.read_exact(&mut buf).await?;
                    if &buf[n..] != b"\r\n" {
                        return Err(bad("bulk string without CRLF"));
                    }
                    buf.truncate(n);
                    Ok(Value::Bulk(buf))
                }
                // Arrays, RESP3 pushes, sets and maps (flattened) all become arrays.
                b'*' | b'>' | b'~' | b'%' => {
                    let n = self.line_number()?;
                    if n < 0 {
                        return Ok(Value::Nil);
                    }
                    let n = if kind == b'%' {
                        n as usize * 2
                    } else {
                        n as usize
                    };
                    if n > MAX_ARRAY {
                        return Err(bad("array too large"));
                    }
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(self.read_value(depth + 1).await?);
                    }
                    Ok(Value::Array(items))
                }
                other => Err(bad(format!("unknown reply type {:?}", other as char))),
            }
        })
    }
}

/// A stream entry id `ms-seq`, ordered numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct EntryId(pub u64, pub u64);

impl EntryId {
    pub fn parse(s: &str) -> Option<EntryId> {
        let (a, b) = s.split_once('-').unwrap_or((s, "0"));
        Some(EntryId(a.parse().ok()?, b.parse().ok()?))
    }

    /// The smallest id after this one.
    pub fn next(self) -> EntryId {
        if self.1 == u64::MAX {
            EntryId(self.0 + 1, 0)
        } else {
            EntryId(self.0, self.1 + 1)
        }
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One entry of an XREAD/XRANGE reply: its id and the value of field `m` (or `message`,
/// how the bus stores a PUBLISH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    pub payload: Option<Vec<u8>>,
}

/// Entries of an XRANGE reply (`[[id, [field, value, ...]], ...]`).
pub fn parse_entries(v: &Value) -> io::Result<Vec<StreamEntry>> {
    let items = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(a) => a,
        Value::Error(e) => return Err(io::Error::other(e.clone())),
        _ => return Err(bad("stream entries are not an array")),
    };
    items
        .iter()
        .map(|item| {
            let parts = item
                .as_array()
                .ok_or_else(|| bad("entry is not an array"))?;
            let id = parts
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| bad("entry without id"))?
                .to_string();
            let fields = parts.get(1).and_then(Value::as_array).unwrap_or(&[]);
            // XADD writes field `m`; the bus stores a PUBLISH as field `message`.
            let field = |name: &[u8]| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0].as_bytes() == Some(name))
                    .and_then(|kv| kv.get(1))
                    .and_then(Value::as_bytes)
            };
            let payload = field(b"m")
                .or_else(|| field(b"message"))
                .map(<[u8]>::to_vec);
            Ok(StreamEntry { id, payload })
        })
        .collect()
}

/// An XREAD reply: `[[stream, entries], ...]`, or nil on timeout. RESP3 maps are
/// flattened to `[stream, entries, stream, entries]`.
pub fn parse_xread(v: &Value) -> io::Result<Vec<(String, Vec<StreamEntry>)>> {
    let items = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(a) => a,
        Value::Error(e) => return Err(io::Error::other(e.clone())),
        _ => return Err(bad("XREAD reply is not an array")),
    };
    let mut out = Vec::new();
    if items.first().is_some_and(|i| i.as_array().is_none()) {
        for kv in items.chunks(2) {
            let name = kv[0]
                .as_str()
                .ok_or_else(|| bad("stream name"))?
                .to_string();
            out.push((name, parse_entries(kv.get(1).unwrap_or(&Value::Nil))?));
        }
    } else {
        for item in items {
            let parts = item
                .as_array()
                .ok_or_else(|| bad("XREAD stream is not an array"))?;
            let name = parts
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| bad("stream name"))?
                .to_string();
            out.push((name, parse_entries(parts.get(1).unwrap_or(&Value::Nil))?));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_order_and_increment() {
        let a = EntryId::parse("17-3").unwrap();
        assert_eq!(a.next().to_string(), "17-4");
        assert!(EntryId::parse("9-0").unwrap() < EntryId::parse("10-0").unwrap());
        assert_eq!(EntryId::parse("5"), Some(EntryId(5, 0)));
        assert_eq!(EntryId::parse("x-1"), None);
    }

    #[test]
    fn xread_replies_are_parsed() {
        let entry = |id: &str, m: &[u8]| {
            Value::Array(vec![
                Value::Bulk(id.as_bytes().to_vec()),
                Value::Array(vec![Value::Bulk(b"m".to_vec()), Value::Bulk(m.to_vec())]),
            ])
        };
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Bulk(b"ch0".to_vec()),
            Value::Array(vec![entry("1-0", b"a"), entry("2-0", b"b")]),
        ])]);
        let parsed = parse_xread(&reply).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "ch0");
        assert_eq!(parsed[0].1[1].id, "2-0");
        assert_eq!(parsed[0].1[1].payload.as_deref(), Some(&b"b"[..]));
        assert!(parse_xread(&Value::Nil).unwrap().is_empty());
        let published = Value::Array(vec![Value::Array(vec![
            Value::Bulk(b"1-0".to_vec()),
            Value::Array(vec![
                Value::Bulk(b"message".to_vec()),
                Value::Bulk(b"p".to_vec()),
            ]),
        ])]);
        let entries = parse_entries(&published).unwrap();
        assert_eq!(entries[0].payload.as_deref(), Some(&b"p"[..]));
        assert!(parse_xread(&Value::Error("ERR x".into())).is_err());
    }

    #[tokio::test]
    async fn reads_nested_replies_from_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$-1\r\n:42\r\n-ERR no\r\n")
                .await
                .unwrap();
        });
        let mut c = RespConn::connect(addr, Duration::from_secs(2))
            .await
            .unwrap();
        let v = c.call(&["PING"]).await.unwrap();
        assert_eq!(
            v,
            Value::Array(vec![
                Value::Bulk(b"message".to_vec()),
                Value::Bulk(b"ch1".to_vec()),
                Value::Nil
            ])
        );
        assert_eq!(c.read().await.unwrap(), Value::Int(42));
        assert_eq!(c.read().await.unwrap(), Value::Error("ERR no".into()));
        server.await.unwrap();
        assert!(c.read().await.is_err());
    }
}
