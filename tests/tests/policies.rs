//! Route policies through the real gateway: a circuit breaker opening on a failing
//! tool server (the Python SDK's FastMCP behind a fault switch) and closing once it
//! recovers; retries bounded by their budget and given only to what is safe to repeat;
//! per-client rate limits; a saturated route refusing at once while the others keep
//! their latency; a deadline moved on by progress.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::Path;
use std::time::{Duration, Instant};

use mcp_edge_tests::{
    Gateway, ServerProc, http, peer, post_message, post_message_stream, scratch_dir, text,
};
use serde_json::{Value, json};

/// FastMCP on Streamable HTTP whose `tools/call`s fail with `status` while `flag`
/// exists.
fn faulty_server(flag: &Path, extra: &[&str]) -> ServerProc {
    let py1 = peer("py1/bin/python");
    let flag = flag.display().to_string();
    let mut args = vec![
        "tests/peers/fastmcp_server.py",
        "--http",
        "0",
        "--fail-while",
        flag.as_str(),
    ];
    args.extend_from_slice(extra);
    ServerProc::start(&py1, &args, &[])
}

/// What reached the faulty server, per tool.
async fn counts(server: &ServerProc) -> Value {
    let addr = ([127, 0, 0, 1], server.port).into();
    http(addr, "GET", "/counts", &[], b"").await.json()
}

