//! Client commands parsed from request arguments, with Redis's exact error texts.
//!
//! [`Command::parse`] checks the command name (case-insensitive), its arity and its options the
//! way Redis 7 does, so clients see the same errors they would from Redis. Execution lives
//! elsewhere; commands Redis has but the bus refuses (FLUSHALL, CONFIG SET, …) parse to
//! [`CommandError::NotSupported`].

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;

use crate::groups::{self, ReadGroup};
use crate::resp::{parse_integer, Frame, Protocol};
use crate::transaction::{self, Op, Query};

/// A stream entry ID, `<ms>-<seq>`. The bus uses `<offset>-0`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// `0-0`, also what `-` means.
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    /// What `+` means.
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub const fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The ID of the bus entry at `offset` in its channel: `<offset>-0`.
    pub const fn from_offset(offset: u64) -> StreamId {
        StreamId { ms: offset, seq: 0 }
    }

    /// The next ID, `None` after [`StreamId::MAX`].
    pub fn next(self) -> Option<StreamId> {
        match self.seq.checked_add(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self.ms.checked_add(1).map(|ms| StreamId { ms, seq: 0 }),
        }
    }

    /// The previous ID, `None` before [`StreamId::MIN`].
    pub fn prev(self) -> Option<StreamId> {
        match self.seq.checked_sub(1) {
            Some(seq) => Some(StreamId { ms: self.ms, seq }),
            None => self
                .ms
                .checked_sub(1)
                .map(|ms| StreamId { ms, seq: u64::MAX }),
        }
    }

    /// Parses an ID as XRANGE and XREAD do: `-` is [`StreamId::MIN`], `+` is [`StreamId::MAX`],
    /// `<ms>` alone takes `missing_seq` as its sequence.
    pub fn parse(s: &[u8], missing_seq: u64) -> Result<StreamId, CommandError> {
        match s {
            b"-" => Ok(StreamId::MIN),
            b"+" => Ok(StreamId::MAX),
            _ => StreamId::parse_strict(s, missing_seq),
        }
    }

    /// Like [`StreamId::parse`] without the `-` and `+` shorthands (XADD, exclusive bounds).
    pub fn parse_strict(s: &[u8], missing_seq: u64) -> Result<StreamId, CommandError> {
        match parse_id_parts(s)? {
            (ms, Some(IdSeq::Number(seq))) => Ok(StreamId { ms, seq }),
            (ms, None) => Ok(StreamId {
                ms,
                seq: missing_seq,
            }),
            (_, Some(IdSeq::Star)) => Err(CommandError::InvalidStreamId),
        }
    }
}

enum IdSeq {
    Number(u64),
    Star,
}

/// `<ms>[-<seq>|-*]`, decimal digits only, at most 127 bytes (as Redis).
fn parse_id_parts(s: &[u8]) -> Result<(u64, Option<IdSeq>), CommandError> {
    if s.len() > 127 {
        return Err(CommandError::InvalidStreamId);
    }
    let (ms, seq) = match s.iter().position(|&b| b == b'-') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let ms = parse_u64_digits(ms).ok_or(CommandError::InvalidStreamId)?;
    let seq = match seq {
        None => None,
        Some(b"*") => Some(IdSeq::Star),
        Some(digits) => Some(IdSeq::Number(
            parse_u64_digits(digits).ok_or(CommandError::InvalidStreamId)?,
        )),
    };
    Ok((ms, seq))
}

fn parse_u64_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for StreamId {
    type Err = CommandError;

    /// `<ms>-<seq>` or `<ms>` (sequence 0).
    fn from_str(s: &str) -> Result<StreamId, CommandError> {
        StreamId::parse_strict(s.as_bytes(), 0)
    }
}

/// A parse (or, for the variants the server uses, execution) error, displayed exactly as Redis
/// words it, prefix included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `args` is Redis's list of up to 128 bytes of quoted arguments, each followed by a space.
    #[error("ERR unknown command '{name}', with args beginning with: {args}")]
    UnknownCommand { name: String, args: String },
    #[error("ERR unknown subcommand '{subcommand}'. Try {command} HELP.")]
    UnknownSubcommand { command: String, subcommand: String },
    /// Carries the lowercase full name: `xadd`, `client|setname`.
    #[error("ERR wrong number of arguments for '{0}' command")]
    WrongArity(String),
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR value is not an integer or out of range")]
    NotAnInteger,
    #[error("ERR Invalid stream ID specified as stream command argument")]
    InvalidStreamId,
    #[error("ERR The ID specified in XADD must be greater than 0-0")]
    XaddZeroId,
    #[error("ERR The MAXLEN argument must be >= 0.")]
    NegativeMaxlen,
    #[error("ERR The LIMIT argument must be >= 0.")]
    NegativeLimit,
    #[error("ERR syntax error, LIMIT cannot be used without specifying a trimming strategy")]
    LimitWithoutTrim,
    #[error("ERR syntax error, LIMIT cannot be used without the special ~ option")]
    LimitWithoutApprox,
    #[error(
        "ERR Unbalanced '{0}' list of streams: for each stream key an ID or '$' must be specified."
    )]
    UnbalancedStreams(&'static str),
    #[error("ERR timeout is not an integer or out of range")]
    TimeoutNotInteger,
    #[error("ERR timeout is negative")]
    NegativeTimeout,
    #[error("ERR invalid start ID for the interval")]
    InvalidIntervalStart,
    #[error("ERR invalid end ID for the interval")]
    InvalidIntervalEnd,
    #[error("ERR Protocol version is not an integer or out of range")]
    ProtoverNotInteger,
    #[error("NOPROTO unsupported protocol version")]
    NoProto,
    #[error("ERR Syntax error in HELLO option '{0}'")]
    HelloSyntax(String),
    #[error("ERR Client names cannot contain spaces, newlines or special characters.")]
    InvalidClientName,
    #[error("ERR Unrecognized option '{0}'")]
    UnrecognizedOption(String),
    #[error("ERR {0} cannot contain spaces, newlines or special characters.")]
    InvalidLibAttribute(String),
    /// An integer argument outside `i32` (SELECT).
    #[error("ERR value is out of range, value must between -2147483648 and 2147483647")]
    IntOutOfRange,
    #[error("ERR DB index is out of range")]
    DbIndexOutOfRange,
    #[error("ERR invalid cursor")]
    InvalidCursor,
    /// Any other Redis error text, prefix included.
    #[error("{0}")]
    Custom(String),
    /// A Redis command or subcommand the bus refuses; carries its uppercase name.
    #[error("ERR {0} is not supported by raftbus")]
    NotSupported(String),
    /// For the server: a command before AUTH when a password is set.
    #[error("NOAUTH Authentication required.")]
    NoAuth,
    /// For the server: AUTH or HELLO AUTH with a wrong user or password.
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    /// For the server: AUTH when no password is configured.
    #[error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")]
    NoPasswordConfigured,
    /// For the server: a RESP2 connection in subscribed mode sent another command (lowercase
    /// name).
    #[error("ERR Can't execute '{0}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")]
    NotAllowedWhileSubscribed(String),
}

impl CommandError {
    /// The error as a reply frame.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(self.to_string())
    }
}

