//! Interop with the official MCP SDKs, through the real gateway.
//!
//! Upstreams over stdio: the built-in demo tools, the TypeScript SDK's
//! `@modelcontextprotocol/server-everything`, and a Python SDK FastMCP server.
//! Clients: the Python SDK 1.x (Streamable HTTP and legacy SSE), the Python SDK 2.x
//! (2026-07-28), the TypeScript SDK (Streamable HTTP and SSE) and `rmcp`.
//!
//! The peers are installed by `tests/peers/install`, which `scripts/test` runs. A
//! missing peer fails its test with the install step named; nothing is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use mcp_edge_tests::{Gateway, peer, repo_root};
use serde_json::{Value, json};

fn server_everything() -> String {
    peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

fn routes() -> String {
    format!(
        r#"
[[route]]
name = "demo"
command = ["{{mcp_edge}}", "demo-tools", "--stdio"]

[[route]]
name = "everything"
command = ["node", "{everything}", "stdio"]
timeout = "20s"

[[route]]
name = "fast"
command = ["{py1}", "{{repo}}/tests/peers/fastmcp_server.py"]
timeout = "20s"
"#,
        everything = server_everything(),
        py1 = peer("py1/bin/python"),
    )
}

/// Runs a client script; its one line of JSON.
fn run_client(program: &str, args: &[&str]) -> Value {
    let output = Command::new(program)
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "30")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON from {program}: {stdout}\n{stderr}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON from {program} ({e}): {line}"))
}

fn names(out: &Value) -> Vec<String> {
    out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn first_text(out: &Value) -> String {
    out["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_clients_reach_official_servers_through_the_gateway() {
    let routes = routes();
    let gw = Gateway::start("interop", &routes);
    let base = format!("http://{}", gw.addr);
    let mcp = format!("{base}/mcp");
    let sse = format!("{base}/sse");
    let py1 = peer("py1/bin/python");
    let py2 = peer("py2/bin/python");

    // Python SDK 1.x over Streamable HTTP, calling the TypeScript server.
    let out = run_client(
        &py1,
        &[
            "tests/peers/py1_client.py",
            &mcp,
            "streamable-http",
            "everything__echo",
            r#"{"message":"hi"}"#,
        ],
    );
    let tools = names(&out);
    for expected in ["demo__echo", "everything__echo", "fast__add"] {
        assert!(
            tools.contains(&expected.to_owned()),
            "{expected} not in {tools:?}"
        );
    }
    assert_eq!(first_text(&out), "Echo: hi");
    assert_eq!(out["serverInfo"]["name"], "mcp-edge");

    // Python SDK 1.x over legacy HTTP+SSE, calling the Python server.
    let out = run_client(
        &py1,
        &[
            "tests/peers/py1_client.py",
            &sse,
            "sse",
            "fast__add",
            r#"{"a":2,"b":3}"#,
        ],
    );
    assert_eq!(first_text(&out), "5");

    // Python SDK 2.x: it speaks 2026-07-28 to the gateway, which bridges to the
    // session-era TypeScript server behind it.
    let out = run_client(
        &py2,
        &[
            "tests/peers/py2_client.py",
            &mcp,
            "everything__echo",
            r#"{"message":"modern"}"#,
        ],
    );
    assert_eq!(out["protocolVersion"], "2026-07-28");
    assert_eq!(out["era"], "modern");
    assert_eq!(first_text(&out), "Echo: modern");

    // TypeScript SDK over Streamable HTTP and over SSE.
    let node = "node";
    let out = run_client(
        node,
        &[
            "tests/peers/ts_client.mjs",
            &mcp,
            "fast__echo",
            r#"{"message":"from ts"}"#,
        ],
    );
    assert_eq!(first_text(&out), "from ts");
    assert!(out["sessionId"].as_str().is_some_and(|s| !s.is_empty()));
    let out = run_client(
        node,
        &[
            "tests/peers/ts_client.mjs",
            "--transport",
            "sse",
            &sse,
            "demo__add",
            r#"{"a":20,"b":22}"#,
        ],
    );
    assert_eq!(first_text(&out), "42");

    // One route as its own server: names unprefixed.
    let out = run_client(
        node,
        &[
            "tests/peers/ts_client.mjs",
            &format!("{base}/mcp/everything"),
            "echo",
            r#"{"message":"direct"}"#,
        ],
    );
    assert_eq!(first_text(&out), "Echo: direct");
    assert!(names(&out).iter().all(|n| !n.contains("__")));

    // rmcp, the official Rust SDK.
    use rmcp::ServiceExt;
    let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(mcp.as_str());
    let client = tokio::time::timeout(Duration::from_secs(20), ().serve(transport))
        .await
        .expect("rmcp connects in time")
        .expect("rmcp initializes through the gateway");
    let tools = client.list_all_tools().await.expect("rmcp lists tools");
    assert!(
        tools.iter().any(|t| t.name == "fast__echo"),
        "{:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let arguments = json!({ "message": "from rust" }).as_object().cloned();
    let mut params = rmcp::model::CallToolRequestParams::new("everything__echo");
    params.arguments = arguments;
    let result = client.call_tool(params).await.expect("rmcp calls a tool");
    let text = serde_json::to_value(&result.content).unwrap()[0]["text"].clone();
    assert_eq!(text, "Echo: from rust");
    client.cancel().await.ok();
}
