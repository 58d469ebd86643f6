//! The data path end to end: the real `mcp-edge serve`, real child processes (the
//! built-in demo tools with their fault switches), real sockets on 127.0.0.1. Some
//! tests run mcp-edge on one worker (its current-thread runtime), the rest on one per
//! core, so both runtimes carry every kind of call.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, Mcp, http, open_stream, post_message, post_message_stream, text};
use serde_json::{Value, json};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn demo(name: &str, flags: &str) -> String {
    let args: Vec<String> = std::iter::once("demo-tools".to_owned())
        .chain(std::iter::once("--stdio".to_owned()))
        .chain(flags.split_whitespace().map(str::to_owned))
        .collect();
    format!(
        "[[route]]\nname = \"{name}\"\ncommand = \"{{mcp_edge}}\"\nargs = {}\n",
        serde_json::to_string(&args).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_routes_and_routes_calls_back() {
    let routes = format!(
        "{}tools = {{ exclude = [\"crash\"] }}\n{}{}",
        demo("a", ""),
        demo("b", "--stateless"),
        demo("c", "--page-size 2"),
    );
    let gw = Gateway::start_on_one_worker("aggregate", &routes);
    let mut mcp = gw.client("/mcp");
    let init = mcp.initialize().await;
    assert_eq!(init["protocolVersion"], "2025-11-25");
    assert_eq!(init["serverInfo"]["name"], "mcp-edge");
    let instructions = init["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("## a (`a__*`)") && instructions.contains("## c (`c__*`)"),
        "{instructions}"
    );

    // tools/list merges every route; c's tools come over three upstream pages, which
    // the gateway walks with its own cursor.
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = cursor
            .as_ref()
            .map_or(json!({}), |c| json!({ "cursor": c }));
        let result = mcp.call("tools/list", params).await;
        pages += 1;
        names.extend(
            result["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["name"].as_str().unwrap().to_owned()),
        );
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert!(pages >= 3, "c paginates in pages of 2: {pages} pages");
    for expected in [
        "a__echo", "a__roots", "b__echo", "b__crash", "c__echo", "c__crash",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names.contains(&"a__crash".to_owned()),
        "a excludes crash: {names:?}"
    );
    assert_eq!(names.len(), 5 + 6 + 6, "{names:?}");

    // Calls find their route by prefix; b speaks only 2026-07-28 and is bridged.
    assert_eq!(
        text(
            &mcp.call(
                "tools/call",
                json!({ "name": "a__echo", "arguments": { "message": "to a" } })
            )
            .await
        ),
        "to a"
    );
    let sum = mcp
        .call(
            "tools/call",
            json!({ "name": "b__add", "arguments": { "a": 2, "b": 40 } }),
        )
        .await;
    assert_eq!(sum["structuredContent"]["sum"], 42.0);
    let failed = mcp
        .call("tools/call", json!({ "name": "c__fail", "arguments": {} }))
        .await;
    assert_eq!(failed["isError"], true);

    // A filtered or unknown tool is an unknown tool, not a call.
    for name in ["a__crash", "zz__echo", "echo"] {
        let error = mcp
            .error("tools/call", json!({ "name": name, "arguments": {} }))
            .await;
        assert_eq!(error["code"], -32602, "{name}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains("Unknown tool"),
            "{error}"
        );
    }

    // Prompts, resources, completions route back too.
    let prompts = mcp.call("prompts/list", json!({})).await;
    assert!(
        prompts["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "a__greet")
    );
    let greeting = mcp
        .call(
            "prompts/get",
            json!({ "name": "b__greet", "arguments": { "name": "Ada" } }),
        )
        .await;
    assert_eq!(
        greeting["messages"][0]["content"]["text"],
        "Say hello to Ada."
    );
    let read = mcp
        .call("resources/read", json!({ "uri": "demo://echo/hello" }))
        .await;
    assert_eq!(read["contents"][0]["text"], "hello");
    let completion = mcp
        .call("completion/complete", json!({ "ref": { "type": "ref/prompt", "name": "c__greet" }, "argument": { "name": "name", "value": "A" } }))
        .await;
    assert_eq!(completion["completion"]["values"], json!(["Ada", "Alan"]));
    let error = mcp
        .error("tools/list", json!({ "cursor": "not-a-cursor" }))
        .await;
    assert_eq!(error["code"], -32602);
    let error = mcp.error("no/such/method", json!({})).await;
    assert_eq!(error["code"], -32601);

    // /mcp/{route}: one route as its own server, names unprefixed.
    let mut single = gw.client("/mcp/b");
    single.initialize().await;
    let names = single.tool_names().await;
    assert!(
        names.contains(&"echo".to_owned()) && !names.iter().any(|n| n.contains("__")),
        "{names:?}"
    );
    assert_eq!(
        text(
            &single
                .call(
                    "tools/call",
                    json!({ "name": "echo", "arguments": { "message": "direct" } })
                )
                .await
        ),
        "direct"
    );
    let unknown = http(
        gw.addr,
        "POST",
        "/mcp/nope",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_before_the_result_and_tokens_map_back_per_client() {
    let gw = Gateway::start_on_one_worker("progress", &demo("d", ""));
    let mut one = gw.client("/mcp");
    let mut two = gw.client("/mcp");
    one.initialize().await;
    two.initialize().await;
    let params = json!({ "name": "d__slow", "arguments": { "seconds": 0.6, "steps": 3 }, "_meta": { "progressToken": 7 } });
    let (a, b) = tokio::join!(
        one.rpc("tools/call", params.clone()),
        two.rpc("tools/call", params)
    );
    for messages in [a, b] {
        let progress: Vec<&Value> = messages
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        assert_eq!(
            progress.len(),
            3,
            "each client sees exactly its own progress: {messages:#?}"
        );
        for (i, p) in progress.iter().enumerate() {
            assert_eq!(
                p["params"]["progressToken"], 7,
                "the client's own token comes back"
            );
            assert_eq!(p["params"]["progress"], i as u64 + 1);
        }
        assert_eq!(text(&messages.last().unwrap()["result"]), "done after 0.6s");
    }
    // A log message is not tied to a call over stdio; with one call in flight it is
    // surely that call's, and travels on its stream.
    let alone = one
        .rpc(
            "tools/call",
            json!({ "name": "d__slow", "arguments": { "seconds": 0.1, "steps": 1 } }),
        )
        .await;
    assert!(
        alone.iter().any(|m| m["method"] == "notifications/message"),
        "the log message is relayed: {alone:#?}"
    );
    // Without notifications the answer is plain JSON.
    let resp = one.post(&json!({ "jsonrpc": "2.0", "id": 99, "method": "tools/call", "params": { "name": "d__echo", "arguments": { "message": "x" } } })).await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_server_asks_the_client_that_called() {
    let gw = Gateway::start_on_one_worker("ask", &demo("d", ""));
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];
    let call = json!({ "jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": { "name": "d__roots", "arguments": {} } });
    let mut stream = post_message_stream(gw.addr, "/mcp", &headers, &call).await;
    assert_eq!(stream.status, 200);
    let ask = stream
        .next_json(SECS(10))
        .await
        .expect("the roots/list request arrives on the call's stream");
    assert_eq!(ask["method"], "roots/list");
    let ask_id = ask["id"].clone();
    assert!(
        ask_id.as_str().unwrap().starts_with("edge-"),
        "the gateway's own id: {ask}"
    );
    let answer = json!({ "jsonrpc": "2.0", "id": ask_id, "result": { "roots": [{ "uri": "file:///work", "name": "work" }] } });
    let posted = post_message(gw.addr, "/mcp", &headers, &answer).await;
    assert_eq!(posted.status, 202);
    let result = stream.next_json(SECS(10)).await.expect("the call's answer");
    assert_eq!(result["id"], 5);
    assert_eq!(text(&result["result"]), "roots: file:///work");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_calls_in_flight_at_once_and_the_route_comes_back() {
    let routes = format!("{}timeout = \"20s\"\n", demo("d", ""));
    let gw = Gateway::start("crash", &routes);
    let mut slow = gw.client("/mcp");
    let mut crasher = gw.client("/mcp");
    slow.initialize().await;
    crasher.initialize().await;
    let started = Instant::now();
    let (in_flight, _) = tokio::join!(
        slow.rpc(
            "tools/call",
            json!({ "name": "d__slow", "arguments": { "seconds": 15, "steps": 1 } })
        ),
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            crasher.post(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "d__crash", "arguments": {} } })).await
        }
    );
    let error = &in_flight.last().unwrap()["error"];
    assert!(
        started.elapsed() < SECS(8),
        "the call in flight failed after {:?}, not at once",
        started.elapsed()
    );
    assert_eq!(error["data"]["route"], "d");
    assert_eq!(error["data"]["reason"], "upstream_crashed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("exited with code 3"), "{message}");
    // What the child said on stderr may concern other clients' calls: it goes to the
    // log, not into errors that every client of the route sees.
    assert!(!message.contains("crashing on request"), "{message}");
    gw.wait_log("demo-tools: crashing on request", SECS(5))
        .await;

    // Restarted with backoff: a later call succeeds.
    let deadline = Instant::now() + SECS(15);
    loop {
        let answer = slow
            .rpc(
                "tools/call",
                json!({ "name": "d__echo", "arguments": { "message": "back" } }),
            )
            .await;
        let answer = answer.last().unwrap();
        if answer.get("result").is_some() {
            assert_eq!(text(&answer["result"]), "back");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the route did not come back: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A tool server that never answers `initialize` (a stdio child, and an HTTP server
/// that accepts and then says nothing) holds up neither start-up beyond its bound, nor
/// the merged list, nor the other routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_that_hangs_in_initialize_holds_up_nothing_else() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let routes = format!(
        "{}{}[[route]]\nname = \"mute\"\nurl = \"http://127.0.0.1:{silent_port}/mcp\"\ntimeout = \"3s\"\n",
        demo("ok", ""),
        demo("stuck", "--hang-initialize"),
    );
    let started = Instant::now();
    let gw = Gateway::start("hangs-in-initialize", &routes);
    assert!(
        started.elapsed() < SECS(15),
        "start-up waits for first starts at most 10 s: took {:?}",
        started.elapsed()
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for _ in 0..3 {
        let listed = Instant::now();
        let names = mcp.tool_names().await;
        assert!(
            listed.elapsed() < SECS(2),
            "the list waited {:?} for the stuck servers",
            listed.elapsed()
        );
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("ok__")),
            "{names:?}"
        );
    }
    let r = mcp
        .call(
            "tools/call",
            json!({ "name": "ok__echo", "arguments": { "message": "fine" } }),
        )
        .await;
    assert_eq!(text(&r), "fine");
    // A call to a stuck server ends by its route's deadline, with an error that names it.
    let called = Instant::now();
    let error = mcp
        .error("tools/call", json!({ "name": "mute__x", "arguments": {} }))
        .await;
    assert!(called.elapsed() < SECS(6), "{:?}", called.elapsed());
    assert_eq!(error["data"]["route"], "mute", "{error}");
    let h = http(gw.admin, "GET", "/health", &[], b"").await.json();
    let status = |name: &str| {
        h["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["status"]
            .clone()
    };
    assert_eq!(status("ok"), "healthy", "{h:#}");
    assert_eq!(status("stuck"), "down", "{h:#}");
    assert_eq!(status("mute"), "down", "{h:#}");
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_route_never_breaks_the_others() {
    let routes = format!(
        "{}[[route]]\nname = \"missing\"\ncommand = \"/nonexistent/mcp-server\"\n\n[[route]]\nname = \"noexec\"\ncommand = \"{{repo}}/README.md\"\n\n{}",
        demo("ok", ""),
        demo("dies", "--exit-at-start 7"),
    );
    let gw = Gateway::start("broken", &routes);
    gw.wait_log("exiting at start with code 7", SECS(10)).await;
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let names = mcp.tool_names().await;
    assert!(
        names.iter().all(|n| n.starts_with("ok__")) && names.len() == 6,
        "{names:?}"
    );
    assert_eq!(
        text(
            &mcp.call(
                "tools/call",
                json!({ "name": "ok__echo", "arguments": { "message": "fine" } })
            )
            .await
        ),
        "fine"
    );

    // The listing above already failed on `missing` often enough to open its breaker:
    // the error says so, and still names the cause.
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "missing__x", "arguments": {} }),
        )
        .await;
    assert_eq!(error["data"]["route"], "missing");
    assert!(
        matches!(
            error["data"]["reason"].as_str(),
            Some("upstream_unavailable" | "circuit_open")
        ),
        "{error}"
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("program `/nonexistent/mcp-server` was not found (ENOENT)"),
        "{error}"
    );

    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "noexec__x", "arguments": {} }),
        )
        .await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("cannot be executed (EACCES)"),
        "{error}"
    );

    let error = mcp
        .error("tools/call", json!({ "name": "dies__x", "arguments": {} }))
        .await;
    let message = error["message"].as_str().unwrap();
    // The client learns the exit; the child's stderr (which may hold anything) goes
    // to the operator only: the log and /health.
    assert!(
        message.contains("exited with code 7") && !message.contains("exiting at start"),
        "{message}"
    );
    let health = String::from_utf8_lossy(&http(gw.admin, "GET", "/health", &[], b"").await.body)
        .into_owned();
    assert!(health.contains("exiting at start with code 7"), "{health}");
    assert!(
        error["data"]["retry_after_ms"].is_u64(),
        "says when it is tried again: {error}"
    );
    assert!(
        gw.logs().contains("tool server failed"),
        "the failure is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_tool_server_times_out_and_is_told_to_cancel() {
    let routes = format!(
        "{}timeout = \"1s\"\n{}timeout = \"600ms\"\n",
        demo("hung", "--hang"),
        demo("slow", "")
    );
    let gw = Gateway::start("hang", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let started = Instant::now();
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "hung__echo", "arguments": { "message": "?" } }),
        )
        .await;
    assert!(started.elapsed() < SECS(5), "took {:?}", started.elapsed());
    assert_eq!(error["code"], -32003);
    assert_eq!(error["data"]["reason"], "timeout");

    // A call that outlives its timeout is cancelled upstream: the tool server says so.
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "slow__slow", "arguments": { "seconds": 5, "steps": 1 } }),
        )
        .await;
    assert_eq!(error["data"]["reason"], "timeout");
    gw.wait_log("demo-tools: cancelled request", SECS(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cancellation_reaches_the_tool_server() {
    let gw = Gateway::start("cancel", &demo("d", ""));
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let slow = json!({ "jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": { "name": "d__slow", "arguments": { "seconds": 10, "steps": 1 } } });
    let (answer, _) = tokio::join!(mcp.post(&slow), async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let cancel = json!({ "jsonrpc": "2.0", "method": "notifications/cancelled", "params": { "requestId": 41, "reason": "changed my mind" } });
        let resp = mcp.post(&cancel).await;
        assert_eq!(resp.status, 202);
    });
    assert_eq!(answer.status, 200);
    gw.wait_log("demo-tools: cancelled request", SECS(5)).await;
}

/// A client that hangs up mid-call: in the stateless era that cancels the call at the
/// tool server; in the session era it does not (the call finishes and is counted).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_up_cancels_a_stateless_call_but_not_a_session_call() {
    let gw = Gateway::start_on_one_worker("hangup", &demo("d", ""));
    let slow = |id: u64| json!({ "jsonrpc": "2.0", "id": id, "method": "tools/call", "params": { "name": "d__slow", "arguments": { "seconds": 1, "steps": 1 } } });

    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let gone = tokio::time::timeout(Duration::from_millis(300), mcp.post(&slow(7))).await;
    assert!(gone.is_err(), "the slow call should still be running");
    let finished = "mcp_edge_calls_total{route=\"d\",method=\"tools/call\",outcome=\"ok\"} 1";
    let deadline = tokio::time::Instant::now() + SECS(5);
    loop {
        let metrics = http(gw.admin, "GET", "/metrics", &[], b"").await;
        if String::from_utf8_lossy(&metrics.body).contains(finished) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session call was not finished after its client hung up:\n{}",
            String::from_utf8_lossy(&metrics.body)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !gw.logs().contains("demo-tools: cancelled request"),
        "a session-era hang-up must not cancel: {}",
        gw.logs()
    );

    let mut call = slow(8);
    call["params"]["_meta"] = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    let body = call.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "d__slow"),
    ];
    let gone = tokio::time::timeout(
        Duration::from_millis(300),
        http(gw.addr, "POST", "/mcp", &headers, body.as_bytes()),
    )
    .await;
    assert!(gone.is_err(), "the slow call should still be running");
    gw.wait_log("demo-tools: cancelled request", SECS(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_stdout_is_logged_and_skipped() {
    let gw = Gateway::start("garbage", &demo("g", "--garbage"));
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for i in 0..5 {
        let message = format!("message {i}");
        assert_eq!(
            text(
                &mcp.call(
                    "tools/call",
                    json!({ "name": "g__echo", "arguments": { "message": message } })
                )
                .await
            ),
            message
        );
    }
    gw.wait_log(
        "skipped a line on stdout that is not a JSON-RPC message",
        SECS(5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_refuses_bad_input_clearly() {
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\nmax_message_bytes = 2048\nallowed_origins = [\"https://console.example.com\"]\n\n{}",
        demo("d", "")
    );
    let gw = Gateway::start("door", &routes);
    let addr = gw.addr;
    let json_headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| async move {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http(addr, "POST", "/mcp", &refs, &body).await
    };
    let std_headers = || {
        json_headers
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>()
    };
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec();

    let r = post(std_headers(), ping.clone()).await;
    assert_eq!(
        r.status,
        400,
        "no session: {}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Mcp-Session-Id")
    );

    let mut h = std_headers();
    h.push(("mcp-session-id", "0123456789abcdef".into()));
    let r = post(h, ping.clone()).await;
    assert_eq!(r.status, 404, "unknown session");

    let r = post(std_headers(), b"{not json".to_vec()).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32700))
    );
    assert!(r.json()["id"].is_null());

    let r = post(
        std_headers(),
        br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#.to_vec(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32600))
    );
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("batches are not supported")
    );

    let r = post(
        std_headers(),
        br#"{"jsonrpc":"1.0","id":9,"method":"ping"}"#.to_vec(),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.json()["error"]["code"].as_i64(),
            r.json()["id"].as_i64()
        ),
        (400, Some(-32600), Some(9))
    );

    let r = post(std_headers(), vec![b' '; 4096]).await;
    assert_eq!(r.status, 413);

    let r = post(
        vec![
            ("content-type", "text/plain".into()),
            ("accept", "application/json, text/event-stream".into()),
        ],
        ping.clone(),
    )
    .await;
    assert_eq!(r.status, 415);

    let r = post(
        vec![
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        ping.clone(),
    )
    .await;
    assert_eq!(r.status, 406);

    let mut h = std_headers();
    h.push(("origin", "https://evil.example".into()));
    let r = post(h, ping.clone()).await;
    assert_eq!(r.status, 403);

    // Loopback and configured origins are fine.
    for origin in ["http://localhost:3000", "https://console.example.com"] {
        let mut mcp = Mcp::new(addr, "/mcp");
        mcp.headers.push(("origin".into(), origin.into()));
        mcp.initialize().await;
    }

    // DNS rebinding: a loopback listener refuses other host names.
    let r = http(
        addr,
        "POST",
        "/mcp",
        &[
            ("host", "evil.example:8080"),
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ],
        &ping,
    )
    .await;
    assert_eq!(r.status, 421);

    let r = http(addr, "GET", "/nope", &[], b"").await;
    assert_eq!(r.status, 404);
    let r = http(addr, "PUT", "/mcp", &json_headers, b"").await;
    assert_eq!(r.status, 405);
    let r = http(addr, "GET", "/mcp", &[("accept", "text/event-stream")], b"").await;
    assert_eq!(r.status, 405, "GET without a session");

    // DELETE ends a session; afterwards it is unknown.
    let mut mcp = Mcp::new(addr, "/mcp");
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let r = http(
        addr,
        "DELETE",
        "/mcp",
        &[("mcp-session-id", session.as_str())],
        b"",
    )
    .await;
    assert_eq!(r.status, 200);
    let r = mcp
        .post(&json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" }))
        .await;
    assert_eq!(r.status, 404);

    // After all that, the gateway still serves.
    let mut mcp = Mcp::new(addr, "/mcp");
    mcp.initialize().await;
    assert_eq!(mcp.call("ping", json!({})).await, json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_2026_clients_are_checked_and_served() {
    let gw = Gateway::start("stateless", &demo("d", ""));
    let addr = gw.addr;
    let meta = json!({ "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} });
    let send = |method: &'static str, params: Value, extra: Vec<(&'static str, &'static str)>| {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        async move {
            let mut headers = vec![
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", method),
            ];
            headers.extend(extra);
            http(addr, "POST", "/mcp", &headers, body.to_string().as_bytes()).await
        }
    };
    let r = send("server/discover", json!({ "_meta": meta }), vec![]).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let discover = &r.json()["result"];
    assert_eq!(discover["resultType"], "complete");
    assert!(
        discover["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );
    assert_eq!(
        discover["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "mcp-edge"
    );

    let r = send("tools/list", json!({ "_meta": meta }), vec![]).await;
    let list = &r.json()["result"];
    assert_eq!(
        (
            list["resultType"].as_str(),
            list["ttlMs"].as_u64(),
            list["cacheScope"].as_str()
        ),
        (Some("complete"), Some(0), Some("private"))
    );

    let r = send(
        "tools/call",
        json!({ "_meta": meta, "name": "d__echo", "arguments": { "message": "modern" } }),
        vec![("mcp-name", "d__echo")],
    )
    .await;
    let result = &r.json()["result"];
    assert_eq!(
        (text(result), result["resultType"].as_str()),
        ("modern".to_owned(), Some("complete"))
    );

    let r = send(
        "tools/call",
        json!({ "_meta": meta, "name": "d__echo", "arguments": {} }),
        vec![("mcp-name", "d__add")],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "Mcp-Name mismatch"
    );
    let r = send(
        "tools/call",
        json!({ "_meta": meta, "name": "d__echo", "arguments": {} }),
        vec![],
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32020)),
        "Mcp-Name missing"
    );

    let old = json!({ "io.modelcontextprotocol/protocolVersion": "2030-01-01" });
    let r = send("tools/list", json!({ "_meta": old }), vec![]).await;
    let body = r.json();
    assert_eq!(
        (r.status, body["error"]["code"].as_i64()),
        (400, Some(-32022))
    );
    assert!(
        body["error"]["data"]["supported"]
            .as_array()
            .unwrap()
            .contains(&json!("2026-07-28"))
    );

    let r = send("no/such/method", json!({ "_meta": meta }), vec![]).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (404, Some(-32601))
    );

    // The Mcp-Method header must match the body.
    let body =
        json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": { "_meta": meta } });
    let r = http(
        addr,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
        ],
        body.to_string().as_bytes(),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_i64()),
        (400, Some(-32020))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_edge_stdio_serves_an_agent_on_stdin_and_stdout() {
    use std::io::{BufRead, Write};
    let dir = mcp_edge_tests::scratch_dir("stdio-front");
    let routes = format!("[gateway]\nallow_anonymous = true\n{}", demo("d", "")).replace(
        "{mcp_edge}",
        &mcp_edge_tests::mcp_edge().display().to_string(),
    );
    std::fs::write(dir.join("routes.toml"), routes).unwrap();
    let mut child = std::process::Command::new(mcp_edge_tests::mcp_edge())
        .current_dir(&dir)
        .args(["stdio", "routes.toml"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(serde_json::from_str(&line).expect("stdout carries only JSON-RPC"));
        }
    });
    let mut send = |v: Value| writeln!(stdin, "{v}").unwrap();
    let recv = |id: i64| loop {
        let m = rx.recv_timeout(SECS(20)).expect("an answer on stdout");
        if m["id"] == id {
            return m;
        }
    };
    send(
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } }),
    );
    assert_eq!(recv(1)["result"]["protocolVersion"], "2025-06-18");
    send(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }));
    send(
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "d__add", "arguments": { "a": 1, "b": 2 } } }),
    );
    assert_eq!(recv(2)["result"]["structuredContent"]["sum"], 3.0);
    send(json!("garbage"));
    send(json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/list" }));
    assert_eq!(recv(3)["result"]["tools"].as_array().unwrap().len(), 6);

    drop(stdin);
    let deadline = Instant::now() + SECS(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "exits cleanly when stdin closes: {status}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "mcp-edge stdio did not exit after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::remove_dir_all(dir).ok();
}

/// stdin and stdout that are not pipes (a file in, a file out) are read and written
/// through tokio's blocking-thread streams instead of the reactor: the same answers.
#[test]
fn mcp_edge_stdio_also_serves_files_that_are_not_pipes() {
    let dir = mcp_edge_tests::scratch_dir("stdio-files");
    let routes = format!("[gateway]\nallow_anonymous = true\n{}", demo("d", "")).replace(
        "{mcp_edge}",
        &mcp_edge_tests::mcp_edge().display().to_string(),
    );
    std::fs::write(dir.join("routes.toml"), routes).unwrap();
    let requests = [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "d__echo", "arguments": { "message": "from a file" } } }),
    ];
    let input: String = requests.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(dir.join("in.jsonl"), input).unwrap();
    let status = std::process::Command::new(mcp_edge_tests::mcp_edge())
        .current_dir(&dir)
        .args(["stdio", "routes.toml"])
        .stdin(std::fs::File::open(dir.join("in.jsonl")).unwrap())
        .stdout(std::fs::File::create(dir.join("out.jsonl")).unwrap())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{status}");
    let answers: Vec<Value> = std::fs::read_to_string(dir.join("out.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("stdout carries only JSON-RPC"))
        .collect();
    let answer = |id: i64| answers.iter().find(|m| m["id"] == id).cloned();
    assert_eq!(
        answer(1).unwrap()["result"]["protocolVersion"],
        "2025-11-25",
        "{answers:?}"
    );
    assert_eq!(text(&answer(2).unwrap()["result"]), "from a file");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_sse_clients_get_the_endpoint_event_and_answers_on_the_stream() {
    let gw = Gateway::start("legacy", &demo("d", ""));
    let mut stream = open_stream(
        gw.addr,
        "GET",
        "/sse",
        &[("accept", "text/event-stream")],
        b"",
    )
    .await;
    assert_eq!(stream.status, 200);
    let endpoint = stream.next(SECS(5)).await.unwrap();
    assert_eq!(endpoint.kind(), "endpoint");
    assert!(
        endpoint.data.starts_with("/messages?session_id="),
        "{}",
        endpoint.data
    );
    let post = |body: Value| {
        let path = endpoint.data.clone();
        async move {
            http(
                gw.addr,
                "POST",
                &path,
                &[("content-type", "application/json")],
                body.to_string().as_bytes(),
            )
            .await
        }
    };
    let r = post(json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } } })).await;
    assert_eq!(r.status, 202);
    let init = stream.next(SECS(5)).await.unwrap();
    assert_eq!(init.kind(), "message");
    let init: Value = serde_json::from_str(&init.data).unwrap();
    assert_eq!(init["result"]["protocolVersion"], "2024-11-05");
    post(json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })).await;
    post(json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "d__echo", "arguments": { "message": "old but gold" } } })).await;
    // Notifications (a route coming up: tools/list_changed) may come first.
    let answer = loop {
        let message = stream.next_json(SECS(10)).await.unwrap();
        if message.get("id").is_some() {
            break message;
        }
    };
    assert_eq!(text(&answer["result"]), "old but gold", "{answer}");
    let r = http(
        gw.addr,
        "POST",
        "/messages?session_id=nope",
        &[("content-type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_changes_reach_open_streams_when_a_route_restarts() {
    let gw = Gateway::start("list-changed", &demo("d", ""));
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let mut stream = open_stream(
        gw.addr,
        "GET",
        "/mcp",
        &[
            ("accept", "text/event-stream"),
            ("mcp-session-id", session.as_str()),
        ],
        b"",
    )
    .await;
    assert_eq!(stream.status, 200);
    let _ = mcp.post(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "d__crash", "arguments": {} } })).await;
    let mut seen = Vec::new();
    while let Some(message) = stream.next_json(SECS(10)).await {
        seen.push(message["method"].as_str().unwrap_or_default().to_owned());
        if seen
            .iter()
            .filter(|m| *m == "notifications/tools/list_changed")
            .count()
            >= 2
        {
            break;
        }
    }
    assert!(
        seen.iter()
            .filter(|m| *m == "notifications/tools/list_changed")
            .count()
            >= 2,
        "down, then up again: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_on_the_tool_servers_get_stream_reaches_the_client_whose_call_is_in_flight() {
    // FastMCP's `list_roots()` names no related request: over Streamable HTTP it comes
    // on the session's GET stream, not on the call's.
    let server = mcp_edge_tests::ServerProc::start(
        &mcp_edge_tests::peer("py1/bin/python"),
        &["tests/peers/fastmcp_server.py", "--http", "0"],
        &[],
    );
    let gw = Gateway::start(
        "ask-get-stream",
        &format!(
            "[[route]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}/mcp\"\ntimeout = \"20s\"\n",
            server.port
        ),
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];
    let call = json!({ "jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": { "name": "web__roots", "arguments": {} } });
    let mut stream = post_message_stream(gw.addr, "/mcp", &headers, &call).await;
    assert_eq!(stream.status, 200);
    let ask = stream
        .next_json(SECS(15))
        .await
        .expect("the roots/list request reaches the calling client");
    assert_eq!(ask["method"], "roots/list", "{ask}");
    let answer = json!({ "jsonrpc": "2.0", "id": ask["id"].clone(), "result": { "roots": [{ "uri": "file:///srv", "name": "srv" }] } });
    let posted = post_message(gw.addr, "/mcp", &headers, &answer).await;
    assert_eq!(posted.status, 202);
    let result = stream.next_json(SECS(15)).await.expect("the call's answer");
    assert_eq!(result["id"], 8);
    assert_eq!(text(&result["result"]), "roots: file:///srv");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_outside_any_call_reaches_a_client_of_the_route_on_every_transport() {
    let py1 = mcp_edge_tests::peer("py1/bin/python");
    let server = mcp_edge_tests::ServerProc::start(
        &py1,
        &["tests/peers/fastmcp_server.py", "--http", "0"],
        &[],
    );
    let gw = Gateway::start(
        "ask-outside-calls",
        &format!(
            "[[route]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}/mcp\"\n\n\
             [[route]]\nname = \"kid\"\ncommand = [\"{py1}\", \"{{repo}}/tests/peers/fastmcp_server.py\"]\n",
            server.port
        ),
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let session = mcp.session.clone().unwrap();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];
    let get_headers = [
        ("accept", "text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];
    let mut stream = open_stream(gw.addr, "GET", "/mcp", &get_headers, b"").await;
    assert_eq!(stream.status, 200);
    for route in ["web", "kid"] {
        let asked = mcp
            .call(
                "tools/call",
                json!({ "name": format!("{route}__roots_later"), "arguments": {} }),
            )
            .await;
        assert_eq!(text(&asked), "asked", "{asked}");
        // The question comes on the client's GET stream, after the call ended.
        let deadline = Instant::now() + SECS(15);
        let ask = loop {
            let event = stream
                .next_json(deadline.saturating_duration_since(Instant::now()))
                .await
                .unwrap_or_else(|| panic!("{route}: no roots/list on the GET stream"));
            if event["method"] == "roots/list" {
                break event;
            }
        };
        let uri = format!("file:///{route}");
        let answer = json!({ "jsonrpc": "2.0", "id": ask["id"].clone(), "result": { "roots": [{ "uri": uri }] } });
        let posted = post_message(gw.addr, "/mcp", &headers, &answer).await;
        assert_eq!(posted.status, 202);
        let deadline = Instant::now() + SECS(10);
        loop {
            let got = mcp
                .call(
                    "tools/call",
                    json!({ "name": format!("{route}__last_roots"), "arguments": {} }),
                )
                .await;
            if text(&got) != "pending" {
                assert_eq!(text(&got), format!("roots: {uri}"), "{route}");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{route}: the answer never arrived"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_clients_unsubscribe_never_ends_anothers_subscription() {
    let server = mcp_edge_tests::ServerProc::start(
        &mcp_edge_tests::peer("py1/bin/python"),
        &["tests/peers/fastmcp_server.py", "--http", "0"],
        &[],
    );
    let gw = Gateway::start(
        "subscriptions",
        &format!(
            "[[route]]\nname = \"web\"\nurl = \"http://127.0.0.1:{}/mcp\"\ntimeout = \"20s\"\n",
            server.port
        ),
    );
    let mut a = gw.client("/mcp");
    a.initialize().await;
    let mut b = gw.client("/mcp");
    b.initialize().await;
    let stream_of = |m: &Mcp| {
        let session = m.session.clone().unwrap();
        async move {
            open_stream(
                gw.addr,
                "GET",
                "/mcp",
                &[
                    ("accept", "text/event-stream"),
                    ("mcp-session-id", session.as_str()),
                ],
                b"",
            )
            .await
        }
    };
    let mut a_stream = stream_of(&a).await;
    let mut b_stream = stream_of(&b).await;
    let note = json!({ "uri": "peer://note" });
    a.call("resources/subscribe", note.clone()).await;
    b.call("resources/subscribe", note.clone()).await;
    // A leaves; B's subscription must hold upstream.
    a.call("resources/unsubscribe", note.clone()).await;
    let touch = json!({ "name": "web__touch", "arguments": { "uri": "peer://note" } });
    let touched = b.call("tools/call", touch.clone()).await;
    assert_eq!(
        text(&touched),
        "notified",
        "the upstream subscription survived A's unsubscribe"
    );
    let updated = |v: &Value| v["method"] == "notifications/resources/updated";
    let deadline = Instant::now() + SECS(10);
    loop {
        let event = b_stream
            .next_json(deadline.saturating_duration_since(Instant::now()))
            .await
            .expect("B hears the update");
        if updated(&event) {
            assert_eq!(event["params"]["uri"], "peer://note");
            break;
        }
    }
    // A, no longer subscribed, hears nothing of it.
    while let Some(event) = a_stream.next_json(SECS(1)).await {
        assert!(!updated(&event), "A unsubscribed yet heard {event}");
    }
    // The last subscriber out ends the upstream subscription.
    b.call("resources/unsubscribe", note.clone()).await;
    let touched = b.call("tools/call", touch).await;
    assert_eq!(text(&touched), "not subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uri_two_routes_list_is_read_from_the_first_route_every_time() {
    // Both routes list demo://readme: the one first in routes.toml serves its reads,
    // whichever answered the listing last.
    let gw = Gateway::start(
        "same-uri",
        &format!("{}{}", demo("first", ""), demo("second", "")),
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for _ in 0..3 {
        mcp.call("resources/list", json!({})).await;
        let read = mcp
            .call("resources/read", json!({ "uri": "demo://readme" }))
            .await;
        assert!(read["contents"][0]["text"].is_string(), "{read}");
    }
    let metrics = String::from_utf8_lossy(&http(gw.admin, "GET", "/metrics", &[], b"").await.body)
        .into_owned();
    let reads = |route: &str| {
        metrics
            .lines()
            .find(|l| {
                l.starts_with(&format!(
                    "mcp_edge_calls_total{{route=\"{route}\",method=\"resources/read\""
                ))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!((reads("first"), reads("second")), (3, 0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_unknown_uris_cannot_be_turned_into_a_flood_of_listings() {
    let gw = Gateway::start(
        "unknown-uris",
        &format!("{}{}", demo("a", ""), demo("b", "")),
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    for i in 0..20 {
        let error = mcp
            .error("resources/read", json!({ "uri": format!("nowhere://{i}") }))
            .await;
        assert_eq!(error["code"], -32002, "{error}");
    }
    let metrics = String::from_utf8_lossy(&http(gw.admin, "GET", "/metrics", &[], b"").await.body)
        .into_owned();
    let listings: u64 = metrics
        .lines()
        .filter(|l| {
            l.starts_with("mcp_edge_calls_total{")
                && (l.contains("method=\"resources/list\"")
                    || l.contains("method=\"resources/templates/list\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    // A learning round is two routes times two kinds of list: 4 listings. Rounds are
    // bounded by one per RELEARN_EVERY (10 s) plus one each time a route comes or goes
    // (its resources are news); a route reporting itself up just after start-up can
    // cost one more round. Twenty reads without the bound would be twenty rounds (80).
    assert!(
        listings <= 8,
        "{listings} listings for 20 unknown URIs:\n{metrics}"
    );
}
