//! A local HTTP server standing in for webhook, Slack and PagerDuty
//! receivers: it records every request and answers as the test says
//! (accept, fail with a status, or hang).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// 200.
    Accept,
    /// This status, with `Retry-After` seconds if given.
    Fail(u16, Option<u64>),
    /// Never answers while the mode stays Hang.
    Hang,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
    pub at: Instant,
    /// The status answered; `None` while the request hangs.
    pub status: Option<u16>,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

#[derive(Default)]
struct State {
    requests: Vec<Request>,
}

/// The receiver; it serves until the test process ends.
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    mode: Arc<Mutex<Mode>>,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    /// Listens on a free port.
    pub fn start() -> Receiver {
        Self::serve(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// Listens on `port`, which nothing listened on until now (a receiver
    /// that was down comes up).
    pub fn start_on(port: u16) -> Receiver {
        Self::serve(TcpListener::bind(("127.0.0.1", port)).unwrap())
    }

    fn serve(listener: TcpListener) -> Receiver {
        let r = Receiver {
            port: listener.local_addr().unwrap().port(),
            mode: Arc::new(Mutex::new(Mode::Accept)),
            state: Arc::default(),
        };
        let server = r.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.handle(conn));
            }
        });
        r
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered with 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    /// Waits until `cond` holds on the accepted requests.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        cond: impl Fn(&[Request]) -> bool,
    ) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.accepted();
            if cond(&got) {
                return got;
            }
            if Instant::now() > deadline {
                let bodies: Vec<String> = self.requests().iter().map(|r| r.body.clone()).collect();
                panic!(
                    "timed out waiting for {what}; received:\n{}",
                    bodies.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn handle(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let index = {
            let mut s = self.state.lock().unwrap();
            s.requests.push(Request {
                path,
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
                at: Instant::now(),
                status: None,
            });
            s.requests.len() - 1
        };
        let _ = conn.set_read_timeout(Some(Duration::from_millis(50)));
        let mode = loop {
            let mode = *self.mode.lock().unwrap();
            if mode != Mode::Hang {
                break mode;
            }
            // The agent gave up (timed out) and closed the connection: the
            // request stays unanswered.
            if matches!(conn.peek(&mut [0]), Ok(0)) {
                return;
            }
        };
        let (status, extra) = match mode {
            Mode::Fail(code, Some(secs)) => (code, format!("Retry-After: {secs}\r\n")),
            Mode::Fail(code, None) => (code, String::new()),
            _ => (200, String::new()),
        };
        let mut conn = conn;
        let answered = conn.write_all(
            format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        if answered.is_ok() {
            self.state.lock().unwrap().requests[index].status = Some(status);
        }
    }
}
