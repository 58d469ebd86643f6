//! Network tool servers from the official SDKs behind the gateway: the TypeScript
//! server-everything over Streamable HTTP and legacy SSE (found by `auto`, which falls
//! back when `initialize` is refused), a Python FastMCP server over both, and a stdio
//! server exposed over WebSocket by supergateway.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use mcp_edge_tests::{Gateway, ServerProc, mcp_edge, peer, repo_root, text};
use serde_json::json;

/// A Node server kept on loopback by the preload, on an ephemeral port.
fn node_server(script: &str, args: &[&str]) -> ServerProc {
    let preload = repo_root()
        .join("tests/peers/loopback.cjs")
        .display()
        .to_string();
    let mut all = vec!["--require", preload.as_str(), script];
    all.extend_from_slice(args);
    ServerProc::start("node", &all, &[("PORT", "0")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_tool_servers_of_every_transport() {
    let everything =
        peer("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let supergateway = peer("node/node_modules/supergateway/dist/index.js");
    let py1 = peer("py1/bin/python");
    let se_http = node_server(&everything, &["streamableHttp"]);
    let se_sse = node_server(&everything, &["sse"]);
    let fast_http = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let fast_sse = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--sse", "0"], &[]);
    let stdio = format!("{} demo-tools --stdio", mcp_edge().display());
    let ws = node_server(
        &supergateway,
        &[
            "--stdio",
            &stdio,
            "--outputTransport",
            "ws",
            "--port",
            "0",
            "--logLevel",
            "none",
        ],
    );

    let routes = format!(
        "[[route]]\nname = \"se_http\"\nurl = \"http://127.0.0.1:{}/mcp\"\n\n\
         [[route]]\nname = \"se_sse\"\nurl = \"http://127.0.0.1:{}/sse\"\n\n\
         [[route]]\nname = \"fast_http\"\nurl = \"http://localhost:{}/mcp\"\nprotocol = \"streamable-http\"\n\n\
         [[route]]\nname = \"fast_sse\"\naddress = \"127.0.0.1:{}\"\nprotocol = \"sse\"\n\n\
         [[route]]\nname = \"ws\"\nurl = \"ws://127.0.0.1:{}/message\"\n",
        se_http.port, se_sse.port, fast_http.port, fast_sse.port, ws.port
    );
    // `address` routes get the path /mcp; FastMCP's SSE stream is at /sse.
    let routes = routes.replace(
        &format!("address = \"127.0.0.1:{}\"", fast_sse.port),
        &format!("url = \"http://127.0.0.1:{}/sse\"", fast_sse.port),
    );
    let gw = Gateway::start_on_one_worker("upstreams", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let names = mcp.tool_names().await;
    for expected in [
        "se_http__echo",
        "se_sse__echo",
        "fast_http__add",
        "fast_sse__add",
        "ws__add",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing: {names:?}\n{}",
            gw.logs()
        );
    }
    for route in ["se_http", "se_sse"] {
        let result = mcp
            .call(
                "tools/call",
                json!({ "name": format!("{route}__echo"), "arguments": { "message": route } }),
            )
            .await;
        assert_eq!(text(&result), format!("Echo: {route}"));
    }
    for route in ["fast_http", "fast_sse"] {
        let result = mcp
            .call(
                "tools/call",
                json!({ "name": format!("{route}__add"), "arguments": { "a": 20, "b": 22 } }),
            )
            .await;
        assert_eq!(text(&result), "42", "{route}");
    }
    let result = mcp
        .call(
            "tools/call",
            json!({ "name": "ws__echo", "arguments": { "message": "over a websocket" } }),
        )
        .await;
    assert_eq!(text(&result), "over a websocket");

    // Progress from a network tool server reaches the client with its own token.
    let messages = mcp
        .rpc("tools/call", json!({ "name": "ws__slow", "arguments": { "seconds": 0.3, "steps": 2 }, "_meta": { "progressToken": "t-1" } }))
        .await;
    let progress: Vec<_> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 2, "{messages:#?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "t-1")
    );

    // A server that goes away is reported by route, and the others keep serving.
    drop(ws);
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "ws__echo", "arguments": { "message": "?" } }),
        )
        .await;
    assert_eq!(error["data"]["route"], "ws", "{error}");
    let result = mcp
        .call(
            "tools/call",
            json!({ "name": "se_http__echo", "arguments": { "message": "still" } }),
        )
        .await;
    assert_eq!(text(&result), "Echo: still");
}

/// A tool server that closes a call's event stream before answering (the 2025-11-25
/// polling pattern) is resumed with `Last-Event-ID`, and the caller gets the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_response_stream_is_resumed_with_last_event_id() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(
        &py1,
        &[
            "tests/peers/fastmcp_server.py",
            "--http",
            "0",
            "--resumable",
        ],
        &[],
    );
    let routes = format!(
        "[[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n",
        server.port
    );
    let gw = Gateway::start("resume", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for round in 0..3 {
        let message = format!("after the stream closed, round {round}");
        let result = mcp
            .call(
                "tools/call",
                json!({ "name": "fast__detach", "arguments": { "message": message } }),
            )
            .await;
        assert_eq!(text(&result), message, "{}", gw.logs());
    }
    // Calls that are not detached are unaffected.
    let result = mcp
        .call(
            "tools/call",
            json!({ "name": "fast__add", "arguments": { "a": 1, "b": 2 } }),
        )
        .await;
    assert_eq!(text(&result), "3");
}

