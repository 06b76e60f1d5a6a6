//! Reading YAML: the one use of serde_yaml, the errors a configuration is
//! refused with, and the checks that run inside the deserializer so that a
//! refused value is reported at its own line.
//!
//! serde_yaml is deprecated upstream, so it is used in [`from_yaml`] only:
//! swapping the YAML library touches one function.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::web::WebConfigError;
use super::CheckError;
use crate::parse::split_addr;

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
    /// The text is not a configuration: bad YAML, a wrong type, an unknown
    /// key, or a value refused where it is written.
    #[error("{origin}: {source}")]
    Yaml {
        /// The file name, or where the settings came from.
        origin: String,
        /// Key path, position and what is wrong.
        source: YamlError,
    },
    /// Every value is fine on its own, but together they are not.
    #[error("{origin}: {source}")]
    Invalid {
        /// The file name, or where the settings came from.
        origin: String,
        /// What is wrong.
        source: CheckError,
    },
    /// A quick command-line flag with a value that is not an address.
    #[error("command line: --{flag} {value:?}: {source}")]
    Flag {
        /// The flag, without its dashes.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        source: ValueError,
    },
    /// The web config file could not be read at all.
    #[error("{path}: cannot read web config file: {source}")]
    ReadWeb {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The web config file's settings do not make a working endpoint.
    #[error("{path}: {source}")]
    Web {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: WebConfigError,
    },
}

/// What the YAML library refused, with the key path where there is one;
/// the library's message carries the line and column.
#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    /// At the top of the document.
    #[error("{message}")]
    Document {
        /// The library's message.
        message: String,
    },
    /// Under a key.
    #[error("{path}: {message}")]
    At {
        /// Where, as `deployments[1].auth.password_file`.
        path: String,
        /// The library's message.
        message: String,
    },
}

/// A single value that is not what its key takes.
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Not an ip:port to listen on.
    #[error("invalid listen address {value:?}: expected ip:port, e.g. \"0.0.0.0:9478\"")]
    Listen {
        /// As written.
        value: String,
    },
    /// Not a positive duration with a unit.
    #[error(
        "invalid duration {value:?}: expected a positive number with a unit, e.g. 500ms, 1s, 2m"
    )]
    Duration {
        /// As written.
        value: String,
    },
    /// Not a host:port.
    #[error("invalid address {value:?}: expected host:port, e.g. \"10.0.0.1:26379\"")]
    Address {
        /// As written.
        value: String,
    },
}

/// The one place that knows the YAML library. serde_path_to_error adds the
/// key path (`deployments[1].auth.password_file`) to the library's message,
/// which carries the line and column.
pub(super) fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The YAML library names a (shorter) path itself in some messages.
        let message = match message.split_once(": ") {
            Some((own, rest)) if path.starts_with(own) => rest.to_string(),
            _ => message,
        };
        if path == "." {
            YamlError::Document { message }
        } else {
            YamlError::At { path, message }
        }
    })
}

/// Runs `check` inside the YAML library's visitor, where a refused value is
/// still reported at its own line (an error raised after deserialization
/// returns would carry the enclosing mapping's line, or none).
pub(super) struct Checked<T, E> {
    pub(super) check: fn(&str) -> Result<T, E>,
    pub(super) expecting: &'static str,
}

impl<'de, T, E: fmt::Display> serde::de::Visitor<'de> for Checked<T, E> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_str<D: serde::de::Error>(self, v: &str) -> Result<T, D> {
        (self.check)(v).map_err(D::custom)
    }
}

/// The mapping flavour of [`Checked`]: deserializes an `R` from the mapping,
/// then checks it while the mapping's position is still known.
pub(super) struct CheckedMap<R, T, E> {
    pub(super) check: fn(R) -> Result<T, E>,
    pub(super) expecting: &'static str,
}

impl<'de, R: Deserialize<'de>, T, E: fmt::Display> serde::de::Visitor<'de> for CheckedMap<R, T, E> {
    type Value = T;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let raw = R::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        (self.check)(raw).map_err(serde::de::Error::custom)
    }
}

pub(super) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(super) fn listen_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_str(Checked {
        check: |s: &str| {
            s.parse()
                .map_err(|_| ValueError::Listen { value: s.into() })
        },
        expecting: "an ip:port address",
    })
}

pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_str(Checked {
        check: positive_duration,
        expecting: "a duration such as 500ms or 1s",
    })
}

pub(super) fn positive_duration(s: &str) -> Result<Duration, ValueError> {
    match humantime::parse_duration(s) {
        Ok(v) if !v.is_zero() => Ok(v),
        _ => Err(ValueError::Duration { value: s.into() }),
    }
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

pub(super) fn check_addr(s: &str) -> Result<(), ValueError> {
    match split_addr(s) {
        Some(_) => Ok(()),
        None => Err(ValueError::Address { value: s.into() }),
    }
}

pub(super) fn addr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let list = Option::<Vec<Addr>>::deserialize(d)?;
    Ok(list.map(|l| l.into_iter().map(|a| a.0).collect()))
}

#[cfg(test)]
mod tests {
    use crate::config::tests::err;

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
}