fn route(port: u16, policies: &str) -> String {
    format!(
        "[[route]]\nname = \"flaky\"\nurl = \"http://127.0.0.1:{port}/mcp\"\nprotocol = \"streamable-http\"\n{policies}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_route_opens_its_breaker_and_probes_close_it_after_recovery() {
    let dir = scratch_dir("policy-breaker-flags");
    let flag = dir.join("failing");
    let server = faulty_server(&flag, &[]);
    let routes = route(
        server.port,
        "timeout = \"10s\"\nretry = { attempts = 1 }\nbreaker = { consecutive_failures = 3, open_for = \"700ms\", probes = 1 }",
    );
    let gw = Gateway::start("policy-breaker", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    let lookup = json!({ "name": "flaky__lookup", "arguments": { "key": "k" } });
    assert_eq!(
        text(&mcp.call("tools/call", lookup.clone()).await),
        "value of k"
    );

    std::fs::write(&flag, "").unwrap();
    for _ in 0..3 {
        let error = mcp.error("tools/call", lookup.clone()).await;
        assert_eq!(error["data"]["reason"], "upstream_status", "{error}");
    }
    // Open: calls fail at once, far below the 10 s timeout, naming route, state, when.
    let started = Instant::now();
    let error = mcp.error("tools/call", lookup.clone()).await;
    let took = started.elapsed();
    assert_eq!(error["code"], -32009, "{error}");
    assert_eq!(error["data"]["route"], "flaky");
    assert_eq!(error["data"]["state"], "open");
    let retry_after = error["data"]["retry_after_ms"].as_u64().unwrap();
    assert!(retry_after > 0 && retry_after <= 700, "{error}");
    // On a 200 with Retry-After, as a JSON-RPC error: the call fails, the session goes on.
    let open = mcp
        .post(&json!({ "jsonrpc": "2.0", "id": 78, "method": "tools/call", "params": lookup.clone() }))
        .await;
    assert_eq!(open.status, 200, "{}", String::from_utf8_lossy(&open.body));
    assert_eq!(open.json()["error"]["code"], -32009);
    assert_eq!(open.header("retry-after"), Some("1"));
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("route `flaky`: circuit breaker open") && message.contains("HTTP 503"),
        "{message}"
    );
    assert!(took < Duration::from_millis(100), "failed fast: {took:?}");
    let refused_while_open = counts(&server).await["lookup"]["calls"].as_u64().unwrap();
    assert_eq!(
        refused_while_open, 4,
        "the open breaker sent nothing upstream"
    );
    gw.wait_log(
        "circuit breaker open: 3 failures in a row",
        Duration::from_secs(5),
    )
    .await;

    // The tool server recovers; after the open period one probe goes through and
    // closes the breaker.
    std::fs::remove_file(&flag).unwrap();
    tokio::time::sleep(Duration::from_millis(750)).await;
    assert_eq!(
        text(&mcp.call("tools/call", lookup.clone()).await),
        "value of k"
    );
    for _ in 0..3 {
        assert_eq!(
            text(&mcp.call("tools/call", lookup.clone()).await),
            "value of k"
        );
    }
    gw.wait_log("circuit breaker closed", Duration::from_secs(5))
        .await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_their_budget_and_only_repeat_what_is_safe() {
    let dir = scratch_dir("policy-retry-flags");
    let flag = dir.join("failing");
    let server = faulty_server(&flag, &[]);
    // No floor, 20 % budget, and a breaker that stays out of the way.
    let routes = route(
        server.port,
        "retry = { attempts = 3, base = \"1ms\", max = \"5ms\", budget = 0.2, min_per_second = 0, idempotent_tools = [\"echo\"] }\n\
         breaker = { consecutive_failures = 1000, min_calls = 100000 }",
    );
    let gw = Gateway::start("policy-retry", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    // The listing teaches the gateway which tools say they are read-only.
    let names = mcp.tool_names().await;
    assert!(names.contains(&"flaky__lookup".to_owned()), "{names:?}");

    std::fs::write(&flag, "").unwrap();
    let calls = 50u64;
    for i in 0..calls {
        let error = mcp
            .error(
                "tools/call",
                json!({ "name": "flaky__lookup", "arguments": { "key": format!("k{i}") } }),
            )
            .await;
        assert_eq!(error["data"]["reason"], "upstream_status");
    }
    for i in 0..20 {
        mcp.error(
            "tools/call",
            json!({ "name": "flaky__write", "arguments": { "key": format!("k{i}") } }),
        )
        .await;
    }
    for i in 0..10 {
        mcp.error(
            "tools/call",
            json!({ "name": "flaky__echo", "arguments": { "message": format!("m{i}") } }),
        )
        .await;
    }
    let seen = counts(&server).await;
    let lookups = seen["lookup"]["calls"].as_u64().unwrap();
    let echoes = seen["echo"]["calls"].as_u64().unwrap();
    let writes = seen["write"]["calls"].as_u64().unwrap();
    // The budget: the tool server saw at most 20 % more requests than the route had
    // calls (the 80 tool calls and the one listing).
    let route_calls = calls + 20 + 10 + 1;
    assert!(
        (lookups + echoes + writes) * 10 <= route_calls * 12,
        "retries beyond the budget: {seen}"
    );
    assert!(lookups > calls, "a read-only tool is retried: {seen}");
    // Every attempt of one call carries the same idempotency key.
    let keys = seen["lookup"]["keys"].as_array().unwrap().len() as u64;
    assert_eq!(
        keys, calls,
        "one key per call, whatever its attempts: {seen}"
    );
    // A tool that does not say it is safe is sent once, whatever happens.
    assert_eq!(seen["write"]["calls"], 20, "{seen}");
    assert!(
        seen["write"]["keys"].as_array().unwrap().is_empty(),
        "{seen}"
    );
    // A tool routes.toml names as idempotent is retried like a read.
    assert!(echoes >= 10, "{seen}");
    assert_eq!(seen["echo"]["keys"].as_array().unwrap().len(), 10, "{seen}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_tool_server_is_waited_for() {
    let dir = scratch_dir("policy-retry-after-flags");
    let flag = dir.join("failing");
    let server = faulty_server(&flag, &["--retry-after", "1"]);
    let routes = route(
        server.port,
        "retry = { attempts = 2, base = \"1ms\", max = \"3s\" }",
    );
    let gw = Gateway::start("policy-retry-after", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    mcp.tool_names().await;
    std::fs::write(&flag, "").unwrap();
    let flag_gone = flag.clone();
    // The fault clears half a second in: the retry, a second after the first attempt,
    // succeeds.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        std::fs::remove_file(flag_gone).unwrap();
    });
    let started = Instant::now();
    let result = mcp
        .call(
            "tools/call",
            json!({ "name": "flaky__lookup", "arguments": { "key": "later" } }),
        )
        .await;
    let took = started.elapsed();
    assert_eq!(text(&result), "value of later");
    assert!(
        took >= Duration::from_millis(950),
        "waited for Retry-After: {took:?}"
    );
    let seen = counts(&server).await;
    assert_eq!(seen["lookup"]["calls"], 2, "{seen}");
    std::fs::remove_dir_all(dir).ok();
}

/// A gateway whose clients `alice` and `bob` have tokens, over stdio demo routes.
fn with_clients(routes: &str) -> Gateway {
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[clients]]\nname = \"alice\"\ntoken = {{ env = \"POLICY_ALICE\" }}\nroutes = [\"*\"]\n\n\
         [[clients]]\nname = \"bob\"\ntoken = {{ env = \"POLICY_BOB\" }}\nroutes = [\"*\"]\n\n{routes}"
    );
    Gateway::start_with_env(
        "policy-clients",
        &text,
        &[
            ("POLICY_ALICE", "alice-token-1"),
            ("POLICY_BOB", "bob-token-2"),
        ],
    )
}

fn echo(message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": { "name": "demo__echo", "arguments": { "message": message } } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_is_refused_with_a_hint_and_another_is_not() {
    let gw = with_clients(
        "[[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n\
         rate_limit = { per_client = { per_second = 1, burst = 3 } }\n",
    );
    let alice = gw.client_with_token("alice-token-1").await;
    let bob = gw.client_with_token("bob-token-2").await;
    for i in 0..3 {
        let resp = alice.post(&echo(&format!("a{i}"))).await;
        assert_eq!(resp.status, 200, "within the burst");
    }
    let refused = alice.post(&echo("one too many")).await;
    // A JSON-RPC error on a 200: the call fails, the client's session goes on (an
    // SDK's transport ends the whole session on a 429).
    assert_eq!(refused.status, 200, "the call is refused, not the session");
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(retry_after, 1, "whole seconds, rounded up");
    let error = &refused.json()["error"];
    assert_eq!(error["code"], -32008, "{error}");
    assert_eq!(error["data"]["limit"], "client");
    let hint = error["data"]["retry_after_ms"].as_u64().unwrap();
    assert!(hint > 0 && hint <= 1000, "{error}");

    // Bob is unaffected.
    for i in 0..3 {
        let resp = bob.post(&echo(&format!("b{i}"))).await;
        assert_eq!(
            resp.status,
            200,
            "bob {i}: {}",
            String::from_utf8_lossy(&resp.body)
        );
    }
    // Alice may call again after the hint.
    tokio::time::sleep(Duration::from_millis(hint + 20)).await;
    assert_eq!(alice.post(&echo("later")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_route_answers_busy_while_the_others_keep_their_latency() {
    let gw = Gateway::start(
        "policy-bulkhead",
        "[[route]]\nname = \"narrow\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n\
         concurrency = { max_in_flight = 1, queue = 1 }\n\n\
         [[route]]\nname = \"wide\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
    );
    let mut probe = gw.client("/mcp");
    probe.initialize().await;
    let wide = json!({ "name": "wide__echo", "arguments": { "message": "quick" } });
    let mut before = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        probe.call("tools/call", wide.clone()).await;
        before.push(started.elapsed());
    }

    // One slow call holds the only slot, one waits in the queue.
    let slow = json!({ "name": "narrow__slow", "arguments": { "seconds": 1.5, "steps": 1 } });
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut client = gw.client("/mcp");
        client.initialize().await;
        let slow = slow.clone();
        holders.push(tokio::spawn(async move {
            client.call("tools/call", slow).await
        }));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = Instant::now();
    let error = probe.error("tools/call", slow.clone()).await;
    let took = started.elapsed();
    assert_eq!(error["code"], -32004, "{error}");
    assert_eq!(error["data"]["reason"], "busy");
    assert!(took < Duration::from_millis(200), "busy at once: {took:?}");
    // On a 200, as a JSON-RPC error: the call fails, never the client's session.
    let busy = probe
        .post(
            &json!({ "jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": slow.clone() }),
        )
        .await;
    assert_eq!(busy.status, 200, "{}", String::from_utf8_lossy(&busy.body));
    assert_eq!(busy.json()["error"]["code"], -32004);

    let mut during = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        probe.call("tools/call", wide.clone()).await;
        during.push(started.elapsed());
    }
    before.sort();
    during.sort();
    let (p50_before, p50_during) = (before[10], during[10]);
    assert!(
        p50_during < p50_before * 3 + Duration::from_millis(20),
        "the other route kept its latency: p50 {p50_before:?} before, {p50_during:?} during"
    );
    for holder in holders {
        let result = holder.await.unwrap();
        assert!(text(&result).starts_with("done"), "{result}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_moves_a_deadline_on_up_to_its_cap() {
    let gw = Gateway::start(
        "policy-progress",
        "[[route]]\nname = \"d\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n\
         timeout = \"400ms\"\nmax_timeout = \"3s\"\nretry = { attempts = 1 }\n",
    );
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    // 1.2 s of work, progress every 200 ms: each moves the deadline on.
    let messages = mcp
        .rpc(
            "tools/call",
            json!({ "name": "d__slow", "arguments": { "seconds": 1.2, "steps": 6 }, "_meta": { "progressToken": "p" } }),
        )
        .await;
    let answer = messages.last().unwrap();
    assert!(text(&answer["result"]).starts_with("done"), "{messages:#?}");
    // The same work without progress to report times out at 400 ms.
    let started = Instant::now();
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "d__slow", "arguments": { "seconds": 1.2, "steps": 6 } }),
        )
        .await;
    assert_eq!(error["data"]["reason"], "timeout", "{error}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_millis(1100),
        "{took:?}"
    );
    // Progress never moves it beyond max_timeout.
    let error = mcp
        .error(
            "tools/call",
            json!({ "name": "d__slow", "arguments": { "seconds": 5.0, "steps": 25 }, "_meta": { "progressToken": "q" } }),
        )
        .await;
    assert_eq!(error["data"]["reason"], "timeout", "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_are_balanced_and_a_sick_one_is_ejected_until_it_recovers() {
    let dir = scratch_dir("policy-replicas-flags");
    let never = dir.join("never");
    let flag = dir.join("failing");
    let healthy = faulty_server(&never, &[]);
    let sick = faulty_server(&flag, &[]);
    std::fs::write(&flag, "").unwrap();
    let routes = format!(
        "[[route]]\nname = \"pool\"\nurls = [\"http://127.0.0.1:{}/mcp\", \"http://127.0.0.1:{}/mcp\"]\n\
         retry = {{ attempts = 3, base = \"1ms\", max = \"5ms\", min_per_second = 100 }}\n\
         breaker = {{ consecutive_failures = 2, open_for = \"1s\", probes = 1 }}\n",
        healthy.port, sick.port
    );
    let gw = Gateway::start("policy-replicas", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;
    mcp.tool_names().await;
    let lookup =
        |i: usize| json!({ "name": "pool__lookup", "arguments": { "key": format!("k{i}") } });
    // Every call succeeds: a failure on the sick replica is retried on the other, the
    // balancer leans away from it at once (a failure counts as a slow call), tries it
    // again only once that estimate has faded, and its breaker then ejects it. Calls go
    // on, one after another, until it is ejected (bounded in time and count).
    let started = Instant::now();
    let mut made = 0;
    while !gw
        .logs()
        .contains("circuit breaker open: 2 failures in a row")
    {
        assert!(
            made < 2_000 && started.elapsed() < Duration::from_secs(20),
            "the sick replica was not ejected after {made} calls: {}",
            gw.logs()
        );
        assert_eq!(
            text(&mcp.call("tools/call", lookup(made)).await),
            format!("value of k{made}")
        );
        made += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sick_calls = counts(&sick).await["lookup"]["calls"].as_u64().unwrap_or(0);
    // Two failures in a row opened its breaker; after that only a probe per open period.
    assert!((2..=4).contains(&sick_calls), "ejected: {sick_calls} calls");
    assert_eq!(counts(&healthy).await["lookup"]["calls"], made);

    // It recovers: its breaker lets a probe through, the balancer weighs it again as
    // the healthy one's estimate and its own meet (an estimate nobody refreshes fades),
    // and it takes calls again: more than five, within bounded time and calls.
    std::fs::remove_file(&flag).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let mut sick_after = sick_calls;
    for i in 0.. {
        assert_eq!(
            text(&mcp.call("tools/call", lookup(i)).await),
            format!("value of k{i}")
        );
        if i % 10 == 9 {
            sick_after = counts(&sick).await["lookup"]["calls"].as_u64().unwrap();
            if sick_after > sick_calls + 5 {
                break;
            }
        }
        assert!(
            i < 2_000 && started.elapsed() < Duration::from_secs(20),
            "the recovered replica takes calls again: {sick_calls} → {sick_after} in {i} calls"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_asks_the_client_mid_call_and_gets_the_answer() {
    let dir = scratch_dir("policy-replicas-ask");
    let never = dir.join("never");
    let (one, two) = (faulty_server(&never, &[]), faulty_server(&never, &[]));
    let routes = format!(
        "[[route]]\nname = \"pool\"\nurls = [\"http://127.0.0.1:{}/mcp\", \"http://127.0.0.1:{}/mcp\"]\n",
        one.port, two.port
    );
    let gw = Gateway::start_on_one_worker("policy-replicas-ask", &routes);
    // A client that can be asked (elicitation).
    let mcp = gw.client("/mcp");
    let opened = mcp
        .post(&json!({ "jsonrpc": "2.0", "id": 0, "method": "initialize", "params": { "protocolVersion": "2025-11-25", "capabilities": { "elicitation": {} }, "clientInfo": { "name": "asked", "version": "1" } } }))
        .await;
    assert_eq!(opened.status, 200);
    let session = opened
        .header("mcp-session-id")
        .expect("a session")
        .to_owned();
    let headers = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-session-id", session.as_str()),
    ];
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let acked = post_message(gw.addr, "/mcp", &headers, &initialized).await;
    assert_eq!(acked.status, 202);
    // Four calls, so that both replicas are most likely asked: each answer must go
    // back to the replica that asked.
    for call_id in [5, 6, 7, 8] {
        let call = json!({ "jsonrpc": "2.0", "id": call_id, "method": "tools/call", "params": { "name": "pool__ask", "arguments": { "question": "which?" } } });
        let mut stream = post_message_stream(gw.addr, "/mcp", &headers, &call).await;
        assert_eq!(stream.status, 200);
        let ask = stream
            .next_json(Duration::from_secs(10))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "the elicitation arrives on the call's stream, before its answer: {}",
                    gw.logs()
                )
            });
        assert_eq!(ask["method"], "elicitation/create", "{ask}");
        let answer = json!({ "jsonrpc": "2.0", "id": ask["id"], "result": { "action": "accept", "content": { "answer": format!("call {call_id}") } } });
        let posted = post_message(gw.addr, "/mcp", &headers, &answer).await;
        assert_eq!(posted.status, 202);
        let result = stream
            .next_json(Duration::from_secs(10))
            .await
            .expect("the call's answer");
        assert_eq!(result["id"], call_id);
        assert_eq!(text(&result["result"]), format!("answer: call {call_id}"));
    }
    let asked = |server: &ServerProc| {
        let addr = ([127, 0, 0, 1], server.port).into();
        async move { http(addr, "GET", "/counts", &[], b"").await.json() }
    };
    let (a, b) = (asked(&one).await, asked(&two).await);
    let calls = |c: &Value| c["ask"]["calls"].as_u64().unwrap_or(0);
    assert_eq!(calls(&a) + calls(&b), 4, "{a} {b}");
    std::fs::remove_dir_all(dir).ok();
}
