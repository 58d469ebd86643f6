//! Alerts to an Alertmanager-compatible API (`POST {webhook}` with the v2 alert list:
//! `labels`, `annotations`, `startsAt`, and `endsAt` once resolved). A failed POST is
//! retried with backoff (5 attempts); alerts still active are sent again every minute.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{Change, Level, Tracked, rfc3339};

/// Where alerts go.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: http::Uri,
    tls: Option<Arc<rustls::ClientConfig>>,
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
        Ok(Webhook { url, tls })
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
        let host = self
            .url
            .host()
            .ok_or("no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = self
            .url
            .port_u16()
            .unwrap_or(if self.tls.is_some() { 443 } else { 80 });
        let request = http::Request::post(self.url.clone())
            .header(
                http::header::HOST,
                self.url
                    .authority()
                    .map_or(host.clone(), ToString::to_string),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
        let status = match &self.tls {
            None => exchange(TokioIo::new(tcp), request).await?,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| e.to_string())?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                exchange(TokioIo::new(stream), request).await?
            }
        };
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

async fn exchange<T>(
    io: TokioIo<T>,
    request: http::Request<Full<Bytes>>,
) -> Result<http::StatusCode, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .map_err(|_| "no answer within 10s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let _ = response.into_body().collect().await;
    Ok(status)
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
