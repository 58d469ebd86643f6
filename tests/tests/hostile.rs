//! Hostile tool servers: one that misbehaves gets a clear error for its own calls, and
//! every other client keeps being served.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, dripping_server, text};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_server_dripping_an_endless_line_does_not_slow_anyone_else() {
    let stop = Instant::now() + Duration::from_secs(25);
    let port = dripping_server(stop.into()).await;
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
