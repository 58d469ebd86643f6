//! `mcp-edge demo-tools`: a small MCP tool server built into the binary, so the shipped
//! routes.toml serves real tools on a machine with nothing else installed, and so tests
//! have a tool server whose faults they can switch on.
//!
//! Tools: `echo`, `add`, `slow` (reports progress and logs), `fail` (an `isError`
//! result) and `crash` (exits the process). A resource, a resource template, a prompt
//! and completions exercise the rest of the aggregation.
//!
//! Fault switches for tests: `--garbage` writes a non-JSON line before every message,
//! `--hang` stops answering after `initialize`, `--exit-at-start CODE` exits before
//! reading anything, `--stateless` speaks only 2026-07-28 (refuses `initialize`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::ndjson::{self, Line, LineReader};
use mcp_edge_protocol::version::{self, Era};
use mcp_edge_protocol::{Id, Kind, Message, RawObject, mcp};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Fault switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Write a non-JSON line before every message.
    pub garbage: bool,
    /// Stop answering anything after `initialize`.
    pub hang: bool,
    /// Speak only the stateless era.
    pub stateless: bool,
}

/// Serves the demo tools on stdin/stdout until stdin closes.
pub async fn serve_stdio(faults: Faults) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(message) = rx.recv().await {
            if faults.garbage {
                let _ = stdout.write_all(b"this line is not JSON-RPC\n").await;
            }
            if stdout.write_all(&ndjson::frame(&message)).await.is_err() {
                break;
            }
            let _ = stdout.flush().await;
        }
    });
    let server = Arc::new(Server {
        faults,
        out: tx,
        initialized: AtomicBool::new(false),
    });
    let mut lines = LineReader::new(tokio::io::stdin(), 4 * 1024 * 1024);
    while let Some(line) = lines.next().await? {
        let Line::Message(bytes) = line else {
            eprintln!("demo-tools: skipped an oversized message");
            continue;
        };
        match Message::parse(&bytes) {
            Ok(message) => {
                let server = server.clone();
                tokio::spawn(async move { server.handle(message).await });
            }
            Err(e) => {
                server
                    .send(jsonrpc::error(e.id(), e.code(), &e.to_string(), None))
                    .await;
            }
        }
    }
    drop(server);
    let _ = writer.await;
    Ok(())
}

struct Server {
    faults: Faults,
    out: mpsc::Sender<Vec<u8>>,
    initialized: AtomicBool,
}

impl Server {
    async fn send(&self, message: Vec<u8>) {
        let _ = self.out.send(message).await;
    }

    async fn handle(&self, message: Message) {
        if message.kind() != Kind::Request {
            return;
        }
        let Some(id) = message.id.clone() else { return };
        if self.faults.hang && self.initialized.load(Ordering::Acquire) {
            return;
        }
        let params = message
            .params
            .as_ref()
            .and_then(|p| serde_json::from_str::<Value>(p.get()).ok())
            .unwrap_or(Value::Null);
        let outcome = self.answer(&id, message.method(), &params).await;
        let reply = match outcome {
            Ok(mut result) => {
                if self.faults.stateless
                    && let Value::Object(map) = &mut result
                {
                    map.entry("resultType").or_insert(json!("complete"));
                }
                jsonrpc::result(&id, &jsonrpc::raw(&result))
            }
            Err((code, text)) => jsonrpc::error(Some(&id), code, &text, None),
        };
        self.send(reply).await;
    }

