//! Real TLS, with certificates the tests make: tool servers across HTTPS (the Python
//! SDK's FastMCP under uvicorn) in every failure mode the gateway must explain, and the
//! gateway's own HTTPS front door with client certificates and bearer tokens, driven by
//! the official Python and TypeScript clients.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::process::Command;
use std::time::Duration;

use mcp_edge_tests::{Gateway, ServerProc, peer, repo_root, save_pem, scratch_dir, tls_connect};
use mcp_edge_tls::pki::{Ca, Validity};
use serde_json::{Value, json};

fn py1() -> String {
    peer("py1/bin/python")
}

/// A FastMCP server over HTTPS with this certificate, requiring client certificates
/// from `client_ca` when given.
fn fastmcp_https(cert: &(String, String), client_ca: Option<&str>) -> ServerProc {
    fastmcp_tls(
        "--http",
        cert,
        client_ca
            .map(|ca| ["--tls-client-ca", ca])
            .as_ref()
            .map_or(&[][..], |a| &a[..]),
    )
}

/// A FastMCP server in `mode` (`--http`, `--ws`) over TLS with this certificate.
fn fastmcp_tls(mode: &str, cert: &(String, String), extra: &[&str]) -> ServerProc {
    let mut args = vec![
        "tests/peers/fastmcp_server.py",
        mode,
        "0",
        "--tls-cert",
        &cert.0,
        "--tls-key",
        &cert.1,
    ];
    args.extend_from_slice(extra);
    ServerProc::start(&py1(), &args, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_failures_are_explained() {
    let dir = scratch_dir("tls-upstream");
    let ca = Ca::new("test CA", Validity::days(30)).unwrap();
    let other = Ca::new("another CA", Validity::days(30)).unwrap();
    let ca_file = save_pem(&dir, "ca", &ca.pem).0;
    let other_ca_file = save_pem(&dir, "other-ca", &other.pem).0;
    let names = vec!["localhost".to_owned()];
    let valid = save_pem(
        &dir,
        "valid",
        &ca.server(&names, Validity::days(30)).unwrap(),
    );
    let expired = save_pem(
        &dir,
        "expired",
        &ca.server(
            &names,
            Validity {
                from_days: -30,
                until_days: -2,
            },
        )
        .unwrap(),
    );
    let not_yet = save_pem(
        &dir,
        "not-yet",
        &ca.server(
            &names,
            Validity {
                from_days: 3,
                until_days: 30,
            },
        )
        .unwrap(),
    );
    let client = save_pem(
        &dir,
        "client",
        &ca.client("edge", None, Validity::days(30)).unwrap(),
    );
    let stranger = save_pem(
        &dir,
        "stranger",
        &other.client("edge", None, Validity::days(30)).unwrap(),
    );

    let mtls = fastmcp_https(&valid, Some(&ca_file));
    let old = fastmcp_https(&expired, None);
    let early = fastmcp_https(&not_yet, None);
    let outdated = fastmcp_tls("--http", &valid, &["--tls-max-version", "1.1"]);
    let websocket = fastmcp_tls("--ws", &valid, &[]);
    let route = |name: &str,
                 host: &str,
                 port: u16,
                 ca: &str,
                 identity: Option<&(String, String)>| {
        let identity = identity
            .map(|(c, k)| format!(", client_cert = \"{c}\", client_key = \"{k}\""))
            .unwrap_or_default();
        format!(
            "[[route]]\nname = \"{name}\"\nurl = \"https://{host}:{port}/mcp\"\ntimeout = \"5s\"\ntls = {{ ca = \"{ca}\"{identity} }}\n\n"
        )
    };
    let routes = [
        route("ok", "localhost", mtls.port, &ca_file, Some(&client)),
        route("nocert", "localhost", mtls.port, &ca_file, None),
        route(
            "stranger",
            "localhost",
            mtls.port,
            &ca_file,
            Some(&stranger),
        ),
        route("wrongname", "127.0.0.1", mtls.port, &ca_file, Some(&client)),
        route(
            "unknownca",
            "localhost",
            mtls.port,
            &other_ca_file,
            Some(&client),
        ),
        route("expired", "localhost", old.port, &ca_file, None),
        route("notyet", "localhost", early.port, &ca_file, None),
        route("outdated", "localhost", outdated.port, &ca_file, None),
        format!(
            "[[route]]\nname = \"renamed\"\nurl = \"https://127.0.0.1:{}/mcp\"\n\
             tls = {{ ca = \"{ca_file}\", server_name = \"localhost\", client_cert = \"{}\", client_key = \"{}\" }}\n\n\
             [[route]]\nname = \"wss\"\nurl = \"wss://127.0.0.1:{}/ws\"\n\
             tls = {{ ca = \"{ca_file}\", server_name = \"localhost\" }}\n\n\
             [[route]]\nname = \"wsswrongname\"\nurl = \"wss://127.0.0.1:{}/ws\"\ntls = {{ ca = \"{ca_file}\" }}\n\n",
            mtls.port, client.0, client.1, websocket.port, websocket.port
        ),
    ]
    .concat();
    let gw = Gateway::start("tls-upstream-gw", &routes);
    let mut mcp = gw.client("/mcp");
    mcp.initialize().await;

    let echo = |name: &str| json!({ "name": format!("{name}__echo"), "arguments": { "message": "over TLS" } });
    let ok = mcp.call("tools/call", echo("ok")).await;
    assert_eq!(
        ok["content"][0]["text"], "over TLS",
        "a valid chain, verified, with our client certificate"
    );

    // tls.server_name verifies another name than the URL's host, over HTTPS and wss://.
    for route in ["renamed", "wss"] {
        let ok = mcp.call("tools/call", echo(route)).await;
        assert_eq!(
            ok["content"][0]["text"],
            "over TLS",
            "{route}: {}",
            gw.logs()
        );
    }

    let expect = [
        ("nocert", "rejected mcp-edge's client certificate"),
        ("stranger", "rejected mcp-edge's client certificate"),
        (
            "wrongname",
            "is for localhost, not 127.0.0.1; fix the URL, or set tls.server_name",
        ),
        (
            "unknownca",
            "issued by a CA this route does not trust; set tls.ca",
        ),
        ("expired", "the server's certificate expired on "),
        ("notyet", "is not valid until "),
        ("outdated", "it most likely speaks only TLS 1.0/1.1"),
        (
            "wsswrongname",
            "is for localhost, not 127.0.0.1; fix the URL, or set tls.server_name",
        ),
    ];
    for (route, text) in expect {
        let error = mcp.error("tools/call", echo(route)).await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(text), "{route}: {message}");
        assert_eq!(error["data"]["route"], route);
    }
    let error = mcp.error("tools/call", echo("notyet")).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("check the clock"),
        "{error}"
    );
    std::fs::remove_dir_all(dir).ok();
}