/// A tool server that forgets its sessions (as a restarted one does) answers 404 to
/// them. The gateway opens a new session for the next call, and never turns the lost
/// one into a silent success: a call that is safe to repeat (a read-only tool) is made
/// again in the new session; one that is not (a write) fails, saying it was not made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_upstream_session_is_reopened_and_only_safe_calls_are_repeated() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n",
        server.port
    );
    let gw = Gateway::start("stale-session", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    // The list teaches the gateway which tools are read-only.
    assert!(mcp.tool_names().await.contains(&"fast__lookup".to_owned()));
    let call = |name: &str, arguments: serde_json::Value| json!({ "name": format!("fast__{name}"), "arguments": arguments });
    let r = mcp
        .call("tools/call", call("write", json!({ "key": "a" })))
        .await;
    assert_eq!(text(&r), "wrote a");

    // A write after the server forgot the session: not made, and it says so.
    let r = mcp
        .call("tools/call", call("forget_sessions", json!({})))
        .await;
    assert!(text(&r).starts_with("forgot "), "{r}");
    let error = mcp
        .error("tools/call", call("write", json!({ "key": "b" })))
        .await;
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("no longer knows its session") && message.contains("not made"),
        "{error}"
    );
    assert_eq!(error["data"]["reason"], "upstream_session_gone", "{error}");
    // The next call went to a new session, and `b` was never written.
    let r = mcp.call("tools/call", call("writes", json!({}))).await;
    assert_eq!(text(&r), "a");

    // A read-only call in a forgotten session is made again, in a new one, unseen.
    let r = mcp
        .call("tools/call", call("forget_sessions", json!({})))
        .await;
    assert!(text(&r).starts_with("forgot "), "{r}");
    let r = mcp
        .call("tools/call", call("lookup", json!({ "key": "k" })))
        .await;
    assert_eq!(text(&r), "value of k");
    let r = mcp
        .call("tools/call", call("write", json!({ "key": "c" })))
        .await;
    assert_eq!(text(&r), "wrote c");
    let r = mcp.call("tools/call", call("writes", json!({}))).await;
    assert_eq!(text(&r), "a,c");
    assert!(
        gw.logs().contains("upstream session ended (404)"),
        "{}",
        gw.logs()
    );
}

/// The calls of `method` the route made through its policies, from `/metrics`.
async fn list_calls(gw: &Gateway, route: &str, method: &str) -> u64 {
    let metrics = mcp_edge_tests::http(gw.admin, "GET", "/metrics", &[], b"").await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let prefix =
        format!("mcp_edge_calls_total{{route=\"{route}\",method=\"{method}\",outcome=\"ok\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// A route's list is asked once and kept for every client; a `list_changed` from the
/// tool server (even on a call's own stream) has it asked again, and clients are told
/// only when what they see changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_kept_and_clients_hear_list_changed_only_when_the_list_changed() {
    let py1 = peer("py1/bin/python");
    let server = ServerProc::start(&py1, &["tests/peers/fastmcp_server.py", "--http", "0"], &[]);
    let routes = format!(
        "[[route]]\nname = \"fast\"\nurl = \"http://127.0.0.1:{}/mcp\"\nprotocol = \"streamable-http\"\n",
        server.port
    );
    let gw = Gateway::start("kept-lists", &routes);
    let mut a = gw.client("/mcp");
    a.initialize().await;
    let mut b = gw.client("/mcp");
    b.initialize().await;
    let mut stream = a.get_stream().await;

    let before = list_calls(&gw, "fast", "tools/list").await;
    for _ in 0..3 {
        assert!(a.tool_names().await.contains(&"fast__echo".to_owned()));
        assert!(b.tool_names().await.contains(&"fast__echo".to_owned()));
    }
    assert_eq!(
        list_calls(&gw, "fast", "tools/list").await,
        before.max(1),
        "six lists, at most one asked of the tool server"
    );

    // list_changed with nothing changed: asked again, nobody told.
    let r = a
        .call(
            "tools/call",
            json!({ "name": "fast__announce_tools", "arguments": {} }),
        )
        .await;
    assert_eq!(text(&r), "announced");
    let told = stream
        .next_json(std::time::Duration::from_millis(1500))
        .await;
    assert!(told.is_none(), "told of a change that was none: {told:?}");

    // A real change: the client's GET stream hears it, and the list has the new tool.
    let r = a
        .call(
            "tools/call",
            json!({ "name": "fast__add_tool", "arguments": { "name": "extra" } }),
        )
        .await;
    assert_eq!(text(&r), "added extra");
    let told = stream
        .next_json(std::time::Duration::from_secs(10))
        .await
        .expect("told that the tool list changed");
    assert_eq!(told["method"], "notifications/tools/list_changed", "{told}");
    assert!(b.tool_names().await.contains(&"fast__extra".to_owned()));
    let r = b
        .call(
            "tools/call",
            json!({ "name": "fast__extra", "arguments": { "message": "new" } }),
        )
        .await;
    assert_eq!(text(&r), "new");
}
