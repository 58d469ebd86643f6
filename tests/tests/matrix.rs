//! The interop matrix: real MCP clients, through each of mcp-edge's front doors, to real
//! tool servers over each upstream transport, in both protocol eras.
//!
//! Each cell is one client process (or rmcp in this process) that lists tools, calls a
//! tool on one route and checks the answer, then calls that route past its rate limit
//! until a call is refused with `-32008`, waits the hint, and calls again on the same
//! session: a refusal fails the call and never the session. The table is printed at the
//! end, every cell's outcome in it, and the test fails if any cell did.
//!
//! - clients: Python SDK 1.x (session era), Python SDK 2.x in its default mode (it
//!   negotiates 2026-07-28 where offered), the TypeScript SDK, rmcp;
//! - front doors: Streamable HTTP over HTTP/1.1, over HTTPS with HTTP/2 (ALPN), legacy
//!   HTTP+SSE, WebSocket, stdio (`mcp-edge stdio`);
//! - tool servers: stdio (FastMCP, session era), Streamable HTTP session era (FastMCP,
//!   behind a `trusted` route with a service token, and supergateway on the TypeScript
//!   SDK 2.x, which refuses a body whose `_meta` names another protocol version than
//!   its session's header), Streamable HTTP 2026-07-28 (the
//!   Python SDK 2.x server), legacy HTTP+SSE (FastMCP), WebSocket (FastMCP), HTTPS
//!   (FastMCP with `certs init`'s tool-server certificate, behind an `untrusted` route).
//!
//! Peers come from `tests/peers/install` (run by `scripts/test`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, ServerProc, http, mcp_edge, peer, repo_root, scratch_dir};
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Py1,
    Py2,
    Ts,
    Rmcp,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Py1 => "python sdk 1.x",
            Client::Py2 => "python sdk 2.x (auto)",
            Client::Ts => "typescript sdk",
            Client::Rmcp => "rmcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Http1,
    Http2Tls,
    LegacySse,
    WebSocket,
    Stdio,
}

impl Door {
    fn name(self) -> &'static str {
        match self {
            Door::Http1 => "streamable http/1.1",
            Door::Http2Tls => "streamable https h2",
            Door::LegacySse => "legacy sse",
            Door::WebSocket => "websocket",
            Door::Stdio => "stdio",
        }
    }
}

/// The cells: every client, front door and upstream kind meets both protocol eras.
const CELLS: &[(Client, Door, &str)] = &[
    (Client::Py1, Door::Http1, "session"),
    (Client::Py1, Door::Http1, "modern"),
    (Client::Py1, Door::Http2Tls, "sse"),
    (Client::Py1, Door::LegacySse, "modern"),
    (Client::Py1, Door::WebSocket, "https"),
    (Client::Py1, Door::Stdio, "ws"),
    (Client::Py2, Door::Http1, "session"),
    (Client::Py2, Door::Http1, "bridge"),
    (Client::Py2, Door::Stdio, "bridge"),
    (Client::Py1, Door::Http2Tls, "bridge"),
    (Client::Py2, Door::Http1, "https"),
    (Client::Py2, Door::Http1, "sse"),
    (Client::Py2, Door::Http1, "ws"),
    (Client::Py2, Door::Http1, "stdio"),
    (Client::Py2, Door::Http2Tls, "modern"),
    (Client::Py2, Door::Stdio, "session"),
    (Client::Ts, Door::Http1, "modern"),
    (Client::Ts, Door::Http2Tls, "stdio"),
    (Client::Ts, Door::LegacySse, "session"),
    (Client::Ts, Door::WebSocket, "modern"),
    (Client::Ts, Door::Stdio, "https"),
    (Client::Rmcp, Door::Http1, "modern"),
    (Client::Rmcp, Door::Http1, "sse"),
];

/// The `session` route's service credential, in the gateway's environment.
const SERVICE_ENV: [(&str, &str); 1] = [("MATRIX_SERVICE_TOKEN", "matrix-service-token")];

/// Where the front doors are.
struct Doors {
    plain: std::net::SocketAddr,
    tls_port: u16,
    ca: String,
    routes_file: String,
}

/// One cell's outcome.
struct Outcome {
    client_version: String,
    answer: String,
    refusal: String,
    after: String,
    problems: Vec<String>,
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"]
        .as_str()
        .map_or_else(|| result.to_string(), str::to_owned)
}

