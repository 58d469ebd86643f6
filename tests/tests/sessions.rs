//! Upstream sessions per client (`sessions = "per-client"`), against the official
//! Python SDK's FastMCP server, which keeps state per session: two clients of one
//! route see only their own state, log level, subscriptions and notifications, and a client's
//! upstream session ends with its own; under `sessions = "shared"` (one upstream
//! session for all) the documented sharing holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, Mcp, ServerProc, http, peer, text};
use serde_json::json;

async fn tool(mcp: &mut Mcp, name: &str, arguments: serde_json::Value) -> String {
    text(
        &mcp.call(
            "tools/call",
            json!({ "name": name, "arguments": arguments }),
        )
        .await,
    )
}

/// A client with its session open.
async fn client(gw: &Gateway) -> Mcp {
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    mcp
}

/// `a` and `b` each keep a value on `route` and each read back its own.
async fn kept_apart(a: &mut Mcp, b: &mut Mcp, route: &str) {
    let (remember, recall) = (format!("{route}__remember"), format!("{route}__recall"));
    for (mcp, value) in [(&mut *a, "a"), (&mut *b, "b")] {
        assert_eq!(
            tool(mcp, &remember, json!({ "value": value })).await,
            "remembered"
        );
    }
    assert_eq!(tool(a, &recall, json!({})).await, "a", "{route}");
    assert_eq!(tool(b, &recall, json!({})).await, "b", "{route}");
}

/// Ends `mcp`'s session (DELETE).
async fn end(gw: &Gateway, mcp: &Mcp) {
    let session = mcp.session.clone().unwrap();
    let deleted = http(
        gw.addr,
        "DELETE",
        "/mcp",
        &[("mcp-session-id", &session)],
        b"",
    )
    .await;
    assert!(deleted.status < 300, "{}", deleted.status);
}

/// Each route's client sessions holding an upstream session of their own, from /health.
async fn held(gw: &Gateway) -> Vec<u64> {
    let h = http(gw.admin, "GET", "/health", &[], b"").await.json();
    h["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client_sessions"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_has_its_own_upstream_session_and_shared_routes_share_one() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"mine\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n\
         sessions = \"per-client\"\n\n\
         [[route]]\nname = \"ours\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n\
         sessions = \"shared\"\n",
        port = server.port
    );
    let gw = Gateway::start("per-client-sessions", &routes);
    let mut a = client(&gw).await;
    let mut b = client(&gw).await;

    // State: each client's own on `mine`, everyone's on `ours`.
    kept_apart(&mut a, &mut b, "mine").await;
    assert_eq!(
        tool(&mut a, "ours__remember", json!({ "value": "a" })).await,
        "remembered"
    );
    assert_eq!(
        tool(&mut b, "ours__remember", json!({ "value": "b" })).await,
        "remembered"
    );
    assert_eq!(
        tool(&mut a, "ours__recall", json!({})).await,
        "b",
        "one shared upstream session: the last writer wins for everyone"
    );

    // Log levels: each client's own (logging/setLevel goes to its own session).
    for (mcp, level) in [(&mut a, "debug"), (&mut b, "error")] {
        let set = mcp
            .call("logging/setLevel", json!({ "level": level }))
            .await;
        assert_eq!(set, json!({}), "{set}");
    }
    assert_eq!(tool(&mut a, "mine__my_level", json!({})).await, "debug");
    assert_eq!(tool(&mut b, "mine__my_level", json!({})).await, "error");
    assert_eq!(
        tool(&mut a, "ours__my_level", json!({})).await,
        "error",
        "on the shared session the last level set is everyone's"
    );

    // Notifications from a client's own session reach that client alone.
    let mut a_stream = a.get_stream().await;
    let mut b_stream = b.get_stream().await;
    assert_eq!(
        tool(&mut a, "mine__tell_me_later", json!({ "message": "for a" })).await,
        "will tell"
    );
    let told = a_stream
        .next_json(Duration::from_secs(10))
        .await
        .expect("a hears its own session's log message");
    assert_eq!(told["method"], "notifications/message", "{told}");
    assert_eq!(told["params"]["data"], "for a", "{told}");
    assert!(
        b_stream
            .next_json(Duration::from_millis(800))
            .await
            .is_none(),
        "b hears nothing of a's session"
    );

    // A subscription lives in the client's own upstream session.
    let subscribed = a
        .call("resources/subscribe", json!({ "uri": "peer://note" }))
        .await;
    assert_eq!(subscribed, json!({}), "{subscribed}");
    assert_eq!(
        tool(&mut b, "mine__touch", json!({ "uri": "peer://note" })).await,
        "not subscribed"
    );
    assert_eq!(
        tool(&mut a, "mine__touch", json!({ "uri": "peer://note" })).await,
        "notified"
    );

    // The server holds the shared session plus one per client; a client that ends its
    // session ends its upstream one.
    let open = |s: String| s.parse::<u32>().unwrap();
    let before = open(tool(&mut b, "mine__open_sessions", json!({})).await);
    assert!(before >= 3, "{before}");
    end(&gw, &a).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = open(tool(&mut b, "mine__open_sessions", json!({})).await);
        if now == before - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {now} sessions upstream (was {before})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // b's own session is untouched.
    assert_eq!(tool(&mut b, "mine__recall", json!({})).await, "b");
}

