//! The configuration file, its defaults and validation, and secrets.
//!
//! Every check that can point at a place in the file runs while the file is
//! deserialized (field types, durations, addresses, secrets, the fields each
//! `kind` allows), so every error names the key path and the line; what
//! spans several keys is checked after ([`CheckError`]).
//!
//! By concern: `yaml.rs` reads YAML (the only user of serde_yaml) and holds
//! the checks that run inside the deserializer; `deployments.rs`,
//! `rules.rs`, `receivers.rs` and `secrets.rs` the sections of the file;
//! `web.rs` the web config file of the agent's own endpoint. Everything is
//! re-exported here: the rest of the crate names `config::X` only.

mod deployments;
mod findings;
mod receivers;
mod rules;
mod secrets;
mod web;
mod yaml;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use self::deployments::{
    Auth, AuthError, Canary, CanaryError, Deployment, DeploymentError, Kind,
};
pub use self::findings::Findings;
pub use self::receivers::{
    endpoint_label, Alerts, AlertsError, Receiver, ReceiverError, ReceiverKind, ReceiverTls, Route,
    UrlError, PAGERDUTY_URL,
};
pub use self::rules::{RuleConfig, RuleName, Severity};
pub use self::secrets::{Secret, SecretError, SigningKey};
pub use self::web::{ClientAuth, PasswordHash, TlsServer, TlsVersion, WebConfig, WebConfigError};
use self::yaml::{check_addr, duration, from_yaml, listen_addr};
pub use self::yaml::{ConfigError, ValueError, YamlError};
pub use crate::tls::Tls;

/// Where the agent listens when the config says nothing.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:9478";
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// How often each cluster node's own `CLUSTER NODES` is read at least, as
/// long as that costs at most two replies a poll round (docs/architecture.md,
/// "Polling"): what only that reply shows (a slot opened for migration, a
/// replica suspected on Redis 7.0) reaches the agent within 10 s on
/// clusters of up to 20 nodes polled every second, within half a poll
/// round per node beyond, while `CLUSTER INFO`, read every poll, catches
/// failures, failovers and slot moves within a poll.
const DEFAULT_TOPOLOGY_INTERVAL: Duration = Duration::from_secs(10);

/// A configuration the agent can run with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The HTTP address for /metrics and the API.
    pub listen: SocketAddr,
    /// How often every target is polled.
    pub poll_interval: Duration,
    /// How long one command may take before the poll counts as failed.
    pub timeout: Duration,
    /// How often each cluster node's `CLUSTER NODES` is read at least.
    pub topology_interval: Duration,
    /// The sentinel sets and clusters to watch.
    pub deployments: Vec<Deployment>,
    /// Where failover timelines are kept.
    pub timelines: Timelines,
    /// Changes to the built-in alert rules.
    pub alerts: Alerts,
    /// How the findings are made.
    pub findings: Findings,
    /// TLS and basic auth of the agent's own endpoint: a web config file
    /// ([`load_web_config`]); `--web.config.file` overrides it.
    pub web_config_file: Option<PathBuf>,
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
    /// How long after a failover's switch the clients still connected to
    /// the old master are read: time enough for every client that follows
    /// failovers to have moved.
    #[serde(default = "default_clients_after", deserialize_with = "duration")]
    pub clients_after: Duration,
}

impl Default for Timelines {
    fn default() -> Self {
        Timelines {
            path: None,
            keep_per_shard: default_keep(),
            clients_after: default_clients_after(),
        }
    }
}

fn default_clients_after() -> Duration {
    Duration::from_secs(10)
}

fn default_keep() -> usize {
    100
}

/// What is wrong with a configuration whose values are each fine: checks
/// that span several keys, so no single line is to blame.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Nothing to watch.
    #[error("deployments: at least one deployment is needed")]
    NoDeployments,
    /// An interval beyond any sensible poll.
    #[error(
        "poll_interval, timeout, topology_interval and timelines.clients_after must be at most 1h"
    )]
    OverAnHour,
    /// Topology read less often than the polls it rides on.
    #[error(
        "topology_interval ({}) must be at least poll_interval ({}): CLUSTER NODES is read with a poll",
        humantime::format_duration(*.topology_interval),
        humantime::format_duration(*.poll_interval)
    )]
    TopologyFasterThanPolls {
        /// `topology_interval`.
        topology_interval: Duration,
        /// `poll_interval`.
        poll_interval: Duration,
    },
    /// The alerts section.
    #[error(transparent)]
    Alerts(#[from] AlertsError),
    /// Timelines not kept at all.
    #[error("timelines.keep_per_shard must be at least 1")]
    KeepNone,
    /// A poll that could outlast its interval.
    #[error(
        "timeout ({}) must be shorter than poll_interval ({}), or a slow target would poll late",
        humantime::format_duration(*.timeout),
        humantime::format_duration(*.poll_interval)
    )]
    TimeoutNotShorter {
        /// `timeout`.
        timeout: Duration,
        /// `poll_interval`.
        poll_interval: Duration,
    },
    /// Two deployments of one name.
    #[error(
        "deployments[{index}].name: {name:?} is used by another deployment; names must be unique"
    )]
    DuplicateDeployment {
        /// The second deployment's position.
        index: usize,
        /// The name.
        name: String,
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
    let raw: RawConfig = from_yaml(text).map_err(|source| ConfigError::Yaml {
        origin: origin.to_string(),
        source,
    })?;
    raw.validate().map_err(|source| ConfigError::Invalid {
        origin: origin.to_string(),
        source,
    })
}

