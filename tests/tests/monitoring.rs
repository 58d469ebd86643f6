//! The Prometheus rules shipped in `deploy/monitoring/`, checked with the real
//! `promtool` (Debian's `prometheus` package, installed by `tests/peers/install-debian`):
//! they load, their unit tests pass, and every alert has a unit test and a runbook line.
//! Then the real servers, started on loopback: Prometheus scrapes a running mcp-edge
//! under a short load and every expression of the rules and the Grafana dashboard
//! returns data; certwatch's alerts reach Alertmanager (`prometheus-alertmanager`) with
//! their labels and annotations, and resolve there when the certificate is rotated.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, http, peer, save_pem};
use mcp_edge_tls::pki::{Ca, Validity};
use serde_json::{Value, json};

fn monitoring() -> PathBuf {
    mcp_edge_tests::repo_root().join("deploy/monitoring")
}

/// Runs promtool in deploy/monitoring; its output on failure.
fn promtool(args: &[&str]) -> Result<String, String> {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(monitoring())
        .output()
        .map_err(|e| {
            format!("promtool did not run ({e}): run tests/peers/install-debian (apt-get install prometheus)")
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn the_rules_load_and_their_unit_tests_pass() {
    let checked =
        promtool(&["check", "rules", "mcp-edge.rules.yaml"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested =
        promtool(&["test", "rules", "mcp-edge.rules.test.yaml"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn every_alert_has_a_unit_test_and_a_runbook() {
    let rules = std::fs::read_to_string(monitoring().join("mcp-edge.rules.yaml")).unwrap();
    let tests = std::fs::read_to_string(monitoring().join("mcp-edge.rules.test.yaml")).unwrap();
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 7, "{alerts:?}");
    for alert in &alerts {
        assert!(
            tests.contains(&format!(
                "alertname: {alert}\n        exp_alerts:\n          - exp_labels:"
            )),
            "no unit test sees {alert} fire"
        );
    }
    let runbooks = rules.matches("\n          runbook: ").count();
    assert_eq!(runbooks, alerts.len(), "every alert needs a runbook line");
}

// ---------- a real Prometheus and a real Alertmanager ----------

/// A port free now, for a program that cannot be told to pick one and say which.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed when dropped.
struct Proc(std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(program: &str, args: &[String], package: &str) -> Proc {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} did not start ({e}): run tests/peers/install-debian (apt-get install {package})")
        });
    Proc(child)
}

/// Waits until `GET path` on `port` answers 200.
async fn wait_ready(port: u16, path: &str, what: &str) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .is_ok_and(|c| c.is_ok());
        if ok && http(addr, "GET", path, &[], b"").await.status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{what} not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query against Prometheus' HTTP API: its result vector.
async fn query(port: u16, expr: &str) -> Vec<Value> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let body = format!("query={}", form(expr));
    let resp = http(
        addr,
        "POST",
        "/api/v1/query",
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await;
    let answer = resp.json();
    assert_eq!(answer["status"], "success", "{expr}: {answer}");
    match &answer["data"]["result"] {
        Value::Array(v) => v.clone(),
        // A scalar (`time()`, `vector(0)` folded): data all the same.
        other => vec![other.clone()],
    }
}

/// A YAML file as JSON, read with PyYAML from the peers' Python.
fn yaml(path: &Path) -> Value {
    let out = Command::new(peer("py1/bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every PromQL expression shipped: each rule's, and each dashboard panel's with the
/// dashboard's variables set to "every route" and a one-minute window.
fn shipped_expressions() -> Vec<(String, String)> {
    let rules = yaml(&monitoring().join("mcp-edge.rules.yaml"));
    let mut out = Vec::new();
    for group in rules["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().or(rule["record"].as_str()).unwrap();
            out.push((name.to_owned(), rule["expr"].as_str().unwrap().to_owned()));
        }
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m")
                .replace("$__interval", "15s")
                .replace("$route", ".*");
            out.push((format!("panel {:?}", panel["title"]), expr));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_mcp_edge_and_every_shipped_expression_has_data() {
    let dir = mcp_edge_tests::scratch_dir("monitoring-prometheus-files");
    // Two certificates in play: one expired, one expiring in 20 days.
    let expired = Ca::new(
        "expired CA",
        Validity {
            from_days: -30,
            until_days: -1,
        },
    )
    .unwrap();
    let soon = Ca::new(
        "soon CA",
        Validity {
            from_days: -1,
            until_days: 20,
        },
    )
    .unwrap();
    let expired_file = save_pem(&dir, "expired", &expired.pem).0;
    let soon_file = save_pem(&dir, "soon", &soon.pem).0;
    // `demo` answers; `limited` refuses past one call a second; `flaky` has no tool
    // server: its retries are refused by a zero budget, and its breaker opens for long.
    let routes = format!(
        "[[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"limited\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\
         rate_limit = {{ per_second = 1, burst = 1 }}\n\n\
         [[route]]\nname = \"flaky\"\nurl = \"https://127.0.0.1:9/mcp\"\ntls = {{ ca = \"{expired_file}\" }}\n\
         retry = {{ attempts = 3, budget = 0.0, min_per_second = 0 }}\n\
         breaker = {{ consecutive_failures = 3, open_for = \"10m\", max_open_for = \"1h\" }}\n\n\
         [[route]]\nname = \"partner\"\nurl = \"https://127.0.0.1:9/mcp\"\ntls = {{ ca = \"{soon_file}\" }}\n"
    );
    let gw = Gateway::start("monitoring-prometheus", &routes);

    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: mcp-edge\n    static_configs:\n      - targets: ['{}']\n",
            monitoring().join("mcp-edge.rules.yaml").display(),
            gw.admin
        ),
    )
    .unwrap();
    let _prometheus = start(
        "prometheus",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        "prometheus",
    );
    wait_ready(port, "/-/ready", "prometheus").await;
    // The first scrape, before the load: rates need a sample on each side.
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(port, "up{job=\"mcp-edge\"} == 1").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "prometheus never scraped mcp-edge"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A short load: answered calls, 400 refused by the rate limit (more than one a
    // second over five minutes), and failures on the dead route.
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let echo =
        |route: &str| json!({ "name": format!("{route}__echo"), "arguments": { "message": "m" } });
    for _ in 0..30 {
        mcp.rpc("tools/call", echo("demo")).await;
    }
    for _ in 0..400 {
        mcp.rpc("tools/call", echo("limited")).await;
    }
    for _ in 0..6 {
        mcp.rpc("tools/call", echo("flaky")).await;
        mcp.rpc("tools/call", echo("partner")).await;
    }
    // Scrapes and rule evaluations see it.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let no_replica = "McpEdgeNoReadyReplica";
    let mut empty = Vec::new();
    let expressions = shipped_expressions();
    assert!(expressions.len() >= 35, "{expressions:?}");
    for (name, expr) in expressions {
        if name == no_replica {
            assert!(
                query(port, &expr).await.is_empty(),
                "{name} while ready: {expr}"
            );
            continue;
        }
        if query(port, &expr).await.is_empty() {
            empty.push(format!("{name}: {expr}"));
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));

    // No replica: once mcp-edge is gone, the last alert's expression has data too.
    drop(gw);
    let expr = shipped_expressions()
        .into_iter()
        .find(|(name, _)| name == no_replica)
        .unwrap()
        .1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(port, &expr).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{no_replica} never had data: {expr}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Alertmanager's alerts (API v2) from mcp-edge's certificate watch.
async fn certificate_alerts(port: u16) -> Vec<Value> {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let alerts = http(addr, "GET", "/api/v2/alerts", &[], b"").await.json();
    alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "McpEdgeCertificateExpiry")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_alerts_reach_alertmanager_and_resolve_when_the_certificate_is_rotated() {
    let dir = mcp_edge_tests::scratch_dir("monitoring-alertmanager-files");
    let port = free_port();
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: log\n  group_wait: 1s\nreceivers:\n  - name: log\n",
    )
    .unwrap();
    let _alertmanager = start(
        "prometheus-alertmanager",
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            // One instance: no gossip port.
            "--cluster.listen-address=".to_owned(),
        ],
        "prometheus-alertmanager",
    );
    wait_ready(port, "/-/ready", "alertmanager").await;

    // The listener's certificate expires in five days: critical.
    let ca = Ca::new("alerting CA", Validity::days(365)).unwrap();
    let names = vec!["localhost".to_owned()];
    let five_days = Validity {
        from_days: -1,
        until_days: 5,
    };
    let (cert, key) = save_pem(&dir, "listener", &ca.server(&names, five_days).unwrap());
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\
         tls = {{ cert = \"{cert}\", key = \"{key}\" }}\n\n\
         [alerts]\nwebhook = \"http://127.0.0.1:{port}/api/v2/alerts\"\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n"
    );
    let gw = Gateway::start("monitoring-alertmanager", &routes);

    let deadline = Instant::now() + Duration::from_secs(30);
    let alert = loop {
        if let Some(alert) = certificate_alerts(port)
            .await
            .into_iter()
            .find(|a| a["labels"]["kind"] == "listener")
        {
            break alert;
        }
        assert!(Instant::now() < deadline, "no alert reached Alertmanager");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(alert["status"]["state"], "active", "{alert:#}");
    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "critical", "{alert:#}");
    assert_eq!(labels["state"], "critical", "{alert:#}");
    assert_eq!(labels["from"], cert.as_str(), "{alert:#}");
    assert!(
        labels["subject"].as_str().unwrap().contains("localhost"),
        "{alert:#}"
    );
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("expires in"), "{alert:#}");
    assert!(alert["annotations"]["not_after"].is_string(), "{alert:#}");

    // Rotated: the alert resolves in Alertmanager (it lists only unresolved alerts).
    let renewed = ca.server(&names, Validity::days(90)).unwrap();
    std::fs::write(&key, &renewed.key).unwrap();
    std::fs::write(&cert, &renewed.cert).unwrap();
    gw.wait_log("listener certificate rotated", Duration::from_secs(10))
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while certificate_alerts(port)
        .await
        .iter()
        .any(|a| a["labels"]["kind"] == "listener")
    {
        assert!(
            Instant::now() < deadline,
            "still active after the rotation: {:#?}",
            certificate_alerts(port).await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(gw);
    std::fs::remove_dir_all(dir).ok();
}
