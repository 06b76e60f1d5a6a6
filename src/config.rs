//! The configuration file, its defaults and validation, and secrets.
//!
//! serde_yaml is deprecated upstream, so it is used in this file only
//! ([`from_yaml`]): swapping the YAML library touches one line.
//!
//! Every check that can point at a place in the file runs while the file is
//! deserialized (field types, durations, addresses, secrets, the fields each
//! `kind` allows), so every error names the key path and the line.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::parse::split_addr;

/// Where the agent listens when the config says nothing.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9478";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);

/// A configuration the agent can run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The HTTP address for /metrics and the API.
    pub listen: SocketAddr,
    /// How often every target is polled.
    pub poll_interval: Duration,
    /// How long one command may take before the poll counts as failed.
    pub timeout: Duration,
    /// The sentinel sets and clusters to watch.
    pub deployments: Vec<Deployment>,
    /// Where failover timelines are kept.
    pub timelines: Timelines,
    /// Changes to the built-in alert rules.
    pub alerts: Alerts,
    /// TLS and basic auth of the agent's own endpoint: a web config file
    /// ([`load_web_config`]); `--web.config.file` overrides it.
    pub web_config_file: Option<PathBuf>,
}

/// The built-in alert rules, each by name, and what to change from their
/// defaults (docs/alerts.md lists them); where notifications go.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alerts {
    /// Per rule: what differs from its defaults.
    #[serde(default)]
    pub rules: BTreeMap<RuleName, RuleConfig>,
    /// Where delivery queues and the set of firing alerts are kept across
    /// restarts; required as soon as there is a receiver, so that a restart
    /// never loses a notification.
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

/// A Standard Webhooks signing secret, decoded. Its `Debug` shows `***`.
#[derive(Clone, PartialEq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A Standard Webhooks secret: `whsec_` then base64 (the prefix may be
    /// left out).
    pub fn parse(text: &str) -> Option<Self> {
        use base64::Engine as _;
        let encoded = text.trim();
        let encoded = encoded.strip_prefix("whsec_").unwrap_or(encoded);
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()
            .filter(|k| !k.is_empty())
            .map(SigningKey)
    }

    /// The key bytes, for the HMAC only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(***)")
    }
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

/// The built-in rules; the name is the `alertname` label.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[allow(missing_docs)] // the names are the documentation: docs/alerts.md
pub enum RuleName {
    FailoverStarted,
    FailoverCompleted,
    FailoverAborted,
    MultipleMasters,
    NoMaster,
    SentinelQuorumLost,
    SentinelsDisagree,
    SentinelTilt,
    SlotCoverageLost,
    ClusterStateFail,
    ClusterConfigDiverged,
    OpenSlotsStuck,
    ReplicaLagHigh,
    ReplicaLinkDown,
    ShardWithoutReplica,
    TargetDown,
}

impl fmt::Display for RuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// How urgent an alert is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Page someone.
    Critical,
    /// Look at it soon.
    Warning,
    /// For the record.
    Info,
}

impl Severity {
    /// The `severity` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// What a configuration changes in one rule; unset fields keep the default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// `false` turns the rule off.
    pub enabled: Option<bool>,
    /// The severity label.
    pub severity: Option<Severity>,
    /// How long the condition must hold before the alert fires.
    #[serde(default, rename = "for", deserialize_with = "opt_duration")]
    pub for_: Option<Duration>,
    /// ReplicaLagHigh: fire above this many bytes behind.
    pub lag_bytes: Option<u64>,
    /// ReplicaLagHigh: fire above this many seconds behind.
    #[serde(default, deserialize_with = "opt_duration")]
    pub lag_time: Option<Duration>,
    /// OpenSlotsStuck: fire when a slot stays open longer than this.
    #[serde(default, deserialize_with = "opt_duration")]
    pub open_for: Option<Duration>,
    /// FailoverCompleted / FailoverAborted: how long the event stays firing.
    #[serde(default, deserialize_with = "opt_duration")]
    pub hold: Option<Duration>,
    /// Extra labels on every alert of the rule.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Extra annotations, e.g. `runbook_url`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Where failover timelines are kept across restarts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timelines {
    /// A file the agent appends to (one JSON object a line) and reads back at
    /// start; `None` keeps timelines in memory only.
    pub path: Option<PathBuf>,
    /// Ended timelines kept per shard, in memory and in the file.
    #[serde(default = "default_keep")]
    pub keep_per_shard: usize,
}

impl Default for Timelines {
    fn default() -> Self {
        Timelines {
            path: None,
            keep_per_shard: default_keep(),
        }
    }
}