/// A command Redis would run, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PING [message]`: PONG, or the message as a bulk string.
    Ping(Option<Bytes>),
    Echo(Bytes),
    Hello(Hello),
    Quit,
    /// `AUTH [username] password`
    Auth {
        username: Option<Bytes>,
        password: Bytes,
    },
    Client(ClientCommand),
    /// `SELECT 0`, the only database.
    Select,
    Publish {
        channel: Bytes,
        message: Bytes,
    },
    Subscribe(Vec<Bytes>),
    /// No channels: all of them.
    Unsubscribe(Vec<Bytes>),
    PSubscribe(Vec<Bytes>),
    /// No patterns: all of them.
    PUnsubscribe(Vec<Bytes>),
    /// `PUBSUB CHANNELS|NUMSUB|NUMPAT|SHARDCHANNELS|SHARDNUMSUB`: this node's subscribers
    /// (as in a Redis Cluster, each node answers for its own connections).
    Pubsub(PubsubQuery),
    /// `RESET`: the connection as if new (no transaction, subscriptions, name; RESP2; not
    /// authenticated when a password is set).
    Reset,
    XAdd(XAdd),
    XRead(XRead),
    /// XRANGE and XREVRANGE.
    XRange(XRange),
    XLen(Bytes),
    /// `INFO [section ...]`, sections lowercased.
    Info(Vec<String>),
    Command(CommandSubcommand),
    /// `CONFIG GET pattern [pattern ...]`
    ConfigGet(Vec<Bytes>),
    DbSize,
    Multi,
    Exec,
    Discard,
    /// A replicated write beyond plain appends (XTRIM, XDEL, DEL, UNLINK, XGROUP, XACK,
    /// XCLAIM, XAUTOCLAIM), with its lowercase name.
    Write(&'static str, Op),
    /// A read of keys or group state (EXISTS, TYPE, KEYS, SCAN, XPENDING, XINFO), with its
    /// lowercase name.
    Query(&'static str, Query),
    /// `XREADGROUP`, a replicated write; `block` as in XREAD.
    XReadGroup {
        read: ReadGroup,
        block: Option<u64>,
    },
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hello {
    pub protocol: Option<Protocol>,
    /// `(username, password)`
    pub auth: Option<(Bytes, Bytes)>,
    pub setname: Option<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// An empty name clears it.
    SetName(Bytes),
    GetName,
    Id,
    Info,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value` (sent by recent clients on connect); the
    /// attribute is lowercased.
    SetInfo {
        attribute: String,
        value: Bytes,
    },
    /// `CLIENT LIST [TYPE normal|pubsub] [ID id ...]`
    List(ClientFilter),
    /// `CLIENT KILL addr` (old form: `legacy`) or `CLIENT KILL <filter> ...`.
    Kill {
        filter: ClientFilter,
        legacy: bool,
    },
}

/// Which connections CLIENT LIST or CLIENT KILL mean; `None` fields match all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientFilter {
    pub ids: Option<Vec<u64>>,
    pub addr: Option<String>,
    pub laddr: Option<String>,
    /// `Some(true)`: pub/sub connections only; `Some(false)`: normal ones only.
    pub pubsub: Option<bool>,
    /// CLIENT KILL: leave the calling connection alone (default yes in the new form).
    pub skipme: bool,
}

/// The `PUBSUB` introspection subcommands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubsubQuery {
    /// Channels with at least one subscriber, optionally those matching a glob pattern.
    Channels(Option<Bytes>),
    /// Subscriber counts of these channels (patterns not counted).
    NumSub(Vec<Bytes>),
    /// Distinct patterns subscribed to.
    NumPat,
    /// Sharded channels: the bus has no SSUBSCRIBE, so there are none.
    ShardChannels,
    /// Sharded subscriber counts: zero for each channel.
    ShardNumSub(Vec<Bytes>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandSubcommand {
    /// `COMMAND`
    All,
    Count,
    /// `COMMAND DOCS [name ...]`
    Docs(Vec<Bytes>),
    /// `COMMAND INFO [name ...]`
    Info(Vec<Bytes>),
}

/// `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] *|id field value ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XAdd {
    pub key: Bytes,
    pub nomkstream: bool,
    pub trim: Option<Trim>,
    pub id: XAddId,
    pub fields: Vec<(Bytes, Bytes)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XAddId {
    /// `*`
    Auto,
    /// `<ms>-*`
    AutoSeq(u64),
    /// `<ms>-<seq>` or `<ms>` (sequence 0); never `0-0`.
    Explicit(StreamId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trim {
    pub strategy: TrimStrategy,
    /// `~`
    pub approx: bool,
    /// `LIMIT count`, only with `~`.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimStrategy {
    MaxLen(u64),
    MinId(StreamId),
}

/// `XREAD [COUNT n] [BLOCK ms] STREAMS key ... id ...`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRead {
    /// `None`: no limit (Redis treats `COUNT 0` and negative counts the same way).
    pub count: Option<u64>,
    /// Milliseconds; `Some(0)` blocks forever, `None` does not block.
    pub block: Option<u64>,
    pub streams: Vec<(Bytes, XReadId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XReadId {
    /// `$`: only entries added after the call.
    Last,
    /// Entries with IDs greater than this one (`-` is `0-0`, `+` is the maximum ID).
    After(StreamId),
}

/// XRANGE/XREVRANGE with both bounds resolved to inclusive IDs (`(` exclusive bounds are moved
/// to the next or previous ID, as Redis does). `start > end` means an empty range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XRange {
    pub key: Bytes,
    pub start: StreamId,
    pub end: StreamId,
    /// `None`: no limit. `Some(0)` (from `COUNT 0` or a negative count): Redis replies with a
    /// null array when the key exists.
    pub count: Option<u64>,
    /// XREVRANGE: newest first.
    pub rev: bool,
}

/// A command the bus knows: name (lowercase), Redis arity (negative: at least that many
/// arguments, name included), and whether it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i32,
    pub write: bool,
}

const fn spec(name: &'static str, arity: i32, write: bool) -> CommandSpec {
    CommandSpec { name, arity, write }
}

/// Every command [`Command::parse`] accepts (for `COMMAND COUNT`, `COMMAND INFO`).
pub const COMMANDS: &[CommandSpec] = &[
    spec("auth", -2, false),
    spec("client", -2, false),
    spec("command", -1, false),
    spec("config", -2, false),
    spec("dbsize", 1, false),
    spec("del", -2, true),
    spec("discard", 1, false),
    spec("echo", 2, false),
    spec("exec", 1, false),
    spec("exists", -2, false),
    spec("hello", -1, false),
    spec("info", -1, false),
    spec("keys", 2, false),
    spec("multi", 1, false),
    spec("ping", -1, false),
    spec("psubscribe", -2, false),
    spec("publish", 3, true),
    spec("pubsub", -2, false),
    spec("punsubscribe", -1, false),
    spec("quit", -1, false),
    spec("reset", 1, false),
    spec("scan", -2, false),
    spec("select", 2, false),
    spec("subscribe", -2, false),
    spec("type", 2, false),
    spec("unlink", -2, true),
    spec("unsubscribe", -1, false),
    spec("xack", -4, true),
    spec("xadd", -5, true),
    spec("xautoclaim", -6, true),
    spec("xclaim", -6, true),
    spec("xdel", -3, true),
    spec("xgroup", -2, true),
    spec("xinfo", -2, false),
    spec("xlen", 2, false),
    spec("xpending", -3, false),
    spec("xrange", -4, false),
    spec("xread", -4, false),
    spec("xreadgroup", -7, true),
    spec("xrevrange", -4, false),
    spec("xtrim", -4, true),
];

/// Subcommands of container commands, with their arities.
const SUBCOMMANDS: &[(&str, &str, i32)] = &[
    ("client", "setname", 3),
    ("client", "getname", 2),
    ("client", "id", 2),
    ("client", "info", 2),
    ("client", "setinfo", 4),
    ("client", "list", -2),
    ("client", "kill", -3),
    ("command", "count", 2),
    ("command", "docs", -2),
    ("command", "info", -2),
    ("config", "get", -3),
    ("pubsub", "channels", -2),
    ("pubsub", "numsub", -2),
    ("pubsub", "numpat", 2),
    ("pubsub", "shardchannels", -2),
    ("pubsub", "shardnumsub", -2),
    ("xgroup", "create", -5),
    ("xgroup", "setid", -5),
    ("xgroup", "destroy", 4),
    ("xgroup", "createconsumer", 5),
    ("xgroup", "delconsumer", 5),
    ("xinfo", "stream", -3),
    ("xinfo", "groups", 3),
    ("xinfo", "consumers", 4),
];

/// Redis commands (every Redis 7.2 command the bus does not run) and subcommands the bus
/// refuses with [`CommandError::NotSupported`] rather than "unknown command".
const REFUSED: &[&str] = &[
    "acl",
    "append",
    "asking",
    "bgrewriteaof",
    "bgsave",
    "bitcount",
    "bitfield",
    "bitfield_ro",
    "bitop",
    "bitpos",
    "blmove",
    "blmpop",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzmpop",
    "bzpopmax",
    "bzpopmin",
    "cluster",
    "copy",
    "debug",
    "decr",
    "decrby",
    "dump",
    "eval",
    "eval_ro",
    "evalsha",
    "evalsha_ro",
    "expire",
    "expireat",
    "expiretime",
    "failover",
    "fcall",
    "fcall_ro",
    "flushall",
    "flushdb",
    "function",
    "geoadd",
    "geodist",
    "geohash",
    "geopos",
    "georadius",
    "georadius_ro",
    "georadiusbymember",
    "georadiusbymember_ro",
    "geosearch",
    "geosearchstore",
    "get",
    "getbit",
    "getdel",
    "getex",
    "getrange",
    "getset",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hincrbyfloat",
    "hkeys",
    "hlen",
    "hmget",
    "hmset",
    "hrandfield",
    "hscan",
    "hset",
    "hsetnx",
    "hstrlen",
    "hvals",
    "incr",
    "incrby",
    "incrbyfloat",
    "lastsave",
    "latency",
    "lcs",
    "lindex",
    "linsert",
    "llen",
    "lmove",
    "lmpop",
    "lolwut",
    "lpop",
    "lpos",
    "lpush",
    "lpushx",
    "lrange",
    "lrem",
    "lset",
    "ltrim",
    "memory",
    "mget",
    "migrate",
    "module",
    "monitor",
    "move",
    "mset",
    "msetnx",
    "object",
    "persist",
    "pexpire",
    "pexpireat",
    "pexpiretime",
    "pfadd",
    "pfcount",
    "pfdebug",
    "pfmerge",
    "pfselftest",
    "psetex",
    "psync",
    "pttl",
    "randomkey",
    "readonly",
    "readwrite",
    "rename",
    "renamenx",
    "replconf",
    "replicaof",
    "restore",
    "restore-asking",
    "role",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "save",
    "scard",
    "script",
    "sdiff",
    "sdiffstore",
    "set",
    "setbit",
    "setex",
    "setnx",
    "setrange",
    "shutdown",
    "sinter",
    "sintercard",
    "sinterstore",
    "sismember",
    "slaveof",
    "slowlog",
    "smembers",
    "smismember",
    "smove",
    "sort",
    "sort_ro",
    "spop",
    "spublish",
    "srandmember",
    "srem",
    "sscan",
    "ssubscribe",
    "strlen",
    "substr",
    "sunion",
    "sunionstore",
    "sunsubscribe",
    "swapdb",
    "sync",
    "time",
    "touch",
    "ttl",
    "unwatch",
    "wait",
    "waitaof",
    "watch",
    "xsetid",
    "zadd",
    "zcard",
    "zcount",
    "zdiff",
    "zdiffstore",
    "zincrby",
    "zinter",
    "zintercard",
    "zinterstore",
    "zlexcount",
    "zmpop",
    "zmscore",
    "zpopmax",
    "zpopmin",
    "zrandmember",
    "zrange",
    "zrangebylex",
    "zrangebyscore",
    "zrangestore",
    "zrank",
    "zrem",
    "zremrangebylex",
    "zremrangebyrank",
    "zremrangebyscore",
    "zrevrange",
    "zrevrangebylex",
    "zrevrangebyscore",
    "zrevrank",
    "zscan",
    "zscore",
    "zunion",
    "zunionstore",
    "xgroup|help",
    "xinfo|help",
    "client|help",
    "client|pause",
    "client|unpause",
    "client|reply",
    "client|tracking",
    "client|no-evict",
    "client|no-touch",
    "command|help",
    "command|list",
    "command|getkeys",
    "command|getkeysandflags",
    "config|help",
    "pubsub|help",
    "config|set",
    "config|rewrite",
    "config|resetstat",
];

pub(crate) fn lowercase(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_ascii_lowercase()
}

fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    let arity = i64::from(arity);
    if arity >= 0 {
        argc == arity
    } else {
        argc >= -arity
    }
}

/// Redis's `unknown command` text: the name, then quoted arguments up to 128 bytes in total.
fn unknown_command(args: &[Bytes]) -> CommandError {
    let sanitize = |s: &[u8]| String::from_utf8_lossy(s).replace(['\r', '\n'], " ");
    let name = args.first().map(|n| &n[..n.len().min(128)]).unwrap_or(b"");
    let mut list = Vec::new();
    for arg in args.iter().skip(1) {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push(b'\'');
        list.extend_from_slice(&arg[..arg.len().min(room)]);
        list.extend_from_slice(b"' ");
    }
    CommandError::UnknownCommand {
        name: sanitize(name),
        args: sanitize(&list),
    }
}

pub(crate) fn integer(arg: &Bytes) -> Result<i64, CommandError> {
    parse_integer(arg).ok_or(CommandError::NotAnInteger)
}

pub(crate) fn eq_ignore_case(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Client names and library attributes: printable ASCII without spaces.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// The lowercase name Redis reports a request by: `client|id` for a subcommand of a
/// container command, else the command name.
pub fn full_name(args: &[Bytes]) -> String {
    let name = args.first().map(|n| lowercase(n)).unwrap_or_default();
    match args.get(1) {
        Some(sub) if is_container(&name) => format!("{name}|{}", lowercase(sub)),
        _ => name,
    }
}

/// Whether the (lowercase) command has subcommands ([`SUBCOMMANDS`]).
fn is_container(name: &str) -> bool {
    SUBCOMMANDS.iter().any(|(c, _, _)| *c == name)
}

impl Command {
    /// Parses request arguments (name first) into a command.
    pub fn parse(args: &[Bytes]) -> Result<Command, CommandError> {
        let Some(first) = args.first() else {
            return Err(unknown_command(args));
        };
        let name = lowercase(first);
        if REFUSED.contains(&name.as_str()) {
            return Err(CommandError::NotSupported(name.to_ascii_uppercase()));
        }
        let Some(spec) = COMMANDS.iter().find(|c| c.name == name) else {
            return Err(unknown_command(args));
        };
        if is_container(&name) && args.len() >= 2 {
            let sub = lowercase(&args[1]);
            let full = format!("{name}|{sub}");
            if REFUSED.contains(&full.as_str()) {
                return Err(CommandError::NotSupported(format!(
                    "{} {}",
                    name.to_ascii_uppercase(),
                    sub.to_ascii_uppercase()
                )));
            }
            let Some(&(_, _, arity)) = SUBCOMMANDS.iter().find(|(c, s, _)| *c == name && *s == sub)
            else {
                return Err(CommandError::UnknownSubcommand {
                    command: name.to_ascii_uppercase(),
                    subcommand: String::from_utf8_lossy(&args[1][..args[1].len().min(128)])
                        .replace(['\r', '\n'], " "),
                });
            };
            if !arity_ok(arity, args.len()) {
                return Err(CommandError::WrongArity(full));
            }
            return match name.as_str() {
                "client" => parse_client(&sub, args),
                "pubsub" => parse_pubsub(&sub, args),
                "xgroup" => Ok(Command::Write(
                    "xgroup",
                    Op::Group(groups::parse_xgroup(&sub, &args[2..])?),
                )),
                "xinfo" => Ok(Command::Query(
                    "xinfo",
                    Query::Group(groups::parse_xinfo(&sub, &args[2..])?),
                )),
                "command" => Ok(Command::Command(match sub.as_str() {
                    "count" => CommandSubcommand::Count,
                    "docs" => CommandSubcommand::Docs(args[2..].to_vec()),
                    _ => CommandSubcommand::Info(args[2..].to_vec()),
                })),
                _ => Ok(Command::ConfigGet(args[2..].to_vec())),
            };
        }
        if !arity_ok(spec.arity, args.len()) {
            return Err(CommandError::WrongArity(name));
        }
        let rest = &args[1..];
        match spec.name {
            "ping" => {
                if rest.len() > 1 {
                    return Err(CommandError::WrongArity(name));
                }
                Ok(Command::Ping(rest.first().cloned()))
            }
            "echo" => Ok(Command::Echo(rest[0].clone())),
            "hello" => parse_hello(rest),
            "quit" => Ok(Command::Quit),
            "reset" => Ok(Command::Reset),
            "auth" => match rest {
                [password] => Ok(Command::Auth {
                    username: None,
                    password: password.clone(),
                }),
                [user, password] => Ok(Command::Auth {
                    username: Some(user.clone()),
                    password: password.clone(),
                }),
                _ => Err(CommandError::Syntax),
            },
            "select" => match i32::try_from(integer(&rest[0])?) {
                Ok(0) => Ok(Command::Select),
                Ok(_) => Err(CommandError::DbIndexOutOfRange),
                Err(_) => Err(CommandError::IntOutOfRange),
            },
            "publish" => Ok(Command::Publish {
                channel: rest[0].clone(),
                message: rest[1].clone(),
            }),
            "subscribe" => Ok(Command::Subscribe(rest.to_vec())),
            "unsubscribe" => Ok(Command::Unsubscribe(rest.to_vec())),
            "psubscribe" => Ok(Command::PSubscribe(rest.to_vec())),
            "punsubscribe" => Ok(Command::PUnsubscribe(rest.to_vec())),
            "xadd" => parse_xadd(rest).map(Command::XAdd),
            "xread" => parse_xread(rest).map(Command::XRead),
            "xrange" => parse_xrange(rest, false).map(Command::XRange),
            "xrevrange" => parse_xrange(rest, true).map(Command::XRange),
            "xlen" => Ok(Command::XLen(rest[0].clone())),
            "info" => Ok(Command::Info(rest.iter().map(|s| lowercase(s)).collect())),
            "command" => Ok(Command::Command(CommandSubcommand::All)),
            "dbsize" => Ok(Command::DbSize),
            "multi" => Ok(Command::Multi),
            "exec" => Ok(Command::Exec),
            "discard" => Ok(Command::Discard),
            "xtrim" => Ok(Command::Write("xtrim", transaction::parse_xtrim(rest)?)),
            "xdel" => Ok(Command::Write("xdel", transaction::parse_xdel(rest)?)),
            "del" => Ok(Command::Write("del", Op::Del(transaction::keys(rest)))),
            "unlink" => Ok(Command::Write("unlink", Op::Del(transaction::keys(rest)))),
            "exists" => Ok(Command::Query(
                "exists",
                Query::Exists(transaction::keys(rest)),
            )),
            "type" => Ok(Command::Query(
                "type",
                Query::Type(String::from_utf8_lossy(&rest[0]).into_owned()),
            )),
            "keys" => Ok(Command::Query("keys", Query::Keys(rest[0].to_vec()))),
            "scan" => Ok(Command::Query("scan", transaction::parse_scan(rest)?)),
            "xreadgroup" => {
                let (read, block) = groups::parse_xreadgroup(rest)?;
                Ok(Command::XReadGroup { read, block })
            }
            "xack" => Ok(Command::Write("xack", Op::Group(groups::parse_xack(rest)?))),
            "xclaim" => Ok(Command::Write(
                "xclaim",
                Op::Group(groups::parse_xclaim(rest)?),
            )),
            "xautoclaim" => Ok(Command::Write(
                "xautoclaim",
                Op::Group(groups::parse_xautoclaim(rest)?),
            )),
            "xpending" => Ok(Command::Query(
                "xpending",
                Query::Group(groups::parse_xpending(rest)?),
            )),
            // Containers called without a subcommand fail the arity check above.
            _ => Err(unknown_command(args)),
        }
    }

    /// The lowercase command name (`xrevrange` for a reverse range).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Ping(_) => "ping",
            Command::Echo(_) => "echo",
            Command::Hello(_) => "hello",
            Command::Quit => "quit",
            Command::Auth { .. } => "auth",
            Command::Client(_) => "client",
            Command::Select => "select",
            Command::Publish { .. } => "publish",
            Command::Subscribe(_) => "subscribe",
            Command::Unsubscribe(_) => "unsubscribe",
            Command::PSubscribe(_) => "psubscribe",
            Command::PUnsubscribe(_) => "punsubscribe",
            Command::Pubsub(_) => "pubsub",
            Command::Reset => "reset",
            Command::XAdd(_) => "xadd",
            Command::XRead(_) => "xread",
            Command::XRange(r) if r.rev => "xrevrange",
            Command::XRange(_) => "xrange",
            Command::XLen(_) => "xlen",
            Command::Info(_) => "info",
            Command::Command(_) => "command",
            Command::ConfigGet(_) => "config",
            Command::DbSize => "dbsize",
            Command::Multi => "multi",
            Command::Exec => "exec",
            Command::Discard => "discard",
            Command::Write(name, _) | Command::Query(name, _) => name,
            Command::XReadGroup { .. } => "xreadgroup",
        }
    }

    /// Does it append to the replicated log?
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Publish { .. }
                | Command::XAdd(_)
                | Command::Write(..)
                | Command::XReadGroup { .. }
        )
    }

    /// May a RESP2 connection in subscribed mode run it? (RESP3 connections may run anything.)
    pub fn allowed_while_subscribed(&self) -> bool {
        matches!(
            self,
            Command::Subscribe(_)
                | Command::Unsubscribe(_)
                | Command::PSubscribe(_)
                | Command::PUnsubscribe(_)
                | Command::Ping(_)
                | Command::Quit
                | Command::Reset
        )
    }

    /// May a connection run it before authenticating? (HELLO may carry AUTH itself.)
    pub fn allowed_before_auth(&self) -> bool {
        matches!(
            self,
            Command::Auth { .. } | Command::Hello(_) | Command::Quit | Command::Reset
        )
    }
}

