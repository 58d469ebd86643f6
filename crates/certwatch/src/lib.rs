//! Certificate-expiry alerting: every certificate in play, its state against its
//! thresholds, and what to do when the state changes.
//!
//! Certificates come from files (the listener's chain and client CA bundle, each
//! route's CA bundle and client certificate) and from handshakes (the chain each TLS
//! tool server presents). Each certificate of a chain is tracked on its own: an
//! intermediate that expires first breaks the chain first.
//!
//! A certificate is `ok`, `warning` (fewer than `warn` left), `critical` (fewer than
//! `critical` left), `expired`, or `not_yet_valid` (its validity starts in the future:
//! a clock skew, or a certificate issued ahead of time). A change of state is logged
//! once and, with a webhook, sent to an Alertmanager-compatible API
//! (`POST /api/v2/alerts`), with retries; active alerts are sent again every minute,
//! as Alertmanager expects, and a resolved one is sent with its `endsAt`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mcp_edge_tls::CertInfo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

mod webhook;

pub use webhook::Webhook;

/// When a certificate is worth a warning, and when it is critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Warn when fewer than this remain.
    pub warn: Duration,
    /// Critical when fewer than this remain.
    pub critical: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            warn: Duration::from_secs(30 * 86_400),
            critical: Duration::from_secs(7 * 86_400),
        }
    }
}

/// A certificate's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Far from expiry.
    Ok,
    /// Fewer than `warn` left.
    Warning,
    /// Fewer than `critical` left.
    Critical,
    /// Not valid yet: a clock skew, or issued ahead of time.
    NotYetValid,
    /// Past its end.
    Expired,
}

impl Level {
    /// `ok`, `warning`, `critical`, `not_yet_valid`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::NotYetValid => "not_yet_valid",
            Level::Expired => "expired",
        }
    }

    /// Whether it makes the gateway (or its route) degraded: critical and worse.
    pub fn is_severe(self) -> bool {
        self >= Level::Critical
    }

    /// The level of `cert` at `now` (unix seconds).
    pub fn of(cert: &CertInfo, now: i64, thresholds: Thresholds) -> Level {
        let left = cert.not_after - now;
        if left < 0 {
            Level::Expired
        } else if cert.not_before > now {
            Level::NotYetValid
        } else if left < secs(thresholds.critical) {
            Level::Critical
        } else if left < secs(thresholds.warn) {
            Level::Warning
        } else {
            Level::Ok
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Where a certificate is in play.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// `listener`, `listener_client_ca`, `route_ca`, `route_client_cert` or `upstream`.
    pub kind: &'static str,
    /// The route, for a route's certificates.
    pub route: Option<String>,
    /// The file, or the server name of a handshake.
    pub from: String,
}

/// One certificate as tracked.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Where it is in play.
    pub origin: Origin,
    /// What it says.
    pub cert: CertInfo,
    /// Its state when last evaluated.
    pub level: Level,
    /// Its thresholds.
    pub thresholds: Thresholds,
}

impl Tracked {
    /// For `/health`.
    pub fn to_json(&self, now: i64) -> Value {
        json!({
            "kind": self.origin.kind,
            "from": self.origin.from,
            "subject": self.cert.subject,
            "issuer": self.cert.issuer,
            "not_before": rfc3339(self.cert.not_before),
            "not_after": rfc3339(self.cert.not_after),
            "days_left": self.cert.days_left(now),
            "state": self.level.as_str(),
        })
    }
}

/// `2026-11-21T23:59:01Z`.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A state change, for the webhook.
#[derive(Debug, Clone)]
pub struct Change {
    /// The certificate.
    pub tracked: Tracked,
    /// Its state before (`None`: first seen).
    pub was: Option<Level>,
}

type Key = (Origin, String, i64);

/// Every certificate in play.
pub struct Watcher {
    certs: Mutex<BTreeMap<Key, Tracked>>,
    changes: Option<mpsc::UnboundedSender<Change>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher").finish_non_exhaustive()
    }
}

