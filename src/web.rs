//! The agent's own endpoint: HTTPS and HTTP basic auth, set by a web config
//! file in the format of the Prometheus exporter-toolkit (`--web.config.file`
//! or `web_config_file`), so the same file and the same habits work for
//! this agent as for every other exporter. docs/security.md says what is
//! protected and why.
//!
//! The file is read by `config::load_web_config` (the YAML library stays in
//! config.rs); this module holds its model, builds the TLS server
//! configuration and serves, and checks credentials.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use ring::hmac;
use serde::{Deserialize, Deserializer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::tls;

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

/// How the endpoint is protected. The default serves plain HTTP to anyone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebConfig {
    /// Serve HTTPS with these settings.
    pub tls: Option<TlsServer>,
    /// User name to bcrypt hash; when not empty, every request but
    /// `/-/healthy` needs one of them.
    pub users: BTreeMap<String, PasswordHash>,
}

impl WebConfig {
    /// What the configuration turns on, for logs and `check-config`: never
    /// names a user or shows a hash.
    pub fn summary(&self) -> String {
        let tls = match &self.tls {
            None => "plain HTTP".to_string(),
            Some(t) if t.client_auth_type == ClientAuth::RequireAndVerifyClientCert => {
                "HTTPS, client certificates required".to_string()
            }
            Some(_) => "HTTPS".to_string(),
        };
        match self.users.len() {
            0 => format!("{tls}, no basic auth"),
            1 => format!("{tls}, basic auth (1 user)"),
            n => format!("{tls}, basic auth ({n} users)"),
        }
    }
}

/// `tls_server_config` of the web config file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServer {
    /// PEM: the server certificate, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CAs that sign client certificates.
    pub client_ca_file: Option<PathBuf>,
    /// Whether clients must show a certificate.
    #[serde(default)]
    pub client_auth_type: ClientAuth,
    /// The oldest TLS version accepted; TLS 1.2 when not set.
    pub min_version: Option<TlsVersion>,
}

/// `client_auth_type`, with the exporter-toolkit names; the toolkit's
/// other three (request or verify only if given) are not offered: a
/// certificate that is not required protects nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuth {
    /// Any client may connect.
    #[default]
    NoClientCert,
    /// Only clients with a certificate signed by `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// `min_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[serde(rename = "TLS12")]
    Tls12,
    /// TLS 1.3 only.
    #[serde(rename = "TLS13")]
    Tls13,
}

/// A bcrypt hash from `basic_auth_users`. Its `Debug` shows `***`: a hash
/// lets anyone who has it guess passwords offline, so it is never logged.
#[derive(Clone, PartialEq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    /// Checked in the visitor, so a refused hash is reported at its own
    /// line (see `config::Checked`); the message never repeats the value.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = PasswordHash;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a bcrypt hash")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<PasswordHash, E> {
                if is_bcrypt(v) {
                    Ok(PasswordHash(v.to_string()))
                } else {
                    Err(E::custom(
                        "not a bcrypt hash: expected $2y$ (or $2a$, $2b$), a cost from 04 to 31, $, then 53 characters, \
                         as `htpasswd -nBC 10 USER` prints after the colon",
                    ))
                }
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Whether `s` has the shape of a bcrypt hash. Checked by hand rather than
/// by the bcrypt crate, which would first run a bcrypt of the hash's cost
/// (up to 2^31 rounds).
fn is_bcrypt(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 60
        && b[0] == b'$'
        && b[1] == b'2'
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/'))
}

/// The web config file as written: the exporter-toolkit keys this agent
/// supports; any other key is an error rather than a setting silently not
/// applied.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with tls_server_config and basic_auth_users"
)]
pub struct WebConfigFile {
    tls_server_config: Option<TlsServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, PasswordHash>,
}