/// `PUBSUB CHANNELS [pattern]` takes one pattern at most; Redis words that error its own way.
fn parse_pubsub(sub: &str, args: &[Bytes]) -> Result<Command, CommandError> {
    let at_most_one = |what: &str| {
        if args.len() > 3 {
            return Err(CommandError::Custom(format!(
                "ERR unknown subcommand or wrong number of arguments for '{what}'. Try PUBSUB HELP."
            )));
        }
        Ok(args.get(2).cloned())
    };
    Ok(Command::Pubsub(match sub {
        "channels" => PubsubQuery::Channels(at_most_one("CHANNELS")?),
        "numsub" => PubsubQuery::NumSub(args[2..].to_vec()),
        "numpat" => PubsubQuery::NumPat,
        "shardchannels" => {
            at_most_one("SHARDCHANNELS")?;
            PubsubQuery::ShardChannels
        }
        _ => PubsubQuery::ShardNumSub(args[2..].to_vec()),
    }))
}

fn parse_client(sub: &str, args: &[Bytes]) -> Result<Command, CommandError> {
    Ok(Command::Client(match sub {
        "setname" => {
            if !valid_name(&args[2]) {
                return Err(CommandError::InvalidClientName);
            }
            ClientCommand::SetName(args[2].clone())
        }
        "getname" => ClientCommand::GetName,
        "id" => ClientCommand::Id,
        "info" => ClientCommand::Info,
        "list" => ClientCommand::List(parse_client_filter(&args[2..], false)?),
        "kill" if args.len() == 3 => ClientCommand::Kill {
            filter: ClientFilter {
                addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
                ..ClientFilter::default()
            },
            legacy: true,
        },
        "kill" => ClientCommand::Kill {
            filter: parse_client_filter(&args[2..], true)?,
            legacy: false,
        },
        _ => {
            let attribute = lowercase(&args[2]);
            if attribute != "lib-name" && attribute != "lib-ver" {
                return Err(CommandError::UnrecognizedOption(
                    String::from_utf8_lossy(&args[2]).replace(['\r', '\n'], " "),
                ));
            }
            if !valid_name(&args[3]) {
                return Err(CommandError::InvalidLibAttribute(attribute));
            }
            ClientCommand::SetInfo {
                attribute,
                value: args[3].clone(),
            }
        }
    }))
}

