//! Certificate-expiry alerting through a real gateway, with certificates the test
//! makes: a tool server (FastMCP over HTTPS) and the gateway's own listener, both with
//! five days left, show critical in /health and /metrics, are logged once and reach a
//! local Alertmanager-style receiver; a rotated listener certificate is served to a new
//! client while a connection opened before keeps working.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use mcp_edge_tests::{
    Gateway, ServerProc, http, json_receiver, peer, save_pem, scratch_dir, tls_connect,
};
use mcp_edge_tls::pki::{Ca, Validity};
use serde_json::Value;

fn alerts_with(got: &Mutex<Vec<Value>>, kind: &str, state: &str) -> usize {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|batch| batch.as_array().cloned().unwrap_or_default())
        .filter(|a| a["labels"]["kind"] == kind && a["labels"]["state"] == state)
        .count()
}

/// The `not_after` of the certificate the gateway's TLS listener presents now, and a
/// connection on which HTTP/1.1 requests can still be sent.
async fn connect(
    port: u16,
    ca: &str,
) -> (i64, hyper::client::conn::http1::SendRequest<Full<Bytes>>) {
    let tls = tls_connect(port, ca, None, &[b"http/1.1"]).await;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let not_after = mcp_edge_tls::CertInfo::from_der(&leaf).unwrap().not_after;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(connection);
    (not_after, sender)
}

async fn still_answers(sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>) -> u16 {
    let request = hyper::Request::get("/mcp")
        .header("host", "localhost")
        .header("accept", "text/event-stream")
        .body(Full::new(Bytes::new()))
        .unwrap();
    sender
        .send_request(request)
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn health(gw: &Gateway) -> Value {
    http(gw.admin, "GET", "/health", &[], b"").await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_near_expiry_are_critical_alerted_once_and_rotated_without_a_restart() {
    let dir = scratch_dir("certs-expiry-files");
    let ca = Ca::new("expiry CA", Validity::days(365)).unwrap();
    let ca_file = save_pem(&dir, "ca", &ca.pem).0;
    let five_days = Validity {
        from_days: -1,
        until_days: 5,
    };
    let names = vec!["localhost".to_owned()];
    let upstream = save_pem(&dir, "upstream", &ca.server(&names, five_days).unwrap());
    let listener = save_pem(&dir, "listener", &ca.server(&names, five_days).unwrap());
    let (webhook_port, alerts) = json_receiver("/api/v2/alerts").await;

    let server = ServerProc::start(
        &peer("py1/bin/python"),
        &[
            "tests/peers/fastmcp_server.py",
            "--http",
            "0",
            "--tls-cert",
            &upstream.0,
            "--tls-key",
            &upstream.1,
        ],
        &[],
    );
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         tls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [alerts]\nwebhook = \"http://127.0.0.1:{webhook_port}/api/v2/alerts\"\n\n\
         [[route]]\nname = \"partner\"\nurl = \"https://localhost:{}/mcp\"\ntls = {{ ca = \"{ca_file}\" }}\n\
         cert_expiry = {{ warn = \"30d\", critical = \"7d\" }}\n",
        listener.0, listener.1, server.port
    );
    let gw = Gateway::start("certs-expiry", &routes);

    // /health: the tool server's leaf (seen at the handshake) and the listener's own
    // certificate are critical; the route is degraded.
    let h = health(&gw).await;
    let route = h["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "partner")
        .unwrap();
    let upstream_certs: Vec<&Value> = route["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "upstream")
        .collect();
    assert!(!upstream_certs.is_empty(), "{route:#}");
    let leaf = upstream_certs
        .iter()
        .find(|c| c["subject"].as_str().unwrap().contains("localhost"))
        .unwrap();
    assert_eq!(leaf["state"], "critical", "{leaf}");
    assert!(matches!(leaf["days_left"].as_i64(), Some(3..=5)), "{leaf}");
    assert_eq!(route["status"], "degraded", "{route:#}");
    let own = h["certificates"].as_array().unwrap();
    assert!(
        own.iter()
            .any(|c| c["kind"] == "listener" && c["state"] == "critical"),
        "{h:#}"
    );
    assert_eq!(h["status"], "degraded");
    // /readyz is unaffected unless configured.
    assert_eq!(http(gw.admin, "GET", "/readyz", &[], b"").await.status, 200);

    let metrics = String::from_utf8(
        http(gw.admin, "GET", "/metrics", &[], b"")
            .await
            .body
            .to_vec(),
    )
    .unwrap();
    assert!(
        metrics.lines().any(|l| l.starts_with(
            "mcp_edge_certificate_state{kind=\"upstream\",route=\"partner\",from=\"localhost\""
        ) && l.contains("state=\"critical\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("mcp_edge_certificate_expiry_timestamp_seconds{kind=\"listener\""),
        "{metrics}"
    );

    // The webhook got both; more handshakes add no new alert or log line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while alerts_with(&alerts, "upstream", "critical") == 0
        || alerts_with(&alerts, "listener", "critical") == 0
    {
        assert!(
            Instant::now() < deadline,
            "no alerts: {:?}",
            alerts.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.wait_log("certificate expires in", Duration::from_secs(5))
        .await;
    let logs = gw.logs();
    let logged = logs
        .lines()
        .filter(|l| {
            l.contains("critical")
                && l.contains("from=localhost")
                && l.contains("certificate expires in")
        })
        .count();
    assert_eq!(logged, 1, "logged once:\n{logs}");

    // Rotation: a connection opened now keeps working after the files change, and a
    // new client gets the new certificate.
    let (old_not_after, mut old_connection) = connect(gw.addr.port(), &ca_file).await;
    let renewed = ca.server(&names, Validity::days(90)).unwrap();
    std::fs::write(&listener.1, &renewed.key).unwrap();
    std::fs::write(&listener.0, &renewed.cert).unwrap();
    gw.wait_log("listener certificate rotated", Duration::from_secs(10))
        .await;
    let (new_not_after, _) = connect(gw.addr.port(), &ca_file).await;
    assert!(
        new_not_after > old_not_after + 80 * 86_400,
        "the new client sees the new certificate"
    );
    assert!(
        still_answers(&mut old_connection).await >= 200,
        "the old connection keeps working"
    );
    let h = health(&gw).await;
    assert!(
        h["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["kind"] == "listener" && c["state"] == "ok"),
        "{h:#}"
    );
    // The resolution is the firing alert again, same labels, with `endsAt`: that is
    // how Alertmanager knows which alert ended.
    let ended = |alerts: &Mutex<Vec<Value>>| {
        alerts
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| b.as_array().cloned().unwrap_or_default())
            .find(|a| {
                a["labels"]["kind"] == "listener"
                    && a["labels"]["state"] == "critical"
                    && a["endsAt"].is_string()
            })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while ended(&alerts).is_none() {
        assert!(
            Instant::now() < deadline,
            "no resolution sent: {:?}",
            alerts.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::remove_dir_all(dir).ok();
}