impl WebConfigFile {
    /// Resolves the file paths against `dir` (the web config file's own
    /// directory, as the exporter-toolkit does) and checks that the TLS
    /// files load.
    pub fn check(self, dir: &Path) -> Result<WebConfig, String> {
        let mut tls = self.tls_server_config;
        if let Some(t) = &mut tls {
            for path in [
                Some(&mut t.cert_file),
                Some(&mut t.key_file),
                t.client_ca_file.as_mut(),
            ]
            .into_iter()
            .flatten()
            {
                *path = dir.join(&*path);
            }
            server_config(t)?;
        }
        if let Some(user) = self.basic_auth_users.keys().find(|u| u.contains(':')) {
            return Err(format!(
                "basic_auth_users: user name {user:?} has a ':', which basic auth cannot carry"
            ));
        }
        Ok(WebConfig {
            tls,
            users: self.basic_auth_users,
        })
    }
}

/// The rustls server configuration of `tls`: its certificate and key,
/// versions, and the client verifier; the error names the key and the file.
fn server_config(tls: &TlsServer) -> Result<ServerConfig, String> {
    let provider = tls::provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match tls.min_version {
        Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
        Some(TlsVersion::Tls12) | None => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (tls.client_auth_type, &tls.client_ca_file) {
        (ClientAuth::NoClientCert, None) => builder.with_no_client_auth(),
        (ClientAuth::NoClientCert, Some(_)) => {
            return Err(
                "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert: \
                 set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file"
                    .into(),
            )
        }
        (ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(
                "tls_server_config.client_ca_file: needed with RequireAndVerifyClientCert, \
                 to verify client certificates against"
                    .into(),
            )
        }
        (ClientAuth::RequireAndVerifyClientCert, Some(ca)) => {
            let roots =
                tls::roots(ca).map_err(|e| format!("tls_server_config.client_ca_file {e}"))?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = tls::certificates(&tls.cert_file)
        .map_err(|e| format!("tls_server_config.cert_file {e}"))?;
    let key =
        tls::private_key(&tls.key_file).map_err(|e| format!("tls_server_config.key_file {e}"))?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "tls_server_config: the key in {} does not go with the certificate in {}: {e}",
            tls.key_file.display(),
            tls.cert_file.display()
        )
    })?;
    // axum serves HTTP/1.1 only here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The TLS acceptor for `tls`, its files read now.
pub fn acceptor(tls: &TlsServer) -> Result<TlsAcceptor, String> {
    Ok(TlsAcceptor::from(Arc::new(server_config(tls)?)))
}

/// Serves `router` on `listener` until `shutdown` resolves: over TLS with
/// `tls`, plain HTTP without.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(acceptor) => {
            let listener = TlsListener {
                tcp: listener,
                acceptor,
                handshakes: JoinSet::new(),
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
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
    pub fn new(users: &BTreeMap<String, PasswordHash>) -> Result<Option<Arc<BasicAuth>>, String> {
        if users.is_empty() {
            return Ok(None);
        }
        let rng = ring::rand::SystemRandom::new();
        let cache_key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .map_err(|_| "cannot make a random key for the credentials cache".to_string())?;
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
            Some(h) => (h.0.clone(), true),
            None => match self.users.values().next() {
                Some(h) => (h.0.clone(), false),
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
    fn bcrypt_shapes_are_recognised() {
        let good = bcrypt::hash("pw", 4).unwrap();
        assert!(is_bcrypt(&good), "{good}");
        assert!(is_bcrypt(&good.replacen("$2b$", "$2y$", 1)));
        for bad in [
            "",
            "pw",
            "$1$abc",
            &good[..59],
            &good.replacen("$04$", "$03$", 1),
            &good.replacen("$04$", "$32$", 1),
            &good.replacen("$04$", "$+4$", 1),
            &good.replacen("$2b$", "$2c$", 1),
            &format!("{}!", &good[..59]),
        ] {
            assert!(!is_bcrypt(bad), "{bad}");
        }
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
                PasswordHash(bcrypt::hash("right", 4).unwrap()),
            ),
            (
                "bob".to_string(),
                PasswordHash(bcrypt::hash("other", 4).unwrap()),
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

    #[test]
    fn nothing_secret_shows_in_debug() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let web = WebConfig {
            tls: None,
            users: BTreeMap::from([("alice".to_string(), PasswordHash(hash.clone()))]),
        };
        assert!(!format!("{web:?}").contains(&hash));
        assert!(!web.summary().contains("alice"));
    }
}