/// Reads and checks a web config file (exporter-toolkit format): TLS and
/// basic auth of the agent's own endpoint. Paths in it are relative to its
/// own directory. Errors name the file, the key and the line, never a hash.
pub fn load_web_config(path: &Path) -> Result<WebConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadWeb {
        path: path.to_path_buf(),
        source,
    })?;
    let file: web::WebConfigFile = from_yaml(&text).map_err(|source| ConfigError::Yaml {
        origin: path.display().to_string(),
        source,
    })?;
    file.check(path.parent().unwrap_or(Path::new(".")))
        .map_err(|source| ConfigError::Web {
            path: path.to_path_buf(),
            source,
        })
}

/// The web config the agent serves with: the file given on the command line
/// (`flag`), else the one `config` names, else plain HTTP without auth.
pub fn web_config(flag: Option<&Path>, config: Option<&Config>) -> Result<WebConfig, ConfigError> {
    match flag.or(config.and_then(|c| c.web_config_file.as_deref())) {
        Some(path) => load_web_config(path),
        None => Ok(WebConfig::default()),
    }
}

/// Builds a configuration from the quick command-line flags.
pub fn from_flags(
    listen: Option<SocketAddr>,
    sentinels: &[String],
    clusters: &[String],
) -> Result<Config, ConfigError> {
    let mut deployments = Vec::new();
    for (flag, kind, seeds) in [
        ("sentinel", Kind::Sentinel, sentinels),
        ("cluster", Kind::Cluster, clusters),
    ] {
        if seeds.is_empty() {
            continue;
        }
        for seed in seeds {
            check_addr(seed).map_err(|source| ConfigError::Flag {
                flag,
                value: seed.clone(),
                source,
            })?;
        }
        deployments.push(Deployment {
            name: flag.into(),
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
        listen: listen.unwrap_or_else(default_listen),
        poll_interval: DEFAULT_POLL_INTERVAL,
        timeout: DEFAULT_TIMEOUT,
        topology_interval: DEFAULT_TOPOLOGY_INTERVAL,
        deployments,
        timelines: Timelines::default(),
        alerts: Alerts::default(),
        findings: Findings::default(),
        web_config_file: None,
    };
    check_whole(&config).map_err(|source| ConfigError::Invalid {
        origin: "command line".into(),
        source,
    })?;
    Ok(config)
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with listen, poll_interval, timeout, topology_interval, deployments, timelines, alerts, findings and web_config_file"
)]
struct RawConfig {
    #[serde(default = "default_listen", deserialize_with = "listen_addr")]
    listen: SocketAddr,
    #[serde(default = "default_poll_interval", deserialize_with = "duration")]
    poll_interval: Duration,
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    timeout: Duration,
    #[serde(default = "default_topology_interval", deserialize_with = "duration")]
    topology_interval: Duration,
    deployments: Vec<Deployment>,
    #[serde(default)]
    timelines: Timelines,
    #[serde(default)]
    alerts: Alerts,
    #[serde(default)]
    findings: Findings,
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
fn default_topology_interval() -> Duration {
    DEFAULT_TOPOLOGY_INTERVAL
}

impl RawConfig {
    fn validate(self) -> Result<Config, CheckError> {
        let config = Config {
            listen: self.listen,
            poll_interval: self.poll_interval,
            timeout: self.timeout,
            topology_interval: self.topology_interval,
            deployments: self.deployments,
            timelines: self.timelines,
            alerts: self
                .alerts
                .with_default_state_dir(std::env::var_os("STATE_DIRECTORY")),
            findings: self.findings,
            web_config_file: self.web_config_file,
        };
        check_whole(&config)?;
        Ok(config)
    }
}

/// Checks that span several keys, so no single line is to blame.
fn check_whole(config: &Config) -> Result<(), CheckError> {
    if config.deployments.is_empty() {
        return Err(CheckError::NoDeployments);
    }
    const HOUR: Duration = Duration::from_secs(3600);
    if config.poll_interval > HOUR
        || config.timeout > HOUR
        || config.topology_interval > HOUR
        || config.timelines.clients_after > HOUR
    {
        return Err(CheckError::OverAnHour);
    }
    if config.topology_interval < config.poll_interval {
        return Err(CheckError::TopologyFasterThanPolls {
            topology_interval: config.topology_interval,
            poll_interval: config.poll_interval,
        });
    }
    config.alerts.check(&config.deployments)?;
    if config.timelines.keep_per_shard == 0 {
        return Err(CheckError::KeepNone);
    }
    if config.timeout >= config.poll_interval {
        return Err(CheckError::TimeoutNotShorter {
            timeout: config.timeout,
            poll_interval: config.poll_interval,
        });
    }
    let mut names = HashSet::new();
    for (index, d) in config.deployments.iter().enumerate() {
        if !names.insert(&d.name) {
            return Err(CheckError::DuplicateDeployment {
                index,
                name: d.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn err(text: &str) -> String {
        parse(text, "test.yaml").unwrap_err().to_string()
    }

    pub(super) const MINIMAL: &str =
        "deployments:\n  - name: a\n    kind: sentinel\n    sentinels: [\"127.0.0.1:26379\"]\n";

    #[test]
    fn defaults_apply() {
        let c = parse(MINIMAL, "t").unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(c.poll_interval, Duration::from_secs(1));
        assert_eq!(c.timeout, Duration::from_millis(500));
        assert_eq!(c.topology_interval, Duration::from_secs(10));
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
        let e = err(&format!("timelines: {{ clients_after: 2h }}\n{MINIMAL}"));
        assert!(e.contains("at most 1h"), "{e}");
        let e = err(&format!("topology_interval: 500ms\n{MINIMAL}"));
        assert!(
            e.contains("topology_interval (500ms) must be at least poll_interval (1s)"),
            "{e}"
        );
        let e = err(&format!("timelines: {{ keep_per_shard: 0 }}\n{MINIMAL}"));
        assert!(e.contains("keep_per_shard must be at least 1"), "{e}");
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
