//! Graceful shutdown of a real gateway on SIGTERM, with a call in flight: readiness
//! fails at once, new connections are refused, the call finishes, open event streams
//! end cleanly, the child tool server is stopped, and the process exits 0.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use mcp_edge_tests::{Gateway, http, text};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_calls_in_flight_finish_and_exits_zero() {
    let mut gw = Gateway::start(
        "shutdown",
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nallow_anonymous = true\nshutdown_grace = \"10s\"\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
    );
    let health: Value = http(gw.admin, "GET", "/health", &[], b"").await.json();
    let child = health["routes"][0]["pid"].as_u64().unwrap() as i32;

    // A session with an open GET stream, and a slow call in flight on another.
    let mut listener = gw.client("/mcp");
    listener.initialize().await;
    let mut stream = listener.get_stream().await;
    let mut caller = gw.client("/mcp");
    caller.initialize().await;
    let slow = tokio::spawn(async move {
        caller
            .call(
                "tools/call",
                json!({ "name": "demo__slow", "arguments": { "seconds": 1.5, "steps": 1 } }),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let signalled = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Readiness fails at once, so that a load balancer moves traffic away.
    let ready = http(gw.admin, "GET", "/readyz", &[], b"").await;
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("shutting down"));
    // No new connections.
    assert!(
        tokio::net::TcpStream::connect(gw.addr).await.is_err(),
        "the listener is closed"
    );
    // The open event stream ends cleanly (not at the 5 s timeout).
    let waited = Instant::now();
    while stream.next(Duration::from_secs(5)).await.is_some() {}
    assert!(
        waited.elapsed() < Duration::from_secs(4),
        "the stream was left open"
    );

    // The call in flight finishes with its result.
    let result = slow.await.unwrap();
    assert!(text(&result).starts_with("done"), "{result}");

    // Then the process stops its child and exits 0, well within the grace period.
    let code = tokio::task::spawn_blocking(move || {
        let code = gw.wait_exit(Duration::from_secs(15));
        (code, gw.logs())
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(0), "{}", code.1);
    assert!(signalled.elapsed() < Duration::from_secs(10));
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), None).is_err(),
        "the child tool server is gone"
    );
    assert!(code.1.contains("stopped"), "{}", code.1);
}