fn default_keep() -> usize {
    100
}

/// What a deployment is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A set of sentinels and the masters they monitor.
    Sentinel,
    /// A Redis Cluster.
    Cluster,
}

impl Kind {
    /// The `kind` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Sentinel => "sentinel",
            Kind::Cluster => "cluster",
        }
    }
}

/// One sentinel set or cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The `deployment` label.
    pub name: String,
    /// Sentinel set or cluster.
    pub kind: Kind,
    /// Addresses to start discovery from: sentinels, or cluster nodes.
    pub seeds: Vec<String>,
    /// For sentinel sets: only these master names; `None` means every master.
    pub masters: Option<Vec<String>>,
    /// Credentials for the data nodes.
    pub auth: Auth,
    /// Credentials for the sentinels.
    pub sentinel_auth: Auth,
    /// TLS to the data nodes.
    pub tls: Option<Tls>,
    /// TLS to the sentinels (by default the same as `tls`).
    pub sentinel_tls: Option<Tls>,
    /// The canary probe: off unless enabled, because it writes.
    pub canary: Canary,
}

/// The canary probe of one deployment: a client that writes a sequence
/// number to one key per shard every `interval`, to measure what clients
/// lose in a failover (how long writes fail, which acknowledged writes
/// vanish). Off by default: it is the agent's only write.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// Whether the probe runs.
    #[serde(default)]
    pub enabled: bool,
    /// Time between two writes; also each write's timeout, so a write is
    /// either acknowledged within its interval or counted as failed.
    #[serde(
        default = "default_canary_interval",
        deserialize_with = "canary_interval"
    )]
    pub interval: Duration,
    /// Every key the probe writes starts with this and `:` (one key per
    /// shard), so that an ACL rule can allow it these keys and no other.
    #[serde(default = "default_key_prefix", deserialize_with = "key_prefix")]
    pub key_prefix: String,
}

impl Default for Canary {
    fn default() -> Self {
        Canary {
            enabled: false,
            interval: default_canary_interval(),
            key_prefix: default_key_prefix(),
        }
    }
}

fn default_canary_interval() -> Duration {
    Duration::from_millis(100)
}

fn default_key_prefix() -> String {
    "__redis_ha_canary".into()
}

/// The shortest canary interval. Sequence numbers start at the start time
/// in milliseconds (so a new run's numbers are above any earlier run's) and
/// must grow slower than the clock: at most one write per millisecond; 10 ms
/// also keeps the load a probe puts on a master negligible.
const MIN_CANARY_INTERVAL: Duration = Duration::from_millis(10);
/// The longest: write unavailability is measured to one interval, and
/// beyond a minute it says nothing a failover's timeline does not.
const MAX_CANARY_INTERVAL: Duration = Duration::from_secs(60);

/// TLS to a deployment's servers or sentinels. The files are checked when
/// the config is loaded and read again by every new connection, so renewed
/// certificates are picked up without a restart.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM CA certificates the servers' certificates must chain to.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the servers' certificates must carry (and the SNI sent);
    /// by default the address connected to (an IP address or a hostname).
    pub server_name: Option<String>,
    /// Accept any server certificate: encrypted, not authenticated.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

impl Deployment {
    /// Whether this deployment watches the master called `name`.
    pub fn watches_master(&self, name: &str) -> bool {
        self.masters
            .as_ref()
            .is_none_or(|m| m.iter().any(|n| n == name))
    }
}

/// Credentials. The password is read from a file or an environment variable
/// when the config is loaded, never written in the YAML.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    /// ACL user name; `None` for the default user.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Secret>,
}

/// A password. It has no `Display` and its `Debug` shows `***`, so it
/// cannot leak through a log line or an error message by accident.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    /// The password itself, for the Redis client only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Why a configuration was refused. The message names the file, the key path,
/// the line and what is expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{origin}: {message}")]
    Invalid {
        /// The file name, or where the settings came from.
        origin: String,
        /// Key path, position and what is wrong.
        message: String,
    },
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

/// Validates configuration text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.to_string(),
        message,
    };
    let raw: RawConfig = from_yaml(text).map_err(invalid)?;
    raw.validate().map_err(invalid)
}

