//! A headless Chromium driven over the DevTools protocol (CDP), for the UI
//! tests: open a page, wait until its scripts have rendered, read the DOM,
//! collect console errors, take screenshots.
//!
//! Chromium comes from the OS packages (scripts/install-deps); when it is
//! missing, [`Browser::start`] panics: the UI tests never skip.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The longest one protocol call may take before the test fails.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A Chromium process with one page (tab) attached; killed on drop.
pub struct Browser {
    child: Child,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    /// The attached page's session: every page command goes to it.
    session: String,
    next_id: u64,
    /// Protocol events read so far (console, exceptions, log entries).
    events: Vec<Value>,
    profile: PathBuf,
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and nothing that would
    /// reach out of the machine, and attaches to a new blank page.
    pub fn start() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "rhe-chromium-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&profile).unwrap();
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromium ({e}): the UI tests need it; scripts/install-deps installs it")
            });
        let url = devtools_url(&mut child);
        let (socket, _) = tungstenite::connect(url.as_str())
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(CALL_TIMEOUT)).unwrap();
        }
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            profile,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}));
        }
        browser
    }

    /// Sends one command (to the page, once attached) and returns its
    /// result; events read meanwhile are kept.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        loop {
            let text = match self.socket.read() {
                Ok(Message::Text(text)) => text,
                Ok(_) => continue,
                Err(e) => panic!("{method}: no answer from chromium: {e}"),
            };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    pub fn wait_for(&mut self, what: &str, expression: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.eval(expression) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what}: not within {timeout:?}; the page shows:\n{}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Opens `url`, forgetting the events of the page before, and waits
    /// until the UI's scripts have rendered it (`main[data-ready]`). Returns
    /// how long that took.
    pub fn open(&mut self, url: &str) -> Duration {
        self.events.clear();
        let started = Instant::now();
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r["errorText"].is_null(), "{url}: {}", r["errorText"]);
        self.wait_for(
            &format!("{url} rendered"),
            "document.readyState === 'complete' && !!document.querySelector('main[data-ready]')",
            Duration::from_secs(20),
        );
        started.elapsed()
    }

    /// Every error the page reported since it was opened: uncaught
    /// exceptions, `console.error`, and the browser's own error entries
    /// (failed loads, policy violations).
    pub fn errors(&mut self) -> Vec<String> {
        // Events come in order: those sent before this answer are read.
        self.eval("0");
        self.events
            .iter()
            .filter_map(|e| {
                let p = &e["params"];
                match e["method"].as_str()? {
                    "Runtime.exceptionThrown" => Some(format!(
                        "exception: {}",
                        p["exceptionDetails"]["exception"]["description"]
                            .as_str()
                            .unwrap_or_else(|| p["exceptionDetails"]["text"]
                                .as_str()
                                .unwrap_or(""))
                    )),
                    "Runtime.consoleAPICalled" if p["type"] == "error" || p["type"] == "assert" => {
                        Some(format!("console.{}: {}", p["type"], p["args"]))
                    }
                    "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
                        "{}: {} ({})",
                        p["entry"]["source"], p["entry"]["text"], p["entry"]["url"]
                    )),
                    _ => None,
                }
            })
            .collect()
    }

    /// Saves the whole page as a PNG at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let size = &metrics["cssContentSize"];
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true,
                    "clip": { "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 } }),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The browser's websocket address, which Chromium prints on stderr as
/// "DevTools listening on ws://..."; the rest of stderr is drained.
fn devtools_url(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(Ok(url.trim().to_string()));
            } else if seen.len() < 50 {
                seen.push(line);
            }
        }
        let _ = tx.send(Err(seen.join("\n")));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(url)) => url,
        Ok(Err(log)) => panic!("chromium exited without a DevTools address:\n{log}"),
        Err(_) => panic!("chromium printed no DevTools address within 30 s"),
    }
}

/// Where a test's screenshots go: `target/ui-screenshots/` (under
/// `CARGO_TARGET_DIR` when set).
pub fn screenshot_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("ui-screenshots").join(format!("{name}.png"))
}
