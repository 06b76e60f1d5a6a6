//! `redis-ha-exporter healthcheck`: asks a running agent's `/-/healthy` and
//! says by its exit code whether it answered 200. Container images of the
//! agent have no shell and no curl, so the binary checks itself.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{StatusCode, Url};

use crate::config::{self, ClientAuth, Config, ConfigError, WebConfig};

/// Why the agent is not known to be healthy, in one line.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The agent's config or web config, needed to know where to ask.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--url` is not a URL.
    #[error("invalid URL {url:?}: {source}")]
    Url {
        /// As given.
        url: String,
        /// Why.
        source: url::ParseError,
    },
    /// The client certificate or key to show could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The client certificate and key do not make an identity.
    #[error("{cert} and {key} do not make a client certificate: {}", chain(.source))]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: reqwest::Error,
    },
    /// No HTTP client could be made.
    #[error("cannot make an HTTP client: {}", chain(.0))]
    Client(#[source] reqwest::Error),
    /// No answer.
    #[error("{url}: {}", chain(.source))]
    Request {
        /// The URL asked, without credentials.
        url: String,
        /// Why, without the URL.
        source: reqwest::Error,
    },
    /// An answer other than 200.
    #[error("{url} answered {status}")]
    Status {
        /// The URL asked, without credentials.
        url: String,
        /// The answer.
        status: StatusCode,
    },
}

/// Checks the agent: at `url`, or at `/-/healthy` of the listen address of
/// `config` (default 0.0.0.0:9478), over HTTPS when its web config (the
/// file `web_flag`, or the one `config` names) turns TLS on. `Ok` names
/// what answered 200; `Err` says in one line why the agent is not healthy.
pub async fn run(
    url: Option<&str>,
    config: Option<&Path>,
    web_flag: Option<&Path>,
    timeout: Duration,
) -> Result<String, HealthError> {
    let config: Option<Config> = config.map(config::load).transpose()?;
    let web = config::web_config(web_flag, config.as_ref())?;
    let url = match url {
        Some(u) => u.to_string(),
        None => {
            let listen = match &config {
                Some(c) => c.listen,
                None => config::DEFAULT_LISTEN.parse().expect("valid default"),
            };
            url_for(listen, web.tls.is_some())
        }
    };
    probe(&url, &web, timeout).await
}

/// `/-/healthy` of an agent listening on `listen`; an unspecified address
/// (0.0.0.0, ::) is asked on loopback.
fn url_for(listen: SocketAddr, https: bool) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let scheme = if https { "https" } else { "http" };
    format!(
        "{scheme}://{}/-/healthy",
        SocketAddr::new(ip, listen.port())
    )
}

/// One GET of `url`. No credentials are sent: `/-/healthy` answers without
/// them (docs/security.md says why).
async fn probe(url: &str, web: &WebConfig, timeout: Duration) -> Result<String, HealthError> {
    let url = Url::parse(url).map_err(|source| HealthError::Url {
        url: url.to_string(),
        source,
    })?;
    let shown = redacted(&url);
    let host = url.host_str().unwrap_or_default();
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mut client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        // The agent's certificate names the host others reach it by, not
        // 127.0.0.1, and may be signed by a private CA. On loopback nobody
        // can sit in between and no secret is sent, so it is not verified
        // there; anywhere else it is, against the bundled roots.
        .danger_accept_invalid_certs(loopback);
    if let Some(tls) = web
        .tls
        .as_ref()
        .filter(|t| t.client_auth_type == ClientAuth::RequireAndVerifyClientCert)
    {
        // The agent asks every client for a certificate signed by its client
        // CA: show its own (docs/security.md: it must be signed by that CA
        // and allow client authentication).
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| HealthError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let mut pem = read(&tls.cert_file)?;
        pem.push(b'\n');
        pem.extend(read(&tls.key_file)?);
        let identity =
            reqwest::Identity::from_pem(&pem).map_err(|source| HealthError::Identity {
                cert: tls.cert_file.clone(),
                key: tls.key_file.clone(),
                source,
            })?;
        client = client.identity(identity);
    }
    let client = client.build().map_err(HealthError::Client)?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| HealthError::Request {
            url: shown.clone(),
            source: e.without_url(),
        })?;
    match response.status() {
        StatusCode::OK => Ok(format!("{shown} answered 200")),
        status => Err(HealthError::Status { url: shown, status }),
    }
}

/// The URL without any user or password written in it.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

/// An error and its causes on one line: reqwest's own message alone
/// ("error sending request") does not say what went wrong.
fn chain(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_asked_on_loopback() {
        let at = |s: &str, https| url_for(s.parse().unwrap(), https);
        assert_eq!(at("0.0.0.0:9478", false), "http://127.0.0.1:9478/-/healthy");
        assert_eq!(at("[::]:9478", true), "https://[::1]:9478/-/healthy");
        assert_eq!(at("10.1.2.3:9100", true), "https://10.1.2.3:9100/-/healthy");
    }

    #[test]
    fn messages_never_show_a_password_from_the_url() {
        let url = Url::parse("https://prom:hunter2@127.0.0.1:9478/-/healthy").unwrap();
        assert_eq!(redacted(&url), "https://127.0.0.1:9478/-/healthy");
    }
}