/// A client whose session moves to another replica (they share the session key) gets
/// an upstream session of its own there at its next call, without noticing; the state
/// it left on the first replica's upstream session does not move with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_moving_to_another_replica_gets_its_own_upstream_session_there() {
    const KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"mine\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n",
        server.port
    );
    let a = Gateway::start_with_env("moving-a", &routes, &[("MCP_EDGE_SESSION_KEY", KEY)]);
    let b = Gateway::start_with_env("moving-b", &routes, &[("MCP_EDGE_SESSION_KEY", KEY)]);
    let mut client = a.client("/mcp");
    client.initialize().await;
    assert_eq!(
        tool(&mut client, "mine__remember", json!({ "value": "on a" })).await,
        "remembered"
    );
    assert_eq!(tool(&mut client, "mine__recall", json!({})).await, "on a");
    // The same session, now at replica b.
    client.addr = b.addr;
    assert_eq!(
        tool(&mut client, "mine__recall", json!({})).await,
        "nothing"
    );
    assert_eq!(
        tool(&mut client, "mine__remember", json!({ "value": "on b" })).await,
        "remembered"
    );
    assert_eq!(tool(&mut client, "mine__recall", json!({})).await, "on b");
}

/// A stdio route with `sessions = "per-client"` runs a child per client session: each
/// client's state is its own process's, at most `per_client_max` run at once (past it
/// a new client's call is refused, saying why), and a child ends with its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_route_runs_a_child_per_client_bounded_and_ended_with_its_session() {
    let py1 = peer("py1/bin/python");
    let routes = format!(
        "[[route]]\nname = \"kid\"\ncommand = [\"{py1}\", \"{{repo}}/tests/peers/fastmcp_server.py\"]\n\
         sessions = \"per-client\"\nper_client_max = 2\n"
    );
    let gw = Gateway::start("per-client-children", &routes);
    let mut a = client(&gw).await;
    let mut b = client(&gw).await;
    let mut c = client(&gw).await;
    kept_apart(&mut a, &mut b, "kid").await;
    assert_eq!(held(&gw).await, [2]);

    // A third client finds the pool full.
    let error = c
        .error(
            "tools/call",
            json!({ "name": "kid__recall", "arguments": {} }),
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("the route runs 2 children, one per client, its most"),
        "{error}"
    );
    assert!(
        error["data"]["retry_after_ms"].as_u64().is_some(),
        "{error}"
    );

    // a's session ends, and its child with it: c gets one.
    end(&gw, &a).await;
    assert_eq!(held(&gw).await, [1]);
    assert_eq!(tool(&mut c, "kid__recall", json!({})).await, "nothing");
    assert_eq!(tool(&mut b, "kid__recall", json!({})).await, "b");
    assert_eq!(held(&gw).await, [2]);
}

/// Legacy HTTP+SSE and WebSocket routes (FastMCP over both): by default each client gets
/// a connection of its own, so each its own session and state; it ends with the
/// client's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_and_websocket_routes_give_each_client_its_own_connection() {
    let py1 = peer("py1/bin/python");
    let sse = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--sse", "0"], &[]);
    let ws = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--ws", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"sse\"\nurl = \"http://127.0.0.1:{}/sse\"\nprotocol = \"sse\"\n\n\
         [[route]]\nname = \"ws\"\nurl = \"ws://127.0.0.1:{}/ws\"\n",
        sse.port, ws.port
    );
    let gw = Gateway::start("per-client-links", &routes);
    let mut a = client(&gw).await;
    let mut b = client(&gw).await;
    for route in ["sse", "ws"] {
        kept_apart(&mut a, &mut b, route).await;
    }
    assert_eq!(held(&gw).await, [2, 2]);
    end(&gw, &a).await;
    assert_eq!(held(&gw).await, [1, 1]);
    assert_eq!(tool(&mut b, "ws__recall", json!({})).await, "b");
}

/// A route balanced over two FastMCP replicas: each client sticks to one replica, where
/// its own upstream session is, so its state is always there; another client's state is
/// its own, wherever it landed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_balanced_replicas_each_client_sticks_to_its_own_session() {
    let py1 = peer("py1/bin/python");
    let one = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let two = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"pair\"\nurls = [\"http://127.0.0.1:{}/mcp\", \"http://127.0.0.1:{}/mcp\"]\n\
         sessions = \"per-client\"\n",
        one.port, two.port
    );
    let gw = Gateway::start("per-client-balanced", &routes);
    let mut clients = Vec::new();
    for i in 0..6 {
        let mut mcp = gw.client("/mcp");
        mcp.initialize().await;
        let value = format!("client {i}");
        assert_eq!(
            tool(&mut mcp, "pair__remember", json!({ "value": value })).await,
            "remembered"
        );
        clients.push((mcp, value));
    }
    // Many calls each, spread by the balancer but for the client's session: always its
    // own state.
    for _ in 0..5 {
        for (mcp, value) in &mut clients {
            assert_eq!(tool(mcp, "pair__recall", json!({})).await, *value);
        }
    }
    assert_eq!(held(&gw).await, [6]);
}