/// `ID id [id ...]`, `TYPE normal|pubsub`, and for CLIENT KILL `ADDR`, `LADDR`, `SKIPME`,
/// `USER default`.
fn parse_client_filter(opts: &[Bytes], kill: bool) -> Result<ClientFilter, CommandError> {
    let mut f = ClientFilter {
        skipme: kill,
        ..ClientFilter::default()
    };
    let mut i = 0;
    while i < opts.len() {
        let Some(value) = opts.get(i + 1) else {
            return Err(CommandError::Syntax);
        };
        let opt = lowercase(&opts[i]);
        match opt.as_str() {
            "id" if !kill => {
                let ids = opts[i + 1..]
                    .iter()
                    .map(|a| {
                        integer(a)
                            .and_then(|n| u64::try_from(n).map_err(|_| CommandError::NotAnInteger))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| CommandError::Custom("ERR Invalid client ID".into()))?;
                f.ids = Some(ids);
                i = opts.len();
                continue;
            }
            "id" => {
                let id = integer(value)
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| {
                        CommandError::Custom("ERR client-id should be greater than 0".into())
                    })?;
                f.ids = Some(vec![id]);
            }
            "type" => {
                f.pubsub = match lowercase(value).as_str() {
                    "normal" => Some(false),
                    "pubsub" => Some(true),
                    _ => {
                        return Err(CommandError::Custom(format!(
                            "ERR Unknown client type '{}'",
                            String::from_utf8_lossy(value)
                        )))
                    }
                };
            }
            "addr" if kill => f.addr = Some(String::from_utf8_lossy(value).into_owned()),
            "laddr" if kill => f.laddr = Some(String::from_utf8_lossy(value).into_owned()),
            "skipme" if kill => {
                f.skipme = match lowercase(value).as_str() {
                    "yes" => true,
                    "no" => false,
                    _ => return Err(CommandError::Syntax),
                }
            }
            // The bus has one user.
            "user" if kill && &value[..] == b"default" => {}
            _ => return Err(CommandError::Syntax),
        }
        i += 2;
    }
    Ok(f)
}

