//! The agent's own endpoint: HTTPS and HTTP basic auth, as its web config
//! file says (`--web.config.file` or `web_config_file`; the file and its
//! checks are `config::WebConfig`). docs/security.md says what is
//! protected and why.
//!
//! This module serves: connections with a header read timeout and a bound
//! on how many are open, TLS handshakes off the accept loop, and basic auth
//! with bcrypt and a cache of verified credentials.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::FutureExt as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ring::hmac;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{PasswordHash, TlsServer, WebConfigError};

/// The answer to a request without valid credentials: the realm is what
/// a browser shows when it asks for them.
const CHALLENGE: &str = "Basic realm=\"redis-ha-exporter\"";

/// How long a client may take to finish its TLS handshake: a client that
/// connects and stays silent must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Successful verifications remembered at most; a full cache is emptied
/// (the next request of each client pays one bcrypt again), so memory stays
/// bounded even though bcrypt ignores what follows the 72nd byte of a
/// password and so accepts endless variants of a right one.
const MAX_CACHED: usize = 1024;

/// bcrypt verifications running at once: each keeps a core busy for tens of
/// milliseconds by design, and a flood of wrong passwords must leave the
/// other core to the pollers.
const BCRYPT_AT_ONCE: usize = 1;

/// The TLS acceptor for `tls`, its files read now.
pub fn acceptor(tls: &TlsServer) -> Result<TlsAcceptor, WebConfigError> {
    Ok(TlsAcceptor::from(Arc::new(tls.server_config()?)))
}

/// How long requests in flight when the agent stops may take to finish: a
/// client holding a request open (half sent, or reading slowly) must not
/// hold the stop past its bound.
const DRAIN: Duration = Duration::from_secs(2);

/// What clients may hold of the agent's HTTP server.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Connections served at once; more wait in the listen backlog until
    /// one ends. Each costs a task and a read buffer: without a bound, a
    /// crowd of clients costs memory until the agent runs out of file
    /// descriptors.
    connections: usize,
    /// How long a client may take to send a request's headers, and an
    /// idle kept-alive connection to start its next request. A client that
    /// sends a request a byte at a time and never finishes it (slowloris)
    /// would otherwise hold its connection, its task and its buffer
    /// forever. Prometheus sends a scrape's headers at once, and opens a
    /// new connection when the agent closed an idle one.
    header_timeout: Duration,
}

const LIMITS: Limits = Limits {
    connections: 1024,
    header_timeout: Duration::from_secs(10),
};

/// Largest read buffer of a connection: a request head larger than this is
/// refused (431). The agent serves GETs whose heads are a few hundred
/// bytes; hyper's default lets each connection grow to 400 kB.
const MAX_READ_BUFFER: usize = 16 * 1024;

/// Serves `router` on `listener` until `shutdown` resolves: over TLS with
/// `tls`, plain HTTP without.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = shutdown.shared();
    let drained = shutdown.clone();
    let served = async {
        match tls {
            None => serve_connections(listener, router, LIMITS, shutdown).await,
            Some(acceptor) => {
                let listener = TlsListener {
                    tcp: listener,
                    acceptor,
                    handshakes: JoinSet::new(),
                };
                serve_connections(listener, router, LIMITS, shutdown).await
            }
        }
    };
    tokio::select! {
        () = served => Ok(()),
        () = async {
            drained.await;
            tokio::time::sleep(DRAIN).await;
        } => Ok(()),
    }
}

/// Accepts connections while fewer than `limits.connections` are open,
/// each served on a task of its own with the header timeout and
/// [`MAX_READ_BUFFER`]. Once
/// `shutdown` resolves, the listener is closed at once, every connection
/// finishes the request it is serving and closes, and this returns when
/// all have.
async fn serve_connections<L>(
    mut listener: L,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Clone,
) where
    L: axum::serve::Listener,
{
    let open = Arc::new(Semaphore::new(limits.connections));
    let (closing, closed) = tokio::sync::watch::channel(());
    let mut connections = JoinSet::new();
    loop {
        let accepted = async {
            let permit = open.clone().acquire_owned().await;
            (permit, listener.accept().await)
        };
        let (permit, (io, _)) = tokio::select! {
            accepted = accepted => accepted,
            () = shutdown.clone() => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let mut closed = closed.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(MAX_READ_BUFFER);
            let connection = builder.serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = closed.changed() => connection.as_mut().graceful_shutdown(),
            }
            let _ = connection.await;
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    drop(closing);
    while connections.join_next().await.is_some() {}
}

/// Hands axum connections whose TLS handshake is done. Handshakes run as
/// tasks of their own, so a slow or silent client does not hold up the
/// next connection.
struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // A finished handshake and a new connection are both awaited;
            // an empty set of handshakes disables the first branch.
            let accepted = tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                    continue;
                }
                accepted = self.tcp.accept() => accepted,
            };
            match accepted {
                Ok((tcp, peer)) => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Some((tls, peer)),
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                // Out of file descriptors and the like: wait rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// Why basic auth cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum BasicAuthError {
    /// The system's random source failed.
    #[error("cannot make a random key for the credentials cache")]
    CacheKey,
}

/// Checks basic auth credentials against bcrypt hashes, remembering the
/// ones that passed.
///
/// bcrypt is slow on purpose (tens of milliseconds at cost 10): paying it on
/// every scrape would cost a core a second per few scrapers. A verified
/// user and password are remembered as an HMAC of them under a key made at
/// start and never written anywhere: the cache holds no password, and what
/// it holds cannot be tried against guesses without that key.
pub struct BasicAuth {
    users: BTreeMap<String, PasswordHash>,
    cache_key: hmac::Key,
    verified: Mutex<HashSet<Vec<u8>>>,
    bcrypt: Semaphore,
}

