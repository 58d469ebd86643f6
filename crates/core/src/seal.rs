//! Sealed session ids: an `Mcp-Session-Id` that any replica holding the same key can
//! open, so a client's requests may land on any replica.
//!
//! The id is `s1.` and base64url of a random 96-bit nonce and the AES-256-GCM sealing
//! (ring) of the session's claims — principal, negotiated protocol version, endpoint
//! (`/mcp` or `/mcp/{route}`) and when it was issued. The tool servers' own sessions
//! are not in it: mcp-edge shares one upstream session per route and replica, so any
//! replica can serve any client session with its own.
//!
//! Keys: `MCP_EDGE_SESSION_KEY` (32 bytes as 64 hex digits), with earlier keys still
//! accepted from `MCP_EDGE_SESSION_KEY_PREVIOUS` (comma-separated) during a rotation;
//! or `MCP_EDGE_SESSION_KEY_FILE`, a mounted secret whose first line is the key and
//! whose further lines are earlier keys. Without any, a random key: sessions are then
//! this process's alone. A token sealed with another key, tampered with, expired, or
//! presented by another client is refused like an unknown session, and logged without
//! its content.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};
use serde_json::json;

const PREFIX: &str = "s1.";
const AAD: &[u8] = b"mcp-edge session v1";
/// A sealed session is accepted this long after it was opened.
pub const MAX_AGE_SECS: u64 = 24 * 3600;

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The client that opened it (`None`: anonymous).
    pub principal: Option<String>,
    /// The negotiated protocol version.
    pub version: String,
    /// `None` for `/mcp`, the route for `/mcp/{route}`.
    pub target: Option<String>,
    /// When it was opened (unix seconds).
    pub issued: u64,
}

/// Why a sealed id was refused (logged, never shown to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a sealed id at all.
    NotSealed,
    /// Sealed with no key this replica has, or tampered with.
    Unopenable,
    /// Older than [`MAX_AGE_SECS`].
    Expired,
    /// Opened by another client.
    OtherClient,
}

impl Refusal {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::NotSealed => "not a session id of mcp-edge",
            Refusal::Unopenable => "sealed with another key, or tampered with",
            Refusal::Expired => "expired",
            Refusal::OtherClient => "opened by another client",
        }
    }
}

/// Seals and opens session ids.
pub struct Sealer {
    keys: Vec<LessSafeKey>,
    random: SystemRandom,
    /// Whether the key came from configuration (shared by replicas).
    pub shared: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.keys.len())
            .field("shared", &self.shared)
            .finish()
    }
}

fn key(hex: &str) -> Result<LessSafeKey, String> {
    let bytes = hex::decode(hex.trim())
        .ok()
        .filter(|bytes| bytes.len() == 32)
        .ok_or_else(|| {
            "a session key is 32 bytes written as 64 hex digits (`openssl rand -hex 32`)".to_owned()
        })?;
    let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| "unusable key".to_owned())?;
    Ok(LessSafeKey::new(unbound))
}