/// Runs one peer client to completion: its JSON line, or why it failed.
fn run_peer(program: &str, args: &[String], env: &[(&str, &str)]) -> Result<Value, String> {
    let output = Command::new(program)
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "40")
        .envs(env.iter().copied())
        .args(args)
        .output()
        .map_err(|e| format!("could not run {program}: {e} (run tests/peers/install)"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        let why: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains(" INFO ") && !l.contains(" DEBUG "))
            .collect();
        return Err(format!("exit {}: {}", output.status, why.join(" | ")));
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("no JSON line: {stdout}"))?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON ({e}): {line}"))
}

fn peer_cell(client: Client, door: Door, route: &str, doors: &Doors) -> Result<Value, String> {
    let tool = format!("{route}__echo");
    let args_main = json!({ "message": "matrix" }).to_string();
    let args_again = json!({ "message": "again" }).to_string();
    let plain = doors.plain;
    let stdio_argv =
        json!([mcp_edge().display().to_string(), "stdio", doors.routes_file]).to_string();
    let (url, transport) = match door {
        Door::Http1 => (format!("http://{plain}/mcp"), "streamable-http"),
        Door::Http2Tls => (
            format!("https://localhost:{}/mcp", doors.tls_port),
            "streamable-http",
        ),
        Door::LegacySse => (format!("http://{plain}/sse"), "sse"),
        Door::WebSocket => (format!("ws://{plain}/ws"), "websocket"),
        Door::Stdio => (stdio_argv, "stdio"),
    };
    let mut env: Vec<(&str, &str)> = Vec::new();
    if door == Door::Http2Tls {
        env.extend([("PEER_CA", doors.ca.as_str()), ("PEER_HTTP2", "1")]);
    }
    if door == Door::Stdio {
        // The client starts `mcp-edge stdio`, which inherits its environment.
        env.extend(SERVICE_ENV);
    }
    let refusal = ["--refusal".to_owned(), tool.clone(), args_again];
    let (program, mut args) = match client {
        Client::Py1 => (
            peer("py1/bin/python"),
            vec!["tests/peers/py1_client.py".to_owned()],
        ),
        Client::Py2 => (
            peer("py2/bin/python"),
            vec!["tests/peers/py2_client.py".to_owned()],
        ),
        Client::Ts => (
            "node".to_owned(),
            vec!["tests/peers/ts_client.mjs".to_owned()],
        ),
        Client::Rmcp => unreachable!("rmcp runs in this process"),
    };
    match client {
        Client::Py1 => {
            args.extend(refusal);
            args.extend([url, transport.to_owned(), tool, args_main]);
        }
        Client::Py2 => {
            if door == Door::Stdio {
                args.extend(["--transport".to_owned(), "stdio".to_owned()]);
            }
            assert!(
                matches!(door, Door::Http1 | Door::Http2Tls | Door::Stdio),
                "the Python SDK 2.x has no {door:?} client"
            );
            args.extend(refusal);
            args.extend([url, tool, args_main]);
        }
        _ => {
            args.extend(["--transport".to_owned(), transport.to_owned()]);
            args.extend(refusal);
            args.extend([url, tool, args_main]);
        }
    }
    run_peer(&program, &args, &env)
}

/// rmcp, the official Rust SDK, over Streamable HTTP.
async fn rmcp_cell(url: &str, route: &str) -> Result<Value, String> {
    use rmcp::ServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url);
    let client = tokio::time::timeout(Duration::from_secs(20), ().serve(transport))
        .await
        .map_err(|_| "rmcp did not connect in 20s".to_owned())?
        .map_err(|e| format!("rmcp initialize: {e}"))?;
    let version = client
        .peer_info()
        .map(|i| i.protocol_version.to_string())
        .unwrap_or_default();
    let call = |message: &str| {
        let mut params = rmcp::model::CallToolRequestParams::new(format!("{route}__echo"));
        params.arguments = json!({ "message": message }).as_object().cloned();
        client.call_tool(params)
    };
    let result = call("matrix")
        .await
        .map_err(|e| format!("rmcp call: {e}"))?;
    let mut refused = None;
    for _ in 0..6 {
        match call("again").await {
            Err(rmcp::ServiceError::McpError(e)) => {
                refused = Some(e);
                break;
            }
            Err(e) => return Err(format!("rmcp: the refusal was not a JSON-RPC error: {e}")),
            Ok(_) => {}
        }
    }
    let refused = refused.ok_or("no call was refused")?;
    let refused = serde_json::to_value(&refused).unwrap();
    let wait = refused["data"]["retry_after_ms"].as_u64().unwrap_or(1000) + 100;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let after = call("again")
        .await
        .map_err(|e| format!("the session did not survive the refusal: {e}"))?;
    client.cancel().await.ok();
    Ok(json!({
        "protocolVersion": version,
        "result": serde_json::to_value(&result).unwrap(),
        "refused": refused,
        "after": serde_json::to_value(&after).unwrap(),
    }))
}

