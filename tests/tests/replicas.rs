//! Interchangeable replicas: three mcp-edge processes with the same session key serve
//! one MCP session of the official Python client, its requests spread across them;
//! one replica stops mid-session and the session goes on on the others. A replica with
//! another key refuses the session id as unknown.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use mcp_edge_tests::{Gateway, http, peer, repo_root};
use serde_json::{Value, json};

const KEY: &str = "8f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn replica(name: &str, key: &str) -> Gateway {
    Gateway::start_with_env(
        name,
        "[[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
        &[("MCP_EDGE_SESSION_KEY", key)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_between_replicas_and_survives_one_stopping() {
    let a = replica("replica-a", KEY);
    let b = replica("replica-b", KEY);
    let c = replica("replica-c", KEY);
    let ports = [a.addr.port(), b.addr.port(), c.addr.port()];
    let mut child = Command::new(peer("py1/bin/python"))
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "60")
        .args([
            "tests/peers/py1_spread_client.py",
            &ports.map(|p| p.to_string()).join(","),
            "24",
            "12",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "paused", "{line}");
    // Mid-session, the second replica stops.
    drop(b);
    child.stdin.take().unwrap().write_all(b"go on\n").unwrap();
    let mut rest = String::new();
    stdout.read_line(&mut rest).unwrap();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "{stderr}\n{}\n{}", a.logs(), c.logs());
    let out: Value = serde_json::from_str(&rest).unwrap();
    let results: Vec<String> = serde_json::from_value(out["results"].clone()).unwrap();
    assert_eq!(results.len(), 24);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r, &format!("echo {i}"));
    }
    for port in ports {
        assert!(
            out["served"][port.to_string()].as_u64().unwrap_or(0) > 0,
            "replica {port} served nothing: {out}"
        );
    }
    let session = out["session"].as_str().unwrap();
    assert!(session.starts_with("s1."), "{session}");

    // The id means nothing to a replica with another key: unknown session (404).
    let d = replica("replica-d", OTHER_KEY);
    let probe = http(
        d.addr,
        "POST",
        "/mcp",
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-session-id", session),
        ],
        json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" })
            .to_string()
            .as_bytes(),
    )
    .await;
    assert_eq!(probe.status, 404);
    d.wait_log(
        "refused a session id: sealed with another key",
        std::time::Duration::from_secs(5),
    )
    .await;
    assert!(!d.logs().contains(session), "the id is not logged");
}