impl Sealer {
    /// A sealer with these keys, the first sealing and all opening.
    pub fn new(hex_keys: &[&str]) -> Result<Sealer, String> {
        let keys = hex_keys
            .iter()
            .map(|k| key(k))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no session key".into());
        }
        Ok(Sealer {
            keys,
            random: SystemRandom::new(),
            shared: true,
        })
    }

    /// A sealer with a key of its own: sessions stay in this process. Fails when the
    /// system's random number generator does (a predictable key would let anyone forge
    /// session ids).
    pub fn random() -> Result<Sealer, String> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| {
            "the system's random number generator failed: no session key could be made".to_owned()
        })?;
        let hex = hex::encode(bytes);
        let mut sealer = Sealer::new(&[&hex])?;
        sealer.shared = false;
        Ok(sealer)
    }

    /// The keys from the environment (see the module documentation), or a random one.
    pub fn from_env() -> Result<Sealer, String> {
        if let Ok(path) = std::env::var("MCP_EDGE_SESSION_KEY_FILE") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("MCP_EDGE_SESSION_KEY_FILE {path}: {e}"))?;
            let keys: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            return Sealer::new(&keys)
                .map_err(|e| format!("MCP_EDGE_SESSION_KEY_FILE {path}: {e}"));
        }
        match std::env::var("MCP_EDGE_SESSION_KEY") {
            Ok(current) => {
                let previous = std::env::var("MCP_EDGE_SESSION_KEY_PREVIOUS").unwrap_or_default();
                let mut keys = vec![current.as_str()];
                keys.extend(previous.split(',').map(str::trim).filter(|k| !k.is_empty()));
                Sealer::new(&keys).map_err(|e| format!("MCP_EDGE_SESSION_KEY: {e}"))
            }
            Err(_) => Sealer::random(),
        }
    }

    /// A session id carrying `claims`; `None` when no fresh nonce could be had (the
    /// random number generator failed: a repeated nonce would break AES-GCM).
    pub fn seal(&self, claims: &Claims) -> Option<String> {
        let body = json!({
            "p": claims.principal,
            "v": claims.version,
            "t": claims.target,
            "i": claims.issued,
        })
        .to_string();
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).ok()?;
        let mut sealed = body.into_bytes();
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut sealed,
            )
            .ok()?;
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        Some(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(token)))
    }

    /// The claims of a sealed id presented by `principal`.
    pub fn open(&self, id: &str, principal: Option<&str>) -> Result<Claims, Refusal> {
        let encoded = id.strip_prefix(PREFIX).ok_or(Refusal::NotSealed)?;
        let raw = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| Refusal::NotSealed)?;
        if raw.len() <= NONCE_LEN {
            return Err(Refusal::NotSealed);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let body = self
            .keys
            .iter()
            .find_map(|key| {
                let mut buffer = sealed.to_vec();
                let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
                key.open_in_place(nonce, Aad::from(AAD), &mut buffer)
                    .ok()
                    .map(|plain| plain.to_vec())
            })
            .ok_or(Refusal::Unopenable)?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| Refusal::Unopenable)?;
        let claims = Claims {
            principal: v["p"].as_str().map(str::to_owned),
            version: v["v"].as_str().unwrap_or_default().to_owned(),
            target: v["t"].as_str().map(str::to_owned),
            issued: v["i"].as_u64().unwrap_or(0),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now.saturating_sub(claims.issued) > MAX_AGE_SECS {
            return Err(Refusal::Expired);
        }
        if claims.principal.as_deref() != principal {
            return Err(Refusal::OtherClient);
        }
        Ok(claims)
    }
}

/// Now, in unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100";

    fn claims() -> Claims {
        Claims {
            principal: Some("agent".into()),
            version: "2025-11-25".into(),
            target: None,
            issued: now(),
        }
    }

    #[test]
    fn a_sealed_id_opens_with_the_key_and_only_for_its_client() {
        let sealer = Sealer::new(&[A]).unwrap();
        let id = sealer.seal(&claims()).unwrap();
        assert!(id.starts_with("s1.") && id.bytes().all(|b| (0x21..0x7f).contains(&b)));
        assert_eq!(sealer.open(&id, Some("agent")), Ok(claims()));
        assert_eq!(sealer.open(&id, Some("other")), Err(Refusal::OtherClient));
        assert_eq!(sealer.open(&id, None), Err(Refusal::OtherClient));
        assert_ne!(
            sealer.seal(&claims()).unwrap(),
            id,
            "a fresh nonce each time"
        );
    }

    #[test]
    fn other_keys_tampering_and_age_are_refused() {
        let a = Sealer::new(&[A]).unwrap();
        let b = Sealer::new(&[B]).unwrap();
        let id = a.seal(&claims()).unwrap();
        assert_eq!(b.open(&id, Some("agent")), Err(Refusal::Unopenable));
        let mut tampered = id.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            a.open(std::str::from_utf8(&tampered).unwrap(), Some("agent")),
            Err(Refusal::Unopenable)
        );
        assert_eq!(a.open("0123abcd", Some("agent")), Err(Refusal::NotSealed));
        let mut old = claims();
        old.issued -= MAX_AGE_SECS + 10;
        assert_eq!(
            a.open(&a.seal(&old).unwrap(), Some("agent")),
            Err(Refusal::Expired)
        );
    }

    #[test]
    fn rotation_opens_ids_sealed_with_the_previous_key() {
        let before = Sealer::new(&[A]).unwrap();
        let after = Sealer::new(&[B, A]).unwrap();
        let id = before.seal(&claims()).unwrap();
        assert_eq!(after.open(&id, Some("agent")), Ok(claims()));
        let new = after.seal(&claims()).unwrap();
        assert_eq!(before.open(&new, Some("agent")), Err(Refusal::Unopenable));
        assert!(Sealer::new(&["nothex"]).is_err());
    }
}
