//! `mcp-edge demo-tools`: a small MCP tool server built into the binary, so the shipped
//! routes.toml serves real tools on a machine with nothing else installed, and so tests
//! have a tool server whose faults they can switch on.
//!
//! Tools: `echo`, `add`, `slow` (reports progress and logs), `fail` (an `isError`
//! result) and `crash` (exits the process). A resource, a resource template, a prompt
//! and completions exercise the rest of the aggregation.
//!
//! Fault switches for tests: `--garbage` writes a non-JSON line before every message,
//! `--hang` stops answering after `initialize`, `--hang-initialize` never answers it
//! (nor anything else), `--exit-at-start CODE` exits before
//! reading anything, `--stateless` speaks only 2026-07-28 (refuses `initialize`),
//! `--page-size N` paginates `tools/list`, `--linger` keeps running after stdin closes.
//!
//! The `roots` tool asks the client for its roots (a server-to-client request) and
//! answers with what the client said. A `notifications/cancelled` stops the request
//! it names and is logged on stderr, so tests can see that cancellation arrived.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcp_edge_protocol::jsonrpc::{self, code};
use mcp_edge_protocol::ndjson::{self, Line, LineReader};
use mcp_edge_protocol::version::{self, Era};
use mcp_edge_protocol::{Id, Kind, Message, RawObject, mcp};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

/// Fault switches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Write a non-JSON line before every message.
    pub garbage: bool,
    /// Stop answering anything after `initialize`.
    pub hang: bool,
    /// Never answer anything, `initialize` included.
    pub hang_initialize: bool,
    /// Speak only the stateless era.
    pub stateless: bool,
    /// Paginate `tools/list` with pages of this many tools.
    pub page_size: Option<usize>,
    /// Keep running after stdin closes (to test shutdown escalation).
    pub linger: bool,
}

/// Serves the demo tools on stdin/stdout until stdin closes.
pub async fn serve_stdio(faults: Faults) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(256);
    let writer = tokio::spawn(async move {
        let mut stdout = mcp_edge_protocol::stdio::stdout();
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
        running: Mutex::new(HashMap::new()),
        asked: Mutex::new(HashMap::new()),
        next_ask: AtomicU64::new(1),
    });
    let mut lines = LineReader::new(mcp_edge_protocol::stdio::stdin(), 4 * 1024 * 1024);
    while let Some(line) = lines.next().await? {
        let Line::Message(bytes) = line else {
            eprintln!("demo-tools: skipped an oversized message");
            continue;
        };
        match Message::parse(&bytes) {
            Ok(message) => match message.kind() {
                Kind::Request => {
                    let id = message.id.clone();
                    let task = {
                        let server = server.clone();
                        tokio::spawn(async move { server.handle(message).await })
                    };
                    if let Some(id) = id {
                        server
                            .lock_running()
                            .insert(id.clone(), task.abort_handle());
                        let server = server.clone();
                        tokio::spawn(async move {
                            let _ = task.await;
                            server.lock_running().remove(&id);
                        });
                    }
                }
                Kind::Notification if message.method() == mcp::CANCELLED => server.cancel(&message),
                Kind::Notification => {}
                Kind::Result | Kind::Error => server.answered(message),
            },
            Err(e) => {
                server
                    .send(jsonrpc::error(e.id(), e.code(), &e.to_string(), None))
                    .await;
            }
        }
    }
    if faults.linger {
        eprintln!("demo-tools: stdin closed; lingering, as asked");
        std::future::pending::<()>().await;
    }
    drop(server);
    let _ = writer.await;
    Ok(())
}

struct Server {
    faults: Faults,
    out: mpsc::Sender<Vec<u8>>,
    initialized: AtomicBool,
    running: Mutex<HashMap<Id, AbortHandle>>,
    asked: Mutex<HashMap<Id, oneshot::Sender<Message>>>,
    next_ask: AtomicU64,
}

impl Server {
    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<Id, AbortHandle>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cancel(&self, message: &Message) {
        let id = message
            .params
            .as_ref()
            .and_then(|p| RawObject::parse(p.get()).ok())
            .and_then(|p| {
                p.get("requestId")
                    .and_then(|v| serde_json::from_str::<Id>(v.get()).ok())
            });
        let Some(id) = id else { return };
        let found = self.lock_running().remove(&id);
        if let Some(handle) = found {
            handle.abort();
        }
        eprintln!("demo-tools: cancelled request {id}");
    }

    fn answered(&self, message: Message) {
        let Some(id) = message.id.clone() else { return };
        let waiter = self
            .asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(message);
        }
    }

    /// Sends a request to the client and waits for its answer.
    async fn ask(&self, method: &str, params: Value) -> Result<Value, (i32, String)> {
        let n = self.next_ask.fetch_add(1, Ordering::Relaxed);
        let id = Id::Str(format!("demo-{n}").into());
        let (tx, rx) = oneshot::channel();
        self.asked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), tx);
        self.send(jsonrpc::request(&id, method, Some(&jsonrpc::raw(&params))))
            .await;
        let answer = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| {
                (
                    code::INTERNAL_ERROR,
                    format!("the client did not answer {method}"),
                )
            })?
            .map_err(|_| (code::INTERNAL_ERROR, "the answer was lost".to_owned()))?;
        match (answer.result, answer.error) {
            (Some(result), _) => serde_json::from_str(result.get())
                .map_err(|e| (code::INTERNAL_ERROR, e.to_string())),
            (None, Some(error)) => Err((
                code::INTERNAL_ERROR,
                format!("the client refused {method}: {}", error.get()),
            )),
            _ => Err((code::INTERNAL_ERROR, "an empty answer".to_owned())),
        }
    }

    async fn send(&self, message: Vec<u8>) {
        let _ = self.out.send(message).await;
    }

    async fn handle(&self, message: Message) {
        if message.kind() != Kind::Request {
            return;
        }
        let Some(id) = message.id.clone() else { return };
        if self.faults.hang_initialize
            || self.faults.hang && self.initialized.load(Ordering::Acquire)
        {
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

    // Long: one arm per MCP method the demo server answers
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
            mcp::TOOLS_LIST => {
                let all = tools();
                let all = all.as_array().cloned().unwrap_or_default();
                let Some(size) = self.faults.page_size else {
                    return Ok(json!({ "tools": all }));
                };
                let start: usize = params["cursor"].as_str().and_then(|c| c.parse().ok()).unwrap_or(0);
                let page: Vec<Value> = all.iter().skip(start).take(size.max(1)).cloned().collect();
                let mut result = json!({ "tools": page });
                if start + size.max(1) < all.len() {
                    result["nextCursor"] = json!((start + size.max(1)).to_string());
                }
                Ok(result)
            }
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
            "roots" => {
                let answer = self.ask("roots/list", json!({})).await?;
                let uris: Vec<&str> = answer["roots"]
                    .as_array()
                    .map(|roots| roots.iter().filter_map(|r| r["uri"].as_str()).collect())
                    .unwrap_or_default();
                Ok(text(format!("roots: {}", uris.join(", "))))
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
        { "name": "roots", "description": "Asks the client for its roots and lists them",
          "inputSchema": object(json!({}), json!([])) },
        { "name": "crash", "description": "Exits the tool server process (for testing supervision)",
          "inputSchema": object(json!({}), json!([])),
          "annotations": { "destructiveHint": true } },
    ])
}
