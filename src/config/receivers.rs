//! Alerts: changes to the built-in rules, where notifications go
//! (receivers) and which alerts go where (routes).

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::deployments::Deployment;
use super::rules::{RuleConfig, RuleName, Severity};
use super::secrets::{read_signing_key, secret_from, Secret, SecretError, SigningKey};
use super::yaml::{opt_duration, CheckedMap};

/// The built-in alert rules, each by name, and what to change from their
/// defaults (docs/alerts.md lists them); where notifications go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Per rule: what differs from its defaults.
    #[serde(default)]
    pub rules: BTreeMap<RuleName, RuleConfig>,
    /// Where delivery queues and the set of firing alerts are kept across
    /// restarts, so that a restart never loses a notification. With
    /// receivers and no `state_dir`, [`DEFAULT_STATE_DIR`] applies.
    pub state_dir: Option<PathBuf>,
    /// The agent's own URL as on-call people reach it, for links in
    /// notifications.
    pub external_url: Option<String>,
    /// Where notifications are delivered.
    #[serde(default)]
    pub receivers: Vec<Receiver>,
    /// Which alerts go to which receiver; none: every alert to every receiver.
    #[serde(default)]
    pub routes: Vec<Route>,
}

/// The payload a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    /// The Alertmanager webhook JSON (version 4), optionally signed.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Pushed to `POST /api/v2/alerts` of every listed Alertmanager.
    Alertmanager,
}

impl ReceiverKind {
    /// The `type` as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Slack => "slack",
            ReceiverKind::Pagerduty => "pagerduty",
            ReceiverKind::Alertmanager => "alertmanager",
        }
    }
}

/// Where PagerDuty receives events when the config names no URL.
pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const DEFAULT_RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
const DEFAULT_QUEUE_SIZE: usize = 10_000;
/// How often firing alerts are pushed again to an Alertmanager, which
/// resolves an alert that is not re-sent within its `resolve_timeout`.
const DEFAULT_ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);

/// One destination for notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    /// Its name in routes, metrics, logs and file names.
    pub name: String,
    /// The payload it gets.
    pub kind: ReceiverKind,
    /// Where to send: one URL, or one per Alertmanager, each delivered to on
    /// its own. Secret because Slack and others put a token in the URL.
    pub urls: Vec<Secret>,
    /// Signs each request with the Standard Webhooks headers (webhook only).
    pub signing_key: Option<SigningKey>,
    /// PagerDuty's integration key.
    pub routing_key: Option<Secret>,
    /// How long one request may take.
    pub timeout: Duration,
    /// Notify again while an alert keeps firing; for Alertmanager, how
    /// often firing alerts are pushed again (default 1m).
    pub repeat_interval: Option<Duration>,
    /// Notifications kept waiting per URL; beyond it the oldest is dropped.
    pub queue_size: usize,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// Extra trust for HTTPS receivers.
    pub tls: ReceiverTls,
}

/// TLS settings of a receiver (HTTPS is verified against the bundled
/// Mozilla roots by default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverTls {
    /// A PEM file of extra CA certificates to trust.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate: for tests only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Sends the alerts that match every given list to `receiver`; an empty
/// list matches anything.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The receiver's name.
    pub receiver: String,
    /// Only these severities.
    #[serde(default)]
    pub severity: Vec<Severity>,
    /// Only alerts of these deployments.
    #[serde(default)]
    pub deployment: Vec<String>,
    /// Only these rules.
    #[serde(default)]
    pub alertname: Vec<RuleName>,
}

