//! One URL's delivery task: sends the oldest queued notification until the
//! receiver takes it or refuses it, then the next, so notifications arrive
//! in order.
//!
//! Retried: network errors, timeouts, 408, 429 and 5xx, with exponential
//! backoff and jitter (or after the receiver's `Retry-After`). Given up:
//! any other answer that is not 2xx, which a retry would not change.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;

use super::payload::with_routing_key;
use super::queue::Message;
use super::Endpoint;
use crate::config::{Receiver, ReceiverKind, SigningKey};

/// The first wait after a failed attempt; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// A `Retry-After` longer than this is cut to it.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Why a receiver's HTTP client cannot be made. Each message names the
/// receiver and says what is wrong with its settings; none holds the URL.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `tls.ca_file` cannot be read.
    #[error("receiver {receiver:?}: cannot read ca_file {}: {error}", path.display())]
    ReadCa {
        receiver: String,
        path: PathBuf,
        error: std::io::Error,
    },
    /// `tls.ca_file` holds no usable PEM certificates.
    #[error("receiver {receiver:?}: ca_file {}: {error}", path.display())]
    ParseCa {
        receiver: String,
        path: PathBuf,
        error: reqwest::Error,
    },
    /// The TLS settings were refused as a whole.
    #[error("receiver {receiver:?}: {error}")]
    Build {
        receiver: String,
        error: reqwest::Error,
    },
}

/// The HTTP client of one receiver: its timeout, its trust, no redirects
/// (a redirect would carry a signed body somewhere else).
pub(super) fn client(r: &Receiver) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(r.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("redis-ha-exporter/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &r.tls.ca_file {
        let pem = std::fs::read(path).map_err(|error| ClientError::ReadCa {
            receiver: r.name.clone(),
            path: path.clone(),
            error,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ClientError::ParseCa {
                receiver: r.name.clone(),
                path: path.clone(),
                error,
            })?;
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    if r.tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|error| ClientError::Build {
        receiver: r.name.clone(),
        error,
    })
}

/// What one attempt came to.
enum Sent {
    Delivered,
    Refused(String),
    Retry {
        after: Option<Duration>,
        why: String,
    },
}

/// Delivers the endpoint's queue, forever.
pub(super) async fn deliver(ep: Arc<Endpoint>, client: reqwest::Client, r: Receiver) {
    let stats = &ep.stats;
    loop {
        let Some(msg) = ep.front() else {
            ep.wake.notified().await;
            continue;
        };
        let mut failures = 0u32;
        loop {
            match attempt(&client, &ep, &r, &msg).await {
                Sent::Delivered => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                    if failures > 0 {
                        tracing::info!(receiver = %stats.receiver, endpoint = %stats.endpoint, id = %msg.id, attempts = failures + 1, "delivered after retries");
                    }
                    ep.done(msg.seq);
                    break;
                }
                Sent::Refused(why) => {
                    stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(receiver = %stats.receiver, endpoint = %stats.endpoint, id = %msg.id, %why, "receiver refused the notification; not retrying");
                    ep.done(msg.seq);
                    break;
                }
                Sent::Retry { after, why } => {
                    stats.retried.fetch_add(1, Ordering::Relaxed);
                    // `Retry-After: 0` (or a past date) must not spin.
                    let wait = after
                        .unwrap_or_else(|| backoff(failures, r.max_backoff))
                        .clamp(FIRST_BACKOFF, MAX_RETRY_AFTER);
                    if failures == 0 {
                        tracing::warn!(receiver = %stats.receiver, endpoint = %stats.endpoint, id = %msg.id, %why, "delivery failed; retrying with backoff");
                    } else {
                        tracing::debug!(receiver = %stats.receiver, endpoint = %stats.endpoint, id = %msg.id, %why, wait = ?wait, "delivery failed again");
                    }
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(wait).await;
                    // Dropped from a full queue while waiting: move on.
                    if ep.front().map(|m| m.seq) != Some(msg.seq) {
                        break;
                    }
                }
            }
        }
    }
}

/// Exponential, capped, with jitter so that agents restarted together do
/// not retry in lockstep: a random wait between half and all of the step.
fn backoff(failures: u32, max: Duration) -> Duration {
    let step = FIRST_BACKOFF
        .saturating_mul(1u32 << failures.min(20))
        .min(max);
    step.mul_f64(0.5 + 0.5 * fastrand::f64())
}

async fn attempt(client: &reqwest::Client, ep: &Endpoint, r: &Receiver, msg: &Message) -> Sent {
    let body = match (&r.routing_key, r.kind) {
        (Some(key), ReceiverKind::Pagerduty) => match with_routing_key(&msg.body, key.expose()) {
            Some(b) => b,
            None => return Sent::Refused("stored event is not a JSON object".into()),
        },
        _ => msg.body.clone(),
    };
    let url = match r.kind {
        // `urls` lists Alertmanagers as their users know them: base URLs.
        ReceiverKind::Alertmanager => {
            format!("{}/api/v2/alerts", ep.url.expose().trim_end_matches('/'))
        }
        _ => ep.url.expose().to_string(),
    };
    let mut req = client.post(url).header(CONTENT_TYPE, "application/json");
    if r.kind == ReceiverKind::Webhook {
        req = req.header("webhook-id", &msg.id);
        if let Some(key) = &r.signing_key {
            let ts = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            req = req
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature(key, &msg.id, ts, &body));
        }
    }
    match req.body(body).send().await {
        Err(e) => Sent::Retry {
            after: None,
            why: cause(e),
        },
        Ok(resp) => {
            let status = resp.status();
            if status.is_success() {
                Sent::Delivered
            } else if status == StatusCode::REQUEST_TIMEOUT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error()
            {
                Sent::Retry {
                    after: retry_after(resp.headers()),
                    why: format!("HTTP {status}"),
                }
            } else {
                Sent::Refused(format!("HTTP {status}"))
            }
        }
    }
}

/// Why a request failed, with its causes (refused, timed out, TLS), and
/// without the URL: it may hold a token.
fn cause(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut why = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    if timeout {
        why.push_str(" (timed out)");
    }
    why
}

/// Standard Webhooks: `v1,` then base64 of HMAC-SHA256 over `id.timestamp.body`.
pub fn signature(key: &SigningKey, id: &str, timestamp: u64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.expose());
    let tag = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
    )
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let max = Duration::from_secs(10);
        for failures in 0..40 {
            let step = FIRST_BACKOFF
                .saturating_mul(1u32 << failures.min(20))
                .min(max);
            let d = backoff(failures, max);
            assert!(d >= step / 2 && d <= step, "{failures}: {d:?} vs {step:?}");
        }
        assert!(backoff(30, max) >= Duration::from_secs(5));
    }

    /// The test vector of the Standard Webhooks specification.
    #[test]
    fn signature_matches_the_specification() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(
                &key,
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                r#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(120);
        h.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }
}
