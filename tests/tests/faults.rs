//! The fault matrix: every hostile client and tool server the edge has met, against one
//! running gateway, one after another, while a well-behaved client on its own address
//! calls a healthy route throughout. For each fault: the faulty party gets a clear
//! answer (or is cut off) within a bound, the bystander's calls keep their latency,
//! nothing hangs; at the end the gateway's memory is bounded and it still serves.
//! The outcome is printed as a table.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mcp_edge_tests::{Gateway, call_on, closed_within, connect_from, dripping_server};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

type Fault = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

fn routes(drip: u16) -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [gateway.limits]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\nidle_timeout = \"3s\"\n\
         max_connections_per_client = 40\nmax_buffered_bytes = 1048576\n\
         max_sessions_per_client = 20\nnew_sessions_per_second = 5\nnew_sessions_burst = 10\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"drip\"\nurl = \"http://127.0.0.1:{drip}/mcp\"\nprotocol = \"streamable-http\"\n\
         timeout = \"3s\"\nretry = {{ attempts = 1 }}\nprobe_interval = \"0s\"\n\n\
         [[route]]\nname = \"hung\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\", \"--hang\"]\ntimeout = \"1s\"\n\n\
         [[route]]\nname = \"fragile\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"leaky\"\ncommand = [\"sh\", \"-c\", \"echo \\\"login failed with key $API_KEY\\\" >&2; exit 3\"]\n\
         env = {{ API_KEY = {{ env = \"FAULTS_PLANTED_KEY\" }} }}\n"
    )
}

/// A raw HTTP/1.1 exchange from 127.0.0.1: the answer, as text, once the server closes
/// or `within` passes.
async fn raw(addr: std::net::SocketAddr, request: Vec<u8>, within: Duration) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(&request).await;
    closed_within(&mut stream, within).await.1
}

