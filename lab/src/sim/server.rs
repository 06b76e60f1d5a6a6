//! The RESP side: a listener per node, requests parsed as they arrive
//! (pipelined arrays of bulk strings, or inline commands as `redis-cli` and
//! telnet send them), each answered from the node's view, and the bytes
//! counted for `INFO stats`.
//!
//! Bad input gets Redis's replies: an unknown command or subcommand an
//! error reply (the connection stays open), a protocol error an error reply
//! and the connection closed. Nothing a client sends can panic the server.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::replies::{push_u64, NodeReplies, NodesJob};
use super::Inner;

/// Longest bulk argument accepted: the commands served take short ones.
const MAX_BULK: usize = 1 << 20;

/// Most arguments in one request.
const MAX_ARGS: usize = 1 << 16;

/// Longest inline command, and most bytes buffered for one request.
const MAX_INLINE: usize = 64 * 1024;
const MAX_BUFFERED: usize = 4 * MAX_BULK;

/// A connection's output buffer larger than this (after a `CLUSTER NODES`
/// of a big cluster) is freed once written, so idle connections stay small.
const KEEP_OUTPUT: usize = 64 * 1024;

/// Replies are written out once they pass this, before more pipelined
/// requests are answered: a client pipelining many big replies without
/// reading cannot grow the buffer without bound.
const FLUSH_AT: usize = 1 << 20;

/// One node's I/O state, shared by its connections.
#[derive(Debug)]
pub(crate) struct NodeIo {
    /// While true the node answers nothing (connections are accepted and
    /// their requests wait), as a SIGSTOPped server.
    pub frozen: watch::Sender<bool>,
    pub net_in: AtomicU64,
    pub net_out: AtomicU64,
    pub connections: AtomicU64,
    pub commands: AtomicU64,
    pub open: AtomicU64,
}

impl NodeIo {
    pub(crate) fn new() -> NodeIo {
        NodeIo {
            frozen: watch::Sender::new(false),
            net_in: AtomicU64::new(0),
            net_out: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            commands: AtomicU64::new(0),
            open: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_frozen(&self, frozen: bool) {
        self.frozen
            .send_if_modified(|f| std::mem::replace(f, frozen) != frozen);
    }
}

/// Why a request could not be read; Redis's wording after `Protocol error: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtocolError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("too big inline request")]
    InlineTooBig,
    #[error("too big request")]
    TooBig,
}

/// One request: its arguments as ranges of the buffer, and how many bytes
/// it took. An empty argument list is a request Redis ignores (`*0`, a
/// blank inline line).
type Request = (Vec<Range<usize>>, usize);

/// Parses one request from the start of `buf`: `Ok(None)` while it is
/// incomplete.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf),
        Some(_) => parse_inline(buf),
    }
}

fn parse_multibulk(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    let Some(end) = find_crlf(buf, 0) else {
        return incomplete(buf.len(), ProtocolError::MultibulkLength);
    };
    let count = parse_len(&buf[1..end]).ok_or(ProtocolError::MultibulkLength)?;
    let mut pos = end + 2;
    if count <= 0 {
        return Ok(Some((Vec::new(), pos)));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= MAX_ARGS)
        .ok_or(ProtocolError::MultibulkLength)?;
    let mut args = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(char::from(other))),
        }
        let Some(end) = find_crlf(buf, pos) else {
            return incomplete(buf.len() - pos, ProtocolError::BulkLength);
        };
        let len = parse_len(&buf[pos + 1..end])
            .and_then(|l| usize::try_from(l).ok())
            .filter(|&l| l <= MAX_BULK)
            .ok_or(ProtocolError::BulkLength)?;
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        args.push(start..start + len);
        pos = start + len + 2;
    }
    Ok(Some((args, pos)))
}

fn parse_inline(buf: &[u8]) -> Result<Option<Request>, ProtocolError> {
    let Some(newline) = buf.iter().position(|&b| b == b'\n') else {
        return incomplete(buf.len(), ProtocolError::InlineTooBig);
    };
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut args = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if line[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        args.push(start..i);
    }
    Ok(Some((args, newline + 1)))
}

/// A header line still without its CRLF: wait for more, unless it is
/// already longer than any valid one.
fn incomplete(pending: usize, error: ProtocolError) -> Result<Option<Request>, ProtocolError> {
    let limit = if error == ProtocolError::InlineTooBig {
        MAX_INLINE
    } else {
        32
    };
    if pending > limit {
        Err(error)
    } else {
        Ok(None)
    }
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_len(digits: &[u8]) -> Option<i64> {
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Accepts connections on one node's port for as long as the runtime runs.
pub(crate) async fn listen(listener: TcpListener, node: usize, inner: Arc<Inner>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, node, inner.clone()));
            }
            // Out of descriptors, or a connection reset before it was
            // accepted: the listener itself is fine, try again shortly.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// What a command leaves the connection to do.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Keeps a node's count of open connections right however a connection ends.
