//! The status page in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (`tests/peers/status_page.mjs`). The broken route comes first and
//! says why, every route shows its boundary, state, breaker and certificate days, the
//! page refreshes in place when the gateway changes, a route's own page shows its
//! history and effective configuration without a secret, the page works with
//! JavaScript off, and nothing is loaded from anywhere else.
//!
//! Screenshots are kept in `target/test-artifacts/` (`status-page.png` and others).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Stdio;
use std::time::Duration;

use mcp_edge_tests::{Gateway, http, peer, repo_root, save_pem, scratch_dir, text};
use mcp_edge_tls::pki::{Ca, Validity};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

const SECRET: &str = "status-page-secret-5d1c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_puts_the_broken_route_first_refreshes_in_place_and_needs_no_javascript() {
    let dir = scratch_dir("status-page-pki");
    // A CA that expires in 20 days: `warning` under the default 30 days.
    let ca = Ca::new(
        "status page CA",
        Validity {
            from_days: -1,
            until_days: 20,
        },
    )
    .unwrap();
    let ca_file = save_pem(&dir, "ca", &ca.pem).0;
    let routes = format!(
        "[[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"partner\"\nurl = \"https://127.0.0.1:9/mcp\"\ntls = {{ ca = \"{ca_file}\" }}\n\
         auth = {{ bearer = {{ env = \"STATUS_PAGE_TOKEN\" }} }}\n"
    );
    let gw = Gateway::start_with_env("status-page", &routes, &[("STATUS_PAGE_TOKEN", SECRET)]);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for i in 0..20 {
        let r = mcp
            .call(
                "tools/call",
                json!({ "name": "demo__echo", "arguments": { "message": format!("m{i}") } }),
            )
            .await;
        assert_eq!(text(&r), format!("m{i}"));
    }
    mcp.error(
        "tools/call",
        json!({ "name": "partner__x", "arguments": {} }),
    )
    .await;
    let health: Value = http(gw.admin, "GET", "/health", &[], b"").await.json();

    let shots = repo_root().join("target/test-artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    let script = repo_root().join("tests/peers/status_page.mjs");
    peer("node/node_modules/playwright-core/package.json");
    let mut browser = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{}", gw.admin))
        .arg(&shots)
        .arg("partner")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (tests/peers/install installs playwright-core; tests/peers/install-debian installs chromium)");
    let mut lines = BufReader::new(browser.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the browser loaded the page within 60 s")
        .unwrap();
    assert_eq!(first.as_deref(), Some("loaded"), "{first:?}");

    // Two more sessions, while the page is open.
    for _ in 0..2 {
        gw.client("/mcp").initialize().await;
    }
    let mut stdin = browser.stdin.take().unwrap();
    stdin.write_all(b"changed\n").await.unwrap();
    // Then the gateway stops, with its pages open in the browser.
    let stop = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("the browser asked for the gateway to stop within 90 s")
        .unwrap();
    assert_eq!(stop.as_deref(), Some("stop"), "{stop:?}");
    drop(gw);
    stdin.write_all(b"stopped\n").await.unwrap();
    drop(stdin);
    let report = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("the browser finished within 90 s")
        .unwrap()
        .expect("the browser printed its report");
    let _ = tokio::time::timeout(Duration::from_secs(10), browser.wait()).await;
    let seen: Value = serde_json::from_str(&report).unwrap_or_else(|e| panic!("{e}: {report}"));

    assert_eq!(seen["errors"], json!([]), "{seen:#}");
    assert_eq!(
        seen["foreign"],
        json!([]),
        "nothing from elsewhere: {seen:#}"
    );

    // The broken route first, then the healthy one; each row as /health has it.
    let rows = seen["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r[1].as_str().unwrap()).collect();
    assert_eq!(names, ["partner", "demo"], "{seen:#}");
    for row in rows {
        let route = health["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == row[1])
            .unwrap();
        assert_eq!(row[0], route["status"], "{row}");
        assert_eq!(row[2], route["boundary"], "{row}");
        assert_eq!(row[4], route["breaker"]["state"], "{row}");
    }
    assert_eq!(rows[0][0], "down");
    let days = health["routes"][1]["certificates"][0]["days_left"]
        .as_i64()
        .or_else(|| health["routes"][0]["certificates"][0]["days_left"].as_i64())
        .unwrap();
    assert!((18..=20).contains(&days), "{health:#}");
    // The days the page shows (its own clock, moments later than /health's).
    let shown: i64 = rows[0][8]
        .as_str()
        .unwrap()
        .split(" d")
        .next()
        .and_then(|d| d.trim().parse().ok())
        .unwrap_or_else(|| panic!("no days on the partner route: {rows:?}"));
    assert!(
        (days - shown).abs() <= 1 && (18..=20).contains(&shown),
        "the partner route's certificate days: {shown}, /health said {days}: {rows:?}"
    );
    assert!(
        rows[0][10].as_str().unwrap().contains("127.0.0.1:9"),
        "the last error says what failed: {rows:?}"
    );
    let banner = seen["banner"].as_str().unwrap();
    assert!(
        banner.contains("degraded") && banner.contains("1 down") && banner.contains("partner"),
        "{banner}"
    );
    assert!(seen["charts"].as_u64().unwrap() >= 2, "{seen:#}");

    // Refreshed in place: the same document, no navigation, the new sessions shown.
    assert_eq!(seen["sameDocument"], true, "{seen:#}");
    assert_eq!(seen["navigations"], 1, "{seen:#}");
    assert!(seen["refreshes"].as_u64().unwrap() >= 1, "{seen:#}");
    assert!(
        seen["sessionsBefore"]
            .as_str()
            .unwrap()
            .starts_with("1 sessions"),
        "{seen:#}"
    );
    assert!(
        seen["sessionsAfter"]
            .as_str()
            .unwrap()
            .starts_with("3 sessions"),
        "{seen:#}"
    );

    // The route's own page: history, errors, certificates, configuration, no secret.
    let detail = seen["detail"].as_str().unwrap();
    for part in [
        "Last 15 minutes",
        "Breaker history",
        "Recent errors",
        "status page CA",
        "Effective configuration",
        "policies.retry.attempts",
        "auth.bearer",
        "STATUS_PAGE_TOKEN",
        "value hidden",
    ] {
        assert!(detail.contains(part), "{part} missing from:\n{detail}");
    }
    assert!(!detail.contains(SECRET), "{detail}");

    // The gateway gone: the open page says so and keeps what it showed.
    assert_eq!(seen["staleShown"], true, "{seen:#}");
    assert!(
        seen["staleText"]
            .as_str()
            .unwrap()
            .contains("The gateway does not answer"),
        "{seen:#}"
    );
    assert_eq!(seen["keptDetail"], true, "{seen:#}");

    // JavaScript off: the same rows, and the page refreshes itself.
    assert_eq!(seen["noScriptRows"].as_array().unwrap().len(), rows.len());
    assert_eq!(seen["noScriptRows"][0][1], "partner");
    assert_eq!(seen["noScriptMeta"], json!(["5"]), "{seen:#}");

    for shot in [
        "status-page.png",
        "status-route.png",
        "status-page-no-js.png",
    ] {
        let size = std::fs::metadata(shots.join(shot)).unwrap().len();
        assert!(size > 10_000, "{shot}: {size} bytes");
    }
    std::fs::remove_dir_all(dir).ok();
}