/// The one place that knows the YAML library. serde_path_to_error adds the
/// key path (`deployments[1].auth.password_file`) to the library's message,
/// which carries the line and column.
fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The YAML library names a (shorter) path itself in some messages.
        let inner = match inner.split_once(": ") {
            Some((own, rest)) if path.starts_with(own) => rest.to_string(),
            _ => inner,
        };
        if path == "." {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Reads and checks a web config file (exporter-toolkit format): TLS and
/// basic auth of the agent's own endpoint. Paths in it are relative to its
/// own directory. Errors name the file, the key and the line, never a hash.
pub fn load_web_config(path: &Path) -> Result<crate::web::WebConfig, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read web config file: {e}")))?;
    let file: crate::web::WebConfigFile = from_yaml(&text).map_err(invalid)?;
    file.check(path.parent().unwrap_or(Path::new(".")))
        .map_err(invalid)
}

/// The web config the agent serves with: the file given on the command line
/// (`flag`), else the one `config` names, else plain HTTP without auth.
pub fn web_config(
    flag: Option<&Path>,
    config: Option<&Config>,
) -> Result<crate::web::WebConfig, ConfigError> {
    match flag.or(config.and_then(|c| c.web_config_file.as_deref())) {
        Some(path) => load_web_config(path),
        None => Ok(crate::web::WebConfig::default()),
    }
}

/// Builds a configuration from the quick command-line flags.
pub fn from_flags(
    listen: Option<SocketAddr>,
    sentinels: &[String],
    clusters: &[String],
) -> Result<Config, ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: "command line".into(),
        message,
    };
    let mut deployments = Vec::new();
    for (name, kind, seeds) in [
        ("sentinel", Kind::Sentinel, sentinels),
        ("cluster", Kind::Cluster, clusters),
    ] {
        if seeds.is_empty() {
            continue;
        }
        for seed in seeds {
            check_addr(seed).map_err(|e| invalid(format!("--{name} {seed:?}: {e}")))?;
        }
        deployments.push(Deployment {
            name: name.into(),
            kind,
            seeds: seeds.to_vec(),
            masters: None,
            auth: Auth::default(),
            sentinel_auth: Auth::default(),
            tls: None,
            sentinel_tls: None,
            canary: Canary::default(),
        });
    }
    let config = Config {
        listen: listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
        poll_interval: DEFAULT_POLL_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        deployments,
        timelines: Timelines::default(),
        alerts: Alerts::default(),
        web_config_file: None,
    };
    check_whole(&config).map_err(invalid)?;
    Ok(config)
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with listen, poll_interval, timeout, deployments, timelines, alerts and web_config_file"
)]
struct RawConfig {
    #[serde(default = "default_listen", deserialize_with = "listen_addr")]
    listen: SocketAddr,
    #[serde(default = "default_poll_interval", deserialize_with = "duration")]
    poll_interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    timeout: Duration,
    deployments: Vec<Deployment>,
    #[serde(default)]
    timelines: Timelines,
    #[serde(default)]
    alerts: Alerts,
    web_config_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}
fn default_poll_interval() -> Duration {
    DEFAULT_POLL_INTERVAL
}
fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

impl RawConfig {
    fn validate(self) -> Result<Config, String> {
        let config = Config {
            listen: self.listen,
            poll_interval: self.poll_interval,
            timeout: self.timeout,
            deployments: self.deployments,
            timelines: self.timelines,
            alerts: self.alerts,
            web_config_file: self.web_config_file,
        };
        check_whole(&config)?;
        Ok(config)
    }
}

/// Checks that span several keys, so no single line is to blame.
fn check_whole(config: &Config) -> Result<(), String> {
    if config.deployments.is_empty() {
        return Err("deployments: at least one deployment is needed".into());
    }
    const HOUR: Duration = Duration::from_secs(3600);
    if config.poll_interval > HOUR || config.timeout > HOUR {
        return Err("poll_interval and timeout must be at most 1h".into());
    }
    for (name, rule) in &config.alerts.rules {
        let takes = |field: &str, given: bool, rules: &[RuleName]| {
            if given && !rules.contains(name) {
                Err(format!(
                    "alerts.rules.{name:?}.{field}: only {rules:?} take it"
                ))
            } else {
                Ok(())
            }
        };
        takes(
            "lag_bytes",
            rule.lag_bytes.is_some(),
            &[RuleName::ReplicaLagHigh],
        )?;
        takes(
            "lag_time",
            rule.lag_time.is_some(),
            &[RuleName::ReplicaLagHigh],
        )?;
        takes(
            "open_for",
            rule.open_for.is_some(),
            &[RuleName::OpenSlotsStuck],
        )?;
        takes(
            "hold",
            rule.hold.is_some(),
            &[RuleName::FailoverCompleted, RuleName::FailoverAborted],
        )?;
        if rule.for_.is_some()
            && matches!(
                name,
                RuleName::FailoverCompleted | RuleName::FailoverAborted
            )
        {
            return Err(format!(
                "alerts.rules.{name:?}.for: an event alert fires when the failover ends; `hold` says for how long"
            ));
        }
    }
    check_delivery(config)?;
    if config.timelines.keep_per_shard == 0 {
        return Err("timelines.keep_per_shard must be at least 1".into());
    }
    if config.timeout >= config.poll_interval {
        return Err(format!(
            "timeout ({}) must be shorter than poll_interval ({}), or a slow target would poll late",
            humantime::format_duration(config.timeout),
            humantime::format_duration(config.poll_interval)
        ));
    }
    let mut names = HashSet::new();
    for (i, d) in config.deployments.iter().enumerate() {
        if !names.insert(&d.name) {
            return Err(format!(
                "deployments[{i}].name: {:?} is used by another deployment; names must be unique",
                d.name
            ));
        }
    }
    Ok(())
}