/// Runs the Python SDK client with extra environment; its JSON line or its stderr.
fn py_client(url: &str, tool: &str, env: &[(&str, &str)]) -> Result<Value, String> {
    let output = Command::new(py1())
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "20")
        .envs(env.iter().copied())
        .args([
            "tests/peers/py1_client.py",
            url,
            "streamable-http",
            tool,
            r#"{"message":"hello"}"#,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stderr),
            stdout
        ));
    }
    Ok(serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap())
}

/// Runs the TypeScript SDK client (Streamable HTTP) with extra environment; its JSON
/// line or its stderr.
fn ts_client(url: &str, env: &[(&str, String)]) -> Result<Value, String> {
    let output = Command::new("node")
        .current_dir(repo_root())
        .env("PEER_TIMEOUT", "20")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "tests/peers/ts_client.mjs",
            url,
            "demo__echo",
            r#"{"message":"from ts"}"#,
        ])
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(serde_json::from_str(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default(),
    )
    .unwrap())
}

/// `initialize` then `tools/call demo__echo` over one HTTP/2 connection to the TLS front
/// door, presenting `identity`: the ALPN protocol and the call's answer.
async fn http2_call(port: u16, ca: &str, identity: &(String, String)) -> (String, Value) {
    use http_body_util::{BodyExt, Full};
    let tls = tls_connect(port, ca, Some((&identity.0, &identity.1)), &[b"h2"]).await;
    let alpn =
        String::from_utf8_lossy(tls.get_ref().1.alpn_protocol().unwrap_or_default()).into_owned();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut session: Option<String> = None;
    let mut last = Value::Null;
    for body in [
        json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize", "params": { "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": { "name": "h2", "version": "1" } } }),
        json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }),
        json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": { "name": "demo__echo", "arguments": { "message": "over h2" } } }),
    ] {
        let mut request = http::Request::post(format!("https://localhost:{port}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(id) = &session {
            request = request.header("mcp-session-id", id);
        }
        let response = sender
            .send_request(
                request
                    .body(Full::new(bytes::Bytes::from(body.to_string())))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        if let Some(id) = response.headers().get("mcp-session-id") {
            session = Some(id.to_str().unwrap().to_owned());
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        // JSON, or one SSE event whose data is the answer.
        let json = text
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .map_or(text.as_ref(), str::trim);
        if !json.is_empty() {
            last = serde_json::from_str(json).unwrap();
        }
    }
    (alpn, last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_serves_https_with_client_certificates() {
    let dir = scratch_dir("tls-front-mtls");
    let ca = Ca::new("front CA", Validity::days(30)).unwrap();
    let other = Ca::new("other CA", Validity::days(30)).unwrap();
    let ca_file = save_pem(&dir, "ca", &ca.pem).0;
    let server = save_pem(
        &dir,
        "gateway",
        &ca.server(&["localhost".to_owned()], Validity::days(30))
            .unwrap(),
    );
    let agent = save_pem(
        &dir,
        "agent",
        &ca.client("agent", Some("spiffe://test/agent"), Validity::days(30))
            .unwrap(),
    );
    let stranger = save_pem(
        &dir,
        "stranger",
        &other
            .client("agent", Some("spiffe://test/agent"), Validity::days(30))
            .unwrap(),
    );
    let unknown = save_pem(
        &dir,
        "unknown",
        &ca.client("nobody", None, Validity::days(30)).unwrap(),
    );
    // From the right CA, with the agent's URI identity spelled as its common name: a
    // CN is free text, so it is not the agent.
    let impostor = save_pem(
        &dir,
        "impostor",
        &ca.client("spiffe://test/agent", None, Validity::days(30))
            .unwrap(),
    );
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{ca_file}\" }}\n\n\
         [[clients]]\nname = \"agent\"\nidentity = \"spiffe://test/agent\"\nroutes = [\"demo\"]\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"secret\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n",
        server.0, server.1
    );
    let gw = Gateway::start("tls-front-mtls-gw", &routes);
    let url = format!("https://localhost:{}/mcp", gw.addr.port());

    let with = |cert: &(String, String)| {
        vec![
            ("PEER_CA", ca_file.clone()),
            ("PEER_CERT", cert.0.clone()),
            ("PEER_KEY", cert.1.clone()),
        ]
    };
    let env = |pairs: &[(&'static str, String)]| {
        pairs
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect::<Vec<_>>()
    };
    let run = |pairs: Vec<(&'static str, String)>, tool: &str| {
        let owned = env(&pairs);
        let refs: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
        py_client(&url, tool, &refs)
    };

    // The Python SDK with a client certificate: its SPIFFE id is the principal, which
    // may use `demo` and not `secret`.
    let out = run(with(&agent), "demo__echo").expect("the agent's certificate is accepted");
    assert_eq!(out["result"]["content"][0]["text"], "hello");
    let tools: Vec<&str> = out["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        tools.iter().all(|t| t.starts_with("demo__")),
        "only granted routes: {tools:?}"
    );

    // The TypeScript SDK with the same client certificate.
    let out =
        ts_client(&url, &env(&with(&agent))).expect("the TS client's certificate is accepted");
    assert_eq!(out["result"]["content"][0]["text"], "from ts");
    assert!(
        ts_client(&url, &env(&with(&stranger))).is_err(),
        "the TS client with another CA's certificate is refused"
    );

    // HTTP/2, negotiated over ALPN, with the client certificate as the principal.
    let h2 = http2_call(gw.addr.port(), &ca_file, &agent).await;
    assert_eq!(h2.0, "h2");
    assert_eq!(h2.1["result"]["content"][0]["text"], "over h2", "{}", h2.1);

    // A certificate from another CA, or none, fails the handshake; a valid certificate
    // that names no client is 401.
    assert!(
        run(with(&stranger), "demo__echo").is_err(),
        "another CA's certificate is refused"
    );
    assert!(
        run(vec![("PEER_CA", ca_file.clone())], "demo__echo").is_err(),
        "no certificate is refused"
    );
    let refused = run(with(&unknown), "demo__echo").expect_err("a certificate naming no client");
    assert!(refused.contains("401"), "{refused}");
    let refused = run(with(&impostor), "demo__echo")
        .expect_err("a CN that spells another client's URI identity");
    assert!(refused.contains("401"), "{refused}");
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_door_serves_https_with_bearer_tokens_and_refuses_clearly() {
    let dir = scratch_dir("tls-front-token");
    let ca = Ca::new("front CA", Validity::days(30)).unwrap();
    let ca_file = save_pem(&dir, "ca", &ca.pem).0;
    let server = save_pem(
        &dir,
        "gateway",
        &ca.server(&["localhost".to_owned()], Validity::days(30))
            .unwrap(),
    );
    let routes = format!(
        "[gateway]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n\
         [[clients]]\nname = \"agent\"\ntoken = {{ env = \"MCP_EDGE_TEST_AGENT_TOKEN\" }}\nroutes = [\"demo\"]\n\n\
         [[route]]\nname = \"demo\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n\n\
         [[route]]\nname = \"secret\"\ncommand = [\"{{mcp_edge}}\", \"demo-tools\", \"--stdio\"]\n",
        server.0, server.1
    );
    let token = "agent-token-5f2c9e";
    let gw = Gateway::start_with_env(
        "tls-front-token-gw",
        &routes,
        &[("MCP_EDGE_TEST_AGENT_TOKEN", token)],
    );
    let url = format!("https://localhost:{}/mcp", gw.addr.port());
    let auth = format!(r#"{{"Authorization":"Bearer {token}"}}"#);

    // The Python SDK over HTTPS with the bearer token.
    let out = py_client(
        &url,
        "demo__echo",
        &[("PEER_CA", &ca_file), ("PEER_HEADERS", &auth)],
    )
    .expect("token accepted");
    assert_eq!(out["result"]["content"][0]["text"], "hello");

    // The TypeScript SDK over HTTPS with the bearer token (Node trusts the test CA).
    let output = Command::new("node")
        .current_dir(repo_root())
        .env("NODE_EXTRA_CA_CERTS", &ca_file)
        .env("PEER_HEADERS", &auth)
        .env("PEER_TIMEOUT", "20")
        .args([
            "tests/peers/ts_client.mjs",
            &url,
            "demo__echo",
            r#"{"message":"from ts"}"#,
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
    assert_eq!(out["result"]["content"][0]["text"], "from ts");

    // Refusals, without and with the wrong token, for a route not granted, from a
    // foreign Origin: all over the same HTTPS front door, by the Python SDK.
    let wrong = r#"{"Authorization":"Bearer not-the-token"}"#;
    for (headers, status) in [(None, "401"), (Some(wrong), "401")] {
        let mut env = vec![("PEER_CA", ca_file.as_str())];
        if let Some(h) = headers {
            env.push(("PEER_HEADERS", h));
        }
        let refused = py_client(&url, "demo__echo", &env).expect_err("refused");
        assert!(refused.contains(status), "{refused}");
    }
    let secret_url = format!("https://localhost:{}/mcp/secret", gw.addr.port());
    let refused = py_client(
        &secret_url,
        "echo",
        &[("PEER_CA", &ca_file), ("PEER_HEADERS", &auth)],
    )
    .expect_err("not granted");
    assert!(refused.contains("403"), "{refused}");
    let origin = format!(r#"{{"Authorization":"Bearer {token}","Origin":"https://evil.example"}}"#);
    let refused = py_client(
        &url,
        "demo__echo",
        &[("PEER_CA", &ca_file), ("PEER_HEADERS", &origin)],
    )
    .expect_err("bad origin");
    assert!(refused.contains("403"), "{refused}");
    // The same refusals arrive whole over HTTP/2 and HTTP/1.1, from a client that sends
    // a body the gateway never reads (a response that ends while the client is still
    // sending is otherwise reset, and the refusal lost with it).
    let bad_token = "Bearer not-the-token".to_owned();
    let good_token = format!("Bearer {token}");
    for alpn in [&b"h2"[..], b"http/1.1"] {
        for (path, authorization, origin, status) in [
            ("/mcp", None, None, 401),
            ("/mcp", Some(&bad_token), None, 401),
            ("/mcp/secret", Some(&good_token), None, 403),
            ("/mcp", Some(&good_token), Some("https://evil.example"), 403),
            ("/nowhere", Some(&good_token), None, 404),
        ] {
            let (got, headers, body) =
                refused_over(gw.addr.port(), &ca_file, alpn, path, authorization, origin).await;
            let what = format!("{} {path}", String::from_utf8_lossy(alpn));
            assert_eq!(got, status, "{what}: {body}");
            assert!(body["error"]["message"].is_string(), "{what}: {body}");
            if status == 401 {
                assert!(
                    headers.get("www-authenticate").is_some(),
                    "{what}: {headers:?}"
                );
            }
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// One POST with a 64 KB body over a fresh TLS connection offering `alpn`, sent as the
/// response comes: the status, headers and JSON body of the answer.
async fn refused_over(
    port: u16,
    ca: &str,
    alpn: &[u8],
    path: &str,
    authorization: Option<&String>,
    origin: Option<&str>,
) -> (u16, http::HeaderMap, Value) {
    use http_body_util::{BodyExt, Full};
    let tls = tls_connect(port, ca, None, &[alpn]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(alpn));
    let io = hyper_util::rt::TokioIo::new(tls);
    let mut request = http::Request::post(format!("https://localhost:{port}{path}"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    if alpn == b"http/1.1" {
        request = request.header("host", format!("localhost:{port}"));
    }
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization.as_str());
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let padding = "x".repeat(64 * 1024);
    let body = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "params": { "_meta": { "pad": padding } } });
    let request = request
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .unwrap();
    let response = if alpn == b"h2" {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(connection);
        sender.send_request(request).await.unwrap()
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the refusal's body arrives in time")
        .unwrap_or_else(|e| panic!("the refusal's body over {alpn:?} {path} was lost: {e}"))
        .to_bytes();
    (status, headers, serde_json::from_slice(&bytes).unwrap())
}

#[test]
fn plaintext_to_an_untrusted_address_still_refuses_to_load() {
    let dir = scratch_dir("tls-refuse");
    std::fs::write(
        dir.join("routes.toml"),
        "[gateway]\nallow_anonymous = true\n[[route]]\nname = \"partner\"\nurl = \"http://203.0.113.10/mcp\"\n",
    )
    .unwrap();
    let run = mcp_edge_tests::run_in(&dir, &["serve", "routes.toml"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "routes.toml:5:7: error: route `partner` would cross an untrusted boundary in plaintext"
        ),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(dir).ok();
}
