//! Alerts to an Alertmanager-compatible API (`POST {webhook}` with the v2 alert list:
//! `labels`, `annotations`, `startsAt`, and `endsAt` once resolved). A failed POST is
//! retried with backoff (5 attempts); alerts still active are sent again every minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcp_edge_client::dial::Dialer;
use mcp_edge_client::pool::{Pool, read_bounded};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Change, Level, Tracked, rfc3339};

/// Where alerts go.
#[derive(Clone)]
pub struct Webhook {
    url: http::Uri,
    /// Connections to the receiver: mcp-edge's one outbound HTTP stack.
    pool: Arc<Pool>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

const ATTEMPTS: u32 = 5;
const RESEND: Duration = Duration::from_secs(60);

impl Webhook {
    /// A webhook at `url` (`http://` or `https://`, verified with the built-in roots).
    pub fn new(url: &str) -> Result<Webhook, String> {
        let url: http::Uri = url.parse().map_err(|e| format!("`{url}`: {e}"))?;
        let tls = match url.scheme_str() {
            Some("http") => None,
            Some("https") => Some(
                mcp_edge_tls::client_config(&mcp_edge_tls::ClientTls::default(), &[b"http/1.1"])
                    .map_err(|e| e.to_string())?,
            ),
            _ => return Err(format!("`{url}`: use http:// or https://")),
        };
        let dialer = Dialer::new(tls, None, None, Duration::from_secs(5));
        // No idle connection is kept: alerts are rare, and a kept one the receiver has
        // closed meanwhile would cost an attempt.
        let pool = Pool::new(dialer, url.clone(), 0, Duration::from_secs(90));
        Ok(Webhook { url, pool })
    }

    /// Sends every change, and every active alert again each minute, until the
    /// channel closes.
    pub fn spawn(self, mut changes: mpsc::UnboundedReceiver<Change>) {
        tokio::spawn(async move {
            let mut active: BTreeMap<String, Value> = BTreeMap::new();
            let mut resend = tokio::time::interval(RESEND);
            resend.tick().await;
            loop {
                let batch = tokio::select! {
                    change = changes.recv() => {
                        let Some(change) = change else { return };
                        let mut batch = vec![change];
                        while let Ok(more) = changes.try_recv() {
                            batch.push(more);
                        }
                        batch.iter().flat_map(|c| to_send(&mut active, c)).collect::<Vec<_>>()
                    }
                    _ = resend.tick() => active.values().cloned().collect(),
                };
                if !batch.is_empty() {
                    self.send(&Value::Array(batch)).await;
                }
            }
        });
    }

