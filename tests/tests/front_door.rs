//! The front door under hostile clients: slow heads, stalled bodies, idle connections,
//! connection floods and bodies held open are each cut off by a limit, and a client
//! already being served keeps being served while the limits bite.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, call_on, closed_within, connect_from, http};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const LIMITS: &str = "[gateway.limits]\nheader_timeout = \"2s\"\nbody_timeout = \"2s\"\nidle_timeout = \"3s\"\n\
                      max_connections_per_client = 40\nmax_buffered_bytes = 1048576\n\n";

fn routes() -> String {
    format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n{LIMITS}\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_stalled_bodies_and_idle_connections_are_cut_off() {
    let gw = Gateway::start("front-timeouts", &routes());
    let addr = gw.addr;

    // Slowloris: heads that never end are closed after header_timeout.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A connection that says nothing at all.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    // A body announced at 100 bytes that stops after 10.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
              accept: application/json, text/event-stream\r\ncontent-length: 100\r\n\r\n{\"jsonrpc\"",
        )
        .await
        .unwrap();
    // A keep-alive connection that made a call and then goes quiet.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    assert_eq!(call_on(&mut idle, addr, 1).await, 200);

    let started = Instant::now();
    let (closed, answer) = closed_within(&mut stalled, Duration::from_secs(6)).await;
    assert!(closed, "the stalled body's connection was left open");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    for (i, stream) in slow.iter_mut().enumerate() {
        let (closed, _) = closed_within(stream, Duration::from_secs(6)).await;
        assert!(closed, "slow head {i} was left open");
    }
    let (closed, _) = closed_within(&mut silent, Duration::from_secs(6)).await;
    assert!(closed, "the silent connection was left open");
    let (closed, _) = closed_within(&mut idle, Duration::from_secs(6)).await;
    assert!(closed, "the idle keep-alive connection was left open");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    let metrics = String::from_utf8_lossy(&http(gw.admin, "GET", "/metrics", &[], b"").await.body)
        .into_owned();
    let timed_out: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_edge_connections_timed_out_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(timed_out >= 2, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_refused_while_established_clients_are_served() {
    let gw = Gateway::start("front-flood", &routes());
    let addr = gw.addr;
    // An established client, from its own address.
    let mut established = connect_from([127, 0, 0, 2], addr).await;
    assert_eq!(call_on(&mut established, addr, 1).await, 200);

    // A flood from 127.0.0.1: the cap is 40 connections per client address.
    let mut flood = Vec::new();
    for _ in 0..40 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /").await.unwrap();
        flood.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = 0;
    for _ in 0..20 {
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let (closed, answer) = closed_within(&mut extra, Duration::from_millis(500)).await;
        if closed && answer.is_empty() {
            refused += 1;
        }
    }
    assert_eq!(refused, 20, "connections past the cap are closed at once");
    // The established client is served, and a new client from another address too.
    for n in 2..6 {
        assert_eq!(call_on(&mut established, addr, n).await, 200);
    }
    let mut newcomer = connect_from([127, 0, 0, 3], addr).await;
    assert_eq!(call_on(&mut newcomer, addr, 9).await, 200);

    let metrics = String::from_utf8_lossy(&http(gw.admin, "GET", "/metrics", &[], b"").await.body)
        .into_owned();
    assert!(
        metrics.contains("mcp_edge_connections_refused_total 20"),
        "{metrics}"
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_held_open_are_bounded_by_the_buffering_budget() {
    let gw = Gateway::start("front-budget", &routes());
    let addr = gw.addr;
    // Each announces 4 MB and sends 300 KB: the 1 MiB budget holds three of them.
    let chunk = vec![b' '; 300 * 1024];
    let mut held = Vec::new();
    let mut refused = 0;
    for i in 0..6 {
        let mut stream = connect_from([127, 0, 0, 10 + i], addr).await;
        stream
            .write_all(
                b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                  accept: application/json, text/event-stream\r\ncontent-length: 4000000\r\n\r\n",
            )
            .await
            .unwrap();
        stream.write_all(&chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (closed, answer) = closed_within(&mut stream, Duration::from_millis(300)).await;
        if answer.starts_with("HTTP/1.1 503") {
            assert!(answer.contains("max_buffered_bytes"), "{answer}");
            refused += 1;
        } else {
            assert!(!closed, "body {i}: {answer}");
        }
        held.push(stream);
    }
    assert!(
        refused >= 2,
        "bodies past the budget are refused ({refused})"
    );
    let metrics = String::from_utf8_lossy(&http(gw.admin, "GET", "/metrics", &[], b"").await.body)
        .into_owned();
    let buffered: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mcp_edge_request_body_bytes_buffered "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(buffered <= 1 << 20, "{buffered} bytes buffered");
    // Meanwhile a small call is served.
    let mut client = connect_from([127, 0, 0, 30], addr).await;
    assert_eq!(call_on(&mut client, addr, 1).await, 200);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_and_origin_are_read_strictly_on_both_listeners() {
    let gw = Gateway::start("front-host", &routes());
    let post = |extra: &'static str| {
        format!(
            "POST /mcp HTTP/1.1\r\n{extra}content-type: application/json\r\naccept: application/json, text/event-stream\r\ncontent-length: 2\r\n\r\n{{}}"
        )
    };
    for (request, status) in [
        (post(""), "421"),
        (post("Host: 127.0.0.1\r\nHost: evil.example\r\n"), "421"),
        (
            post("Host: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nOrigin: https://evil.example\r\n"),
            "403",
        ),
    ] {
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let (_, answer) = closed_within(&mut stream, Duration::from_secs(3)).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request}\n{answer}"
        );
    }
    // The admin listener answers only loopback names (DNS rebinding).
    let rebound = http(
        gw.admin,
        "GET",
        "/health",
        &[("host", "evil.example:9090")],
        b"",
    )
    .await;
    assert_eq!(rebound.status, 421);
    let ok = http(gw.admin, "GET", "/health", &[], b"").await;
    assert_eq!(ok.status, 200);
}

/// `initialize` from the loopback address `from`: the status, the session id given,
/// and the body.
async fn initialize_from(from: [u8; 4], addr: SocketAddr) -> (u16, Option<String>, String) {
    let mut stream = connect_from(from, addr).await;
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "flood", "version": "1" } } }).to_string();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\naccept: application/json, text/event-stream\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (_, answer) = closed_within(&mut stream, Duration::from_secs(5)).await;
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let session = answer.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .starts_with("mcp-session-id:")
            .then(|| l.split_once(':').unwrap().1.trim().to_owned())
    });
    (status, session, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_flood_is_held_to_its_client_and_cannot_lock_out_others() {
    let gw = Gateway::start(
        "front-sessions",
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\n\n\
         [gateway.limits]\nmax_sessions = 30\nmax_sessions_per_client = 20\nnew_sessions_per_second = 5\nnew_sessions_burst = 10\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
    );
    let addr = gw.addr;
    // A well-behaved client from its own address: initialized, and in use throughout.
    let mut good = gw.client("/mcp");
    good.initialize().await;

    // The flood: a burst is admitted, then the rate says when to come back.
    for i in 0..10 {
        let (status, session, answer) = initialize_from([127, 0, 0, 5], addr).await;
        assert_eq!(status, 200, "burst {i}: {answer}");
        assert!(session.is_some());
    }
    let (status, _, answer) = initialize_from([127, 0, 0, 5], addr).await;
    assert_eq!(status, 429, "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after"),
        "{answer}"
    );
    assert!(answer.contains("new_sessions_per_second"), "{answer}");
    // After the refill, up to the client's quota, then the quota says no.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut opened = 0;
    let mut quota = None;
    for _ in 0..12 {
        let (status, _, answer) = initialize_from([127, 0, 0, 5], addr).await;
        match status {
            200 => opened += 1,
            429 if answer.contains("max_sessions_per_client") => {
                quota = Some(answer);
                break;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(opened, 10, "20 in all for this client");
    assert!(
        quota.is_some(),
        "the 21st session is refused by the client's quota"
    );

    // 21 sessions open (the good one and the flood's 20); max_sessions is 30. Other
    // clients still get sessions: the flood's, never initialized, make room.
    for i in 0..12u8 {
        let (status, _, answer) = initialize_from([127, 0, 1, i], addr).await;
        assert_eq!(status, 200, "newcomer {i}: {answer}");
    }
    // The initialized session was never evicted.
    let r = good
        .call(
            "tools/call",
            json!({ "name": "demo__echo", "arguments": { "message": "still mine" } }),
        )
        .await;
    assert_eq!(r["content"][0]["text"], "still mine");
}
