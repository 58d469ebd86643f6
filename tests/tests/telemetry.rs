//! Traces and logs of a real gateway: a local OTLP/HTTP receiver decodes the spans
//! exported for a call (the client's trace continued, a client span per attempt at the
//! tool server, MCP semantic-convention attributes), the tool server receives the
//! `traceparent` of that client span, and JSON log lines parse.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, Received, ServerProc, http, json_receiver, peer, scratch_dir, text};
use serde_json::{Value, json};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const PARENT: &str = "b7ad6b7169203331";

/// Every span of the OTLP/HTTP (JSON) exports received, with its resource.
fn spans_of(exports: &Received) -> Vec<Value> {
    let mut spans = Vec::new();
    for export in exports.lock().unwrap().iter() {
        for resource in export["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let mut span = span.clone();
                    span["resource"] = resource["resource"].clone();
                    spans.push(span);
                }
            }
        }
    }
    spans
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

fn string_attribute(span: &Value, key: &str) -> Option<String> {
    attribute(span, key)?["stringValue"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_traced_end_to_end_and_exported_over_otlp() {
    let (port, exports) = json_receiver("/v1/traces").await;
    let flags = scratch_dir("telemetry-flags");
    let server = ServerProc::start(
        &peer("py1/bin/python"),
        &[
            "tests/peers/fastmcp_server.py",
            "--http",
            "0",
            "--fail-while",
            &flags.join("never").display().to_string(),
        ],
        &[],
    );
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}/v1/traces\"\nservice_name = \"edge-under-test\"\nlog_format = \"json\"\n\n\
         [[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n",
        server.port
    );
    let gw = Gateway::start_with_env("telemetry", &routes, &[("OTEL_BSP_SCHEDULE_DELAY", "100")]);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    mcp.headers
        .push(("traceparent".into(), format!("00-{TRACE}-{PARENT}-01")));
    let result = mcp
        .call(
            "tools/call",
            json!({ "name": "fast__lookup", "arguments": { "key": "k" } }),
        )
        .await;
    assert_eq!(text(&result), "value of k");

    let deadline = Instant::now() + Duration::from_secs(15);
    let (server_span, client_span) = loop {
        let all = spans_of(&exports);
        let server_span = all
            .iter()
            .find(|s| s["name"] == "tools/call fast__lookup")
            .cloned();
        let client_span = all.iter().find(|s| s["name"] == "tools/call fast").cloned();
        if let (Some(s), Some(c)) = (server_span, client_span) {
            break (s, c);
        }
        assert!(
            Instant::now() < deadline,
            "spans not exported: {all:#?}\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // The client's trace is continued.
    assert_eq!(server_span["traceId"], TRACE, "{server_span:#}");
    assert_eq!(server_span["parentSpanId"], PARENT, "{server_span:#}");
    assert_eq!(server_span["kind"], 2, "SERVER");
    assert_eq!(
        string_attribute(&server_span, "mcp.method.name").as_deref(),
        Some("tools/call")
    );
    assert_eq!(
        string_attribute(&server_span, "gen_ai.tool.name").as_deref(),
        Some("fast__lookup")
    );
    assert!(
        string_attribute(&server_span, "mcp.session.id").is_some(),
        "{server_span:#}"
    );
    assert_eq!(
        string_attribute(&server_span, "jsonrpc.request.id").as_deref(),
        Some("1")
    );
    let service = server_span["resource"]["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == "service.name")
        .unwrap();
    assert_eq!(service["value"]["stringValue"], "edge-under-test");
    // One client span per attempt, under the request's.
    assert_eq!(client_span["traceId"], TRACE);
    assert_eq!(client_span["parentSpanId"], server_span["spanId"]);
    assert_eq!(client_span["kind"], 3, "CLIENT");
    assert_eq!(
        string_attribute(&client_span, "mcp_edge.route").as_deref(),
        Some("fast")
    );
    assert!(
        attribute(&client_span, "mcp_edge.attempt").is_some(),
        "{client_span:#}"
    );

    // The tool server got the client span's traceparent.
    let addr = ([127, 0, 0, 1], server.port).into();
    let seen = http(addr, "GET", "/counts", &[], b"").await.json();
    let sent = seen["lookup"]["traceparents"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let span_id = client_span["spanId"].as_str().unwrap();
    assert_eq!(sent, format!("00-{TRACE}-{span_id}-01"), "{seen}");

    // JSON log lines.
    let logs = gw.logs();
    let json_lines: Vec<Value> = logs
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        json_lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"].is_string()),
        "{logs}"
    );
    std::fs::remove_dir_all(flags).ok();
}