/// Receivers and routes: names unique, routes pointing at receivers and
/// deployments that exist, somewhere to keep the queues.
fn check_delivery(config: &Config) -> Result<(), String> {
    let a = &config.alerts;
    let mut names = HashSet::new();
    for (i, r) in a.receivers.iter().enumerate() {
        if !names.insert(&r.name) {
            return Err(format!(
                "alerts.receivers[{i}].name: {:?} is used by another receiver; names must be unique",
                r.name
            ));
        }
    }
    if !a.receivers.is_empty() && a.state_dir.is_none() {
        return Err("alerts.state_dir: needed with receivers, to keep undelivered notifications across restarts".into());
    }
    for (i, route) in a.routes.iter().enumerate() {
        if !names.contains(&route.receiver) {
            return Err(format!(
                "alerts.routes[{i}].receiver: no receiver is called {:?}",
                route.receiver
            ));
        }
        if let Some(d) = route
            .deployment
            .iter()
            .find(|d| !config.deployments.iter().any(|c| c.name == **d))
        {
            return Err(format!(
                "alerts.routes[{i}].deployment: no deployment is called {d:?}"
            ));
        }
    }
    if let Some(url) = &a.external_url {
        check_url(url).map_err(|e| format!("alerts.external_url: {e}"))?;
    }
    Ok(())
}

/// Runs `check` inside the YAML library's visitor, where a refused value is
/// still reported at its own line (an error raised after deserialization
/// returns would carry the enclosing mapping's line, or none).
struct Checked<T> {
    check: fn(&str) -> Result<T, String>,
    expecting: &'static str,
}

impl<'de, T> serde::de::Visitor<'de> for Checked<T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        (self.check)(v).map_err(E::custom)
    }
}

/// The mapping flavour of [`Checked`]: deserializes an `R` from the mapping,
/// then checks it while the mapping's position is still known.
struct CheckedMap<R, T> {
    check: fn(R) -> Result<T, String>,
    expecting: &'static str,
}

impl<'de, R: Deserialize<'de>, T> serde::de::Visitor<'de> for CheckedMap<R, T> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.check)(raw).map_err(serde::de::Error::custom)
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

fn listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(Checked {
        check: |s: &str| {
            s.parse().map_err(|_| {
                format!("invalid listen address {s:?}: expected ip:port, e.g. \"0.0.0.0:9478\"")
            })
        },
        expecting: "an ip:port address",
    })
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Checked {
        check: positive_duration,
        expecting: "a duration such as 500ms or 1s",
    })
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(v) if !v.is_zero() => Ok(v),
        _ => Err(format!(
            "invalid duration {s:?}: expected a positive number with a unit, e.g. 500ms, 1s, 2m"
        )),
    }
}

fn canary_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Checked {
        check: |s: &str| {
            let v = positive_duration(s)?;
            if (MIN_CANARY_INTERVAL..=MAX_CANARY_INTERVAL).contains(&v) {
                Ok(v)
            } else {
                Err(format!(
                    "canary interval {s:?}: must be between 10ms and 1m"
                ))
            }
        },
        expecting: "a duration such as 100ms",
    })
}

fn key_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    d.deserialize_str(Checked {
        check: |s: &str| {
            // No braces: one would become the cluster hash tag and put every
            // shard's key in one slot. No glob characters: the prefix goes
            // into the ACL key pattern `~<prefix>:*` as it is.
            let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
            if !s.is_empty() && s.len() <= 64 && s.chars().all(fine) {
                Ok(s.to_string())
            } else {
                Err(format!(
                    "key_prefix {s:?}: use 1 to 64 letters, digits, '_', '-', '.' or ':'"
                ))
            }
        },
        expecting: "a key prefix such as __redis_ha_canary",
    })
}

