//! The admin listener of a real gateway: liveness, readiness gated on required routes,
//! `/health` and `/metrics` after real calls, the status page, `mcp-edge health` as a
//! probe, active probing that finds a dead tool server before any call does, and no
//! secret anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, Mcp, ServerProc, http, mcp_edge, peer, text};
use serde_json::{Value, json};

const SECRET: &str = "s3cret-upstream-token-93f1";

async fn get(gw: &Gateway, path: &str) -> (u16, String) {
    let resp = http(gw.admin, "GET", path, &[], b"").await;
    (
        resp.status,
        String::from_utf8_lossy(&resp.body).into_owned(),
    )
}

async fn health(gw: &Gateway) -> Value {
    let (status, body) = get(gw, "/health").await;
    assert_eq!(status, 200);
    serde_json::from_str(&body).unwrap()
}

fn route<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {health:#}"))
}

/// `n` calls of the demo route's `echo`, each answered with its own message.
async fn echo_calls(mcp: &mut Mcp, n: usize) {
    for i in 0..n {
        let r = mcp
            .call(
                "tools/call",
                json!({ "name": "demo__echo", "arguments": { "message": format!("m{i}") } }),
            )
            .await;
        assert_eq!(text(&r), format!("m{i}"));
    }
}

fn health_cli(gw: &Gateway) -> (i32, String) {
    let out = Command::new(mcp_edge())
        .args(["health", "--url", &format!("http://{}/health", gw.admin)])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_status_page_describe_every_route_without_secrets() {
    let routes = format!(
        "[[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\nrequired = true\n\n\
         [[route]]\nname = \"gone\"\nurl = \"http://127.0.0.1:9/mcp?api_key={SECRET}\"\nauth = {{ bearer = {{ env = \"OPS_UPSTREAM_TOKEN\" }} }}\n"
    );
    let gw = Gateway::start_with_env("ops-health", &routes, &[("OPS_UPSTREAM_TOKEN", SECRET)]);
    assert_eq!(get(&gw, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(&gw, "/readyz").await.0, 200, "the required route is up");

    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    echo_calls(&mut mcp, 5).await;
    mcp.error("tools/call", json!({ "name": "gone__x", "arguments": {} }))
        .await;

    let h = health(&gw).await;
    assert_eq!(h["status"], "degraded", "one route up, one down: {h:#}");
    assert!(
        h["config"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(h["uptime_seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(h["sessions"], 1);
    let demo = route(&h, "demo");
    assert_eq!(demo["status"], "healthy");
    assert_eq!(demo["boundary"], "host");
    assert_eq!(demo["transport"], "stdio");
    assert_eq!(demo["breaker"]["state"], "closed");
    assert!(demo["pid"].as_u64().is_some(), "{demo}");
    assert_eq!(demo["in_flight"], 0);
    assert!(demo["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{demo}");
    let gone = route(&h, "gone");
    assert_eq!(gone["status"], "down");
    assert!(
        gone["last_error"]["message"]
            .as_str()
            .unwrap()
            .contains("cannot connect to 127.0.0.1:9"),
        "{gone}"
    );
    assert_eq!(
        gone["endpoint"],
        "http://127.0.0.1:9/mcp?api_key=<redacted>"
    );

    let (status, metrics) = get(&gw, "/metrics").await;
    assert_eq!(status, 200);
    for expected in [
        "mcp_edge_calls_total{route=\"demo\",method=\"tools/call\",outcome=\"ok\"} 5",
        "mcp_edge_call_duration_seconds_count{route=\"demo\",method=\"tools/call\"} 5",
        "mcp_edge_route_up{route=\"demo\"} 1",
        "mcp_edge_route_up{route=\"gone\"} 0",
        "mcp_edge_breaker_state{route=\"demo\"} 0",
        "# TYPE mcp_edge_call_duration_seconds histogram",
        "mcp_edge_sessions 1",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing from\n{metrics}"
        );
    }
    assert!(
        metrics.contains("mcp_edge_calls_total{route=\"gone\",method=\"tools/call\",outcome=\"upstream_unavailable\"}")
            || metrics.contains("outcome=\"circuit_open\""),
        "{metrics}"
    );
    // Every sample line is `name{labels} value` or `name value`.
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(
            value.parse::<f64>().is_ok() || value == "NaN",
            "bad sample: {line}"
        );
    }

    let (status, page) = get(&gw, "/").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("<a href=\"/routes/demo\">demo</a>") && page.contains("healthy"),
        "{page}"
    );
    // Each route's own page, whose effective configuration names the bearer token's
    // source and the endpoint, redacted.
    let (status, gone_page) = get(&gw, "/routes/gone").await;
    assert_eq!(status, 200);
    assert!(gone_page.contains("OPS_UPSTREAM_TOKEN"), "{gone_page}");
    assert_eq!(get(&gw, "/routes/nothing").await.0, 404);

    for (what, body) in [
        ("/health", h.to_string()),
        ("/metrics", metrics),
        ("/", page),
        ("/routes/gone", gone_page),
        ("log", gw.logs()),
    ] {
        assert!(!body.contains(SECRET), "the secret leaked into {what}");
    }

    let (code, table) = health_cli(&gw);
    assert_eq!(code, 1, "not healthy: {table}");
    assert!(
        table.contains("demo") && table.contains("healthy") && table.contains("down"),
        "{table}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_required_routes_and_the_cli_exit_code_follows_health() {
    let gw = Gateway::start(
        "ops-ready",
        "[[route]]\nname = \"needed\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\", \"--exit-at-start\", \"3\"]\nrequired = true\n",
    );
    let (status, body) = get(&gw, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("required route `needed` is down"), "{body}");
    assert_eq!(get(&gw, "/healthz").await.0, 200, "alive all the same");
    let (code, table) = health_cli(&gw);
    assert_eq!(code, 1, "{table}");

    let fine = Gateway::start(
        "ops-ready-fine",
        "[[route]]\nname = \"fine\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\nrequired = true\n",
    );
    let (code, table) = health_cli(&fine);
    assert_eq!(code, 0, "{table}");
    assert!(table.contains("is healthy"), "{table}");

    drop(fine);
    let out = Command::new(mcp_edge())
        .args(["health", "--url", "http://127.0.0.1:9/health"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "unreachable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_probes_find_a_dead_tool_server_before_any_call() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let gw = Gateway::start(
        "ops-probe",
        &format!(
            "[[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\nprobe_interval = \"1s\"\n",
            server.port
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&gw).await;
        if route(&h, "fast")["probe"]["ok"] == true {
            assert_eq!(route(&h, "fast")["status"], "healthy");
            break;
        }
        assert!(Instant::now() < deadline, "no successful probe: {h:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&gw).await;
        let fast = route(&h, "fast");
        if fast["probe"]["ok"] == false {
            assert_ne!(fast["status"], "healthy", "{fast}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dead server went unnoticed: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.wait_log("probe failed", Duration::from_secs(2)).await;
    let (_, metrics) = get(&gw, "/metrics").await;
    assert!(
        metrics.contains("mcp_edge_probe_success{route=\"fast\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_unchanged_routes_drains_removed_ones_and_refuses_bad_files() {
    let demo = |name: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\ncommand = [\"{}\", \"demo-tools\", \"--stdio\"]\n\n",
            mcp_edge().display()
        )
    };
    let head =
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n";
    let gw = Gateway::start(
        "ops-reload",
        &format!("{head}{}{}", demo("keep"), demo("old")),
    );
    let pid_of = |h: &Value, name: &str| route(h, name)["pid"].as_u64().unwrap();
    let keep_pid = pid_of(&health(&gw).await, "keep");
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;

    // A call in flight on the route about to be removed.
    let mut slow_client = gw.client("/mcp");
    slow_client.initialize().await;
    let slow = tokio::spawn(async move {
        slow_client
            .call(
                "tools/call",
                json!({ "name": "old__slow", "arguments": { "seconds": 1.5, "steps": 1 } }),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // `keep` moves down the file (a comment above it) but is unchanged; `old` goes;
    // `new` comes. The file watcher notices.
    let moved = format!("{head}# moved\n{}{}", demo("keep"), demo("new"));
    std::fs::write(gw.dir.join("routes.toml"), moved).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let h = loop {
        let h = health(&gw).await;
        if h["config"]["last_reload"]["result"] == "ok" {
            break h;
        }
        assert!(Instant::now() < deadline, "no reload: {h:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reload = &h["config"]["last_reload"];
    assert_eq!(reload["added"], json!(["new"]), "{reload}");
    assert_eq!(reload["removed"], json!(["old"]), "{reload}");
    assert_eq!(reload["kept"], 1, "{reload}");
    assert_eq!(
        pid_of(&h, "keep"),
        keep_pid,
        "the unchanged route kept its child"
    );

    // The call in flight on the removed route finished: nothing was lost.
    let result = slow.await.unwrap();
    assert!(text(&result).starts_with("done"), "{result}");
    // The same session sees the new table.
    let names = mcp.tool_names().await;
    assert!(names.iter().any(|n| n.starts_with("new__")), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("old__")), "{names:?}");
    let r = mcp
        .call(
            "tools/call",
            json!({ "name": "new__echo", "arguments": { "message": "fresh" } }),
        )
        .await;
    assert_eq!(text(&r), "fresh");
    gw.wait_log("drained after a reload", Duration::from_secs(5))
        .await;

    // A bad file is refused with check's diagnostics; everything keeps serving.
    std::fs::write(
        gw.dir.join("routes.toml"),
        format!(
            "{head}{}[[route]]\nname = \"broken\"\nurl = \"ftp://x\"\n",
            demo("keep")
        ),
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let h = loop {
        let h = health(&gw).await;
        if h["config"]["last_reload"]["result"] == "error" {
            break h;
        }
        assert!(Instant::now() < deadline, "no refusal: {h:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let errors = h["config"]["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("routes.toml:") && errors.contains("scheme `ftp` is not supported"),
        "{errors}"
    );
    let r = mcp
        .call(
            "tools/call",
            json!({ "name": "new__echo", "arguments": { "message": "still" } }),
        )
        .await;
    assert_eq!(text(&r), "still", "the running configuration keeps serving");
    let (_, metrics) = get(&gw, "/metrics").await;
    assert!(
        metrics.contains("mcp_edge_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mcp_edge_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_under_load_agree_with_the_calls_made() {
    let gw = Gateway::start(
        "ops-load",
        "[[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\nrate_limit = { per_second = 100000 }\n",
    );
    let clients = 8;
    let per_client = 40;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut mcp = gw.client("/mcp");
        tasks.push(tokio::spawn(async move {
            mcp.initialize().await;
            for i in 0..per_client {
                if i % 10 == 0 {
                    // A tool error: the tool server answers, with isError.
                    mcp.call("tools/call", json!({ "name": "demo__fail", "arguments": {} })).await;
                } else {
                    let r = mcp
                        .call("tools/call", json!({ "name": "demo__echo", "arguments": { "message": format!("{c}-{i}") } }))
                        .await;
                    assert_eq!(text(&r), format!("{c}-{i}"));
                }
            }
        }));
    }
    // Scrape while the load runs: every page answers.
    let scraper = {
        let admin = gw.admin;
        tokio::spawn(async move {
            for _ in 0..20 {
                for path in ["/health", "/metrics", "/"] {
                    assert_eq!(http(admin, "GET", path, &[], b"").await.status, 200);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    for task in tasks {
        task.await.unwrap();
    }
    scraper.await.unwrap();
    let total = clients * per_client;
    let (_, metrics) = get(&gw, "/metrics").await;
    let sample = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix} in\n{metrics}"))
    };
    assert_eq!(
        sample("mcp_edge_calls_total{route=\"demo\",method=\"tools/call\",outcome=\"ok\"}"),
        total as u64,
        "a tool's isError result is an answered call"
    );
    assert_eq!(
        sample("mcp_edge_call_duration_seconds_count{route=\"demo\",method=\"tools/call\"}"),
        total as u64
    );
    // Label order is the encoder's (`le` first in OpenMetrics from prometheus-client).
    let inf = metrics
        .lines()
        .find(|l| {
            l.starts_with("mcp_edge_call_duration_seconds_bucket{")
                && l.contains("route=\"demo\"")
                && l.contains("method=\"tools/call\"")
                && l.contains("le=\"+Inf\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(inf, Some(total as u64), "{metrics}");
    assert_eq!(sample("mcp_edge_calls_in_flight{route=\"demo\"}"), 0);
    assert_eq!(sample("mcp_edge_sessions"), clients as u64);
    let h = health(&gw).await;
    let demo = route(&h, "demo");
    assert_eq!(demo["status"], "healthy");
    assert_eq!(demo["in_flight"], 0);
    let (p50, p99) = (
        demo["latency"]["p50_ms"].as_f64().unwrap(),
        demo["latency"]["p99_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p99 >= p50, "{demo}");
    let (_, page) = get(&gw, "/").await;
    assert!(page.contains(&format!("{clients} sessions")), "{page}");
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_polling_answers_calls_spins_after_them_and_sleeps_when_idle() {
    let gw = Gateway::start(
        "ops-busy-poll",
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\nworkers = 1\nbusy_poll = \"2ms\"\n\n[[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
    );
    let spins = async || -> u64 {
        let (_, metrics) = get(&gw, "/metrics").await;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("mcp_edge_busy_polls_total "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no mcp_edge_busy_polls_total in\n{metrics}"))
    };
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let before = spins().await;
    echo_calls(&mut mcp, 20).await;
    let after_calls = spins().await;
    assert!(
        after_calls > before,
        "after each call the runtime polls instead of sleeping: {before} -> {after_calls}"
    );

    // Idle: each window closes 2 ms after the last I/O, and the gateway sleeps. A
    // gateway that kept spinning would burn the whole second (about 100 ticks).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (ticks_before, spins_before) = (cpu_ticks(gw.pid()), spins().await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ticks_after, spins_after) = (cpu_ticks(gw.pid()), spins().await);
    assert!(
        ticks_after - ticks_before <= 10,
        "an idle gateway sleeps: {} ticks of CPU in 1 s",
        ticks_after - ticks_before
    );
    // While idle only an active probe's answer opens a window (2 ms, a few thousand
    // polls at most); a second of spinning would be hundreds of thousands.
    assert!(
        spins_after - spins_before < 20_000,
        "{spins_before} -> {spins_after} polls while idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_route_added_by_reload_connects_at_once() {
    let head = "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
                [[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\nprobe_interval = \"0s\"\n\n";
    let gw = Gateway::start("ops-reload-network", head);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let server = ServerProc::start(
        &peer("py1/bin/python"),
        &["tests/peers/fastmcp_server.py", "--http", "0"],
        &[],
    );
    // Probes off: nothing but the reload itself may bring the route up.
    let added = format!(
        "{}[[route]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprobe_interval = \"0s\"\n",
        head.replace("{mcp_edge}", &mcp_edge().display().to_string()),
        server.port
    );
    std::fs::write(gw.dir.join("routes.toml"), added).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = health(&gw).await;
        let up = h["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "web" && r["status"] == "healthy");
        if up {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the added route stayed down: {h:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names = mcp.tool_names().await;
    assert!(names.iter().any(|n| n == "web__echo"), "{names:?}");
    let r = mcp
        .call(
            "tools/call",
            json!({ "name": "web__echo", "arguments": { "message": "reloaded" } }),
        )
        .await;
    assert_eq!(text(&r), "reloaded");
}