impl Watcher {
    /// A watcher whose state changes also go to `changes` (the webhook).
    pub fn new(changes: Option<mpsc::UnboundedSender<Change>>) -> Arc<Watcher> {
        Arc::new(Watcher {
            certs: Mutex::new(BTreeMap::new()),
            changes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<Key, Tracked>> {
        self.certs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the certificates now in play at `origin` (a file's bundle, a handshake's
    /// chain) in place of those seen there before, and evaluates them.
    pub fn observe(&self, origin: &Origin, chain: Vec<CertInfo>, thresholds: Thresholds) {
        let now = mcp_edge_tls::inspect::now();
        let mut changes = Vec::new();
        {
            let mut certs = self.lock();
            let old: Vec<Key> = certs
                .keys()
                .filter(|(o, _, _)| o == origin)
                .cloned()
                .collect();
            let mut kept = Vec::new();
            for cert in chain {
                let key = (origin.clone(), cert.subject.clone(), cert.not_after);
                let level = Level::of(&cert, now, thresholds);
                let was = certs.get(&key).map(|t| t.level);
                let tracked = Tracked {
                    origin: origin.clone(),
                    cert,
                    level,
                    thresholds,
                };
                if was != Some(level) {
                    changes.push(Change {
                        tracked: tracked.clone(),
                        was,
                    });
                }
                certs.insert(key.clone(), tracked);
                kept.push(key);
            }
            for key in old.into_iter().filter(|k| !kept.contains(k)) {
                // Replaced (rotated): what was alerting about it is resolved.
                if let Some(mut gone) = certs.remove(&key)
                    && gone.level != Level::Ok
                {
                    let was = Some(gone.level);
                    gone.level = Level::Ok;
                    changes.push(Change { tracked: gone, was });
                }
            }
        }
        self.report(changes);
    }

    /// Reads a PEM file and observes what is in it; a file that cannot be read is
    /// logged (what is tracked from it stays).
    pub fn observe_file(&self, origin: &Origin, path: &std::path::Path, thresholds: Thresholds) {
        match std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| CertInfo::from_pem(&pem))
        {
            Ok(chain) => self.observe(origin, chain, thresholds),
            Err(e) => {
                tracing::warn!(kind = origin.kind, file = %path.display(), "cannot read the certificate to track its expiry: {e}");
            }
        }
    }

    /// Observes the chain a TLS server presented (DER, leaf first).
    pub fn observe_der(&self, origin: &Origin, chain: &[impl AsRef<[u8]>], thresholds: Thresholds) {
        let parsed: Vec<CertInfo> = chain
            .iter()
            .filter_map(|der| CertInfo::from_der(der.as_ref()).ok())
            .collect();
        if !parsed.is_empty() {
            self.observe(origin, parsed, thresholds);
        }
    }

    /// Re-evaluates every certificate against the time now (states move as time
    /// passes).
    pub fn evaluate(&self) {
        let now = mcp_edge_tls::inspect::now();
        let mut changes = Vec::new();
        for tracked in self.lock().values_mut() {
            let level = Level::of(&tracked.cert, now, tracked.thresholds);
            if level != tracked.level {
                let was = Some(tracked.level);
                tracked.level = level;
                changes.push(Change {
                    tracked: tracked.clone(),
                    was,
                });
            }
        }
        self.report(changes);
    }

    fn report(&self, changes: Vec<Change>) {
        for change in changes {
            let t = &change.tracked;
            let now = mcp_edge_tls::inspect::now();
            let route = t.origin.route.as_deref().unwrap_or("-");
            let days = t.cert.days_left(now);
            let until = rfc3339(t.cert.not_after);
            match t.level {
                Level::Ok if change.was.is_none() => {}
                Level::Ok => {
                    tracing::info!(kind = t.origin.kind, route, from = %t.origin.from, subject = %t.cert.subject, "certificate ok again (valid until {until})");
                }
                Level::Warning => {
                    tracing::warn!(kind = t.origin.kind, route, from = %t.origin.from, subject = %t.cert.subject, days_left = days, "certificate expires in {days} days ({until}): warning");
                }
                Level::Critical => {
                    tracing::error!(kind = t.origin.kind, route, from = %t.origin.from, subject = %t.cert.subject, days_left = days, "certificate expires in {days} days ({until}): critical");
                }
                Level::Expired => {
                    tracing::error!(kind = t.origin.kind, route, from = %t.origin.from, subject = %t.cert.subject, "certificate expired on {until}");
                }
                Level::NotYetValid => {
                    tracing::error!(kind = t.origin.kind, route, from = %t.origin.from, subject = %t.cert.subject, "certificate not valid until {}: check the clock", rfc3339(t.cert.not_before));
                }
            }
            if let Some(changes) = &self.changes
                && !(t.level == Level::Ok && change.was.is_none())
            {
                let _ = changes.send(change);
            }
        }
    }

    /// Stops tracking a route's certificates (the route was removed); alerts about
    /// them are resolved.
    pub fn forget_route(&self, route: &str) {
        let mut changes = Vec::new();
        self.lock().retain(|(origin, _, _), tracked| {
            if origin.route.as_deref() != Some(route) {
                return true;
            }
            if tracked.level != Level::Ok {
                let mut gone = tracked.clone();
                gone.level = Level::Ok;
                changes.push(Change {
                    tracked: gone,
                    was: Some(tracked.level),
                });
            }
            false
        });
        self.report(changes);
    }

    /// Everything tracked.
    pub fn all(&self) -> Vec<Tracked> {
        self.lock().values().cloned().collect()
    }

    /// What is tracked for a route (`None`: the gateway's own).
    pub fn of_route(&self, route: Option<&str>) -> Vec<Tracked> {
        self.lock()
            .values()
            .filter(|t| t.origin.route.as_deref() == route)
            .cloned()
            .collect()
    }

    /// The worst state among a route's certificates (`None`: the gateway's own).
    pub fn worst(&self, route: Option<&str>) -> Level {
        self.lock()
            .values()
            .filter(|t| t.origin.route.as_deref() == route)
            .map(|t| t.level)
            .max()
            .unwrap_or(Level::Ok)
    }
}

/// Re-evaluates every minute, so that states move with time.
pub fn spawn_evaluation(watcher: &Arc<Watcher>) {
    let watcher = Arc::downgrade(watcher);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(watcher) = watcher.upgrade() else {
                return;
            };
            watcher.evaluate();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(not_before: i64, not_after: i64) -> CertInfo {
        CertInfo {
            subject: "CN=x".into(),
            issuer: "CN=ca".into(),
            common_name: Some("x".into()),
            sans: vec![],
            dns_sans: vec![],
            uri_sans: vec![],
            not_before,
            not_after,
            is_ca: false,
        }
    }

    #[test]
    fn levels_follow_the_thresholds_and_the_clock() {
        let day = 86_400;
        let t = Thresholds::default();
        let now = 1_000 * day;
        assert_eq!(
            Level::of(&cert(now - day, now + 40 * day), now, t),
            Level::Ok
        );
        assert_eq!(
            Level::of(&cert(now - day, now + 20 * day), now, t),
            Level::Warning
        );
        assert_eq!(
            Level::of(&cert(now - day, now + 5 * day), now, t),
            Level::Critical
        );
        assert_eq!(
            Level::of(&cert(now - 9 * day, now - day), now, t),
            Level::Expired
        );
        assert_eq!(
            Level::of(&cert(now + day, now + 90 * day), now, t),
            Level::NotYetValid
        );
        assert!(Level::Critical.is_severe() && !Level::Warning.is_severe());
    }

    #[tokio::test]
    async fn a_change_is_reported_once_and_a_rotation_resolves_it() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watcher = Watcher::new(Some(tx));
        let now = mcp_edge_tls::inspect::now();
        let origin = Origin {
            kind: "upstream",
            route: Some("r".into()),
            from: "a.example".into(),
        };
        let soon = cert(now - 86_400, now + 5 * 86_400);
        for _ in 0..3 {
            watcher.observe(&origin, vec![soon.clone()], Thresholds::default());
        }
        let first = rx.try_recv().unwrap();
        assert_eq!((first.tracked.level, first.was), (Level::Critical, None));
        assert!(rx.try_recv().is_err(), "reported once");
        assert_eq!(watcher.worst(Some("r")), Level::Critical);

        let renewed = cert(now - 86_400, now + 90 * 86_400);
        watcher.observe(&origin, vec![renewed], Thresholds::default());
        let resolved = rx.try_recv().unwrap();
        assert_eq!(
            (resolved.tracked.level, resolved.was),
            (Level::Ok, Some(Level::Critical))
        );
        assert!(rx.try_recv().is_err(), "a fresh ok certificate is not news");
        assert_eq!(watcher.worst(Some("r")), Level::Ok);
    }
}