struct Open<'a>(&'a AtomicU64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection until the client leaves, sends QUIT or breaks the
/// protocol. While the node is frozen nothing is answered; the connection
/// is still read, so a client that gives up is noticed.
async fn serve(mut stream: TcpStream, node: usize, inner: Arc<Inner>) {
    let io = &inner.io[node];
    let client_id = io.connections.fetch_add(1, Ordering::Relaxed) + 1;
    io.open.fetch_add(1, Ordering::Relaxed);
    let _open = Open(&io.open);
    let mut frozen = io.frozen.subscribe();
    let mut input: Vec<u8> = Vec::with_capacity(1024);
    let mut out: Vec<u8> = Vec::new();
    loop {
        let mut used = 0;
        let mut flow = Flow::Continue;
        while !*frozen.borrow() && flow == Flow::Continue && out.len() < FLUSH_AT {
            match parse_request(&input[used..]) {
                Ok(Some((args, len))) => {
                    let args: Vec<&[u8]> = args
                        .iter()
                        .map(|r| &input[used + r.start..used + r.end])
                        .collect();
                    flow = execute(&inner, node, client_id, &args, &mut out);
                    used += len;
                }
                Ok(None) => break,
                Err(e) => {
                    push_error(&mut out, &format!("ERR Protocol error: {e}"));
                    flow = Flow::Close;
                }
            }
        }
        input.drain(..used);
        let full = out.len() >= FLUSH_AT;
        if !out.is_empty() {
            if stream.write_all(&out).await.is_err() {
                return;
            }
            io.net_out.fetch_add(out.len() as u64, Ordering::Relaxed);
            if out.capacity() > KEEP_OUTPUT {
                out = Vec::new();
            } else {
                out.clear();
            }
        }
        if flow == Flow::Close {
            let _ = stream.shutdown().await;
            return;
        }
        if full {
            // More requests may be waiting in `input` already.
            continue;
        }
        if input.len() > MAX_BUFFERED {
            if *frozen.borrow() {
                // Wait for the node before reading more.
                if frozen.wait_for(|f| !*f).await.is_err() {
                    return;
                }
                continue;
            }
            push_error(
                &mut out,
                &format!("ERR Protocol error: {}", ProtocolError::TooBig),
            );
            let _ = stream.write_all(&out).await;
            return;
        }
        input.reserve(4096);
        let read = if *frozen.borrow() {
            tokio::select! {
                woke = frozen.wait_for(|f| !*f) => match woke {
                    Ok(_) => continue,
                    Err(_) => return,
                },
                read = stream.read_buf(&mut input) => read,
            }
        } else {
            stream.read_buf(&mut input).await
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                io.net_in.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Answers one command into `out`.
fn execute(inner: &Inner, node: usize, client_id: u64, args: &[&[u8]], out: &mut Vec<u8>) -> Flow {
    let Some((&name, rest)) = args.split_first() else {
        return Flow::Continue;
    };
    inner.io[node].commands.fetch_add(1, Ordering::Relaxed);
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    if is("PING") {
        match rest {
            [] => out.extend_from_slice(b"+PONG\r\n"),
            [message] => push_bulk(out, message),
            _ => push_arity(out, "ping"),
        }
    } else if is("ECHO") {
        match rest {
            [message] => push_bulk(out, message),
            _ => push_arity(out, "echo"),
        }
    } else if is("AUTH") {
        // Any password (and user) is accepted: the simulator guards nothing.
        match rest.len() {
            1 | 2 => push_ok(out),
            _ => push_arity(out, "auth"),
        }
    } else if is("SELECT") {
        match rest {
            [b"0"] => push_ok(out),
            [_] => push_error(out, "ERR SELECT is not allowed in cluster mode"),
            _ => push_arity(out, "select"),
        }
    } else if is("QUIT") {
        push_ok(out);
        return Flow::Close;
    } else if is("CLIENT") {
        client(client_id, rest, out);
    } else if is("INFO") {
        let text = with_node(inner, node, |r| r.info(rest));
        push_bulk(out, text.as_bytes());
    } else if is("CLUSTER") {
        cluster(inner, node, rest, out);
    } else if is("CONFIG") {
        config(inner, rest, out);
    } else {
        let mut shown = String::new();
        for arg in rest {
            if shown.len() >= 128 {
                break;
            }
            shown.push('\'');
            shown.push_str(&truncated(arg, 128 - shown.len()));
            shown.push_str("' ");
        }
        push_error(
            out,
            &format!(
                "ERR unknown command '{}', with args beginning with: {shown}",
                truncated(name, 128)
            ),
        );
    }
    Flow::Continue
}

fn client(client_id: u64, rest: &[&[u8]], out: &mut Vec<u8>) {
    let Some((&sub, args)) = rest.split_first() else {
        return push_arity(out, "client");
    };
    let is = |word: &str| sub.eq_ignore_ascii_case(word.as_bytes());
    if is("ID") {
        if args.is_empty() {
            out.push(b':');
            push_u64(out, client_id);
            out.extend_from_slice(b"\r\n");
        } else {
            push_arity(out, "client|id");
        }
    } else if is("SETNAME") {
        if args.len() == 1 {
            push_ok(out);
        } else {
            push_arity(out, "client|setname");
        }
    } else if is("SETINFO") {
        if args.len() == 2 {
            push_ok(out);
        } else {
            push_arity(out, "client|setinfo");
        }
    } else {
        push_unknown_subcommand(out, sub, "CLIENT");
    }
}

/// Redis 7.0's defaults for the settings the agent reads, as a cluster
/// node answers `CONFIG GET <name>` (exact names only: the agent sends no
/// pattern), and `cluster-node-timeout` as the simulator runs. Any other
/// name, `availability-zone` among them, is unknown there: an empty array.
const SETTINGS: [(&str, &str); 7] = [
    ("min-replicas-to-write", "0"),
    ("min-replicas-max-lag", "10"),
    ("cluster-require-full-coverage", "yes"),
    ("cluster-allow-replica-migration", "yes"),
    ("cluster-migration-barrier", "1"),
    ("cluster-replica-validity-factor", "10"),
    ("repl-ping-replica-period", "10"),
];

fn config(inner: &Inner, rest: &[&[u8]], out: &mut Vec<u8>) {
    let Some((&sub, args)) = rest.split_first() else {
        return push_arity(out, "config");
    };
    if !sub.eq_ignore_ascii_case(b"GET") {
        return push_unknown_subcommand(out, sub, "CONFIG");
    }
    let [name] = args else {
        return push_arity(out, "config|get");
    };
    let timeout = inner
        .lock_world()
        .shape
        .node_timeout
        .as_millis()
        .to_string();
    let value = match SETTINGS.iter().find(|(n, _)| n.as_bytes() == *name) {
        Some((_, v)) => Some(*v),
        None if *name == b"cluster-node-timeout" => Some(timeout.as_str()),
        None => None,
    };
    match value {
        Some(v) => {
            out.extend_from_slice(b"*2\r\n");
            push_bulk(out, name);
            push_bulk(out, v.as_bytes());
        }
        None => out.extend_from_slice(b"*0\r\n"),
    }
}

fn cluster(inner: &Inner, node: usize, rest: &[&[u8]], out: &mut Vec<u8>) {
    let Some((&sub, args)) = rest.split_first() else {
        return push_arity(out, "cluster");
    };
    let is = |word: &str| sub.eq_ignore_ascii_case(word.as_bytes());
    let name = if is("INFO") {
        "cluster|info"
    } else if is("NODES") {
        "cluster|nodes"
    } else if is("MYID") {
        "cluster|myid"
    } else {
        return push_unknown_subcommand(out, sub, "CLUSTER");
    };
    if !args.is_empty() {
        return push_arity(out, name);
    }
    if is("INFO") {
        let text = with_node(inner, node, |r| r.cluster_info());
        push_bulk(out, text.as_bytes());
    } else if is("NODES") {
        let now = Instant::now();
        let job = {
            let mut world = inner.lock_world();
            let view = world.advance(node, now);
            NodesJob::new(&world, view, node, now, &inner.ident)
        };
        // The header needs the length: render the text in place, then
        // put the header before it.
        let start = out.len();
        job.render(&inner.ident, out);
        let mut header = Vec::with_capacity(16);
        header.push(b'$');
        push_u64(&mut header, (out.len() - start) as u64);
        header.extend_from_slice(b"\r\n");
        out.splice(start..start, header);
        out.extend_from_slice(b"\r\n");
    } else {
        push_bulk(out, inner.ident.ids[node].as_bytes());
    }
}

/// Runs `f` on the node's replies as of now, under the world's lock.
fn with_node<T>(inner: &Inner, node: usize, f: impl FnOnce(&NodeReplies<'_>) -> T) -> T {
    let now = Instant::now();
    let mut world = inner.lock_world();
    let view = world.advance(node, now);
    f(&NodeReplies {
        world: &world,
        view: &view,
        node,
        now,
        ident: &inner.ident,
        io: &inner.io[node],
    })
}

/// At most `max` bytes of an argument, as text, for an error message.
fn truncated(arg: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&arg[..arg.len().min(max)]).into_owned()
}

fn push_ok(out: &mut Vec<u8>) {
    out.extend_from_slice(b"+OK\r\n");
}

fn push_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    push_u64(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// An error reply; line breaks in the text become spaces, as Redis makes them.
fn push_error(out: &mut Vec<u8>, text: &str) {
    out.push(b'-');
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

fn push_arity(out: &mut Vec<u8>, command: &str) {
    push_error(
        out,
        &format!("ERR wrong number of arguments for '{command}' command"),
    );
}

fn push_unknown_subcommand(out: &mut Vec<u8>, sub: &[u8], command: &str) {
    push_error(
        out,
        &format!(
            "ERR unknown subcommand '{}'. Try {command} HELP.",
            truncated(sub, 128)
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(buf: &[u8]) -> (Vec<String>, usize) {
        let (ranges, used) = parse_request(buf).unwrap().expect("complete");
        let args = ranges
            .into_iter()
            .map(|r| String::from_utf8_lossy(&buf[r]).into_owned())
            .collect();
        (args, used)
    }

    #[test]
    fn parses_pipelined_multibulk_requests() {
        let buf =
            b"*2\r\n$4\r\nINFO\r\n$11\r\nreplication\r\n*2\r\n$7\r\nCLUSTER\r\n$4\r\nINFO\r\n";
        let (first, used) = args(buf);
        assert_eq!(first, ["INFO", "replication"]);
        let (second, rest) = args(&buf[used..]);
        assert_eq!(second, ["CLUSTER", "INFO"]);
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn every_strict_prefix_is_incomplete() {
        let buf = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n";
        for cut in 0..buf.len() {
            assert_eq!(parse_request(&buf[..cut]), Ok(None), "prefix of {cut}");
        }
        assert_eq!(
            args(buf),
            (vec!["SET".into(), "k".into(), "".into()], buf.len())
        );
    }

    #[test]
    fn parses_inline_commands() {
        assert_eq!(
            args(b"  cluster   nodes\r\nPING"),
            (vec!["cluster".into(), "nodes".into()], 19)
        );
        assert_eq!(args(b"PING\n"), (vec!["PING".into()], 5));
        assert_eq!(args(b"\r\n"), (vec![], 2));
        assert_eq!(parse_request(b"PING"), Ok(None));
    }

    #[test]
    fn empty_multibulk_is_ignored() {
        assert_eq!(args(b"*0\r\n"), (vec![], 4));
        assert_eq!(args(b"*-1\r\n"), (vec![], 5));
    }

    #[test]
    fn rejects_garbage_with_redis_wording() {
        let cases: [(&[u8], ProtocolError); 6] = [
            (b"*x\r\n", ProtocolError::MultibulkLength),
            (b"*99999999999\r\n", ProtocolError::MultibulkLength),
            (b"*1\r\n:1\r\n", ProtocolError::ExpectedBulk(':')),
            (b"*1\r\n$-5\r\n", ProtocolError::BulkLength),
            (b"*1\r\n$99999999999\r\n", ProtocolError::BulkLength),
            (
                b"*1\r\n$1111111111111111111111111111111111",
                ProtocolError::BulkLength,
            ),
        ];
        for (buf, error) in cases {
            assert_eq!(parse_request(buf), Err(error), "{buf:?}");
        }
        assert_eq!(
            parse_request(&vec![b'a'; MAX_INLINE + 1]),
            Err(ProtocolError::InlineTooBig)
        );
        assert_eq!(
            ProtocolError::ExpectedBulk(':').to_string(),
            "expected '$', got ':'"
        );
    }

    #[test]
    fn random_bytes_never_panic_and_never_overrun() {
        let alphabet = b"*$\r\n-0123456789abc ";
        let mut state = 1u64;
        for _ in 0..20_000 {
            state = crate::sim::world::mix(state);
            let len = (state % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| {
                    alphabet[(crate::sim::world::mix(state ^ i as u64) % alphabet.len() as u64)
                        as usize]
                })
                .collect();
            if let Ok(Some((args, used))) = parse_request(&buf) {
                assert!(used <= buf.len(), "{buf:?}");
                assert!(args.iter().all(|r| r.end <= used), "{buf:?}");
            }
        }
    }

    #[test]
    fn error_replies_stay_on_one_line() {
        let mut out = Vec::new();
        push_error(&mut out, "ERR a\r\nb");
        assert_eq!(out, b"-ERR a  b\r\n");
    }
}
