//! The independent clock of a failover: one connection per sentinel,
//! `PSUBSCRIBE` to the events the harness times, each message timestamped as
//! it is read. Nothing of the agent is used here.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Channels the harness times.
pub const CHANNELS: [&str; 3] = ["+odown", "+switch-master", "+failover-end"];

#[derive(Debug, Clone)]
pub struct SentinelEvent {
    pub at: Instant,
    /// The sentinel that published it.
    pub sentinel: u16,
    pub channel: String,
}

#[derive(Clone, Default)]
pub struct EventLog {
    events: Arc<Mutex<Vec<SentinelEvent>>>,
}

impl EventLog {
    /// Subscribes to every sentinel in `ports` (each on a thread of its own);
    /// returns once every subscription is confirmed.
    pub fn subscribe(ports: &[u16]) -> EventLog {
        let log = EventLog::default();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        for &port in ports {
            let log = log.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || log.listen(port, ready));
        }
        for _ in ports {
            ready_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("every sentinel confirms the subscription");
        }
        log
    }

    /// The first event on `channel` after `since`, from any sentinel.
    pub fn first(&self, channel: &str, since: Instant) -> Option<SentinelEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.at > since && e.channel == channel)
            .min_by_key(|e| e.at)
            .cloned()
    }

    fn listen(&self, port: u16, ready: std::sync::mpsc::Sender<()>) {
        let mut conn = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("subscribe to sentinel {port}: {e}"));
        let _ = conn.set_nodelay(true);
        let mut command = format!("*{}\r\n$10\r\nPSUBSCRIBE\r\n", CHANNELS.len() + 1);
        for c in CHANNELS {
            command.push_str(&format!("${}\r\n{c}\r\n", c.len()));
        }
        conn.write_all(command.as_bytes())
            .unwrap_or_else(|e| panic!("subscribe to sentinel {port}: {e}"));
        let mut buf = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        let mut confirmed = 0;
        loop {
            let n = match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let at = Instant::now();
            buf.extend_from_slice(&chunk[..n]);
            while let Some((message, used)) = parse(&buf) {
                buf.drain(..used);
                match message.first().map(String::as_str) {
                    Some("psubscribe") => {
                        confirmed += 1;
                        if confirmed == CHANNELS.len() {
                            let _ = ready.send(());
                        }
                    }
                    Some("pmessage") if message.len() == 4 => {
                        self.events.lock().unwrap().push(SentinelEvent {
                            at,
                            sentinel: port,
                            channel: message[2].clone(),
                        })
                    }
                    _ => {}
                }
            }
        }
    }
}

/// One RESP2 push message (an array of bulk strings and integers) from the
/// start of `buf`, with the bytes it used; `None` until it is complete.
fn parse(buf: &[u8]) -> Option<(Vec<String>, usize)> {
    let (header, mut pos) = line(buf, 0)?;
    let count: usize = header.strip_prefix('*')?.parse().ok()?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        let (item, next) = line(buf, pos)?;
        pos = next;
        if let Some(len) = item.strip_prefix('$') {
            let len: usize = len.parse().ok()?;
            if buf.len() < pos + len + 2 {
                return None;
            }
            items.push(String::from_utf8_lossy(&buf[pos..pos + len]).into_owned());
            pos += len + 2;
        } else {
            items.push(item[1.min(item.len())..].to_string());
        }
    }
    Some((items, pos))
}

/// The line starting at `from` (without CRLF) and where the next one starts.
fn line(buf: &[u8], from: usize) -> Option<(String, usize)> {
    let end = buf[from..].windows(2).position(|w| w == b"\r\n")? + from;
    Some((
        String::from_utf8_lossy(&buf[from..end]).into_owned(),
        end + 2,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_messages() {
        let confirm = b"*3\r\n$10\r\npsubscribe\r\n$6\r\n+odown\r\n:1\r\n";
        assert_eq!(
            parse(confirm),
            Some((
                vec!["psubscribe".into(), "+odown".into(), "1".into()],
                confirm.len()
            ))
        );
        let message = b"*4\r\n$8\r\npmessage\r\n$14\r\n+switch-master\r\n$14\r\n+switch-master\r\n$36\r\nmymaster 127.0.0.1 7100 127.0.0.1 71\r\n*4";
        let (items, used) = parse(message).unwrap();
        assert_eq!(items[2], "+switch-master");
        assert_eq!(items[3], "mymaster 127.0.0.1 7100 127.0.0.1 71");
        assert_eq!(used, message.len() - 2);
        assert_eq!(parse(&message[..30]), None);
    }
}
