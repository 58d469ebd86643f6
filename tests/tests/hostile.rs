//! Hostile tool servers: one that misbehaves gets a clear error for its own calls, and
//! every other client keeps being served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, text};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Reads one HTTP/1.1 request: its method and JSON body (`Null` when there is none).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Value)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let mut more = [0u8; 4096];
                let n = stream.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            let body =
                serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
            buf.drain(..end + 4 + length);
            let method = head.split(' ').next().unwrap_or_default().to_owned();
            return Some((method, body));
        }
        let mut more = [0u8; 4096];
        let n = stream.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

async fn respond_json(stream: &mut TcpStream, status: &str, extra: &str, body: &Value) {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
}

/// A session-era Streamable HTTP tool server whose one tool answers with an event
/// stream that never ends a line: `data: ` and then 16-byte pieces, as fast as they
/// go, until `stop`.
async fn dripping_server(stop: Instant) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((method, body)) = read_request(&mut stream, &mut buf).await {
                    if method != "POST" {
                        respond_json(&mut stream, "405 Method Not Allowed", "", &json!({})).await;
                        continue;
                    }
                    let id = body["id"].clone();
                    match body["method"].as_str().unwrap_or_default() {
                        "initialize" => {
                            let result = json!({ "jsonrpc": "2.0", "id": id, "result": {
                                "protocolVersion": "2025-06-18", "capabilities": { "tools": {} },
                                "serverInfo": { "name": "drip", "version": "1" } } });
                            respond_json(
                                &mut stream,
                                "200 OK",
                                "mcp-session-id: drip-1\r\n",
                                &result,
                            )
                            .await;
                        }
                        "tools/list" => {
                            let result = json!({ "jsonrpc": "2.0", "id": id, "result": { "tools": [
                                { "name": "drip", "inputSchema": { "type": "object" } } ] } });
                            respond_json(&mut stream, "200 OK", "", &result).await;
                        }
                        "tools/call" => {
                            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n6\r\ndata: \r\n";
                            if stream.write_all(head.as_bytes()).await.is_err() {
                                return;
                            }
                            let piece = b"10\r\nxxxxxxxxxxxxxxxx\r\n";
                            while Instant::now() < stop {
                                if stream.write_all(piece).await.is_err() {
                                    return;
                                }
                                tokio::task::yield_now().await;
                            }
                            return;
                        }
                        "ping" => {
                            respond_json(
                                &mut stream,
                                "200 OK",
                                "",
                                &json!({ "jsonrpc": "2.0", "id": id, "result": {} }),
                            )
                            .await;
                        }
                        _ if id.is_null() => {
                            let _ = stream
                                .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
                                .await;
                        }
                        _ => {
                            let error = json!({ "jsonrpc": "2.0", "id": id, "error": { "code": -32601, "message": "no" } });
                            respond_json(&mut stream, "200 OK", "", &error).await;
                        }
                    }
                }
            });
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_dripping_an_endless_line_does_not_slow_anyone_else() {
    let stop = Instant::now() + Duration::from_secs(25);
    let port = dripping_server(stop).await;
    let gw = Gateway::start(
        "hostile-drip",
        &format!(
            "[[route]]\nname = \"drip\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n\
             timeout = \"5s\"\nretry = {{ attempts = 1 }}\nprobe_interval = \"0s\"\n\n\
             [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n"
        ),
    );
    let mut victim = gw.client("/mcp");
    victim.initialize().await;
    let mut bystander = gw.client("/mcp");
    bystander.initialize().await;
    let names = bystander.tool_names().await;
    assert!(names.contains(&"drip__drip".to_owned()), "{names:?}");

    // Four calls into the drip at once, each holding a stream that never ends a line.
    let mut drips = Vec::new();
    for _ in 0..4 {
        let mut victim = gw.client("/mcp");
        victim.initialize().await;
        drips.push(tokio::spawn(async move {
            let started = Instant::now();
            let error = victim
                .error(
                    "tools/call",
                    json!({ "name": "drip__drip", "arguments": {} }),
                )
                .await;
            (started.elapsed(), error)
        }));
    }
    // Meanwhile another client's calls on another route keep their pace.
    let mut worst = Duration::ZERO;
    let until = Instant::now() + Duration::from_secs(4);
    let mut calls = 0;
    while Instant::now() < until {
        let started = Instant::now();
        let r = bystander
            .call(
                "tools/call",
                json!({ "name": "demo__echo", "arguments": { "message": "still here" } }),
            )
            .await;
        assert_eq!(text(&r), "still here");
        worst = worst.max(started.elapsed());
        calls += 1;
    }
    assert!(
        worst < Duration::from_millis(1000),
        "a bystander's call took {worst:?} while the drip ran ({calls} calls)"
    );
    // The drip's own callers get a clear error within the route's timeout (or the
    // event-size limit), never a hang.
    for drip in drips {
        let (took, error) = tokio::time::timeout(Duration::from_secs(15), drip)
            .await
            .expect("the drip's caller was answered")
            .unwrap();
        assert!(took < Duration::from_secs(10), "answered after {took:?}");
        let reason = error["data"]["reason"].as_str().unwrap_or_default();
        assert!(
            matches!(reason, "timeout" | "upstream_protocol"),
            "a clear reason: {error}"
        );
    }
    let _ = victim;
}