/// A `host:port` address, checked where it is written.
struct Addr(String);

impl<'de> Deserialize<'de> for Addr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Checked {
            check: |s: &str| check_addr(s).map(|()| Addr(s.to_string())),
            expecting: "a host:port address",
        })
    }
}

fn check_addr(s: &str) -> Result<(), String> {
    match split_addr(s) {
        Some(_) => Ok(()),
        None => Err(format!(
            "invalid address {s:?}: expected host:port, e.g. \"10.0.0.1:26379\""
        )),
    }
}

fn addr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let list = Option::<Vec<Addr>>::deserialize(d)?;
    Ok(list.map(|l| l.into_iter().map(|a| a.0).collect()))
}

/// The YAML shape of a deployment; `kind` decides which fields it may have,
/// checked in `TryFrom` so the error still carries the deployment's line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeployment {
    name: String,
    kind: Kind,
    #[serde(default, deserialize_with = "addr_list")]
    sentinels: Option<Vec<String>>,
    #[serde(default, deserialize_with = "addr_list")]
    seeds: Option<Vec<String>>,
    masters: Option<Vec<String>>,
    #[serde(default)]
    auth: Auth,
    sentinel_auth: Option<Auth>,
    tls: Option<Tls>,
    sentinel_tls: Option<Tls>,
    #[serde(default)]
    canary: Canary,
}

impl<'de> Deserialize<'de> for Deployment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CheckedMap {
            check: RawDeployment::into_deployment,
            expecting: "a deployment mapping with name, kind and addresses",
        })
    }
}

impl RawDeployment {
    fn into_deployment(self) -> Result<Deployment, String> {
        let name = self.name;
        if name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }
        let (seeds, field) = match self.kind {
            Kind::Sentinel => {
                if self.seeds.is_some() {
                    return Err(format!(
                        "deployment {name:?} is kind sentinel: list its sentinels under `sentinels`, not `seeds`"
                    ));
                }
                (self.sentinels, "sentinels")
            }
            Kind::Cluster => {
                for (set, key) in [
                    (self.sentinels.is_some(), "sentinels"),
                    (self.masters.is_some(), "masters"),
                    (self.sentinel_auth.is_some(), "sentinel_auth"),
                    (self.sentinel_tls.is_some(), "sentinel_tls"),
                ] {
                    if set {
                        return Err(format!(
                            "deployment {name:?} is kind cluster: `{key}` applies to sentinel deployments only"
                        ));
                    }
                }
                (self.seeds, "seeds")
            }
        };
        let seeds = seeds.unwrap_or_default();
        if seeds.is_empty() {
            return Err(format!(
                "deployment {name:?} needs at least one address under `{field}`"
            ));
        }
        for (tls, key) in [(&self.tls, "tls"), (&self.sentinel_tls, "sentinel_tls")] {
            if let Some(tls) = tls {
                check_tls(tls).map_err(|e| format!("deployment {name:?}: `{key}`: {e}"))?;
            }
        }
        Ok(Deployment {
            name,
            kind: self.kind,
            seeds,
            masters: self.masters,
            auth: self.auth,
            sentinel_auth: self.sentinel_auth.unwrap_or_default(),
            sentinel_tls: self.sentinel_tls.or_else(|| self.tls.clone()),
            tls: self.tls,
            canary: self.canary,
        })
    }
}

/// Whether a connection could be made with `tls`: its files read, its
/// server name valid.
fn check_tls(tls: &Tls) -> Result<(), String> {
    if let Some(name) = &tls.server_name {
        tokio_rustls::rustls::pki_types::ServerName::try_from(name.as_str())
            .map_err(|_| format!("server_name {name:?} is not a DNS name or an IP address"))?;
    }
    crate::tls::client_config(tls).map(drop)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    username: Option<String>,
    password_file: Option<PathBuf>,
    password_env: Option<String>,
    /// Accepted only to refuse it with a clear message: passwords never live in the YAML.
    password: Option<serde::de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for Auth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(CheckedMap {
            check: RawAuth::into_auth,
            expecting: "a mapping with username, password_file or password_env",
        })
    }
}

