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
                        batch.into_iter().map(|c| {
                            let (key, alert) = alert(&c.tracked);
                            if c.tracked.level == Level::Ok {
                                active.remove(&key);
                            } else {
                                active.insert(key, alert.clone());
                            }
                            alert
                        }).collect::<Vec<_>>()
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
        Level::Ok => format!("certificate {} is fine again", t.cert.subject),
        _ => format!(
            "certificate {} expires in {} days ({})",
            t.cert.subject,
            t.cert.days_left(now),
            rfc3339(t.cert.not_after)
        ),
    };
    let mut alert = json!({
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
    if t.level == Level::Ok {
        alert["endsAt"] = json!(rfc3339(now));
    }
    (key, alert)
}
