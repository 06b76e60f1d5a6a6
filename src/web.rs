//! The agent's own endpoint: HTTPS and HTTP basic auth, as its web config
//! file says (`--web.config.file` or `web_config_file`; the file and its
//! checks are `config::WebConfig`). docs/security.md says what is
//! protected and why.
//!
//! This module serves: TLS handshakes off the accept loop, and basic auth
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
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.clone())
                    .await
            }
            Some(acceptor) => {
                let listener = TlsListener {
                    tcp: listener,
                    acceptor,
                    handshakes: JoinSet::new(),
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown.clone())
                    .await
            }
        }
    };
    tokio::select! {
        served = served => served,
        () = async {
            drained.await;
            tokio::time::sleep(DRAIN).await;
        } => Ok(()),
    }
}

/// How long requests in flight when the agent stops may take to finish: a
/// client holding a request open (half sent, or reading slowly) must not
/// hold the stop past its bound.
const DRAIN: Duration = Duration::from_secs(2);

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