fn parse_hello(rest: &[Bytes]) -> Result<Command, CommandError> {
    let mut hello = Hello::default();
    let mut i = 0;
    if let Some(v) = rest.first() {
        hello.protocol = match parse_integer(v).ok_or(CommandError::ProtoverNotInteger)? {
            2 => Some(Protocol::Resp2),
            3 => Some(Protocol::Resp3),
            _ => return Err(CommandError::NoProto),
        };
        i = 1;
    }
    while i < rest.len() {
        let more = rest.len() - i - 1;
        let opt = &rest[i];
        if eq_ignore_case(opt, "auth") && more >= 2 {
            hello.auth = Some((rest[i + 1].clone(), rest[i + 2].clone()));
            i += 3;
        } else if eq_ignore_case(opt, "setname") && more >= 1 {
            if !valid_name(&rest[i + 1]) {
                return Err(CommandError::InvalidClientName);
            }
            hello.setname = Some(rest[i + 1].clone());
            i += 2;
        } else {
            return Err(CommandError::HelloSyntax(
                String::from_utf8_lossy(opt).replace(['\r', '\n'], " "),
            ));
        }
    }
    Ok(Command::Hello(hello))
}

fn parse_xadd(rest: &[Bytes]) -> Result<XAdd, CommandError> {
    let key = rest[0].clone();
    let mut nomkstream = false;
    let mut strategy = None;
    let mut approx = false;
    let mut limit = None;
    let mut i = 1;
    let id = loop {
        let Some(opt) = rest.get(i) else {
            // Options consumed every argument: Redis then reports the arity.
            return Err(CommandError::WrongArity("xadd".to_owned()));
        };
        let more = rest.len() - i - 1;
        if &opt[..] == b"*" {
            break XAddId::Auto;
        } else if (eq_ignore_case(opt, "maxlen") || eq_ignore_case(opt, "minid")) && more >= 1 {
            let maxlen = eq_ignore_case(opt, "maxlen");
            approx = false;
            let next = &rest[i + 1][..];
            if more >= 2 && (next == b"~" || next == b"=") {
                approx = next == b"~";
                i += 1;
            }
            let threshold = &rest[i + 1];
            strategy = Some(if maxlen {
                let n = integer(threshold)?;
                TrimStrategy::MaxLen(u64::try_from(n).map_err(|_| CommandError::NegativeMaxlen)?)
            } else {
                TrimStrategy::MinId(StreamId::parse_strict(threshold, 0)?)
            });
            i += 2;
        } else if eq_ignore_case(opt, "limit") && more >= 1 {
            let n = integer(&rest[i + 1])?;
            limit = Some(u64::try_from(n).map_err(|_| CommandError::NegativeLimit)?);
            i += 2;
        } else if eq_ignore_case(opt, "nomkstream") {
            nomkstream = true;
            i += 1;
        } else {
            break match parse_id_parts(opt)? {
                (ms, Some(IdSeq::Star)) => XAddId::AutoSeq(ms),
                (ms, Some(IdSeq::Number(seq))) => XAddId::Explicit(StreamId { ms, seq }),
                (ms, None) => XAddId::Explicit(StreamId { ms, seq: 0 }),
            };
        }
    };
    // Redis: LIMIT 0 means "no limit" and is accepted without a strategy.
    if limit.is_some_and(|l| l > 0) && strategy.is_none() {
        return Err(CommandError::LimitWithoutTrim);
    }
    if limit.is_some() && !approx {
        return Err(CommandError::LimitWithoutApprox);
    }
    let fields = &rest[i + 1..];
    if fields.len() < 2 || fields.len() % 2 == 1 {
        return Err(CommandError::WrongArity("xadd".to_owned()));
    }
    if id == XAddId::Explicit(StreamId::MIN) {
        return Err(CommandError::XaddZeroId);
    }
    Ok(XAdd {
        key,
        nomkstream,
        trim: strategy.map(|strategy| Trim {
            strategy,
            approx,
            limit,
        }),
        id,
        fields: fields
            .chunks_exact(2)
            .map(|kv| (kv[0].clone(), kv[1].clone()))
            .collect(),
    })
}

