//! A deliberately tiny RESP2 client.
//!
//! The lab only needs to send a handful of admin commands (PING, INFO, CLUSTER …,
//! SENTINEL …) to servers it started itself, so it speaks RESP2 over a fresh
//! blocking `TcpStream` per command instead of depending on a full client library:
//! a new connection per call means a frozen (SIGSTOPped) server can never wedge a
//! shared connection, and the exporter's own client code is not used to test itself.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::security::{Admin, ADMIN_PASSWORD, ADMIN_USER};
use crate::{parse_info, LabError};

/// How long [`crate::Node::cmd`] waits to connect and for the reply. Short, because a
/// server that does not answer within this is frozen or dead, which tests want to know
/// quickly rather than hang.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Reply of the lab's tiny RESP2 client.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// Null bulk string or null array.
    Nil,
    /// `:` integer reply.
    Int(i64),
    /// `+` simple string or `$` bulk string (bulk bytes are decoded lossily as UTF-8).
    Str(String),
    /// `-` error reply. [`crate::Node::cmd`] turns a top-level error into
    /// [`LabError::Server`], so this only shows up nested inside arrays.
    Err(String),
    /// `*` array reply.
    Array(Vec<Reply>),
}

impl Reply {
    /// The text of a simple or bulk string reply.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Reply::Str(s) => Some(s),
            _ => None,
        }
    }

    /// An integer reply, or a string reply holding an integer: RESP2 servers send many
    /// numbers as bulk strings (every field of `SENTINEL MASTER`, for instance).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Reply::Int(i) => Some(*i),
            Reply::Str(s) => s.trim().parse().ok(),
            _ => None,
        }
    }
}

/// Encodes a command as a RESP array of bulk strings (the only form servers must accept).
pub(crate) fn encode_command(args: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Parses one reply from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a reply (read more and call again),
/// `Ok(Some((reply, consumed)))` when a whole reply was parsed, and `Err` with a
/// description when the bytes are not RESP2.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(line_end) = find_crlf(buf) else {
        return Ok(None);
    };
    let Some((&kind, rest)) = buf[..line_end].split_first() else {
        return Err("empty reply line".to_string());
    };
    let line = String::from_utf8_lossy(rest).into_owned();
    let after_line = line_end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Str(line), after_line))),
        b'-' => Ok(Some((Reply::Err(line), after_line))),
        b':' => {
            let n = parse_int(&line)?;
            Ok(Some((Reply::Int(n), after_line)))
        }
        b'$' => {
            let len = parse_int(&line)?;
            if len < 0 {
                return Ok(Some((Reply::Nil, after_line)));
            }
            let len = usize::try_from(len).map_err(|_| format!("bad bulk length {len}"))?;
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(format!("bulk string of length {len} not followed by CRLF"));
            }
            let text = String::from_utf8_lossy(&buf[after_line..end]).into_owned();
            Ok(Some((Reply::Str(text), end + 2)))
        }
        b'*' => {
            let count = parse_int(&line)?;
            if count < 0 {
                return Ok(Some((Reply::Nil, after_line)));
            }
            let mut items = Vec::new();
            let mut pos = after_line;
            for _ in 0..count {
                match parse_reply(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(items), pos)))
        }
        other => Err(format!("unknown RESP type byte {:?}", other as char)),
    }
}

/// A short rendering of a command for error messages: `CLUSTER ADDSLOTS` with thousands
/// of slot numbers would otherwise bury the actual problem.
fn describe(args: &[&str]) -> String {
    const SHOWN: usize = 6;
    let mut text = args
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    if args.len() > SHOWN {
        text.push_str(&format!(" … ({} more args)", args.len() - SHOWN));
    }
    text
}

fn find_crlf(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn parse_int(text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("expected an integer, got {text:?}"))
}

/// Opens a connection to the server with the lab's timeouts.
fn connect(admin: &Admin) -> std::io::Result<Box<dyn ReadWrite>> {
    Ok(match &admin.socket {
        Some(path) => {
            let s = UnixStream::connect(path)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Box::new(s)
        }
        None => {
            let socket = SocketAddr::from((admin.ip, admin.port));
            let s = TcpStream::connect_timeout(&socket, IO_TIMEOUT)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            Box::new(s)
        }
    })
}