/// Why a receiver was refused; reported at the receiver's line. No message
/// repeats a URL: it may hold a token.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// A name that cannot name a file or a label value.
    #[error(
        "receiver name {name:?}: use letters, digits, '-', '_' and '.' only (it names files and metric labels)"
    )]
    Name {
        /// As written.
        name: String,
    },
    /// A key of another type of receiver.
    #[error(
        "receiver {name:?} is type {}: `{key}` applies to {} only",
        .kind.as_str(),
        kind_names(.kinds)
    )]
    NotForType {
        /// The receiver.
        name: String,
        /// Its type.
        kind: ReceiverKind,
        /// The key.
        key: &'static str,
        /// The types that take it.
        kinds: &'static [ReceiverKind],
    },
    /// An Alertmanager behind one URL.
    #[error(
        "receiver {name:?} is type alertmanager: list every Alertmanager under `urls` (not behind a load balancer)"
    )]
    OneAlertmanagerUrl {
        /// The receiver.
        name: String,
    },
    /// An Alertmanager receiver with an empty `urls`.
    #[error("receiver {name:?} needs at least one URL under `urls`")]
    NoUrls {
        /// The receiver.
        name: String,
    },
    /// No URL at all.
    #[error("receiver {name:?} needs `url`, `url_file` or `url_env`")]
    NoUrl {
        /// The receiver.
        name: String,
    },
    /// A URL that cannot be sent to.
    #[error("receiver {name:?}: {source}")]
    Url {
        /// The receiver.
        name: String,
        /// What is wrong with it.
        source: UrlError,
    },
    /// Two URLs to the same host and port, which would share a queue file
    /// and metric series.
    #[error("receiver {name:?}: {endpoint} is listed twice in `urls`")]
    ListedTwice {
        /// The receiver.
        name: String,
        /// `host:port`.
        endpoint: String,
    },
    /// PagerDuty without its integration key.
    #[error(
        "receiver {name:?} is type pagerduty: it needs `routing_key_file` or `routing_key_env`"
    )]
    NoRoutingKey {
        /// The receiver.
        name: String,
    },
    /// A queue that could hold nothing.
    #[error("receiver {name:?}: queue_size must be at least 1")]
    QueueSize {
        /// The receiver.
        name: String,
    },
    /// A URL, routing key or signing key that could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

fn kind_names(kinds: &[ReceiverKind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

/// A URL notifications cannot be sent to.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// Another scheme, or no host.
    #[error("the URL must be http:// or https:// with a host")]
    NotHttp,
    /// Not a URL.
    #[error("invalid URL: {0}")]
    Invalid(#[source] url::ParseError),
}

/// Why the alerts section was refused as a whole: what no single line is
/// to blame for.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A threshold set on a rule that has no such threshold.
    #[error("alerts.rules.{rule:?}.{key}: only {rules:?} take it")]
    NotForRule {
        /// The rule.
        rule: RuleName,
        /// The key.
        key: &'static str,
        /// The rules that take it.
        rules: &'static [RuleName],
    },
    /// `for` on an event alert.
    #[error(
        "alerts.rules.{rule:?}.for: an event alert fires at a moment of the failover (its switch, its end); `hold` says for how long"
    )]
    ForOnEvent {
        /// The rule.
        rule: RuleName,
    },
    /// Two receivers of one name.
    #[error(
        "alerts.receivers[{index}].name: {name:?} is used by another receiver; names must be unique"
    )]
    DuplicateReceiver {
        /// The second receiver's position.
        index: usize,
        /// The name.
        name: String,
    },
    /// A route to a receiver that does not exist.
    #[error("alerts.routes[{index}].receiver: no receiver is called {receiver:?}")]
    UnknownReceiver {
        /// The route's position.
        index: usize,
        /// The name it gives.
        receiver: String,
    },
    /// A route for a deployment that does not exist.
    #[error("alerts.routes[{index}].deployment: no deployment is called {deployment:?}")]
    UnknownDeployment {
        /// The route's position.
        index: usize,
        /// The name it gives.
        deployment: String,
    },
    /// An `external_url` that is not one.
    #[error("alerts.external_url: {0}")]
    ExternalUrl(#[source] UrlError),
}

/// The state directory when receivers are configured without one: relative
/// to the working directory, as Prometheus's and Alertmanager's `data/`.
/// Under systemd with `StateDirectory=` (the Debian package), the
/// directory systemd made for the service (`$STATE_DIRECTORY`) instead.
pub const DEFAULT_STATE_DIR: &str = "data";

