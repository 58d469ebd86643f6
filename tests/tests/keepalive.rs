//! Keep-alives on every long-lived stream, so that a load balancer's idle timeout does
//! not cut them: an SSE comment on a POST whose answer is slow (the answer becomes a
//! stream), on the session's GET stream and on a legacy SSE stream, and a ping on a
//! WebSocket; `[gateway.limits] keepalive` sets the interval, `"0s"` turns them off.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::time::Duration;

use mcp_edge_tests::{Gateway, http};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn routes(keepalive: &str) -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [gateway.limits]\nkeepalive = \"{keepalive}\"\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n"
    )
}

/// Everything a request's connection receives within `window`.
async fn received(addr: SocketAddr, head: String, window: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(window, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// The request head of session `id`'s GET stream.
fn get_stream(addr: SocketAddr, id: &str) -> String {
    format!(
        "GET /mcp HTTP/1.1\r\nHost: {addr}\r\naccept: text/event-stream\r\nmcp-session-id: {id}\r\n\
         mcp-protocol-version: 2025-11-25\r\n\r\n"
    )
}

/// A session, opened with `initialize`: its id.
async fn session(gw: &Gateway) -> String {
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    mcp.session.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_streams_carry_keep_alives_at_the_configured_interval() {
    let gw = Gateway::start("keepalive-on", &routes("1s"));

    // A silent call of 3.5 s: the answer becomes an event stream at the first second
    // of silence, with a keep-alive comment each second, then the answer.
    let body = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": { "name": "demo__slow", "arguments": { "seconds": 3.5, "steps": 1 },
                    "_meta": { "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                               "io.modelcontextprotocol/clientCapabilities": {} } }
    })
    .to_string();
    let resp = http(
        gw.addr,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "demo__slow"),
        ],
        body.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8_lossy(&resp.body).into_owned();
    let comments = count(text.as_bytes(), b": keep-alive\n\n");
    assert!(
        (2..=5).contains(&comments),
        "{comments} keep-alives:\n{text}"
    );
    assert!(text.contains("done after 3.5s"), "{text}");
    assert!(text.find(": keep-alive").unwrap() < text.find("done after").unwrap());

    // The session's GET stream: a comment each second of silence.
    let id = session(&gw).await;
    let got = received(
        gw.addr,
        get_stream(gw.addr, &id),
        Duration::from_millis(3500),
    )
    .await;
    let comments = count(&got, b": keep-alive\n\n");
    assert!(
        (2..=4).contains(&comments),
        "{comments}: {}",
        String::from_utf8_lossy(&got)
    );

    // A legacy SSE stream: the endpoint event, then comments.
    let got = received(
        gw.addr,
        format!(
            "GET /sse HTTP/1.1\r\nHost: {}\r\naccept: text/event-stream\r\n\r\n",
            gw.addr
        ),
        Duration::from_millis(2500),
    )
    .await;
    assert!(count(&got, b"event: endpoint") == 1, "{got:?}");
    assert!(count(&got, b": keep-alive\n\n") >= 1, "{got:?}");

    // A WebSocket: a ping frame (FIN + opcode 9, empty, unmasked) each second.
    let got = received(
        gw.addr,
        format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             sec-websocket-protocol: mcp\r\n\r\n",
            gw.addr
        ),
        Duration::from_millis(2500),
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 101"), "{got:?}");
    let pings = count(&got, &[0x89, 0x00]);
    assert!((1..=3).contains(&pings), "{pings} pings: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_turns_keep_alives_off() {
    let gw = Gateway::start("keepalive-off", &routes("0s"));
    let id = session(&gw).await;
    let got = received(
        gw.addr,
        get_stream(gw.addr, &id),
        Duration::from_millis(2000),
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 200"), "{got:?}");
    assert_eq!(
        count(&got, b"keep-alive"),
        0,
        "{}",
        String::from_utf8_lossy(&got)
    );
}
