//! The page: a local webhook receiver that timestamps each notification the
//! agent delivers the moment its body has arrived, and answers 200.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One notification: when it arrived and the fields the harness matches on.
#[derive(Debug, Clone)]
pub struct Notification {
    pub at: Instant,
    /// `firing` or `resolved`.
    pub status: String,
    pub alertname: String,
    /// The `severity` label (`critical`, `warning`, ...; empty if none).
    pub severity: String,
}

#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    got: Arc<Mutex<Vec<Notification>>>,
}

impl Receiver {
    /// Listens on a free port of 127.0.0.1; serves until the process ends.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let receiver = Receiver {
            port: listener.local_addr().expect("receiver address").port(),
            got: Arc::default(),
        };
        let server = receiver.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(conn));
            }
        });
        receiver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The first firing notification of `alertname` that arrived after `since`.
    pub fn first_firing(&self, alertname: &str, since: Instant) -> Option<Instant> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|n| n.at > since && n.status == "firing" && n.alertname == alertname)
            .map(|n| n.at)
            .min()
    }

    /// The firing notifications of `severity` that arrived in `(since, until]`,
    /// counted by alertname (each alert of a request counts once).
    pub fn firing_by_name(
        &self,
        severity: &str,
        since: Instant,
        until: Instant,
    ) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for n in self.got.lock().unwrap().iter() {
            if n.at > since && n.at <= until && n.status == "firing" && n.severity == severity {
                *counts.entry(n.alertname.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Requests on one connection, kept alive as the client wishes.
    fn serve(&self, conn: TcpStream) {
        let _ = conn.set_nodelay(true);
        let mut writer = match conn.try_clone() {
            Ok(w) => w,
            Err(_) => return,
        };
        let mut reader = BufReader::new(conn);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            let mut close = false;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    let name = name.trim().to_ascii_lowercase();
                    if name == "content-length" {
                        length = value.trim().parse().unwrap_or(0);
                    } else if name == "connection" && value.trim().eq_ignore_ascii_case("close") {
                        close = true;
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let at = Instant::now();
            self.record(at, &body);
            if writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .is_err()
                || close
            {
                return;
            }
        }
    }

    fn record(&self, at: Instant, body: &[u8]) {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let status = json["status"].as_str().unwrap_or("").to_string();
        for alert in json["alerts"].as_array().into_iter().flatten() {
            let label = |k: &str| alert["labels"][k].as_str().unwrap_or("").to_string();
            self.got.lock().unwrap().push(Notification {
                at,
                status: alert["status"].as_str().unwrap_or(&status).to_string(),
                alertname: label("alertname"),
                severity: label("severity"),
            });
        }
    }
}