impl BasicAuth {
    /// The checker for `users`; `None` when there are none (no basic auth).
    pub fn new(
        users: &BTreeMap<String, PasswordHash>,
    ) -> Result<Option<Arc<BasicAuth>>, BasicAuthError> {
        if users.is_empty() {
            return Ok(None);
        }
        let rng = ring::rand::SystemRandom::new();
        let cache_key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).map_err(|_| BasicAuthError::CacheKey)?;
        Ok(Some(Arc::new(BasicAuth {
            users: users.clone(),
            cache_key,
            verified: Mutex::default(),
            bcrypt: Semaphore::new(BCRYPT_AT_ONCE),
        })))
    }

    /// Whether an `Authorization` header carries the password of a user.
    async fn allows(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some(decoded) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let Some((user, password)) = decoded.split_once(':') else {
            return false;
        };
        // "user:password" is unambiguous: a user name has no ':'.
        let tag = hmac::sign(&self.cache_key, decoded.as_bytes())
            .as_ref()
            .to_vec();
        if self.cached(&tag) {
            return true;
        }
        // An unknown user costs a bcrypt too (against any configured hash,
        // the answer ignored), so timing does not tell which users exist.
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.expose().to_string(), true),
            None => match self.users.values().next() {
                Some(h) => (h.expose().to_string(), false),
                None => return false,
            },
        };
        let Ok(_permit) = self.bcrypt.acquire().await else {
            return false;
        };
        let password = password.to_string();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .is_ok_and(|r| r.unwrap_or(false));
        if !(known && matches) {
            return false;
        }
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_CACHED {
            verified.clear();
        }
        verified.insert(tag);
        true
    }

    fn cached(&self, tag: &[u8]) -> bool {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(tag)
    }
}

/// The `user:password` of a `Basic` authorization header.
fn basic_credentials(value: &HeaderValue) -> Option<String> {
    use base64::Engine as _;
    let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Middleware: the request goes on with valid credentials; otherwise 401
/// with the challenge that makes browsers and tools ask for them.
pub async fn require(State(auth): State<Arc<BasicAuth>>, request: Request, next: Next) -> Response {
    if auth
        .allows(request.headers().get(header::AUTHORIZATION))
        .await
    {
        return next.run(request).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE),
        )],
        "Unauthorized\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A server of one route, `/` answering "ok", with `limits`; stops
    /// when the sender is dropped.
    async fn server(limits: Limits) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        }
        .shared();
        tokio::spawn(serve_connections(listener, router, limits, shutdown));
        (addr, stop)
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n";

    /// What the server sent on `stream` until it closed it, within 5 s.
    async fn answer(stream: &mut TcpStream) -> String {
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
            .await
            .expect("the server closes the connection")
            .unwrap();
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_until_one_ends() {
        let limits = Limits {
            connections: 1,
            ..LIMITS
        };
        let (addr, _stop) = server(limits).await;
        let first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(GET).await.unwrap();
        let mut buf = [0; 64];
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(waited.is_err(), "served beside a connection at the limit");
        drop(first);
        assert!(answer(&mut second).await.ends_with("ok"));
    }

    #[tokio::test]
    async fn a_request_whose_headers_never_end_is_cut_off() {
        let limits = Limits {
            header_timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let (addr, _stop) = server(limits).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: agent\r\n")
            .await
            .unwrap();
        let start = std::time::Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "the slow client is still connected");
        assert!(start.elapsed() >= Duration::from_millis(200));
        // A client that sends its request at once is served as before.
        let mut quick = TcpStream::connect(addr).await.unwrap();
        quick.write_all(GET).await.unwrap();
        assert!(answer(&mut quick).await.ends_with("ok"));
    }

    fn header(user_password: &str) -> HeaderValue {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    #[test]
    fn credentials_come_from_a_basic_header_only() {
        assert_eq!(
            basic_credentials(&header("alice:s3:cret")).as_deref(),
            Some("alice:s3:cret")
        );
        let lower = HeaderValue::from_static("basic YWxpY2U6cHc=");
        assert_eq!(basic_credentials(&lower).as_deref(), Some("alice:pw"));
        for bad in ["Bearer YWxpY2U6cHc=", "Basic", "Basic !!!", "YWxpY2U6cHc="] {
            assert_eq!(
                basic_credentials(&HeaderValue::from_static(bad)),
                None,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn only_the_right_password_of_a_known_user_passes_and_is_remembered() {
        let users = BTreeMap::from([
            (
                "alice".to_string(),
                PasswordHash::parse(&bcrypt::hash("right", 4).unwrap()).unwrap(),
            ),
            (
                "bob".to_string(),
                PasswordHash::parse(&bcrypt::hash("other", 4).unwrap()).unwrap(),
            ),
        ]);
        let auth = BasicAuth::new(&users).unwrap().unwrap();
        assert!(!auth.allows(None).await);
        assert!(!auth.allows(Some(&header("alice:wrong"))).await);
        // Bob's password is not Alice's; a user nobody configured never passes.
        assert!(!auth.allows(Some(&header("alice:other"))).await);
        assert!(!auth.allows(Some(&header("carol:right"))).await);
        assert!(!auth.allows(Some(&header("alice"))).await);
        assert!(
            auth.verified.lock().unwrap().is_empty(),
            "failures are not cached"
        );
        assert!(auth.allows(Some(&header("alice:right"))).await);
        let cached = auth.verified.lock().unwrap().clone();
        assert_eq!(cached.len(), 1);
        // The cache holds a keyed hash, not the password.
        let entry = cached.iter().next().unwrap();
        assert!(!entry.windows(5).any(|w| w == b"right"));
        assert!(auth.allows(Some(&header("alice:right"))).await);
        assert_eq!(auth.verified.lock().unwrap().len(), 1);
    }
}