impl Alerts {
    /// These settings with the default state directory filled in when there
    /// are receivers and no `state_dir`: the first of `systemd_dirs` (the
    /// value of `$STATE_DIRECTORY`, colon-separated), else
    /// [`DEFAULT_STATE_DIR`]. Without receivers nothing needs one.
    pub(super) fn with_default_state_dir(mut self, systemd_dirs: Option<OsString>) -> Self {
        if self.receivers.is_empty() || self.state_dir.is_some() {
            return self;
        }
        let systemd = systemd_dirs
            .and_then(|dirs| std::env::split_paths(&dirs).find(|d| !d.as_os_str().is_empty()));
        self.state_dir = Some(systemd.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)));
        self
    }

    /// Rules given only the thresholds they take; receivers and routes:
    /// names unique, routes pointing at receivers and `deployments` that
    /// exist, somewhere to keep the queues.
    pub(super) fn check(&self, deployments: &[Deployment]) -> Result<(), AlertsError> {
        for (&rule, config) in &self.rules {
            let takes = |key: &'static str, given: bool, rules: &'static [RuleName]| {
                if given && !rules.contains(&rule) {
                    Err(AlertsError::NotForRule { rule, key, rules })
                } else {
                    Ok(())
                }
            };
            takes(
                "lag_bytes",
                config.lag_bytes.is_some(),
                &[RuleName::ReplicaLagHigh],
            )?;
            takes(
                "lag_time",
                config.lag_time.is_some(),
                &[RuleName::ReplicaLagHigh],
            )?;
            takes(
                "open_for",
                config.open_for.is_some(),
                &[RuleName::OpenSlotsStuck],
            )?;
            takes("hold", config.hold.is_some(), &RuleName::EVENTS)?;
            if config.for_.is_some() && rule.is_event() {
                return Err(AlertsError::ForOnEvent { rule });
            }
        }
        let mut names = HashSet::new();
        for (index, r) in self.receivers.iter().enumerate() {
            if !names.insert(&r.name) {
                return Err(AlertsError::DuplicateReceiver {
                    index,
                    name: r.name.clone(),
                });
            }
        }
        for (index, route) in self.routes.iter().enumerate() {
            if !names.contains(&route.receiver) {
                return Err(AlertsError::UnknownReceiver {
                    index,
                    receiver: route.receiver.clone(),
                });
            }
            if let Some(d) = route
                .deployment
                .iter()
                .find(|d| !deployments.iter().any(|c| c.name == **d))
            {
                return Err(AlertsError::UnknownDeployment {
                    index,
                    deployment: d.clone(),
                });
            }
        }
        if let Some(url) = &self.external_url {
            check_url(url).map_err(AlertsError::ExternalUrl)?;
        }
        Ok(())
    }
}

/// The YAML shape of a receiver; `type` decides which fields it takes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    #[serde(rename = "type")]
    kind: ReceiverKind,
    url: Option<String>,
    url_file: Option<PathBuf>,
    url_env: Option<String>,
    urls: Option<Vec<String>>,
    secret_file: Option<PathBuf>,
    routing_key_file: Option<PathBuf>,
    routing_key_env: Option<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    timeout: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    repeat_interval: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    max_backoff: Option<Duration>,
    queue_size: Option<usize>,
    #[serde(default)]
    tls: ReceiverTls,
}

impl<'de> Deserialize<'de> for Receiver {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CheckedMap {
            check: RawReceiver::into_receiver,
            expecting: "a receiver mapping with name, type and url",
        })
    }
}

impl RawReceiver {
    fn into_receiver(self) -> Result<Receiver, ReceiverError> {
        let name = self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ReceiverError::Name { name });
        }
        let kind = self.kind;
        let only = |given: bool, key: &'static str, kinds: &'static [ReceiverKind]| {
            if given && !kinds.contains(&kind) {
                Err(ReceiverError::NotForType {
                    name: name.clone(),
                    kind,
                    key,
                    kinds,
                })
            } else {
                Ok(())
            }
        };
        only(
            self.secret_file.is_some(),
            "secret_file",
            &[ReceiverKind::Webhook],
        )?;
        for (given, key) in [
            (self.routing_key_file.is_some(), "routing_key_file"),
            (self.routing_key_env.is_some(), "routing_key_env"),
        ] {
            only(given, key, &[ReceiverKind::Pagerduty])?;
        }
        only(self.urls.is_some(), "urls", &[ReceiverKind::Alertmanager])?;
        let one_url = secret_from(
            self.url.map(Secret),
            self.url_file.as_deref(),
            self.url_env.as_deref(),
            "url",
        )?;
        let urls = match (kind, one_url) {
            (ReceiverKind::Alertmanager, Some(_)) => {
                return Err(ReceiverError::OneAlertmanagerUrl { name })
            }
            (ReceiverKind::Alertmanager, None) => {
                let urls: Vec<Secret> = self
                    .urls
                    .unwrap_or_default()
                    .into_iter()
                    .map(Secret)
                    .collect();
                if urls.is_empty() {
                    return Err(ReceiverError::NoUrls { name });
                }
                urls
            }
            (_, Some(url)) => vec![url],
            (ReceiverKind::Pagerduty, None) => vec![Secret(PAGERDUTY_URL.into())],
            (_, None) => return Err(ReceiverError::NoUrl { name }),
        };
        let mut endpoints = HashSet::new();
        for url in &urls {
            // The URL itself may hold a token: say what is wrong, not what it is.
            check_url(url.expose()).map_err(|source| ReceiverError::Url {
                name: name.clone(),
                source,
            })?;
            // Each URL has its own queue and metric series, named by host:port.
            let endpoint = endpoint_label(url.expose());
            if !endpoints.insert(endpoint.clone()) {
                return Err(ReceiverError::ListedTwice { name, endpoint });
            }
        }
        let routing_key = secret_from(
            None,
            self.routing_key_file.as_deref(),
            self.routing_key_env.as_deref(),
            "routing_key",
        )?;
        if kind == ReceiverKind::Pagerduty && routing_key.is_none() {
            return Err(ReceiverError::NoRoutingKey { name });
        }
        let signing_key = self
            .secret_file
            .as_deref()
            .map(read_signing_key)
            .transpose()?;
        let queue_size = self.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 {
            return Err(ReceiverError::QueueSize { name });
        }
        let repeat_interval = match kind {
            ReceiverKind::Alertmanager => {
                Some(self.repeat_interval.unwrap_or(DEFAULT_ALERTMANAGER_RESEND))
            }
            _ => self.repeat_interval,
        };
        Ok(Receiver {
            name,
            kind,
            urls,
            signing_key,
            routing_key,
            timeout: self.timeout.unwrap_or(DEFAULT_RECEIVER_TIMEOUT),
            repeat_interval,
            queue_size,
            max_backoff: self.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF),
            tls: self.tls,
        })
    }
}

