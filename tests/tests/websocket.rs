//! The WebSocket front door admits like the HTTP doors: credentials, Origin and Host are
//! checked before the upgrade, routes not granted are refused, and an Upgrade where no
//! WebSocket is served gets a refusal that names where it is.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;

use mcp_edge_tests::{Gateway, http, peer, repo_root};
use serde_json::Value;

const TOKEN: &str = "ws-agent-token-9c1d";

fn upgrade<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("sec-websocket-protocol", "mcp"),
    ];
    headers.extend_from_slice(extra);
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_door_admits_like_the_others() {
    let gw = Gateway::start_with_env(
        "ws-door",
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\n\
         [[clients]]\nname = \"agent\"\ntoken = { env = \"WS_AGENT_TOKEN\" }\nroutes = [\"demo\"]\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"secret\"\ncommand = [\"{mcp_edge}\", \"demo-tools\", \"--stdio\"]\n",
        &[("WS_AGENT_TOKEN", TOKEN)],
    );
    let bearer = format!("Bearer {TOKEN}");
    // (path, headers, status, what the refusal says)
    type Refusal<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let refusals: &[Refusal<'_>] = &[
        ("/ws", upgrade(&[]), 401, "Unauthorized"),
        (
            "/ws",
            upgrade(&[("authorization", "Bearer wrong")]),
            401,
            "Unauthorized",
        ),
        (
            "/ws",
            upgrade(&[
                ("authorization", &bearer),
                ("origin", "https://evil.example"),
            ]),
            403,
            "Origin",
        ),
        (
            "/mcp/secret",
            upgrade(&[("authorization", &bearer)]),
            403,
            "may not use route `secret`",
        ),
        (
            "/sse",
            upgrade(&[("authorization", &bearer)]),
            400,
            "WebSocket is served at /ws",
        ),
        (
            "/ws",
            vec![("authorization", bearer.as_str())],
            426,
            "speaks WebSocket",
        ),
    ];
    for (path, headers, status, says) in refusals {
        let resp = http(gw.addr, "GET", path, headers, b"").await;
        let body = String::from_utf8_lossy(&resp.body).into_owned();
        assert_eq!(resp.status, *status, "{path} {headers:?}: {body}");
        assert!(body.contains(says), "{path}: {body}");
        if *status == 401 {
            assert!(resp.header("www-authenticate").is_some());
        }
    }
    let accepted = http(
        gw.addr,
        "GET",
        "/ws",
        &upgrade(&[("authorization", &bearer)]),
        b"",
    )
    .await;
    assert_eq!(accepted.status, 101);
    assert_eq!(accepted.header("sec-websocket-protocol"), Some("mcp"));
    assert_eq!(
        accepted.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );

    // The Python SDK's WebSocket client with the token: it sees only its routes.
    let output = Command::new(peer("py1/bin/python"))
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "20")
        .env("PEER_HEADERS", format!(r#"{{"Authorization":"{bearer}"}}"#))
        .args([
            "tests/peers/py1_client.py",
            &format!("ws://{}/ws", gw.addr),
            "websocket",
            "demo__echo",
            r#"{"message":"over ws"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(out["result"]["content"][0]["text"], "over ws");
    let tools = out["tools"].to_string();
    assert!(
        tools.contains("demo__echo") && !tools.contains("secret__"),
        "{tools}"
    );
}