fn judge(client: Client, door: Door, out: Result<Value, String>) -> Outcome {
    let out = match out {
        Ok(out) => out,
        Err(why) => {
            return Outcome {
                client_version: "-".into(),
                answer: "-".into(),
                refusal: "-".into(),
                after: "-".into(),
                problems: vec![why],
            };
        }
    };
    let mut problems = Vec::new();
    let client_version = out["protocolVersion"].as_str().unwrap_or("?").to_owned();
    // server-everything's echo says "Echo: …".
    let answer = text_of(&out["result"]).replace("Echo: ", "");
    if answer != "matrix" {
        problems.push(format!("answer {answer:?}, wanted \"matrix\""));
    }
    let code = out["refused"]["code"].as_i64();
    let hint = out["refused"]["data"]["retry_after_ms"].as_u64();
    let refusal = format!(
        "{} ({} ms)",
        code.map_or("-".into(), |c| c.to_string()),
        hint.map_or("-".into(), |h| h.to_string())
    );
    if code != Some(-32008) || hint.is_none() {
        problems.push(format!("refusal {}", out["refused"]));
    }
    let after = text_of(&out["after"]).replace("Echo: ", "");
    if after != "again" {
        problems.push(format!("after the refusal {after:?}, wanted \"again\""));
    }
    let wants_modern = client == Client::Py2;
    let modern = client_version == "2026-07-28";
    if modern != wants_modern {
        problems.push(format!("the client negotiated {client_version}"));
    }
    if door == Door::Http2Tls && client != Client::Rmcp {
        let versions = out["httpVersions"].to_string();
        if !versions.contains("HTTP/2") {
            problems.push(format!("not HTTP/2: {versions}"));
        }
    }
    Outcome {
        client_version,
        answer,
        refusal,
        after,
        problems,
    }
}

fn routes(ports: &Ports, certs: &str) -> String {
    let py1 = peer("py1/bin/python");
    // Every route: one call a client may make at once, refilled in 200 ms, so that a
    // cell's second call in a row is refused and the next cell finds a token again.
    let limit =
        "rate_limit = { per_second = 5, burst = 1 }\ntimeout = \"20s\"\nprobe_interval = \"0s\"\n";
    format!(
        r#"
[[route]]
name = "stdio"
command = ["{py1}", "{{repo}}/tests/peers/fastmcp_server.py"]
{limit}
[[route]]
name = "session"
url = "http://127.0.0.1:{session}/mcp"
boundary = "trusted"
auth = {{ bearer = {{ env = "MATRIX_SERVICE_TOKEN" }} }}
{limit}
[[route]]
name = "bridge"
url = "http://127.0.0.1:{bridge}/mcp"
{limit}
[[route]]
name = "modern"
url = "http://127.0.0.1:{modern}/mcp"
{limit}
[[route]]
name = "sse"
url = "http://127.0.0.1:{sse}/sse"
protocol = "sse"
{limit}
[[route]]
name = "ws"
url = "ws://127.0.0.1:{ws}/ws"
{limit}
[[route]]
name = "https"
url = "https://localhost:{https}/mcp"
boundary = "untrusted"
tls = {{ ca = "{certs}/ca.pem" }}
{limit}"#,
        session = ports.session,
        bridge = ports.bridge,
        modern = ports.modern,
        sse = ports.sse,
        ws = ports.ws,
        https = ports.https,
    )
}

