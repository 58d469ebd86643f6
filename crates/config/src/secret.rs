//! Secrets are referenced, never written inline.
//!
//! A routes file says where a credential lives (`{ env = "NAME" }` or
//! `{ file = "path" }`); the value is read at load into a [`Secret`], whose `Debug` and
//! `Display` print `<redacted>`, so it cannot leak through a log line, an error or
//! `/health` by accident.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

/// Where a secret lives. Printing a reference is safe: it names the place, not the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretRef {
    /// An environment variable of the gateway's process.
    Env(String),
    /// A file (a mounted Kubernetes Secret, say); one trailing newline is dropped.
    File(PathBuf),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

/// Why a secret could not be read. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The environment variable is not set (or not valid UTF-8).
    #[error("environment variable {0} is not set")]
    EnvMissing(String),
    /// The file could not be read.
    #[error("cannot read secret file {path}: {reason}")]
    FileUnreadable {
        /// The resolved path.
        path: PathBuf,
        /// The operating system's reason.
        reason: String,
    },
    /// The variable or file exists but is empty.
    #[error("secret {0} is empty")]
    Empty(String),
}

impl SecretRef {
    /// Makes a relative file path absolute against `base` (the routes file's directory).
    pub fn rebase(self, base: &Path) -> SecretRef {
        match self {
            SecretRef::File(path) if path.is_relative() => SecretRef::File(base.join(path)),
            other => other,
        }
    }

    /// Reads the secret now.
    pub fn resolve(&self) -> Result<Secret, SecretError> {
        let value = match self {
            SecretRef::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))?
            }
            SecretRef::File(path) => {
                let mut text =
                    std::fs::read_to_string(path).map_err(|e| SecretError::FileUnreadable {
                        path: path.clone(),
                        reason: e.kind().to_string(),
                    })?;
                if text.ends_with('\n') {
                    text.pop();
                    if text.ends_with('\r') {
                        text.pop();
                    }
                }
                text
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(Secret(value))
    }
}

/// A resolved secret. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the one place that needs it (an `Authorization` header, say).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

pub(crate) const INLINE_REFUSED: &str =
    "secrets are never written inline: write { env = \"NAME\" } or { file = \"path\" }";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a secret reference { env = \"NAME\" } or { file = \"path\" }")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Err(E::custom(INLINE_REFUSED))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                secret_from_map(map)
            }
        }
        deserializer.deserialize_any(V)
    }
}

fn secret_from_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<SecretRef, A::Error> {
    let mut found: Option<SecretRef> = None;
    while let Some(key) = map.next_key::<String>()? {
        let value: String = map.next_value()?;
        let next = match key.as_str() {
            "env" => SecretRef::Env(value),
            "file" => SecretRef::File(PathBuf::from(value)),
            other => {
                return Err(de::Error::custom(format!(
                    "unknown key `{other}` in a secret reference: use `env` or `file`"
                )));
            }
        };
        if found.replace(next).is_some() {
            return Err(de::Error::custom(
                "a secret reference names one place: `env` or `file`, not both",
            ));
        }
    }
    match found {
        Some(SecretRef::Env(name)) if !valid_env_name(&name) => Err(de::Error::custom(format!(
            "`{name}` is not an environment variable name (letters, digits and _, not starting with a digit)"
        ))),
        Some(SecretRef::File(path)) if path.as_os_str().is_empty() => {
            Err(de::Error::custom("a secret file path is empty"))
        }
        Some(found) => Ok(found),
        None => Err(de::Error::custom(INLINE_REFUSED)),
    }
}

fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A value that may be plain text or a secret reference: child-process environment
/// variables and upstream headers, where some values are configuration and some are
/// credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MaybeSecret {
    /// Plain configuration, printed as is.
    Plain(String),
    /// A credential, resolved at load and never printed.
    Secret(SecretRef),
}

impl<'de> Deserialize<'de> for MaybeSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeSecret;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string, or a secret reference { env = \"NAME\" } or { file = \"path\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MaybeSecret::Plain(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                secret_from_map(map).map(MaybeSecret::Secret)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Holder {
        token: SecretRef,
    }

    fn parse(text: &str) -> Result<SecretRef, String> {
        toml::from_str::<Holder>(text)
            .map(|h| h.token)
            .map_err(|e| e.message().to_owned())
    }

    #[test]
    fn references_parse() {
        assert_eq!(
            parse("token = { env = \"TOKEN\" }"),
            Ok(SecretRef::Env("TOKEN".into()))
        );
        assert_eq!(
            parse("token = { file = \"/run/secrets/t\" }"),
            Ok(SecretRef::File("/run/secrets/t".into()))
        );
    }

    #[test]
    fn inline_and_malformed_references_are_refused() {
        assert!(
            parse("token = \"hunter2\"")
                .unwrap_err()
                .contains("never written inline")
        );
        assert!(
            parse("token = {}")
                .unwrap_err()
                .contains("never written inline")
        );
        assert!(
            parse("token = { env = \"A\", file = \"b\" }")
                .unwrap_err()
                .contains("not both")
        );
        assert!(
            parse("token = { vault = \"x\" }")
                .unwrap_err()
                .contains("unknown key `vault`")
        );
        assert!(
            parse("token = { env = \"1BAD\" }")
                .unwrap_err()
                .contains("not an environment variable name")
        );
    }

    #[test]
    fn secrets_never_print() {
        let secret = Secret("hunter2".into());
        assert_eq!(
            format!("{secret} {secret:?}"),
            "<redacted> Secret(<redacted>)"
        );
    }

    #[test]
    fn file_secrets_drop_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("mcp-edge-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = SecretRef::File(path.clone()).resolve().unwrap();
        assert_eq!(secret.expose(), "s3cret");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            SecretRef::File(path).resolve(),
            Err(SecretError::Empty(_))
        ));
        std::fs::remove_dir_all(dir).ok();
    }
}