    async fn answer(&self, id: &Id, method: &str, params: &Value) -> Result<Value, (i32, String)> {
        match method {
            mcp::INITIALIZE if self.faults.stateless => Err((
                code::METHOD_NOT_FOUND,
                "initialize is not part of 2026-07-28; use server/discover".into(),
            )),
            mcp::INITIALIZE => {
                let requested = params["protocolVersion"].as_str().unwrap_or(version::DEFAULT_NEGOTIATED);
                self.initialized.store(true, Ordering::Release);
                Ok(json!({
                    "protocolVersion": version::negotiate(requested),
                    "capabilities": capabilities(),
                    "serverInfo": server_info(),
                    "instructions": INSTRUCTIONS,
                }))
            }
            mcp::DISCOVER => {
                self.initialized.store(true, Ordering::Release);
                let versions: Vec<&str> = if self.faults.stateless {
                    vec![version::V2026_07_28]
                } else {
                    version::supported().collect()
                };
                Ok(json!({
                    "resultType": "complete",
                    "supportedVersions": versions,
                    "capabilities": capabilities(),
                    "instructions": INSTRUCTIONS,
                    "ttlMs": 0,
                    "cacheScope": "public",
                    "_meta": { "io.modelcontextprotocol/serverInfo": server_info() },
                }))
            }
            _ if self.faults.stateless && !stateless_meta_ok(params) => Err((
                code::INVALID_PARAMS,
                "missing _meta io.modelcontextprotocol/protocolVersion (2026-07-28 requires it on every request)".into(),
            )),
            mcp::PING => Ok(json!({})),
            mcp::TOOLS_LIST => Ok(json!({ "tools": tools() })),
            mcp::TOOLS_CALL => self.call_tool(params).await,
            mcp::RESOURCES_LIST => Ok(json!({ "resources": [{
                "uri": "demo://readme", "name": "readme", "mimeType": "text/plain",
                "description": "What the demo tools are",
            }]})),
            mcp::RESOURCE_TEMPLATES_LIST => Ok(json!({ "resourceTemplates": [{
                "uriTemplate": "demo://echo/{text}", "name": "echo-resource", "mimeType": "text/plain",
            }]})),
            mcp::RESOURCES_READ => {
                let uri = params["uri"].as_str().unwrap_or_default();
                let text = if uri == "demo://readme" {
                    INSTRUCTIONS.to_owned()
                } else if let Some(rest) = uri.strip_prefix("demo://echo/") {
                    rest.to_owned()
                } else {
                    return Err((code::RESOURCE_NOT_FOUND, format!("no resource {uri}")));
                };
                Ok(json!({ "contents": [{ "uri": uri, "mimeType": "text/plain", "text": text }] }))
            }
            mcp::PROMPTS_LIST => Ok(json!({ "prompts": [{
                "name": "greet", "description": "Greets someone",
                "arguments": [{ "name": "name", "required": true }],
            }]})),
            mcp::PROMPTS_GET => {
                if params["name"] != "greet" {
                    return Err((code::INVALID_PARAMS, format!("no prompt {}", params["name"])));
                }
                let name = params["arguments"]["name"].as_str().unwrap_or("world");
                Ok(json!({ "messages": [{ "role": "user", "content": { "type": "text", "text": format!("Say hello to {name}.") } }] }))
            }
            mcp::COMPLETE => {
                let prefix = params["argument"]["value"].as_str().unwrap_or_default();
                let values: Vec<&str> = ["Ada", "Alan", "Grace"].into_iter().filter(|v| v.starts_with(prefix)).collect();
                Ok(json!({ "completion": { "values": values, "total": values.len(), "hasMore": false } }))
            }
            mcp::SET_LEVEL => Ok(json!({})),
            other => {
                let _ = id;
                Err((code::METHOD_NOT_FOUND, format!("method {other} is not supported by the demo tools")))
            }
        }
    }

