//! The stdio supervisor on its own, driven through `mcp-edge-transport` against real
//! children (the demo tools with fault switches): watchdog, backpressure, shutdown,
//! and id remapping under concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::sync::Arc;
use std::time::Duration;

use mcp_edge_tests::mcp_edge;
use mcp_edge_transport::stdio::Phase;
use mcp_edge_transport::{Call, CallEvent, NoSink, Reply, Stdio, StdioConfig, UpstreamError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

fn config(route: &str, program: &str, args: &[&str]) -> StdioConfig {
    let mut cfg = StdioConfig::new(
        route,
        program,
        args.iter().map(|a| (*a).to_owned()).collect(),
    );
    cfg.backoff_base = Duration::from_millis(50);
    cfg.backoff_max = Duration::from_millis(200);
    cfg.shutdown_grace = Duration::from_millis(300);
    cfg
}

fn demo(route: &str, flags: &[&str]) -> StdioConfig {
    let mut args = vec!["demo-tools", "--stdio"];
    args.extend_from_slice(flags);
    config(route, &mcp_edge().display().to_string(), &args)
}

fn call(method: &str, params: &Value, within: Duration) -> Call {
    Call {
        method: method.to_owned(),
        params: Some(serde_json::value::to_raw_value(params).unwrap()),
        deadline: Instant::now() + within,
        events: None,
        traceparent: None,
        name: None,
        session: None,
    }
}

fn echo(message: &str) -> Call {
    call(
        "tools/call",
        &json!({ "name": "echo", "arguments": { "message": message } }),
        Duration::from_secs(10),
    )
}

fn result(reply: Result<Reply, UpstreamError>) -> Value {
    match reply {
        Ok(Reply::Result(raw)) => serde_json::from_str(raw.get()).unwrap(),
        other => panic!("expected a result, got {other:?}"),
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_restarts_a_child_that_stops_answering() {
    let mut cfg = demo("hung", &["--hang"]);
    cfg.ping_interval = Duration::from_millis(200);
    cfg.ping_timeout = Duration::from_millis(300);
    let stdio = Stdio::spawn(cfg, Arc::new(NoSink));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let status = stdio.status();
        if status.restarts >= 1 {
            let (_, error) = status.last_error.expect("the failure is recorded");
            assert!(
                error.contains("did not answer the watchdog's ping"),
                "{error}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not restarted: {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stdio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_stdin_then_terms_then_kills() {
    // A child that exits when stdin closes: the first step is enough.
    let stdio = Stdio::spawn(demo("polite", &[]), Arc::new(NoSink));
    stdio
        .ready(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let pid = stdio.status().pid.unwrap();
    let started = Instant::now();
    stdio.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "closing stdin sufficed: {:?}",
        started.elapsed()
    );
    assert!(!alive(pid));
    assert_eq!(stdio.status().phase, Phase::Stopped);
    assert_eq!(
        stdio.call(echo("late")).await.unwrap_err(),
        UpstreamError::Closed
    );

    // A child that ignores stdin closing and SIGTERM (inherited SIG_IGN): SIGKILL.
    let script = format!(
        "trap '' TERM; exec '{}' demo-tools --stdio --linger",
        mcp_edge().display()
    );
    let stdio = Stdio::spawn(config("stubborn", "sh", &["-c", &script]), Arc::new(NoSink));
    stdio
        .ready(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let pid = stdio.status().pid.unwrap();
    let started = Instant::now();
    stdio.shutdown().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(600),
        "it waited after closing stdin and after SIGTERM: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(!alive(pid), "killed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_and_progress_tokens_map_back_under_concurrency() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let stdio = Stdio::spawn(demo("ids", &[]), Arc::new(NoSink));
    stdio
        .ready(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    // Each case: a batch of concurrent calls, some with progress tokens that collide
    // across callers (as they may across sessions). Every caller must get its own
    // answer and only its own progress, with its own token.
    let strategy = prop::collection::vec(
        (
            any::<u32>(),
            prop::option::of(prop_oneof![
                any::<i16>().prop_map(|n| json!(n)),
                "[a-z]{1,4}".prop_map(|s| json!(s))
            ]),
        ),
        1..24,
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    runner
        .run(&strategy, |batch| {
            let stdio = stdio.clone();
            let outcome = tokio::task::block_in_place(|| {
                handle.block_on(async move {
                    let calls = batch.into_iter().enumerate().map(|(i, (nonce, token))| {
                        let stdio = stdio.clone();
                        async move {
                            let (tx, mut rx) = mpsc::channel(16);
                            let (method, mut params) = if token.is_some() {
                                ("tools/call", json!({ "name": "slow", "arguments": { "seconds": 0.02, "steps": 2 } }))
                            } else {
                                ("tools/call", json!({ "name": "echo", "arguments": { "message": format!("{i}-{nonce}") } }))
                            };
                            if let Some(token) = &token {
                                params["_meta"] = json!({ "progressToken": token });
                            }
                            let mut c = call(method, &params, Duration::from_secs(20));
                            c.events = Some(tx);
                            let reply = result(stdio.call(c).await);
                            let mut progress = Vec::new();
                            while let Ok(CallEvent::Notification(m)) = rx.try_recv() {
                                if m.method() == "notifications/progress" {
                                    let p: Value = serde_json::from_str(m.params.unwrap().get()).unwrap();
                                    progress.push(p["progressToken"].clone());
                                }
                            }
                            (i, nonce, token, reply, progress)
                        }
                    });
                    futures_util::future::join_all(calls).await
                })
            });
            for (i, nonce, token, reply, progress) in outcome {
                let text = reply["content"][0]["text"].as_str().unwrap().to_owned();
                match token {
                    None => prop_assert_eq!(text, format!("{i}-{nonce}")),
                    Some(token) => {
                        prop_assert!(text.starts_with("done"));
                        prop_assert_eq!(progress.len(), 2, "its own two progress notifications");
                        prop_assert!(progress.iter().all(|t| *t == token), "with its own token");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
    stdio.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_from_outside_mid_call_fails_the_call_at_once_and_restarts() {
    let stdio = Stdio::spawn(demo("killed", &[]), Arc::new(NoSink));
    stdio
        .ready(Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let pid = stdio.status().pid.unwrap();
    let slow = call(
        "tools/call",
        &json!({ "name": "slow", "arguments": { "seconds": 20, "steps": 1 } }),
        Duration::from_secs(30),
    );
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(stdio.call(slow), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    });
    match outcome {
        Err(UpstreamError::Crashed(why)) => assert!(why.contains("killed by signal 9"), "{why}"),
        other => panic!("expected a crash error, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "failed at once, not after {:?}",
        started.elapsed()
    );
    // The next call waits for the restart and succeeds.
    let answer = result(stdio.call(echo("again")).await);
    assert_eq!(answer["content"][0]["text"], "again");
    assert!(stdio.status().restarts >= 1);
    assert_ne!(stdio.status().pid, Some(pid));
    stdio.shutdown().await;
}