/// A timeout as [`LabError::Timeout`], any other I/O error as [`LabError::Io`].
fn io_error(addr: &str, command: &str, source: std::io::Error) -> LabError {
    if matches!(source.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) {
        LabError::Timeout {
            addr: addr.to_string(),
            command: command.to_string(),
            timeout: IO_TIMEOUT,
        }
    } else {
        LabError::Io {
            addr: addr.to_string(),
            command: command.to_string(),
            source,
        }
    }
}

/// A connection to one server and what has been read from it but not parsed yet.
struct Conn {
    stream: Box<dyn ReadWrite>,
    buf: Vec<u8>,
    addr: String,
    /// The command sent, for error messages.
    command: String,
}

impl Conn {
    /// Connects and sends `bytes` (the encoded commands).
    fn open(admin: &Admin, command: String, bytes: &[u8]) -> Result<Conn, LabError> {
        let addr = format!("{}:{}", admin.ip, admin.port);
        let fail = |source| io_error(&addr, &command, source);
        let mut stream = connect(admin).map_err(fail)?;
        stream.write_all(bytes).map_err(fail)?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            addr,
            command,
        })
    }

    /// The next reply, error replies included, reading as much as it takes.
    fn reply(&mut self) -> Result<Reply, LabError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let parsed = parse_reply(&self.buf).map_err(|detail| LabError::Protocol {
                addr: self.addr.clone(),
                command: self.command.clone(),
                detail,
            })?;
            if let Some((reply, used)) = parsed {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| io_error(&self.addr, &self.command, e))?;
            if n == 0 {
                return Err(LabError::Closed {
                    addr: self.addr.clone(),
                    command: self.command.clone(),
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next reply, an error reply as [`LabError::Server`].
    fn ok_reply(&mut self) -> Result<Reply, LabError> {
        match self.reply()? {
            Reply::Err(message) => Err(LabError::Server {
                addr: self.addr.clone(),
                command: self.command.clone(),
                message,
            }),
            reply => Ok(reply),
        }
    }
}

/// `AUTH` as the lab's admin on a server with ACL users, then `args`.
fn with_auth(admin: &Admin, args: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    if admin.auth {
        bytes.extend(encode_command(&["AUTH", ADMIN_USER, ADMIN_PASSWORD]));
    }
    bytes.extend(encode_command(args));
    bytes
}

/// Sends one command on a new connection (after `AUTH` as the lab's admin
/// on a server with ACL users) and reads its reply.
pub(crate) fn request(admin: &Admin, args: &[&str]) -> Result<Reply, LabError> {
    let mut conn = Conn::open(admin, describe(args), &with_auth(admin, args))?;
    if admin.auth {
        conn.ok_reply()?;
    }
    conn.ok_reply()
}

/// One message a subscribed connection received.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub channel: String,
    pub payload: String,
}

/// A connection subscribed with `PSUBSCRIBE`: the messages the server
/// publishes, as they arrive. Its own connection, so that a test can read a
/// server's events without any client library (a sentinel's `+switch-master`
/// as the sentinel said it).
pub struct Subscription {
    conn: Conn,
}

impl Subscription {
    /// Connects, subscribes to `pattern` and waits for the confirmation.
    pub(crate) fn open(admin: &Admin, pattern: &str) -> Result<Subscription, LabError> {
        let args = ["PSUBSCRIBE", pattern];
        let mut conn = Conn::open(admin, describe(&args), &with_auth(admin, &args))?;
        if admin.auth {
            conn.ok_reply()?;
        }
        match conn.ok_reply()? {
            Reply::Array(items) if items.first().and_then(Reply::as_str) == Some("psubscribe") => {
                Ok(Subscription { conn })
            }
            other => Err(LabError::Protocol {
                addr: conn.addr.clone(),
                command: conn.command.clone(),
                detail: format!("expected the subscription's confirmation, got {other:?}"),
            }),
        }
    }

    /// The next message published; `None` when none arrived within 2 s (the
    /// server may be frozen, or quiet). An error means the connection is
    /// gone (the server was killed): subscribe again once it is back.
    pub fn receive(&mut self) -> Result<Option<Message>, LabError> {
        match self.conn.reply() {
            Ok(Reply::Array(items)) => match items.as_slice() {
                [kind, _pattern, channel, payload] if kind.as_str() == Some("pmessage") => {
                    Ok(Some(Message {
                        channel: channel.as_str().unwrap_or_default().to_string(),
                        payload: payload.as_str().unwrap_or_default().to_string(),
                    }))
                }
                _ => Ok(None),
            },
            Ok(_) | Err(LabError::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Subscription({} {})", self.conn.addr, self.conn.command)
    }
}

/// `INFO <section>` parsed into its `key:value` pairs.
pub(crate) fn info(admin: &Admin, section: &str) -> Result<HashMap<String, String>, LabError> {
    match request(admin, &["INFO", section])? {
        Reply::Str(text) => Ok(parse_info(&text)),
        other => Err(LabError::Protocol {
            addr: format!("{}:{}", admin.ip, admin.port),
            command: format!("INFO {section}"),
            detail: format!("expected a bulk string, got {other:?}"),
        }),
    }
}

/// A TCP or Unix stream.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Reply {
        let (reply, used) = parse_reply(bytes).unwrap().expect("complete reply");
        assert_eq!(used, bytes.len(), "consumed everything");
        reply
    }

    #[test]
    fn simple_types() {
        assert_eq!(parse_all(b"+PONG\r\n"), Reply::Str("PONG".into()));
        assert_eq!(
            parse_all(b"-ERR unknown command\r\n"),
            Reply::Err("ERR unknown command".into())
        );
        assert_eq!(parse_all(b":-42\r\n"), Reply::Int(-42));
        assert_eq!(parse_all(b"$-1\r\n"), Reply::Nil);
        assert_eq!(parse_all(b"*-1\r\n"), Reply::Nil);
        assert_eq!(parse_all(b"$0\r\n\r\n"), Reply::Str(String::new()));
    }

    #[test]
    fn bulk_may_contain_crlf() {
        assert_eq!(
            parse_all(b"$13\r\nrole:master\r\n\r\n"),
            Reply::Str("role:master\r\n".into())
        );
    }

    #[test]
    fn nested_arrays() {
        let bytes = b"*2\r\n*2\r\n$4\r\nname\r\n$8\r\nmymaster\r\n*3\r\n:1\r\n$-1\r\n-ERR x\r\n";
        assert_eq!(
            parse_all(bytes),
            Reply::Array(vec![
                Reply::Array(vec![
                    Reply::Str("name".into()),
                    Reply::Str("mymaster".into())
                ]),
                Reply::Array(vec![Reply::Int(1), Reply::Nil, Reply::Err("ERR x".into())]),
            ])
        );
        assert_eq!(parse_all(b"*0\r\n"), Reply::Array(vec![]));
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let bytes = b"*3\r\n$3\r\nfoo\r\n:7\r\n*1\r\n+OK\r\n";
        for cut in 0..bytes.len() {
            assert_eq!(
                parse_reply(&bytes[..cut]),
                Ok(None),
                "prefix of {cut} bytes"
            );
        }
        assert!(parse_reply(bytes).unwrap().is_some());
    }

    #[test]
    fn reports_how_much_it_consumed() {
        let (reply, used) = parse_reply(b":1\r\n:2\r\n").unwrap().unwrap();
        assert_eq!((reply, used), (Reply::Int(1), 4));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_reply(b"?what\r\n").is_err());
        assert!(parse_reply(b":12x\r\n").is_err());
        assert!(parse_reply(b"$3\r\nabcd\r\n").is_err());
        assert!(parse_reply(b"\r\n").is_err());
    }

    #[test]
    fn accessors() {
        assert_eq!(Reply::Str("OK".into()).as_str(), Some("OK"));
        assert_eq!(Reply::Int(3).as_str(), None);
        assert_eq!(Reply::Int(3).as_int(), Some(3));
        assert_eq!(Reply::Str("17".into()).as_int(), Some(17));
        assert_eq!(Reply::Str("x".into()).as_int(), None);
        assert_eq!(Reply::Nil.as_int(), None);
    }

    #[test]
    fn encodes_bulk_array() {
        assert_eq!(
            encode_command(&["SET", "k", ""]),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n".to_vec()
        );
    }
}