    async fn send(&self, alerts: &Value) {
        let body = alerts.to_string();
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match self.post(body.clone()).await {
                Ok(()) => return,
                Err(e) if attempt == ATTEMPTS => {
                    tracing::error!(webhook = %self.url, "could not deliver certificate alerts after {ATTEMPTS} attempts: {e}");
                }
                Err(e) => {
                    tracing::warn!(webhook = %self.url, attempt, "certificate alert not delivered, retrying: {e}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }

    async fn post(&self, body: String) -> Result<(), String> {
        let request = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Bytes::from(body))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(10), self.pool.request(request))
            .await
            .map_err(|_| "no answer within 10s".to_owned())?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // The receiver's answer is read and dropped, bounded: an endless one must not
        // hold the alert task.
        let _ = read_bounded(response.into_body(), 64 * 1024, Duration::from_secs(10)).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

/// What a change sends, given the alerts firing (which it updates).
///
/// Alertmanager knows an alert by its labels, so an alert ends by being sent again
/// with the labels it fired with and `endsAt`: a certificate back to `ok` ends the one
/// firing for it, and one that moves from `warning` to `critical` ends the warning as
/// the critical alert starts.
fn to_send(active: &mut BTreeMap<String, Value>, change: &Change) -> Vec<Value> {
    let (key, alert) = alert(&change.tracked);
    let ended = active
        .remove(&key)
        .filter(|firing| change.tracked.level == Level::Ok || firing["labels"] != alert["labels"]);
    let mut out: Vec<Value> = ended
        .into_iter()
        .map(|mut firing| {
            firing["endsAt"] = json!(rfc3339(mcp_edge_tls::inspect::now()));
            firing
        })
        .collect();
    if change.tracked.level != Level::Ok {
        active.insert(key, alert.clone());
        out.push(alert);
    }
    out
}

/// The Alertmanager alert for a certificate, and the key that identifies it.
fn alert(t: &Tracked) -> (String, Value) {
    let now = mcp_edge_tls::inspect::now();
    let severity = match t.level {
        Level::Warning => "warning",
        _ => "critical",
    };
    let route = t.origin.route.clone().unwrap_or_default();
    let key = format!(
        "{}|{route}|{}|{}",
        t.origin.kind, t.origin.from, t.cert.subject
    );
    let summary = match t.level {
        Level::Expired => format!(
            "certificate {} expired on {}",
            t.cert.subject,
            rfc3339(t.cert.not_after)
        ),
        Level::NotYetValid => format!(
            "certificate {} is not valid until {} (check the clock)",
            t.cert.subject,
            rfc3339(t.cert.not_before)
        ),
        _ => format!(
            "certificate {} expires in {} days ({})",
            t.cert.subject,
            t.cert.days_left(now),
            rfc3339(t.cert.not_after)
        ),
    };
    let alert = json!({
        "labels": {
            "alertname": "McpEdgeCertificateExpiry",
            "severity": severity,
            "state": t.level.as_str(),
            "kind": t.origin.kind,
            "route": route,
            "from": t.origin.from,
            "subject": t.cert.subject,
        },
        "annotations": {
            "summary": summary,
            "not_after": rfc3339(t.cert.not_after),
        },
        "startsAt": rfc3339(now),
    });
    (key, alert)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mcp_edge_tls::inspect::CertInfo;

    use super::*;
    use crate::{Origin, Thresholds};

    fn change(level: Level) -> Change {
        let now = mcp_edge_tls::inspect::now();
        Change {
            tracked: Tracked {
                origin: Origin {
                    kind: "listener",
                    route: None,
                    from: "/etc/mcp-edge/tls.crt".into(),
                },
                cert: CertInfo {
                    subject: "CN=edge".into(),
                    issuer: "CN=ca".into(),
                    common_name: Some("edge".into()),
                    sans: vec![],
                    dns_sans: vec![],
                    uri_sans: vec![],
                    not_before: now - 86_400,
                    not_after: now + 5 * 86_400,
                    is_ca: false,
                },
                level,
                thresholds: Thresholds {
                    warn: Duration::from_secs(30 * 86_400),
                    critical: Duration::from_secs(7 * 86_400),
                },
            },
            was: None,
        }
    }

    #[test]
    fn an_alert_ends_with_the_labels_it_fired_with() {
        let mut active = BTreeMap::new();
        let warning = to_send(&mut active, &change(Level::Warning));
        assert_eq!(warning.len(), 1);
        assert!(warning[0].get("endsAt").is_none(), "{warning:?}");

        // Warning to critical: the warning ends as the critical alert starts.
        let critical = to_send(&mut active, &change(Level::Critical));
        assert_eq!(critical.len(), 2, "{critical:?}");
        assert_eq!(critical[0]["labels"], warning[0]["labels"]);
        assert!(critical[0]["endsAt"].is_string());
        assert_eq!(critical[1]["labels"]["state"], "critical");
        assert!(critical[1].get("endsAt").is_none());

        // Rotated: the critical alert ends, with its own labels; nothing else is sent.
        let ok = to_send(&mut active, &change(Level::Ok));
        assert_eq!(ok.len(), 1, "{ok:?}");
        assert_eq!(ok[0]["labels"], critical[1]["labels"]);
        assert!(ok[0]["endsAt"].is_string());
        assert!(active.is_empty());
        // A certificate that was never alerted on sends nothing when it is fine.
        assert!(to_send(&mut active, &change(Level::Ok)).is_empty());
    }
}