fn post(body: &[u8], extra: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\nconnection: close\r\n{extra}content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

fn status(answer: &str) -> &str {
    answer.get(9..12).unwrap_or("---")
}

/// A 2026-07-28 `tools/call` body (no session needed).
fn call_body(tool: &str, arguments: &Value) -> Vec<u8> {
    json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": tool, "arguments": arguments,
        "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } })
    .to_string()
    .into_bytes()
}

fn stateless_headers(tool: &str) -> String {
    format!("mcp-protocol-version: 2026-07-28\r\nmcp-method: tools/call\r\nmcp-name: {tool}\r\n")
}

/// A stateless call's JSON-RPC error, from a raw answer.
fn error_of(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json = body
        .lines()
        .find_map(|l| l.strip_prefix("data:").map(str::trim))
        .unwrap_or(body);
    serde_json::from_str::<Value>(json).map_or(Value::Null, |v| v["error"].clone())
}

fn expect(ok: bool, what: String) -> Result<String, String> {
    if ok { Ok(what) } else { Err(what) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_contained() {
    let drip = dripping_server(Instant::now() + Duration::from_secs(120)).await;
    let gw = Gateway::start_with_env(
        "faults",
        &routes(drip),
        &[("FAULTS_PLANTED_KEY", "planted-fault-key-77c2")],
    );
    let addr = gw.addr;

    // The bystander: its own address, a fresh connection per call, all the while.
    let samples: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let bystander = {
        let (samples, stop) = (samples.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let mut stream = connect_from([127, 0, 0, 9], addr).await;
                assert_eq!(
                    call_on(&mut stream, addr, n).await,
                    200,
                    "the bystander's call"
                );
                samples.lock().unwrap().push((started, started.elapsed()));
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let big_head = "x".repeat(1 << 20);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let faults: Vec<(&str, Fault)> = vec![
        (
            "malformed JSON",
            Box::pin(async move {
                let a = raw(addr, post(b"{\"jsonrpc\":", ""), Duration::from_secs(5)).await;
                expect(
                    status(&a) == "400" && a.contains("-32700"),
                    format!("{} -32700", status(&a)),
                )
            }),
        ),
        (
            "invalid UTF-8",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(
                        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\xfe\"}",
                        "",
                    ),
                    Duration::from_secs(5),
                )
                .await;
                expect(status(&a) == "400", status(&a).to_owned())
            }),
        ),
        (
            "100k-deep nesting",
            Box::pin(async move {
                let a = raw(addr, post(deep.as_bytes(), ""), Duration::from_secs(5)).await;
                expect(status(&a) == "400", status(&a).to_owned())
            }),
        ),
        (
            "5 MB body",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(&vec![b' '; 5 << 20], ""),
                    Duration::from_secs(10),
                )
                .await;
                expect(status(&a) == "413", status(&a).to_owned())
            }),
        ),
        (
            "1 MB header",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(b"{}", &format!("x-big: {big_head}\r\n")),
                    Duration::from_secs(5),
                )
                .await;
                expect(status(&a) == "431", status(&a).to_owned())
            }),
        ),
        (
            "forged session id",
            Box::pin(async move {
                let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }).to_string();
                let a = raw(
                    addr,
                    post(
                        body.as_bytes(),
                        "mcp-session-id: s1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n",
                    ),
                    Duration::from_secs(5),
                )
                .await;
                expect(status(&a) == "404", status(&a).to_owned())
            }),
        ),
        (
            "a 600 KB method name",
            Box::pin(async move {
                // Under the 1 MiB body budget, so that it is read and answered.
                let method = "m".repeat(600 * 1024);
                let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": { "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28" } } }).to_string();
                let a = raw(
                    addr,
                    post(
                        body.as_bytes(),
                        &format!(
                            "mcp-protocol-version: 2026-07-28\r\nmcp-method: {}\r\n",
                            "m".repeat(100)
                        ),
                    ),
                    Duration::from_secs(5),
                )
                .await;
                expect(
                    a.len() < 4096 && status(&a) == "400",
                    format!("{} in {} bytes", status(&a), a.len()),
                )
            }),
        ),
        (
            "30 slowloris heads",
            Box::pin(async move {
                let mut held = Vec::new();
                for _ in 0..30 {
                    let mut s = TcpStream::connect(addr).await.unwrap();
                    s.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                        .await
                        .unwrap();
                    held.push(s);
                }
                let mut closed = 0;
                for s in &mut held {
                    closed += usize::from(closed_within(s, Duration::from_secs(6)).await.0);
                }
                expect(closed == 30, format!("{closed}/30 closed"))
            }),
        ),
        (
            "a stalled body",
            Box::pin(async move {
                let mut request = post(&[b' '; 100], "");
                request.truncate(request.len() - 90);
                let a = raw(addr, request, Duration::from_secs(6)).await;
                expect(status(&a) == "408", status(&a).to_owned())
            }),
        ),
        (
            "100 idle keep-alive connections",
            Box::pin(async move {
                let mut idle = Vec::new();
                for _ in 0..100 {
                    idle.push(TcpStream::connect(addr).await.unwrap());
                }
                let mut closed = 0;
                for s in &mut idle {
                    closed += usize::from(closed_within(s, Duration::from_secs(6)).await.0);
                }
                expect(closed == 100, format!("{closed}/100 closed"))
            }),
        ),
        (
            "a connection flood from one address",
            Box::pin(async move {
                let mut flood = Vec::new();
                for _ in 0..40 {
                    let mut s = connect_from([127, 0, 0, 20], addr).await;
                    s.write_all(b"GET /").await.unwrap();
                    flood.push(s);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut refused = 0;
                for _ in 0..20 {
                    let mut extra = connect_from([127, 0, 0, 20], addr).await;
                    let (closed, answer) =
                        closed_within(&mut extra, Duration::from_millis(500)).await;
                    refused += usize::from(closed && answer.is_empty());
                }
                expect(
                    refused == 20,
                    format!("{refused}/20 past the cap closed at once"),
                )
            }),
        ),
        (
            "bodies held open",
            Box::pin(async move {
                let mut held = Vec::new();
                let mut refused = 0;
                for i in 0..6 {
                    let mut s = connect_from([127, 0, 0, 30 + i], addr).await;
                    let head = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 4000000\r\n\r\n";
                    s.write_all(head.as_bytes()).await.unwrap();
                    s.write_all(&vec![b' '; 300 * 1024]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    let (_, answer) = closed_within(&mut s, Duration::from_millis(300)).await;
                    refused += usize::from(status(&answer) == "503");
                    held.push(s);
                }
                expect(
                    refused >= 2,
                    format!("{refused}/6 refused (503) past the budget"),
                )
            }),
        ),
        (
            "a session flood",
            Box::pin(async move {
                let mut codes = std::collections::BTreeMap::new();
                for _ in 0..30 {
                    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "flood", "version": "1" } } }).to_string();
                    let mut s = connect_from([127, 0, 0, 40], addr).await;
                    s.write_all(&post(body.as_bytes(), "")).await.unwrap();
                    let (_, a) = closed_within(&mut s, Duration::from_secs(5)).await;
                    *codes.entry(status(&a).to_owned()).or_insert(0) += 1;
                }
                expect(
                    codes.get("429").copied().unwrap_or(0) >= 10,
                    format!("{codes:?}"),
                )
            }),
        ),
        (
            "a tool server dripping an endless line",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(
                        &call_body("drip__drip", &json!({})),
                        &stateless_headers("drip__drip"),
                    ),
                    Duration::from_secs(10),
                )
                .await;
                let e = error_of(&a);
                let reason = e["data"]["reason"].as_str().unwrap_or("?").to_owned();
                expect(
                    matches!(reason.as_str(), "timeout" | "upstream_protocol"),
                    reason,
                )
            }),
        ),
        (
            "a hung tool server",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(
                        &call_body("hung__echo", &json!({ "message": "?" })),
                        &stateless_headers("hung__echo"),
                    ),
                    Duration::from_secs(10),
                )
                .await;
                let e = error_of(&a);
                expect(
                    e["code"] == -32003,
                    format!("{} {}", e["code"], e["data"]["reason"]),
                )
            }),
        ),
        (
            "a tool server that crashes mid-call",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(
                        &call_body("fragile__crash", &json!({})),
                        &stateless_headers("fragile__crash"),
                    ),
                    Duration::from_secs(10),
                )
                .await;
                let e = error_of(&a);
                let reason = e["data"]["reason"].as_str().unwrap_or("?").to_owned();
                expect(reason.starts_with("upstream_"), reason)
            }),
        ),
        (
            "a child printing its key on stderr",
            Box::pin(async move {
                let a = raw(
                    addr,
                    post(
                        &call_body("leaky__x", &json!({})),
                        &stateless_headers("leaky__x"),
                    ),
                    Duration::from_secs(10),
                )
                .await;
                expect(
                    !a.contains("planted-fault-key-77c2") && !a.contains("login failed"),
                    format!("{} without the key", error_of(&a)["data"]["reason"]),
                )
            }),
        ),
    ];

    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<40} {:<44} {:>14}  result",
        "fault", "what the faulty party got", "bystander max"
    );
    let mut failed = 0;
    for (name, fault) in faults {
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(30), fault)
            .await
            .unwrap_or_else(|_| Err("hung: no answer within 30 s".into()));
        let ended = Instant::now();
        let worst = samples
            .lock()
            .unwrap()
            .iter()
            .filter(|(at, _)| *at >= started && *at <= ended)
            .map(|(_, took)| *took)
            .max()
            .unwrap_or_default();
        let slow = worst > Duration::from_millis(1000);
        let (text, ok) = match &outcome {
            Ok(t) => (t.clone(), !slow),
            Err(t) => (t.clone(), false),
        };
        if !ok {
            failed += 1;
        }
        let _ = writeln!(
            table,
            "{name:<40} {:<44} {:>11} ms  {}",
            text.chars().take(44).collect::<String>(),
            worst.as_millis(),
            if ok {
                "ok"
            } else if slow {
                "FAILED: the bystander slowed"
            } else {
                "FAILED"
            }
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    bystander
        .await
        .expect("the bystander was served throughout");

    let status_file = std::fs::read_to_string(format!("/proc/{}/status", gw.pid())).unwrap();
    let rss_kb: u64 = status_file
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let _ = writeln!(table, "gateway RSS after every fault: {} MB", rss_kb / 1024);
    println!("\nfault matrix:\n{table}");
    assert_eq!(failed, 0, "{failed} faults not contained:\n{table}");
    assert!(rss_kb < 300 * 1024, "memory bounded: {rss_kb} kB\n{table}");
    assert!(
        !gw.logs().contains("planted-fault-key-77c2"),
        "the key stays out of the log"
    );
}
