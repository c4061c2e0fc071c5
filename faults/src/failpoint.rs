//! Arming a failpoint inside a running node through its admin command, and disarming it
//! (the named inverse).
//!
//! The node must be a failpoint build of raftbus-node (`--features failpoints`), which
//! answers `RAFTBUS.FAILPOINT <token> SET <name> <actions>` and `... OFF <name>` over RESP
//! on its client address. This module only speaks that one command; it knows nothing of the
//! harness.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Error, Result};

/// How long one admin command may take (connect, send, reply).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Where and how to reach one node's failpoint admin command.
#[derive(Clone, PartialEq, Eq)]
pub struct FailpointAdmin {
    /// The node's client (RESP) address.
    pub addr: SocketAddr,
    /// The admin token the node was started with.
    pub token: String,
}

impl std::fmt::Debug for FailpointAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailpointAdmin")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FailpointAdmin {
    pub fn new(addr: SocketAddr, token: impl Into<String>) -> Self {
        FailpointAdmin {
            addr,
            token: token.into(),
        }
    }

    /// Arms `name` with `actions` (the fail crate's action strings, e.g. `return`,
    /// `sleep(200)`, `20%panic`).
    pub fn arm(&self, name: &str, actions: &str) -> Result<()> {
        self.command(&["SET", name, actions])
    }

    /// Disarms `name`. A node that is not running has nothing armed: that counts as done.
    pub fn disarm(&self, name: &str) -> Result<()> {
        match self.command(&["OFF", name]) {
            Err(Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::ConnectionRefused =>
            {
                Ok(())
            }
            other => other,
        }
    }

    fn command(&self, args: &[&str]) -> Result<()> {
        let io = |what: &str| {
            let what = format!("failpoint admin at {}: {what}", self.addr);
            move |source| Error::Io { what, source }
        };
        let mut stream =
            TcpStream::connect_timeout(&self.addr, ADMIN_TIMEOUT).map_err(io("connect"))?;
        stream
            .set_read_timeout(Some(ADMIN_TIMEOUT))
            .map_err(io("set a timeout"))?;
        stream
            .set_write_timeout(Some(ADMIN_TIMEOUT))
            .map_err(io("set a timeout"))?;
        let mut all = vec!["RAFTBUS.FAILPOINT", self.token.as_str()];
        all.extend_from_slice(args);
        stream.write_all(&encode(&all)).map_err(io("send"))?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(io("read the reply"))?;
        let line = line.trim_end();
        match line.strip_prefix('+') {
            Some(_) => Ok(()),
            None if line.is_empty() => Err(Error::Invalid(format!(
                "{} closed the connection without answering RAFTBUS.FAILPOINT",
                self.addr
            ))),
            None => Err(Error::Invalid(format!(
                "{} refused RAFTBUS.FAILPOINT {}: {} (is it a failpoint build with this admin token?)",
                self.addr,
                args.join(" "),
                line.trim_start_matches('-')
            ))),
        }
    }
}

/// A RESP array of bulk strings.
fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;

    /// A one-connection RESP server that records the request and answers `reply`.
    fn serve_once(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = vec![0u8; 256];
            let n = s.read(&mut buf).unwrap();
            buf.truncate(n);
            s.write_all(reply.as_bytes()).unwrap();
            buf
        });
        (addr, handle)
    }

    #[test]
    fn arming_sends_the_admin_command_with_the_token() {
        let (addr, server) = serve_once("+OK\r\n");
        FailpointAdmin::new(addr, "tok")
            .arm("bug.apply_twice", "return")
            .unwrap();
        let sent = String::from_utf8(server.join().unwrap()).unwrap();
        assert_eq!(
            sent,
            "*5\r\n$17\r\nRAFTBUS.FAILPOINT\r\n$3\r\ntok\r\n$3\r\nSET\r\n$15\r\nbug.apply_twice\r\n$6\r\nreturn\r\n"
        );
    }

    #[test]
    fn a_refusal_is_an_error_that_names_it() {
        let (addr, server) = serve_once("-ERR unknown command 'RAFTBUS.FAILPOINT'\r\n");
        let err = FailpointAdmin::new(addr, "tok")
            .arm("net.send", "return")
            .unwrap_err()
            .to_string();
        server.join().unwrap();
        assert!(err.contains("unknown command"), "{err}");
        assert!(err.contains("failpoint build"), "{err}");
    }

    #[test]
    fn disarming_a_node_that_is_down_is_done() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        FailpointAdmin::new(addr, "tok").disarm("net.send").unwrap();
    }
}
