//! Secrets: passwords, URLs with tokens, routing and signing keys. They are
//! read from files or environment variables when the config is loaded,
//! never written in the YAML, and never shown by `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

/// A password. It has no `Display` and its `Debug` shows `***`, so it
/// cannot leak through a log line or an error message by accident.
#[derive(Clone, PartialEq)]
pub struct Secret(pub(super) String);

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

/// Why a secret could not be had. Messages name the file or the variable,
/// never the secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both a file and a variable.
    #[error("give `{key}_file` or `{key}_env`, not both")]
    FileAndEnv {
        /// The key the two are for, as `password`.
        key: &'static str,
    },
    /// An inline value and a file or a variable.
    #[error("give only one of `{key}`, `{key}_file` or `{key}_env`")]
    MoreThanOne {
        /// The key the three are for, as `url`.
        key: &'static str,
    },
    /// The file could not be read.
    #[error("cannot read password file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds nothing but line ends.
    #[error("password file {path} is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The variable is set to nothing.
    #[error("environment variable {var} is empty")]
    EnvEmpty {
        /// The variable's name.
        var: String,
    },
    /// The variable is not set (or not Unicode).
    #[error("environment variable {var} is not set")]
    EnvUnset {
        /// The variable's name.
        var: String,
    },
    /// The file does not hold a Standard Webhooks secret.
    #[error("secret file {path}: expected a Standard Webhooks secret, whsec_ then base64")]
    SigningKey {
        /// The file.
        path: PathBuf,
    },
}

/// A secret given inline (only where it is not one), in a file or in an
/// environment variable: at most one of them.
pub(super) fn secret_from(
    inline: Option<Secret>,
    file: Option<&Path>,
    env: Option<&str>,
    key: &'static str,
) -> Result<Option<Secret>, SecretError> {
    match (inline, file, env) {
        (None, None, None) => Ok(None),
        (Some(s), None, None) => Ok(Some(s)),
        (None, Some(path), None) => read_password_file(path).map(Some),
        (None, None, Some(var)) => read_password_env(var).map(Some),
        (None, Some(_), Some(_)) => Err(SecretError::FileAndEnv { key }),
        _ => Err(SecretError::MoreThanOne { key }),
    }
}

pub(super) fn read_signing_key(path: &Path) -> Result<SigningKey, SecretError> {
    SigningKey::parse(read_password_file(path)?.expose())
        .ok_or_else(|| SecretError::SigningKey { path: path.into() })
}

fn read_password_file(path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        path: path.into(),
        source,
    })?;
    // Files written by `echo` or secret managers end with a newline that is
    // not part of the password.
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(SecretError::Empty { path: path.into() });
    }
    Ok(Secret(password.to_string()))
}

fn read_password_env(var: &str) -> Result<Secret, SecretError> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Ok(Secret(v)),
        Ok(_) => Err(SecretError::EnvEmpty { var: var.into() }),
        Err(_) => Err(SecretError::EnvUnset { var: var.into() }),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{err, MINIMAL};

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
}
