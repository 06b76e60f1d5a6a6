//! The sentinel sets and clusters to watch: addresses, credentials, TLS and
//! the canary probe, and the fields each `kind` allows.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::secrets::{secret_from, Secret, SecretError};
use super::yaml::{addr_list, positive_duration, Checked, CheckedMap, ValueError};
use crate::tls::{Tls, TlsError};

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

impl Deployment {
    /// Whether this deployment watches the master called `name`.
    pub fn watches_master(&self, name: &str) -> bool {
        self.masters
            .as_ref()
            .is_none_or(|m| m.iter().any(|n| n == name))
    }
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

/// Credentials. The password is read from a file or an environment variable
/// when the config is loaded, never written in the YAML.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    /// ACL user name; `None` for the default user.
    pub username: Option<String>,
    /// The password, if any.
    pub password: Option<Secret>,
}

/// Why a deployment was refused; reported at the deployment's line.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
    /// A blank name.
    #[error("`name` must not be empty")]
    EmptyName,
    /// A sentinel set given `seeds`.
    #[error(
        "deployment {name:?} is kind sentinel: list its sentinels under `sentinels`, not `seeds`"
    )]
    SeedsOfSentinels {
        /// The deployment.
        name: String,
    },
    /// A cluster given a sentinel-only key.
    #[error("deployment {name:?} is kind cluster: `{key}` applies to sentinel deployments only")]
    SentinelOnly {
        /// The deployment.
        name: String,
        /// The key.
        key: &'static str,
    },
    /// No address to start from.
    #[error("deployment {name:?} needs at least one address under `{key}`")]
    NoAddress {
        /// The deployment.
        name: String,
        /// `sentinels` or `seeds`.
        key: &'static str,
    },
    /// TLS settings no connection could be made with.
    #[error("deployment {name:?}: `{key}`: {source}")]
    Tls {
        /// The deployment.
        name: String,
        /// `tls` or `sentinel_tls`.
        key: &'static str,
        /// Why.
        source: TlsError,
    },
}

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A password written in the YAML.
    #[error(
        "`password` is not accepted: put it in a file (`password_file`) or an environment variable (`password_env`)"
    )]
    InlinePassword,
    /// The password file or variable.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Why a canary setting was refused.
#[derive(Debug, thiserror::Error)]
pub enum CanaryError {
    /// Not a duration at all.
    #[error(transparent)]
    Duration(#[from] ValueError),
    /// A duration out of range.
    #[error("canary interval {value:?}: must be between 10ms and 1m")]
    Interval {
        /// As written.
        value: String,
    },
    /// A key prefix that an ACL pattern or the cluster hashing would misread.
    #[error("key_prefix {value:?}: use 1 to 64 letters, digits, '_', '-', '.' or ':'")]
    KeyPrefix {
        /// As written.
        value: String,
    },
}

fn canary_interval<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Checked {
        check: |s: &str| {
            let v = positive_duration(s)?;
            if (MIN_CANARY_INTERVAL..=MAX_CANARY_INTERVAL).contains(&v) {
                Ok(v)
            } else {
                Err(CanaryError::Interval { value: s.into() })
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
                Err(CanaryError::KeyPrefix { value: s.into() })
            }
        },
        expecting: "a key prefix such as __redis_ha_canary",
    })
}

/// The YAML shape of a deployment; `kind` decides which fields it may have,
/// checked inside the deserializer ([`CheckedMap`]) so the error still
/// carries the deployment's line.
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
    fn into_deployment(self) -> Result<Deployment, DeploymentError> {
        let name = self.name;
        if name.trim().is_empty() {
            return Err(DeploymentError::EmptyName);
        }
        let (seeds, key) = match self.kind {
            Kind::Sentinel => {
                if self.seeds.is_some() {
                    return Err(DeploymentError::SeedsOfSentinels { name });
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
                        return Err(DeploymentError::SentinelOnly { name, key });
                    }
                }
                (self.seeds, "seeds")
            }
        };
        let seeds = seeds.unwrap_or_default();
        if seeds.is_empty() {
            return Err(DeploymentError::NoAddress { name, key });
        }
        for (tls, key) in [(&self.tls, "tls"), (&self.sentinel_tls, "sentinel_tls")] {
            if let Some(tls) = tls {
                tls.check().map_err(|source| DeploymentError::Tls {
                    name: name.clone(),
                    key,
                    source,
                })?;
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
    fn into_auth(self) -> Result<Auth, AuthError> {
        if self.password.is_some() {
            return Err(AuthError::InlinePassword);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::config::tests::{err, MINIMAL};

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
}