impl RawAuth {
    fn into_auth(self) -> Result<Auth, String> {
        if self.password.is_some() {
            return Err(
                "`password` is not accepted: put it in a file (`password_file`) or an environment variable (`password_env`)"
                    .into(),
            );
        }
        Ok(Auth {
            username: self.username,
            password: secret_from(
                None,
                self.password_file.as_deref(),
                self.password_env.as_deref(),
                "password",
            )?,
        })
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
    fn into_receiver(self) -> Result<Receiver, String> {
        let name = self.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "receiver name {name:?}: use letters, digits, '-', '_' and '.' only (it names files and metric labels)"
            ));
        }
        let kind = self.kind;
        let only = |given: bool, field: &str, kinds: &[ReceiverKind]| {
            if given && !kinds.contains(&kind) {
                let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
                Err(format!(
                    "receiver {name:?} is type {}: `{field}` applies to {} only",
                    kind.as_str(),
                    kinds.join(", ")
                ))
            } else {
                Ok(())
            }
        };
        only(
            self.secret_file.is_some(),
            "secret_file",
            &[ReceiverKind::Webhook],
        )?;
        for (given, field) in [
            (self.routing_key_file.is_some(), "routing_key_file"),
            (self.routing_key_env.is_some(), "routing_key_env"),
        ] {
            only(given, field, &[ReceiverKind::Pagerduty])?;
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
                return Err(format!(
                    "receiver {name:?} is type alertmanager: list every Alertmanager under `urls` (not behind a load balancer)"
                ))
            }
            (ReceiverKind::Alertmanager, None) => {
                let urls: Vec<Secret> = self.urls.unwrap_or_default().into_iter().map(Secret).collect();
                if urls.is_empty() {
                    return Err(format!("receiver {name:?} needs at least one URL under `urls`"));
                }
                urls
            }
            (_, Some(url)) => vec![url],
            (ReceiverKind::Pagerduty, None) => vec![Secret(PAGERDUTY_URL.into())],
            (_, None) => {
                return Err(format!(
                    "receiver {name:?} needs `url`, `url_file` or `url_env`"
                ))
            }
        };
        let mut endpoints = HashSet::new();
        for url in &urls {
            // The URL itself may hold a token: say what is wrong, not what it is.
            check_url(url.expose()).map_err(|e| format!("receiver {name:?}: {e}"))?;
            // Each URL has its own queue and metric series, named by host:port.
            let endpoint = endpoint_label(url.expose());
            if !endpoints.insert(endpoint.clone()) {
                return Err(format!(
                    "receiver {name:?}: {endpoint} is listed twice in `urls`"
                ));
            }
        }
        let routing_key = secret_from(
            None,
            self.routing_key_file.as_deref(),
            self.routing_key_env.as_deref(),
            "routing_key",
        )?;
        if kind == ReceiverKind::Pagerduty && routing_key.is_none() {
            return Err(format!(
                "receiver {name:?} is type pagerduty: it needs `routing_key_file` or `routing_key_env`"
            ));
        }
        let signing_key = self
            .secret_file
            .as_deref()
            .map(read_signing_key)
            .transpose()?;
        let queue_size = self.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE);
        if queue_size == 0 {
            return Err(format!("receiver {name:?}: queue_size must be at least 1"));
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
fn check_url(url: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(_) => Err("the URL must be http:// or https:// with a host".into()),
        Err(e) => Err(format!("invalid URL: {e}")),
    }
}

/// A secret given inline (only where it is not one), in a file or in an
/// environment variable: at most one of them.
fn secret_from(
    inline: Option<Secret>,
    file: Option<&Path>,
    env: Option<&str>,
    key: &str,
) -> Result<Option<Secret>, String> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(s), None, None) => Ok(Some(s)),
        (None, Some(path), None) => read_password_file(path).map(Some),
        (None, None, Some(var)) => read_password_env(var).map(Some),
        (None, Some(_), Some(_)) => Err(format!("give `{key}_file` or `{key}_env`, not both")),
        _ => Err(format!(
            "give only one of `{key}`, `{key}_file` or `{key}_env`"
        )),
    }
}

fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    SigningKey::parse(read_password_file(path)?.expose()).ok_or_else(|| {
        format!(
            "secret file {}: expected a Standard Webhooks secret, whsec_ then base64",
            path.display()
        )
    })
}

fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read password file {}: {e}", path.display()))?;
    // Files written by `echo` or secret managers end with a newline that is
    // not part of the password.
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(format!("password file {} is empty", path.display()));
    }
    Ok(Secret(password.to_string()))
}

