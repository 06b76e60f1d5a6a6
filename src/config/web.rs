//! The web config file: TLS and basic auth of the agent's own endpoint, in
//! the format of the Prometheus exporter-toolkit, so the same file and the
//! same habits work for this agent as for every other exporter. Read by
//! [`super::load_web_config`]; the endpoint (src/web.rs) serves with what it holds.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use tokio_rustls::rustls::{self, ServerConfig};

use super::yaml::Checked;
use crate::tls::{self, TlsError};

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

impl PasswordHash {
    /// `text` if it has the shape of a bcrypt hash. Checked by hand rather
    /// than by the bcrypt crate, which would first run a bcrypt of the
    /// hash's cost (up to 2^31 rounds).
    pub fn parse(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        let bcrypt = b.len() == 60
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
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/'));
        bcrypt.then(|| PasswordHash(text.to_string()))
    }

    /// The hash itself, for bcrypt's verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

impl<'de> Deserialize<'de> for PasswordHash {
    /// Checked in the visitor, so a refused hash is reported at its own
    /// line; the message never repeats the value.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Checked {
            check: |s: &str| PasswordHash::parse(s).ok_or(WebConfigError::NotBcrypt),
            expecting: "a bcrypt hash",
        })
    }
}

/// Why a web config file was refused. Messages name the key and the file,
/// never a hash or a key's content.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A `basic_auth_users` value that is not a bcrypt hash.
    #[error(
        "not a bcrypt hash: expected $2y$ (or $2a$, $2b$), a cost from 04 to 31, $, then 53 characters, \
         as `htpasswd -nBC 10 USER` prints after the colon"
    )]
    NotBcrypt,
    /// A user name basic auth cannot carry.
    #[error("basic_auth_users: user name {user:?} has a ':', which basic auth cannot carry")]
    UserWithColon {
        /// The name.
        user: String,
    },
    /// A client CA that would not be used.
    #[error(
        "tls_server_config.client_ca_file is set but client_auth_type is NoClientCert: \
         set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file"
    )]
    ClientCaUnused,
    /// Client certificates required with nothing to verify them against.
    #[error(
        "tls_server_config.client_ca_file: needed with RequireAndVerifyClientCert, \
         to verify client certificates against"
    )]
    NoClientCa,
    /// A file of `tls_server_config` that does not load.
    #[error("tls_server_config.{key} {source}")]
    File {
        /// `cert_file`, `key_file` or `client_ca_file`.
        key: &'static str,
        /// Why.
        source: TlsError,
    },
    /// Files that load but do not make a server configuration together.
    #[error("tls_server_config: {0}")]
    Tls(#[source] TlsError),
}

/// The web config file as written: the exporter-toolkit keys this agent
/// supports; any other key is an error rather than a setting silently not
/// applied.
#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with tls_server_config and basic_auth_users"
)]
pub(super) struct WebConfigFile {
    tls_server_config: Option<TlsServer>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, PasswordHash>,
}

impl WebConfigFile {
    /// Resolves the file paths against `dir` (the web config file's own
    /// directory, as the exporter-toolkit does) and checks that the TLS
    /// files load.
    pub(super) fn check(self, dir: &Path) -> Result<WebConfig, WebConfigError> {
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
            t.server_config()?;
        }
        if let Some(user) = self.basic_auth_users.keys().find(|u| u.contains(':')) {
            return Err(WebConfigError::UserWithColon { user: user.clone() });
        }
        Ok(WebConfig {
            tls,
            users: self.basic_auth_users,
        })
    }
}

impl TlsServer {
    /// The rustls server configuration, its files read now: certificate and
    /// key, versions, and the client verifier. Built here rather than where
    /// the endpoint is served so that loading the file refuses a key that
    /// does not go with its certificate.
    pub fn server_config(&self) -> Result<ServerConfig, WebConfigError> {
        let file = |key: &'static str| move |source: TlsError| WebConfigError::File { key, source };
        let provider = tls::provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            Some(TlsVersion::Tls13) => &[&rustls::version::TLS13],
            Some(TlsVersion::Tls12) | None => &[&rustls::version::TLS13, &rustls::version::TLS12],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| WebConfigError::Tls(TlsError::Versions(e.into())))?;
        let builder = match (self.client_auth_type, &self.client_ca_file) {
            (ClientAuth::NoClientCert, None) => builder.with_no_client_auth(),
            (ClientAuth::NoClientCert, Some(_)) => return Err(WebConfigError::ClientCaUnused),
            (ClientAuth::RequireAndVerifyClientCert, None) => {
                return Err(WebConfigError::NoClientCa)
            }
            (ClientAuth::RequireAndVerifyClientCert, Some(ca)) => builder
                .with_client_cert_verifier(
                    tls::client_verifier(ca, provider).map_err(file("client_ca_file"))?,
                ),
        };
        let certs = tls::certificates(&self.cert_file).map_err(file("cert_file"))?;
        let key = tls::private_key(&self.key_file).map_err(file("key_file"))?;
        let mut config = builder.with_single_cert(certs, key).map_err(|source| {
            WebConfigError::Tls(TlsError::KeyMismatch {
                key: self.key_file.clone(),
                cert: self.cert_file.clone(),
                source: source.into(),
            })
        })?;
        // axum serves HTTP/1.1 only here.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_shapes_are_recognised() {
        let is_bcrypt = |s: &str| PasswordHash::parse(s).is_some();
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
    fn nothing_secret_shows_in_debug() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let web = WebConfig {
            tls: None,
            users: BTreeMap::from([("alice".to_string(), PasswordHash::parse(&hash).unwrap())]),
        };
        assert!(!format!("{web:?}").contains(&hash));
        assert!(!web.summary().contains("alice"));
    }
}