fn parse_xread(rest: &[Bytes]) -> Result<XRead, CommandError> {
    let mut count = None;
    let mut block = None;
    let mut i = 0;
    let streams_at = loop {
        let Some(opt) = rest.get(i) else {
            return Err(CommandError::Syntax);
        };
        let more = rest.len() - i - 1;
        if eq_ignore_case(opt, "block") && more >= 1 {
            let ms = parse_integer(&rest[i + 1]).ok_or(CommandError::TimeoutNotInteger)?;
            block = Some(u64::try_from(ms).map_err(|_| CommandError::NegativeTimeout)?);
            i += 2;
        } else if eq_ignore_case(opt, "count") && more >= 1 {
            let n = integer(&rest[i + 1])?;
            count = u64::try_from(n).ok().filter(|&n| n > 0);
            i += 2;
        } else if eq_ignore_case(opt, "streams") && more >= 1 {
            break i + 1;
        } else {
            return Err(CommandError::Syntax);
        }
    };
    let list = &rest[streams_at..];
    if list.len() % 2 != 0 {
        return Err(CommandError::UnbalancedStreams("xread"));
    }
    let (keys, ids) = list.split_at(list.len() / 2);
    let streams = keys
        .iter()
        .zip(ids)
        .map(|(key, id)| {
            let id = if &id[..] == b"$" {
                XReadId::Last
            } else {
                XReadId::After(StreamId::parse(id, 0)?)
            };
            Ok((key.clone(), id))
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    Ok(XRead {
        count,
        block,
        streams,
    })
}

/// One XRANGE bound; `(` makes it exclusive, and then `-`/`+` are not allowed.
fn range_bound(arg: &[u8], missing_seq: u64) -> Result<(StreamId, bool), CommandError> {
    match arg.strip_prefix(b"(") {
        Some(rest) if !rest.is_empty() => Ok((StreamId::parse_strict(rest, missing_seq)?, true)),
        _ => Ok((StreamId::parse(arg, missing_seq)?, false)),
    }
}

fn parse_xrange(rest: &[Bytes], rev: bool) -> Result<XRange, CommandError> {
    let (start_arg, end_arg) = if rev {
        (&rest[2], &rest[1])
    } else {
        (&rest[1], &rest[2])
    };
    let (mut start, start_exclusive) = range_bound(start_arg, 0)?;
    if start_exclusive {
        start = start.next().ok_or(CommandError::InvalidIntervalStart)?;
    }
    let (mut end, end_exclusive) = range_bound(end_arg, u64::MAX)?;
    if end_exclusive {
        end = end.prev().ok_or(CommandError::InvalidIntervalEnd)?;
    }
    let mut count = None;
    let mut j = 3;
    while j < rest.len() {
        if eq_ignore_case(&rest[j], "count") && j + 1 < rest.len() {
            let n = integer(&rest[j + 1])?;
            count = Some(u64::try_from(n).unwrap_or(0));
            j += 2;
        } else {
            return Err(CommandError::Syntax);
        }
    }
    Ok(XRange {
        key: rest[0].clone(),
        start,
        end,
        count,
        rev,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, CommandError> {
        let args: Vec<Bytes> = line
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(|s| Bytes::copy_from_slice(s.as_bytes()))
            .collect();
        Command::parse(&args)
    }

    fn err(line: &str) -> String {
        match parse(line) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn stream_id_basics() {
        let id: StreamId = "12-3".parse().unwrap();
        assert_eq!(id, StreamId::new(12, 3));
        assert_eq!(id.to_string(), "12-3");
        assert_eq!("7".parse::<StreamId>().unwrap(), StreamId::from_offset(7));
        assert_eq!(StreamId::from_offset(7).to_string(), "7-0");
        assert!(StreamId::new(1, u64::MAX) < StreamId::new(2, 0));
        assert!(StreamId::new(2, 1) > StreamId::new(2, 0));
        for bad in [
            "",
            "-",
            "+",
            "a",
            "1-",
            "-1",
            "1-a",
            "1-2-3",
            "1-*",
            " 1",
            "18446744073709551616",
        ] {
            assert_eq!(
                bad.parse::<StreamId>(),
                Err(CommandError::InvalidStreamId),
                "{bad:?}"
            );
        }
        assert_eq!(StreamId::parse(b"-", 0), Ok(StreamId::MIN));
        assert_eq!(StreamId::parse(b"+", 0), Ok(StreamId::MAX));
        assert_eq!(
            StreamId::parse(b"5", u64::MAX),
            Ok(StreamId::new(5, u64::MAX))
        );
        assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::new(2, 0).prev(), Some(StreamId::new(1, u64::MAX)));
        assert_eq!(StreamId::MIN.prev(), None);
        assert_eq!(
            StreamId::parse(&[b'1'; 128], 0),
            Err(CommandError::InvalidStreamId),
            "ids over 127 bytes are invalid"
        );
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(parse("PiNg"), Ok(Command::Ping(None)));
        assert_eq!(parse("ping hi"), Ok(Command::Ping(Some(b("hi")))));
        assert_eq!(parse("xLEN s"), Ok(Command::XLen(b("s"))));
    }

    #[test]
    fn unknown_command_text_matches_redis() {
        assert_eq!(
            err("foo a b"),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            err("FOO"),
            "ERR unknown command 'FOO', with args beginning with: "
        );
        let long = "x".repeat(200);
        let msg = err(&format!("foo {long} y"));
        assert_eq!(
            msg,
            format!(
                "ERR unknown command 'foo', with args beginning with: '{}' ",
                "x".repeat(128)
            )
        );
        let msg = Command::parse(&[b("a\r\nb"), b("c\nd")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "ERR unknown command 'a  b', with args beginning with: 'c d' "
        );
        assert!(Command::parse(&[]).is_err());
    }

    #[test]
    fn arity_errors_use_lowercase_names() {
        assert_eq!(
            err("XADD s"),
            "ERR wrong number of arguments for 'xadd' command"
        );
        assert_eq!(
            err("ping a b"),
            "ERR wrong number of arguments for 'ping' command"
        );
        assert_eq!(
            err("ECHO"),
            "ERR wrong number of arguments for 'echo' command"
        );
        assert_eq!(
            err("echo a b"),
            "ERR wrong number of arguments for 'echo' command"
        );
        assert_eq!(
            err("publish ch"),
            "ERR wrong number of arguments for 'publish' command"
        );
        assert_eq!(
            err("subscribe"),
            "ERR wrong number of arguments for 'subscribe' command"
        );
        assert_eq!(
            err("psubscribe"),
            "ERR wrong number of arguments for 'psubscribe' command"
        );
        assert_eq!(
            err("xread streams s"),
            "ERR wrong number of arguments for 'xread' command"
        );
        assert_eq!(
            err("xrange s -"),
            "ERR wrong number of arguments for 'xrange' command"
        );
        assert_eq!(
            err("xlen"),
            "ERR wrong number of arguments for 'xlen' command"
        );
        assert_eq!(
            err("dbsize x"),
            "ERR wrong number of arguments for 'dbsize' command"
        );
        assert_eq!(
            err("auth"),
            "ERR wrong number of arguments for 'auth' command"
        );
        assert_eq!(
            err("client"),
            "ERR wrong number of arguments for 'client' command"
        );
        assert_eq!(
            err("CLIENT SETNAME"),
            "ERR wrong number of arguments for 'client|setname' command"
        );
        assert_eq!(
            err("client getname x"),
            "ERR wrong number of arguments for 'client|getname' command"
        );
        assert_eq!(
            err("config get"),
            "ERR wrong number of arguments for 'config|get' command"
        );
        assert_eq!(
            err("select"),
            "ERR wrong number of arguments for 'select' command"
        );
    }

    #[test]
    fn connection_commands() {
        assert_eq!(parse("echo hi"), Ok(Command::Echo(b("hi"))));
        assert_eq!(parse("quit"), Ok(Command::Quit));
        assert_eq!(
            parse("auth pw"),
            Ok(Command::Auth {
                username: None,
                password: b("pw")
            })
        );
        assert_eq!(
            parse("auth u pw"),
            Ok(Command::Auth {
                username: Some(b("u")),
                password: b("pw")
            })
        );
        assert_eq!(err("auth a b c"), "ERR syntax error");
        assert_eq!(parse("select 0"), Ok(Command::Select));
        assert_eq!(err("select 1"), "ERR DB index is out of range");
        assert_eq!(
            err("select x"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err("select 99999999999"),
            "ERR value is out of range, value must between -2147483648 and 2147483647"
        );
        assert_eq!(parse("dbsize"), Ok(Command::DbSize));
        assert_eq!(parse("info"), Ok(Command::Info(vec![])));
        assert_eq!(
            parse("INFO Replication Server"),
            Ok(Command::Info(vec!["replication".into(), "server".into()]))
        );
    }

    #[test]
    fn hello() {
        assert_eq!(parse("hello"), Ok(Command::Hello(Hello::default())));
        assert_eq!(
            parse("HELLO 3 auth default secret setname app"),
            Ok(Command::Hello(Hello {
                protocol: Some(Protocol::Resp3),
                auth: Some((b("default"), b("secret"))),
                setname: Some(b("app")),
            }))
        );
        assert_eq!(
            parse("hello 2"),
            Ok(Command::Hello(Hello {
                protocol: Some(Protocol::Resp2),
                ..Hello::default()
            }))
        );
        assert_eq!(
            err("hello x"),
            "ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(err("hello 4"), "NOPROTO unsupported protocol version");
        assert_eq!(err("hello 1"), "NOPROTO unsupported protocol version");
        assert_eq!(
            err("hello 3 auth user"),
            "ERR Syntax error in HELLO option 'auth'"
        );
        assert_eq!(
            err("hello 3 bogus"),
            "ERR Syntax error in HELLO option 'bogus'"
        );
        assert_eq!(
            err("hello 3 setname"),
            "ERR Syntax error in HELLO option 'setname'"
        );
        let bad_name = Command::parse(&[b("hello"), b("3"), b("setname"), b("a b")]).unwrap_err();
        assert_eq!(bad_name, CommandError::InvalidClientName);
    }

    #[test]
    fn client_subcommands() {
        assert_eq!(
            parse("client setname app-1"),
            Ok(Command::Client(ClientCommand::SetName(b("app-1"))))
        );
        assert_eq!(
            Command::parse(&[b("client"), b("setname"), b("")]),
            Ok(Command::Client(ClientCommand::SetName(Bytes::new())))
        );
        assert_eq!(
            Command::parse(&[b("client"), b("setname"), b("a b")])
                .unwrap_err()
                .to_string(),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
        assert_eq!(
            parse("CLIENT GETNAME"),
            Ok(Command::Client(ClientCommand::GetName))
        );
        assert_eq!(parse("client id"), Ok(Command::Client(ClientCommand::Id)));
        assert_eq!(
            parse("client info"),
            Ok(Command::Client(ClientCommand::Info))
        );
        assert_eq!(
            parse("client setinfo LIB-NAME redis-rs"),
            Ok(Command::Client(ClientCommand::SetInfo {
                attribute: "lib-name".into(),
                value: b("redis-rs")
            }))
        );
        assert_eq!(
            err("client setinfo color red"),
            "ERR Unrecognized option 'color'"
        );
        assert_eq!(
            err("client foo"),
            "ERR unknown subcommand 'foo'. Try CLIENT HELP."
        );
        assert_eq!(
            err("client pause 10"),
            "ERR CLIENT PAUSE is not supported by raftbus"
        );
    }

    #[test]
    fn introspection_commands() {
        assert_eq!(
            parse("command"),
            Ok(Command::Command(CommandSubcommand::All))
        );
        assert_eq!(
            parse("COMMAND DOCS"),
            Ok(Command::Command(CommandSubcommand::Docs(vec![])))
        );
        assert_eq!(
            parse("command docs get"),
            Ok(Command::Command(CommandSubcommand::Docs(vec![b("get")])))
        );
        assert_eq!(
            parse("command count"),
            Ok(Command::Command(CommandSubcommand::Count))
        );
        assert_eq!(
            parse("command info xadd"),
            Ok(Command::Command(CommandSubcommand::Info(vec![b("xadd")])))
        );
        assert_eq!(
            err("command count x"),
            "ERR wrong number of arguments for 'command|count' command"
        );
        assert_eq!(
            err("command bogus"),
            "ERR unknown subcommand 'bogus'. Try COMMAND HELP."
        );
        assert_eq!(
            parse("CONFIG GET save appendonly"),
            Ok(Command::ConfigGet(vec![b("save"), b("appendonly")]))
        );
        assert_eq!(
            err("config set save x"),
            "ERR CONFIG SET is not supported by raftbus"
        );
        assert_eq!(err("flushall"), "ERR FLUSHALL is not supported by raftbus");
        assert_eq!(
            err("FLUSHDB async"),
            "ERR FLUSHDB is not supported by raftbus"
        );
        assert_eq!(COMMANDS.len(), 41);
        assert_eq!(err("get k"), "ERR GET is not supported by raftbus");
        assert_eq!(err("watch k"), "ERR WATCH is not supported by raftbus");
        assert!(COMMANDS
            .iter()
            .all(|c| parse(c.name).is_ok()
                || matches!(parse(c.name), Err(CommandError::WrongArity(_)))));
    }

    #[test]
    fn stream_group_and_transaction_commands() {
        use crate::groups::{GroupOp, GroupQuery, GroupStart};
        assert_eq!(parse("MULTI"), Ok(Command::Multi));
        assert_eq!(parse("exec"), Ok(Command::Exec));
        assert_eq!(
            parse("xgroup create s g $ MKSTREAM"),
            Ok(Command::Write(
                "xgroup",
                Op::Group(GroupOp::Create {
                    key: "s".into(),
                    group: "g".into(),
                    start: GroupStart::Last,
                    mkstream: true,
                    entries_read: None,
                })
            ))
        );
        assert_eq!(
            err("xgroup create s g"),
            "ERR wrong number of arguments for 'xgroup|create' command"
        );
        assert_eq!(
            parse("xpending s g"),
            Ok(Command::Query(
                "xpending",
                Query::Group(GroupQuery::PendingSummary {
                    key: "s".into(),
                    group: "g".into()
                })
            ))
        );
        let Ok(Command::XReadGroup { read, block }) =
            parse("xreadgroup group g c count 2 block 10 noack streams a b > 0")
        else {
            panic!("xreadgroup parses");
        };
        assert_eq!(block, Some(10));
        assert!(read.noack);
        assert_eq!(read.count, Some(2));
        assert_eq!(
            read.streams,
            vec![("a".into(), None), ("b".into(), Some(StreamId::MIN))]
        );
        assert!(err("xreadgroup group g c streams s $").contains("meaningless"));
        assert_eq!(
            err("xreadgroup count 1 noack streams s >"),
            "ERR Missing GROUP option for XREADGROUP"
        );
        assert!(matches!(
            parse("xtrim s maxlen ~ 10"),
            Ok(Command::Write("xtrim", Op::XTrim { .. }))
        ));
        assert!(matches!(
            parse("client kill id 3"),
            Ok(Command::Client(ClientCommand::Kill { legacy: false, .. }))
        ));
        assert_eq!(err("scan x"), "ERR invalid cursor");
    }

    #[test]
    fn pubsub_commands() {
        assert_eq!(
            parse("publish ch msg"),
            Ok(Command::Publish {
                channel: b("ch"),
                message: b("msg")
            })
        );
        assert_eq!(
            parse("subscribe a b"),
            Ok(Command::Subscribe(vec![b("a"), b("b")]))
        );
        assert_eq!(parse("unsubscribe"), Ok(Command::Unsubscribe(vec![])));
        assert_eq!(
            parse("unsubscribe a"),
            Ok(Command::Unsubscribe(vec![b("a")]))
        );
        assert_eq!(
            parse("psubscribe news.*"),
            Ok(Command::PSubscribe(vec![b("news.*")]))
        );
        assert_eq!(parse("punsubscribe"), Ok(Command::PUnsubscribe(vec![])));
        assert!(parse("publish ch msg").unwrap().is_write());
        assert!(!parse("subscribe a").unwrap().is_write());
        assert!(parse("subscribe a").unwrap().allowed_while_subscribed());
        assert!(parse("ping").unwrap().allowed_while_subscribed());
        assert!(!parse("publish a b").unwrap().allowed_while_subscribed());
        assert!(parse("auth x").unwrap().allowed_before_auth());
        assert!(parse("reset").unwrap().allowed_before_auth());
        let args = |line: &str| line.split(' ').map(b).collect::<Vec<_>>();
        assert_eq!(full_name(&args("PUBSUB NumPat")), "pubsub|numpat");
        assert_eq!(full_name(&args("XADD s * a 1")), "xadd");
        assert_eq!(full_name(&args("client")), "client");
        assert!(parse("reset").unwrap().allowed_while_subscribed());
        assert!(!parse("pubsub numpat").unwrap().allowed_while_subscribed());
        assert_eq!(
            parse("pubsub channels"),
            Ok(Command::Pubsub(PubsubQuery::Channels(None)))
        );
        assert_eq!(
            parse("PUBSUB CHANNELS news.*"),
            Ok(Command::Pubsub(PubsubQuery::Channels(Some(b("news.*")))))
        );
        assert_eq!(
            err("pubsub channels a b"),
            "ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP."
        );
        assert_eq!(
            parse("pubsub numsub a b"),
            Ok(Command::Pubsub(PubsubQuery::NumSub(vec![b("a"), b("b")])))
        );
        assert_eq!(
            parse("pubsub numsub"),
            Ok(Command::Pubsub(PubsubQuery::NumSub(vec![])))
        );
        assert_eq!(
            err("pubsub numpat x"),
            "ERR wrong number of arguments for 'pubsub|numpat' command"
        );
        assert_eq!(
            parse("pubsub shardnumsub x"),
            Ok(Command::Pubsub(PubsubQuery::ShardNumSub(vec![b("x")])))
        );
        assert_eq!(
            err("pubsub bogus"),
            "ERR unknown subcommand 'bogus'. Try PUBSUB HELP."
        );
        assert_eq!(
            err("pubsub"),
            "ERR wrong number of arguments for 'pubsub' command"
        );
        assert_eq!(
            err("reset x"),
            "ERR wrong number of arguments for 'reset' command"
        );
        assert!(!parse("xlen x").unwrap().allowed_before_auth());
        assert_eq!(
            CommandError::NotAllowedWhileSubscribed("xadd".into()).to_string(),
            "ERR Can't execute 'xadd': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        );
        assert_eq!(
            CommandError::NoAuth.to_frame(),
            Frame::Error("NOAUTH Authentication required.".into())
        );
    }

    fn xadd(line: &str) -> XAdd {
        match parse(line) {
            Ok(Command::XAdd(x)) => x,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn xadd_happy_paths() {
        let x = xadd("XADD ch * m hello");
        assert_eq!(x.key, b("ch"));
        assert_eq!(x.id, XAddId::Auto);
        assert_eq!(x.fields, vec![(b("m"), b("hello"))]);
        assert!(!x.nomkstream && x.trim.is_none());
        let x = xadd("xadd ch nomkstream maxlen ~ 1000 limit 10 * a 1 b 2");
        assert!(x.nomkstream);
        assert_eq!(
            x.trim,
            Some(Trim {
                strategy: TrimStrategy::MaxLen(1000),
                approx: true,
                limit: Some(10)
            })
        );
        assert_eq!(x.fields.len(), 2);
        let x = xadd("xadd ch MAXLEN = 5 5-7 a 1");
        assert_eq!(
            x.trim,
            Some(Trim {
                strategy: TrimStrategy::MaxLen(5),
                approx: false,
                limit: None
            })
        );
        assert_eq!(x.id, XAddId::Explicit(StreamId::new(5, 7)));
        let x = xadd("xadd ch minid 3-1 9 a 1");
        assert_eq!(
            x.trim.map(|t| t.strategy),
            Some(TrimStrategy::MinId(StreamId::new(3, 1)))
        );
        assert_eq!(x.id, XAddId::Explicit(StreamId::new(9, 0)));
        assert_eq!(xadd("xadd ch 9-* a 1").id, XAddId::AutoSeq(9));
        assert_eq!(xadd("xadd ch 0-* a 1").id, XAddId::AutoSeq(0));
        assert_eq!(
            xadd("xadd ch 0-1 a 1").id,
            XAddId::Explicit(StreamId::new(0, 1))
        );
        // Binary-safe field values.
        let x = Command::parse(&[
            b("xadd"),
            b("ch"),
            b("*"),
            b("m"),
            Bytes::from_static(b"\x00\r\n"),
        ])
        .unwrap();
        assert!(
            matches!(x, Command::XAdd(XAdd { ref fields, .. }) if fields[0].1[..] == b"\x00\r\n"[..])
        );
    }

    #[test]
    fn xadd_errors_match_redis() {
        assert_eq!(
            err("xadd ch * m"),
            "ERR wrong number of arguments for 'xadd' command"
        );
        assert_eq!(
            err("xadd ch * a 1 b"),
            "ERR wrong number of arguments for 'xadd' command"
        );
        assert_eq!(
            err("xadd ch maxlen 5 nomkstream"),
            "ERR wrong number of arguments for 'xadd' command"
        );
        assert_eq!(
            err("xadd ch m hello x"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xadd ch - a 1"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xadd ch 0-0 a 1"),
            "ERR The ID specified in XADD must be greater than 0-0"
        );
        assert_eq!(
            err("xadd ch 0 a 1"),
            "ERR The ID specified in XADD must be greater than 0-0"
        );
        assert_eq!(
            err("xadd ch maxlen x * a 1"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err("xadd ch maxlen -1 * a 1"),
            "ERR The MAXLEN argument must be >= 0."
        );
        assert_eq!(
            err("xadd ch minid - * a 1"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xadd ch limit 5 * a 1"),
            "ERR syntax error, LIMIT cannot be used without specifying a trimming strategy"
        );
        assert_eq!(
            err("xadd ch maxlen 5 limit 5 * a 1"),
            "ERR syntax error, LIMIT cannot be used without the special ~ option"
        );
        assert_eq!(
            err("xadd ch maxlen ~ 5 limit -1 * a 1"),
            "ERR The LIMIT argument must be >= 0."
        );
    }

    fn xread(line: &str) -> XRead {
        match parse(line) {
            Ok(Command::XRead(x)) => x,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn xread_happy_paths() {
        let x = xread("XREAD STREAMS a b $ 5-1");
        assert_eq!(x.count, None);
        assert_eq!(x.block, None);
        assert_eq!(
            x.streams,
            vec![
                (b("a"), XReadId::Last),
                (b("b"), XReadId::After(StreamId::new(5, 1)))
            ]
        );
        let x = xread("xread count 10 block 0 streams a 0");
        assert_eq!((x.count, x.block), (Some(10), Some(0)));
        assert_eq!(x.streams, vec![(b("a"), XReadId::After(StreamId::MIN))]);
        let x = xread("xread block 500 count 0 streams a 0-0");
        assert_eq!((x.count, x.block), (None, Some(500)));
        assert_eq!(xread("xread count -3 streams a 7").count, None);
        assert_eq!(
            xread("xread streams a 7").streams[0].1,
            XReadId::After(StreamId::new(7, 0))
        );
        assert_eq!(
            xread("xread streams a +").streams[0].1,
            XReadId::After(StreamId::MAX)
        );
        // A stream may be named like a keyword.
        assert_eq!(
            xread("xread streams streams 1").streams,
            vec![(b("streams"), XReadId::After(StreamId::new(1, 0)))]
        );
    }

    #[test]
    fn xread_errors_match_redis() {
        assert_eq!(
            err("xread streams a b 0"),
            "ERR Unbalanced 'xread' list of streams: for each stream key an ID or '$' must be specified."
        );
        assert_eq!(err("xread count 1 block 1 a 0"), "ERR syntax error");
        assert_eq!(err("xread count 1 block 1 count 2"), "ERR syntax error");
        assert_eq!(
            err("xread count x streams a 0"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err("xread block x streams a 0"),
            "ERR timeout is not an integer or out of range"
        );
        assert_eq!(err("xread block -1 streams a 0"), "ERR timeout is negative");
        assert_eq!(
            err("xread streams a x"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xread streams a 1-x"),
            "ERR Invalid stream ID specified as stream command argument"
        );
    }

    fn xrange(line: &str) -> XRange {
        match parse(line) {
            Ok(Command::XRange(x)) => x,
            other => panic!("{line:?}: {other:?}"),
        }
    }

    #[test]
    fn xrange_happy_paths() {
        let x = xrange("XRANGE s - +");
        assert_eq!(
            (x.start, x.end, x.count, x.rev),
            (StreamId::MIN, StreamId::MAX, None, false)
        );
        let x = xrange("xrange s 5 7 COUNT 2");
        assert_eq!(
            (x.start, x.end, x.count),
            (StreamId::new(5, 0), StreamId::new(7, u64::MAX), Some(2))
        );
        let x = xrange("xrange s (5-0 (7-0");
        assert_eq!(
            (x.start, x.end),
            (StreamId::new(5, 1), StreamId::new(6, u64::MAX))
        );
        let x = xrange("xrange s (5 (7");
        assert_eq!(
            (x.start, x.end),
            (StreamId::new(5, 1), StreamId::new(7, u64::MAX - 1))
        );
        assert_eq!(xrange("xrange s - + count -5").count, Some(0));
        let x = xrange("XREVRANGE s + - COUNT 1");
        assert_eq!(
            (x.start, x.end, x.count, x.rev),
            (StreamId::MIN, StreamId::MAX, Some(1), true)
        );
        assert_eq!(parse("xrevrange s + -").unwrap().name(), "xrevrange");
        let x = xrange("xrevrange s 9 (3");
        assert_eq!(
            (x.start, x.end),
            (StreamId::new(3, 1), StreamId::new(9, u64::MAX))
        );
        // A lone "(" is not an exclusive marker; it is an invalid ID.
        assert_eq!(parse("xrange s ( +"), Err(CommandError::InvalidStreamId));
    }

    #[test]
    fn xrange_errors_match_redis() {
        assert_eq!(
            err("xrange s x +"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xrange s (- +"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xrange s - (+"),
            "ERR Invalid stream ID specified as stream command argument"
        );
        assert_eq!(
            err("xrange s (18446744073709551615-18446744073709551615 +"),
            "ERR invalid start ID for the interval"
        );
        assert_eq!(
            err("xrange s - (0-0"),
            "ERR invalid end ID for the interval"
        );
        assert_eq!(err("xrange s - + count"), "ERR syntax error");
        assert_eq!(err("xrange s - + limit 1"), "ERR syntax error");
        assert_eq!(
            err("xrange s - + count x"),
            "ERR value is not an integer or out of range"
        );
    }

    #[test]
    fn names_of_parsed_commands_are_known_specs() {
        for line in [
            "ping",
            "echo a",
            "hello",
            "quit",
            "auth p",
            "client id",
            "select 0",
            "publish a b",
            "subscribe a",
            "unsubscribe",
            "psubscribe a",
            "punsubscribe",
            "xadd s * a b",
            "xread streams s 0",
            "xrange s - +",
            "xlen s",
            "info",
            "command",
            "config get x",
            "dbsize",
        ] {
            let cmd = parse(line).unwrap();
            let spec = COMMANDS.iter().find(|c| c.name == cmd.name()).unwrap();
            assert_eq!(spec.write, cmd.is_write(), "{line}");
        }
    }
}