fn read_password_env(var: &str) -> Result<Secret, String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(format!("environment variable {var} is empty")),
        Err(_) => Err(format!("environment variable {var} is not set")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "test.yaml").unwrap_err().to_string()
    }

    const MINIMAL: &str =
        "deployments:\n  - name: a\n    kind: sentinel\n    sentinels: [\"127.0.0.1:26379\"]\n";

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL, "t").unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.deployments[0].seeds, ["127.0.0.1:26379"]);
        assert!(c.deployments[0].watches_master("anything"));
    }

    #[test]
    fn the_documented_example_parses() {
        let dir = std::env::temp_dir().join(format!("rhe-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pw = dir.join("pw");
        std::fs::write(&pw, "filepw\n").unwrap();
        let text = format!(
            "listen: \"127.0.0.1:9999\"\npoll_interval: 2s\ntimeout: 250ms\ndeployments:\n\
             \x20 - name: sessions\n    kind: sentinel\n    sentinels: [\"10.0.0.1:26379\", \"10.0.0.2:26379\"]\n\
             \x20   masters: [mymaster]\n    auth: {{ username: monitor, password_file: {} }}\n\
             \x20   sentinel_auth: {{ password_env: CARGO_PKG_NAME }}\n\
             \x20 - name: cache\n    kind: cluster\n    seeds: [\"10.0.1.1:6379\"]\n",
            pw.display()
        );
        let c = parse(&text, "t").unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(2));
        let s = &c.deployments[0];
        assert!(s.watches_master("mymaster") && !s.watches_master("other"));
        assert_eq!(s.auth.username.as_deref(), Some("monitor"));
        assert_eq!(s.auth.password.as_ref().unwrap().expose(), "filepw");
        // Cargo sets CARGO_PKG_NAME for tests: no set_var in a threaded test run.
        assert_eq!(
            s.sentinel_auth.password.as_ref().unwrap().expose(),
            env!("CARGO_PKG_NAME")
        );
        assert_eq!(c.deployments[1].kind, Kind::Cluster);
        assert!(
            !format!("{c:?}").contains("filepw"),
            "secrets must not show in Debug"
        );
    }

    #[test]
    fn errors_name_the_key_and_line() {
        let e = err("deployments:\n  - name: a\n    kind: sentinel\n    sentinals: [\"h:1\"]\n");
        assert!(
            e.contains("deployments[0]")
                && e.contains("unknown field `sentinals`")
                && e.contains("line 4"),
            "{e}"
        );

        let e = err("poll_interval: 5 parsecs\ndeployments: []\n");
        assert!(
            e.contains("poll_interval") && e.contains("invalid duration") && e.contains("line 1"),
            "{e}"
        );

        let e = err("deployments:\n  - kind: cluster\n    seeds: [\"h:1\"]\n");
        assert!(
            e.contains("missing field `name`") && e.contains("line 2"),
            "{e}"
        );

        let e = err("deployments:\n  - name: a\n    kind: sentinel\n    sentinels: 5\n");
        assert!(
            e.contains("deployments[0].sentinels") && e.contains("line 4"),
            "{e}"
        );

        let e = err("deployments:\n  - name: a\n    kind: sentinal\n    sentinels: [\"h:1\"]\n");
        assert!(
            e.contains("deployments[0].kind") && e.contains("sentinel") && e.contains("line 3"),
            "{e}"
        );

        let e = err("deployments:\n  - name: a\n    kind: cluster\n    seeds: [\"nope\"]\n");
        assert!(
            e.contains("deployments[0].seeds") && e.contains("host:port"),
            "{e}"
        );
    }

    #[test]
    fn kind_specific_fields_are_checked() {
        let e = err("deployments:\n  - name: a\n    kind: cluster\n    sentinels: [\"h:1\"]\n");
        assert!(
            e.contains("`sentinels` applies to sentinel deployments only") && e.contains("line"),
            "{e}"
        );
        let e = err("deployments:\n  - name: a\n    kind: sentinel\n");
        assert!(
            e.contains("needs at least one address under `sentinels`"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}  - name: a\n    kind: cluster\n    seeds: [\"h:1\"]\n"
        ));
        assert!(e.contains("used by another deployment"), "{e}");
        let e = err(&format!("timeout: 2s\n{MINIMAL}"));
        assert!(e.contains("shorter than poll_interval"), "{e}");
        let e = err(&format!("poll_interval: 3000y\ntimeout: 1s\n{MINIMAL}"));
        assert!(e.contains("at most 1h"), "{e}");
        let e = err(&format!("timelines: {{ keep_per_shard: 0 }}\n{MINIMAL}"));
        assert!(e.contains("keep_per_shard must be at least 1"), "{e}");
    }

    #[test]
    fn secrets_never_come_from_the_yaml_and_missing_ones_are_named() {
        let e = err(&format!("{MINIMAL}    auth: {{ password: hunter2 }}\n"));
        assert!(
            e.contains("`password` is not accepted") && !e.contains("hunter2"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}    auth: {{ password_file: /nonexistent/pw }}\n"
        ));
        assert!(
            e.contains("deployments[0].auth")
                && e.contains("/nonexistent/pw")
                && e.contains("line 5"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}    sentinel_auth: {{ password_env: REDIS_HA_TEST_UNSET_VAR }}\n"
        ));
        assert!(e.contains("REDIS_HA_TEST_UNSET_VAR is not set"), "{e}");
    }

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
    fn tls_files_are_checked_when_loaded() {
        let dir = std::env::temp_dir().join(format!("rhe-config-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let with = |tls: &str| format!("{MINIMAL}    tls: {tls}\n");
        let e = err(&with(&format!("{{ ca_file: \"{}\" }}", ca.display())));
        assert!(
            e.contains("`tls`") && e.contains("no PEM certificate"),
            "{e}"
        );
        assert!(
            !e.contains("not a certificate"),
            "the file is not quoted: {e}"
        );
        let e = err(&with("{ ca_file: /nonexistent/ca.crt }"));
        assert!(e.contains("/nonexistent/ca.crt: cannot read it"), "{e}");
        let e = err(&with("{ server_name: \"a b\" }"));
        assert!(e.contains("server_name \"a b\""), "{e}");
        let e = err(&with("{ insecure_skip_verify: true, cert_file: /x }"));
        assert!(e.contains("`cert_file` and `key_file` go together"), "{e}");
        let e = err(&with("{}"));
        assert!(e.contains("`ca_file` is required"), "{e}");
        let e = err(&with("{ ca: /x }"));
        assert!(e.contains("unknown field `ca`"), "{e}");
        // No file needed without verification; sentinels inherit `tls`.
        let c = parse(&with("{ insecure_skip_verify: true }"), "t").unwrap();
        let d = &c.deployments[0];
        assert!(d.tls.as_ref().unwrap().insecure_skip_verify);
        assert_eq!(d.sentinel_tls, d.tls);
        let cluster = "deployments:\n  - name: c\n    kind: cluster\n    seeds: [\"127.0.0.1:7000\"]\n    sentinel_tls: { insecure_skip_verify: true }\n";
        assert!(err(cluster).contains("`sentinel_tls` applies to sentinel deployments only"));
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
            (hook, "", ""),
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
            let text = with(receivers, rest);
            if want.is_empty() {
                // Without a state directory, receivers are refused.
                let e = err(&text.replace("  state_dir: /tmp/x\n", ""));
                assert!(e.contains("alerts.state_dir: needed with receivers"), "{e}");
                continue;
            }
            let e = err(&text);
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
    fn the_canary_is_off_unless_enabled_and_checked_where_written() {
        let c = parse(MINIMAL, "t").unwrap();
        assert_eq!(c.deployments[0].canary, Canary::default());
        assert!(!c.deployments[0].canary.enabled);
        let c = parse(
            &format!("{MINIMAL}    canary: {{ enabled: true, interval: 250ms, key_prefix: \"probe.a\" }}\n"),
            "t",
        )
        .unwrap();
        let canary = &c.deployments[0].canary;
        assert_eq!(
            (canary.enabled, canary.interval, canary.key_prefix.as_str()),
            (true, Duration::from_millis(250), "probe.a")
        );
        for (canary, want) in [
            ("{ enabled: true, interval: 5ms }", "between 10ms and 1m"),
            ("{ interval: 2m }", "between 10ms and 1m"),
            ("{ key_prefix: \"a{b}\" }", "key_prefix \"a{b}\""),
            ("{ key_prefix: \"a*\" }", "letters, digits"),
            ("{ key_prefix: \"\" }", "key_prefix"),
            ("{ enable: true }", "unknown field `enable`"),
        ] {
            let e = err(&format!("{MINIMAL}    canary: {canary}\n"));
            assert!(
                e.contains(want) && e.contains("deployments[0]") && e.contains("line 5"),
                "{canary}: {e}"
            );
        }
    }

    #[test]
    fn flags_make_a_config() {
        let c = from_flags(
            None,
            &["127.0.0.1:26379".into()],
            &["127.0.0.1:7000".into()],
        )
        .unwrap();
        assert_eq!(c.deployments.len(), 2);
        assert_eq!(c.deployments[1].kind, Kind::Cluster);
        assert!(from_flags(None, &[], &[]).is_err());
        assert!(from_flags(None, &["x".into()], &[])
            .unwrap_err()
            .to_string()
            .contains("--sentinel"));
    }
}