    async fn call_tool(&self, params: &Value) -> Result<Value, (i32, String)> {
        let args = &params["arguments"];
        let text = |t: String| json!({ "content": [{ "type": "text", "text": t }] });
        match params["name"].as_str().unwrap_or_default() {
            "echo" => Ok(text(
                args["message"].as_str().unwrap_or_default().to_owned(),
            )),
            "add" => {
                let (Some(a), Some(b)) = (args["a"].as_f64(), args["b"].as_f64()) else {
                    return Err((code::INVALID_PARAMS, "add needs numbers a and b".into()));
                };
                let mut result = text(format!("{}", a + b));
                result["structuredContent"] = json!({ "sum": a + b });
                Ok(result)
            }
            "slow" => {
                let seconds = args["seconds"].as_f64().unwrap_or(1.0).clamp(0.0, 600.0);
                let steps = args["steps"].as_u64().unwrap_or(4).clamp(1, 1000);
                let token = params["_meta"]["progressToken"].clone();
                for step in 1..=steps {
                    tokio::time::sleep(Duration::from_secs_f64(seconds / steps as f64)).await;
                    if !token.is_null() {
                        let progress = json!({ "progressToken": token, "progress": step, "total": steps, "message": format!("step {step} of {steps}") });
                        self.send(jsonrpc::notification(
                            mcp::PROGRESS,
                            Some(&jsonrpc::raw(&progress)),
                        ))
                        .await;
                    }
                }
                let log = json!({ "level": "info", "logger": "demo", "data": format!("slow finished {steps} steps") });
                self.send(jsonrpc::notification(
                    mcp::LOG_MESSAGE,
                    Some(&jsonrpc::raw(&log)),
                ))
                .await;
                Ok(text(format!("done after {seconds}s")))
            }
            "fail" => {
                let mut result = text(
                    args["message"]
                        .as_str()
                        .unwrap_or("the tool failed, as asked")
                        .to_owned(),
                );
                result["isError"] = json!(true);
                Ok(result)
            }
            "crash" => {
                eprintln!("demo-tools: crashing on request");
                std::process::exit(3);
            }
            other => Err((code::INVALID_PARAMS, format!("unknown tool: {other}"))),
        }
    }
}

fn stateless_meta_ok(params: &Value) -> bool {
    params["_meta"][version::META_PROTOCOL_VERSION]
        .as_str()
        .is_some_and(|v| version::era(v) == Some(Era::Stateless))
}

const INSTRUCTIONS: &str = "Demo tools built into mcp-edge: echo, add, slow (reports progress), fail (returns an error result) and crash (exits).";

fn server_info() -> Value {
    json!({ "name": "mcp-edge-demo-tools", "version": env!("CARGO_PKG_VERSION") })
}

fn capabilities() -> Value {
    json!({
        "tools": { "listChanged": false },
        "resources": { "subscribe": false, "listChanged": false },
        "prompts": { "listChanged": false },
        "logging": {},
        "completions": {},
    })
}

fn tools() -> Value {
    let object = |props: Value, required: Value| json!({ "type": "object", "properties": props, "required": required });
    json!([
        { "name": "echo", "description": "Returns the message it is given",
          "inputSchema": object(json!({ "message": { "type": "string" } }), json!(["message"])),
          "annotations": { "readOnlyHint": true, "idempotentHint": true } },
        { "name": "add", "description": "Adds two numbers",
          "inputSchema": object(json!({ "a": { "type": "number" }, "b": { "type": "number" } }), json!(["a", "b"])),
          "outputSchema": object(json!({ "sum": { "type": "number" } }), json!(["sum"])),
          "annotations": { "readOnlyHint": true, "idempotentHint": true } },
        { "name": "slow", "description": "Waits, reporting progress",
          "inputSchema": object(json!({ "seconds": { "type": "number" }, "steps": { "type": "integer" } }), json!([])),
          "annotations": { "readOnlyHint": true } },
        { "name": "fail", "description": "Returns an error result",
          "inputSchema": object(json!({ "message": { "type": "string" } }), json!([])) },
        { "name": "crash", "description": "Exits the tool server process (for testing supervision)",
          "inputSchema": object(json!({}), json!([])),
          "annotations": { "destructiveHint": true } },
    ])
}

/// `RawObject` is re-exported for callers that build on the demo's results.
pub type DemoObject<'a> = RawObject<'a>;