struct Ports {
    session: u16,
    bridge: u16,
    modern: u16,
    sse: u16,
    ws: u16,
    https: u16,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_front_door_and_tool_server_in_both_eras() {
    let dir = scratch_dir("matrix");
    let certs = dir.join("certs");
    let made = Command::new(mcp_edge())
        .args(["certs", "init", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(made.status.success(), "certs init: {made:?}");
    let certs = certs.display().to_string();

    let py1 = peer("py1/bin/python");
    let py2 = peer("py2/bin/python");
    let fastmcp = "tests/peers/fastmcp_server.py";
    let session = ServerProc::start(&py1, &[fastmcp, "--http", "0"], &[]);
    let modern = ServerProc::start(&py2, &["tests/peers/py2_server.py", "--http", "0"], &[]);
    // supergateway (on the TypeScript SDK 2.x server) bridging a stdio FastMCP to
    // Streamable HTTP, with sessions: a session-era server that checks every body's
    // `_meta` version against its session's header.
    let fastmcp_stdio = format!("{py1} {}/{fastmcp}", repo_root().display());
    let bridge = ServerProc::start(
        "node",
        &[
            "--require",
            "./tests/peers/loopback.cjs",
            &peer("node/node_modules/supergateway/dist/index.js"),
            "--stdio",
            &fastmcp_stdio,
            "--outputTransport",
            "streamableHttp",
            "--stateful",
            "--port",
            "0",
            "--logLevel",
            "none",
        ],
        &[],
    );
    let sse = ServerProc::start(&py1, &[fastmcp, "--sse", "0"], &[]);
    let ws = ServerProc::start(&py1, &[fastmcp, "--ws", "0"], &[]);
    let tls_cert = format!("{certs}/tool-server.pem");
    let tls_key = format!("{certs}/tool-server-key.pem");
    let https = ServerProc::start(
        &py1,
        &[
            fastmcp,
            "--http",
            "0",
            "--tls-cert",
            &tls_cert,
            "--tls-key",
            &tls_key,
        ],
        &[],
    );
    let ports = Ports {
        session: session.port,
        bridge: bridge.port,
        modern: modern.port,
        sse: sse.port,
        ws: ws.port,
        https: https.port,
    };
    let routes = routes(&ports, &certs);
    let env = SERVICE_ENV;
    let plain = Gateway::start_with_env(
        "matrix-plain",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n{routes}"
        ),
        &env,
    );
    let tls = Gateway::start_with_env(
        "matrix-tls",
        &format!(
            "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\
             tls = {{ cert = \"{certs}/gateway.pem\", key = \"{certs}/gateway-key.pem\" }}\n{routes}"
        ),
        &env,
    );
    // `mcp-edge stdio` reads the plain gateway's file (its `listen` is not used there).
    let routes_file = plain.dir.join("routes.toml").display().to_string();

    // Each upstream is up, and speaks the era it should.
    let health: Value =
        serde_json::from_slice(&http(plain.admin, "GET", "/health", &[], b"").await.body).unwrap();
    let mut upstream_version = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    for name in ["stdio", "session", "bridge", "modern", "sse", "ws", "https"] {
        let version = loop {
            let health: Value =
                serde_json::from_slice(&http(plain.admin, "GET", "/health", &[], b"").await.body)
                    .unwrap();
            let route = health["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("no route {name}: {health:#}"));
            if let Some(v) = route["protocol_version"].as_str() {
                break v.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "route {name} never connected: {route:#}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let modern = version == "2026-07-28";
        assert_eq!(modern, name == "modern", "{name} negotiated {version}");
        upstream_version.insert(name, version);
    }
    let boundary = |name: &str| {
        health["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map_or("?".to_owned(), |r| {
                r["boundary"].as_str().unwrap_or("?").to_owned()
            })
    };
    assert_eq!(boundary("session"), "trusted");
    assert_eq!(boundary("https"), "untrusted");

    let doors = Doors {
        plain: plain.addr,
        tls_port: tls.addr.port(),
        ca: format!("{certs}/ca.pem"),
        routes_file,
    };
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<22} {:<20} {:<8} {:<11} {:<11} {:<8} {:<16} {:<8} result",
        "client", "front door", "route", "client era", "server era", "answer", "refusal", "after"
    );
    let mut failed = 0;
    for &(client, door, route) in CELLS {
        let started = Instant::now();
        let out = match client {
            Client::Rmcp => rmcp_cell(&format!("http://{}/mcp", doors.plain), route).await,
            _ => {
                let doors_ref = &doors;
                let route = route.to_owned();
                tokio::task::block_in_place(|| peer_cell(client, door, &route, doors_ref))
            }
        };
        let outcome = judge(client, door, out);
        let ok = outcome.problems.is_empty();
        if !ok {
            failed += 1;
        }
        let _ = writeln!(
            table,
            "{:<22} {:<20} {:<8} {:<11} {:<11} {:<8} {:<16} {:<8} {}{}",
            client.name(),
            door.name(),
            route,
            outcome.client_version,
            upstream_version[route],
            outcome.answer,
            outcome.refusal,
            outcome.after,
            if ok { "ok" } else { "FAILED: " },
            outcome.problems.join("; ")
        );
        // The route's token refills in 200 ms; a cell in this process starts at once.
        let spent = started.elapsed();
        if spent < Duration::from_millis(300) {
            tokio::time::sleep(Duration::from_millis(300) - spent).await;
        }
    }
    println!("\ninterop matrix ({} cells):\n{table}", CELLS.len());
    assert_eq!(failed, 0, "{failed} cells failed:\n{table}");
    drop((plain, tls, session, bridge, modern, sse, ws, https));
    std::fs::remove_dir_all(dir).ok();
}