/// `host:port` of a URL: how metrics and logs name it (its path and query
/// may hold a token).
pub fn endpoint_label(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}

/// An http or https URL.
fn check_url(url: &str) -> Result<(), UrlError> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err(UrlError::NotHttp),
        Err(e) => Err(UrlError::Invalid(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::config::tests::{err, MINIMAL};

    #[test]
    fn alert_rules_are_checked_where_written() {
        let c = parse(
            &format!("alerts:\n  rules:\n    ReplicaLagHigh: {{ for: 1m, lag_bytes: 1000, severity: critical, annotations: {{ runbook_url: \"https://x\" }} }}\n    TargetDown: {{ enabled: false }}\n{MINIMAL}"),
            "t",
        )
        .unwrap();
        let lag = &c.alerts.rules[&RuleName::ReplicaLagHigh];
        assert_eq!(
            (lag.for_, lag.lag_bytes, lag.severity),
            (
                Some(Duration::from_secs(60)),
                Some(1000),
                Some(Severity::Critical)
            )
        );
        assert_eq!(c.alerts.rules[&RuleName::TargetDown].enabled, Some(false));
        let e = err(&format!(
            "alerts:\n  rules:\n    ReplicaLagHi: {{ for: 1m }}\n{MINIMAL}"
        ));
        assert!(
            e.contains("alerts.rules")
                && e.contains("unknown variant `ReplicaLagHi`")
                && e.contains("line 3"),
            "{e}"
        );
        let e = err(&format!(
            "alerts:\n  rules:\n    NoMaster: {{ lag_bytes: 5 }}\n{MINIMAL}"
        ));
        assert!(e.contains("NoMaster") && e.contains("lag_bytes"), "{e}");
        let e = err(&format!(
            "alerts:\n  rules:\n    NoMaster: {{ severity: urgent }}\n{MINIMAL}"
        ));
        assert!(e.contains("severity") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn receivers_and_routes_are_checked_where_written() {
        let with = |receivers: &str, rest: &str| {
            format!("alerts:\n  state_dir: /tmp/x\n  receivers:\n{receivers}{rest}{MINIMAL}")
        };
        let hook = "    - { name: hook, type: webhook, url: \"http://127.0.0.1:1/h\" }\n";
        let c = parse(&with(hook, ""), "t").unwrap();
        let r = &c.alerts.receivers[0];
        assert_eq!(
            (r.kind, r.urls.len(), r.repeat_interval),
            (ReceiverKind::Webhook, 1, None)
        );
        assert_eq!(
            (r.timeout, r.queue_size),
            (DEFAULT_RECEIVER_TIMEOUT, DEFAULT_QUEUE_SIZE)
        );

        let am = "    - { name: am, type: alertmanager, urls: [\"http://a:9093\", \"http://b:9093\"] }\n";
        let c = parse(&with(am, ""), "t").unwrap();
        let r = &c.alerts.receivers[0];
        assert_eq!(
            (r.urls.len(), r.repeat_interval),
            (2, Some(DEFAULT_ALERTMANAGER_RESEND))
        );

        std::env::set_var("RHE_CONFIG_TEST_PD", "key");
        let pd = "    - { name: pd, type: pagerduty, routing_key_env: RHE_CONFIG_TEST_PD }\n";
        let c = parse(&with(pd, ""), "t").unwrap();
        assert_eq!(c.alerts.receivers[0].urls[0].expose(), PAGERDUTY_URL);
        assert_eq!(
            format!("{:?}", c.alerts.receivers[0].routing_key),
            "Some(Secret(***))"
        );

        for (receivers, rest, want) in [
            (
                "    - { name: pd, type: pagerduty }\n",
                "",
                "needs `routing_key_file` or `routing_key_env`",
            ),
            (
                "    - { name: s, type: slack }\n",
                "",
                "needs `url`, `url_file` or `url_env`",
            ),
            (
                "    - { name: s, type: slack, url: \"ftp://x/y\" }\n",
                "",
                "http:// or https://",
            ),
            (
                "    - { name: \"a b\", type: slack, url: \"http://x/\" }\n",
                "",
                "letters, digits",
            ),
            (
                "    - { name: s, type: slack, url: \"http://x/\", secret_file: /x }\n",
                "",
                "`secret_file` applies to webhook only",
            ),
            (
                "    - { name: a, type: alertmanager, url: \"http://x/\" }\n",
                "",
                "under `urls`",
            ),
            (
                "    - { name: s, type: teams, url: \"http://x/\" }\n",
                "",
                "unknown variant `teams`",
            ),
            (
                hook,
                "  routes:\n    - { receiver: nobody }\n",
                "alerts.routes[0].receiver: no receiver is called \"nobody\"",
            ),
            (
                hook,
                "  routes:\n    - { receiver: hook, deployment: [b] }\n",
                "no deployment is called \"b\"",
            ),
            (
                hook,
                "  routes:\n    - { receiver: hook, severity: [page] }\n",
                "unknown variant `page`",
            ),
        ] {
            let e = err(&with(receivers, rest));
            assert!(e.contains(want), "{want}: {e}");
        }
        // Wherever the URL is wrong, the message does not repeat it.
        let e = err(&with(
            "    - { name: s, type: slack, url: \"http//hooks/T0/SECRETTOKEN\" }\n",
            "",
        ));
        assert!(!e.contains("SECRETTOKEN") && e.contains("line 4"), "{e}");
    }

    #[test]
    fn receivers_without_a_state_dir_get_systemd_s_or_data() {
        let hook = "alerts:\n  receivers:\n    - { name: hook, type: webhook, url: \"http://127.0.0.1:1/h\" }\n";
        let alerts = || parse(&format!("{hook}{MINIMAL}"), "t").unwrap().alerts;
        let state_dir = |a: Alerts| a.state_dir.unwrap();
        // Whatever this process's environment, the parse applies a default.
        assert!(alerts().state_dir.is_some());
        let mut a = alerts();
        a.state_dir = None;
        assert_eq!(
            state_dir(a.clone().with_default_state_dir(None)),
            PathBuf::from(DEFAULT_STATE_DIR)
        );
        assert_eq!(
            state_dir(
                a.clone().with_default_state_dir(Some(
                    "/var/lib/redis-ha-exporter:/var/lib/other".into()
                ))
            ),
            PathBuf::from("/var/lib/redis-ha-exporter")
        );
        assert_eq!(
            state_dir(a.with_default_state_dir(Some("".into()))),
            PathBuf::from("data")
        );
        // One that is set stays; without receivers none is needed.
        let set = parse(
            &format!(
                "{}{MINIMAL}",
                hook.replace("alerts:\n", "alerts:\n  state_dir: /x\n")
            ),
            "t",
        );
        let set = set
            .unwrap()
            .alerts
            .with_default_state_dir(Some("/y".into()));
        assert_eq!(set.state_dir, Some(PathBuf::from("/x")));
        let none = parse(MINIMAL, "t").unwrap().alerts;
        assert_eq!(
            none.with_default_state_dir(Some("/y".into())).state_dir,
            None
        );
    }
}
